"""The OPC UA driver: one tool, in equipment words, over a session shared with the other tools
of the same server.

Layers: :mod:`drivers.opcua.nodemap` says where things are (data), :mod:`drivers.opcua.codec`
turns values into the model and back (pure), :mod:`drivers.opcua.session` owns the connection
(and is the one place asyncua errors are translated). This module speaks the
:class:`~drivers.interface.ToolDriver` protocol on top: it resolves the node map on every
(re)connection, follows the tool's status through its own subscription on the session,
created at the tool's phase of the publishing interval (no polling),
publishes changes to an :class:`~drivers.supervision.EventHub`, and turns method outputs into
:class:`~drivers.errors.CommandRefused` / :class:`~drivers.errors.RecipeMismatch`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import structlog
from asyncua import ua

from drivers.catalogue import ClassSpec, class_spec
from drivers.config import OpcUaEndpoint, ToolConfig
from drivers.errors import (
    CommandRefused,
    ConfigurationError,
    DriverError,
    ProtocolError,
    RecipeMismatch,
    ToolAlarmed,
    ToolUnreachable,
)
from drivers.interface import ToolEvent
from drivers.model import (
    EquipmentClass,
    Job,
    JobResults,
    Mode,
    ProcessState,
    Recipe,
    RecipeInfo,
    RefusalCode,
    ToolIdentity,
    ToolStatus,
)
from drivers.opcua import codec
from drivers.opcua.link import ItemSpec, Link, relative_path
from drivers.opcua.nodemap import (
    DEFAULT_MAP_PATH,
    STATUS_SIGNALS,
    Address,
    Method,
    NodeMap,
    Signal,
    load_node_map,
)
from drivers.opcua.pool import OpcUaSessionPool
from drivers.opcua.session import EndpointSession
from drivers.opcua.ua_typed import AttributeIds, ObjectIds, node_id
from drivers.supervision import EventHub

log = structlog.get_logger("pkgline.drivers.opcua")

T = TypeVar("T")

_IDENTITY = (
    Signal.EQUIPMENT_CLASS,
    Signal.MANUFACTURER,
    Signal.MODEL,
    Signal.SERIAL_NUMBER,
    Signal.SOFTWARE_VERSION,
)
_RECIPE = (Signal.STATE, Signal.RECIPE_NAME, Signal.RECIPE_VERSION, Signal.RECIPE_CHECKSUM)
_RESULTS = (
    Signal.RESULTS_AVAILABLE,
    Signal.RESULTS_JOB_ID,
    Signal.RESULTS_LOT_ID,
    Signal.RESULTS_STEP,
    Signal.RESULTS_CARRIER_ID,
    Signal.RESULTS_ROWS,
    Signal.RESULTS_COLS,
    Signal.RESULTS_CODES,
)
_EVENT_KEY = -1
"""Monitored-item key of the alarm events (data-change keys index STATUS_SIGNALS)."""
_OBJECTS = node_id(ObjectIds.ObjectsFolder)
_BASE_EVENT_TYPE = node_id(ObjectIds.BaseEventType)


def _read_parameters(node_ids: Sequence[ua.NodeId]) -> ua.ReadParameters:
    return ua.ReadParameters(
        NodesToRead=[ua.ReadValueId(NodeId=n, AttributeId=AttributeIds.Value) for n in node_ids],
        TimestampsToReturn=ua.TimestampsToReturn.Neither,
    )


@dataclass(frozen=True, slots=True)
class _Resolved:
    """The tool's node ids on one connection, with the Read requests built once."""

    tool_object: ua.NodeId
    methods: Mapping[Method, ua.NodeId]
    status_read: ua.ReadParameters
    identity_read: ua.ReadParameters
    recipe_read: ua.ReadParameters
    status_recipe_read: ua.ReadParameters
    results_read: ua.ReadParameters
    measured_names: tuple[str, ...]
    event_filter: ua.EventFilter


def _all_found(found: Sequence[tuple[ua.NodeId | None, str]], tool_id: str) -> list[ua.NodeId]:
    missing = [problem for node, problem in found if node is None]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ProtocolError(missing[0] + more, tool_id=tool_id, request="resolve nodes")
    return [node for node, _ in found if node is not None]


class OpcUaDriver:
    """Controls one tool through an OPC UA server (see the module docstring).

    ``sessions`` is shared by every driver of the line: drivers of tools behind the same
    endpoint URL share one session. The tool's subscription is created at ``poll_phase_s`` in
    its publishing interval (default: at once). Nothing connects before :meth:`start`.
    """

    def __init__(
        self,
        config: ToolConfig,
        sessions: OpcUaSessionPool,
        *,
        poll_phase_s: float | None = None,
    ):
        if not isinstance(config.endpoint, OpcUaEndpoint):
            raise ConfigurationError(
                f"an OPC UA driver needs an opcua endpoint, not {config.endpoint.transport}",
                tool_id=config.id,
            )
        interval = config.policy.poll_interval_s
        if poll_phase_s is not None and not 0.0 <= poll_phase_s < interval:
            raise ConfigurationError(
                f"a publishing phase is in [0, {interval:g}) s, not {poll_phase_s:g}",
                tool_id=config.id,
            )
        self._config = config
        self._phase = poll_phase_s
        self._endpoint: OpcUaEndpoint = config.endpoint
        self._pool = sessions
        self._spec: ClassSpec = class_spec(config.equipment_class)
        self._map: NodeMap = load_node_map(self._endpoint.map or DEFAULT_MAP_PATH)
        self._object_name = self._endpoint.object_name or config.id
        self._hub = EventHub(config.id)
        self._session: EndpointSession | None = None
        self._resolved: _Resolved | None = None
        self._latest: dict[int, ua.DataValue] = {}
        self._bad_status: str | None = None
        self._attach_error: Exception | None = None
        self._offline_reason = "not connected yet"
        self._started = False
        self._closed = False

    # -- identity --------------------------------------------------------------------------

    @property
    def tool_id(self) -> str:
        return self._config.id

    @property
    def equipment_class(self) -> EquipmentClass:
        return self._config.equipment_class

    @property
    def connected(self) -> bool:
        return self._hub.connected

    @property
    def recipe_parameters(self) -> frozenset[str]:
        return frozenset(self._spec.recipe)

    @property
    def publish_phase_s(self) -> float | None:
        """When in each publishing interval the tool's subscription is created (None: at once)."""
        return self._phase

    @property
    def session(self) -> EndpointSession | None:
        """The shared endpoint session (None before :meth:`start` and after :meth:`close`)."""
        return self._session

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if self._started or self._closed:
            return
        self._started = True
        self._session = self._pool.acquire(
            self._endpoint.url, self._config.policy, self._endpoint.security
        )
        await self._session.add(self)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        session, self._session = self._session, None
        self._resolved = None
        if session is not None:
            await session.remove(self)
            await self._pool.release(session)
        self._hub.close()

    def events(self) -> AsyncIterator[ToolEvent]:
        return self._hub.subscribe()

    # -- SessionListener: called by the session ---------------------------------------------

    async def attach(self, link: Link) -> Sequence[ItemSpec]:
        """Resolve the node map on a fresh connection: one TranslateBrowsePaths request for
        the tool's nodes (one more for the alarm event type), and a check of its class."""
        self._resolved = None
        self._latest.clear()
        tool_object = await self._resolve_from(
            link, _OBJECTS, [self._map.tool_object_for(self._object_name)], "tool object"
        )
        node = _all_found(tool_object, self.tool_id)[0]
        signals = list(Signal)
        methods = list(Method)
        measured = tuple(self._spec.measured)
        addresses = [
            a.for_object(self._object_name)
            for a in (
                [self._map.signals[s] for s in signals]
                + [self._map.methods[m] for m in methods]
                + [self._map.measured(name) for name in measured]
            )
        ]
        found = await self._resolve_from(link, node, addresses, "tool nodes")
        class_node = found[signals.index(Signal.EQUIPMENT_CLASS)][0]
        if class_node is not None:
            # A tool of another class lacks some nodes: say that, not which node is missing.
            (reported,) = await link.read(_read_parameters([class_node]))
            self._check_class(reported, "connect")
        ids = _all_found(found, self.tool_id)
        by_signal = dict(zip(signals, ids[: len(signals)], strict=True))
        method_ids = dict(
            zip(methods, ids[len(signals) : len(signals) + len(methods)], strict=True)
        )
        measured_ids = ids[len(signals) + len(methods) :]
        event_type = _all_found(
            await self._resolve_from(
                link, _BASE_EVENT_TYPE, [self._map.alarm_event.event_type], "alarm event type"
            ),
            self.tool_id,
        )[0]
        resolved = _Resolved(
            tool_object=node,
            methods=method_ids,
            status_read=_read_parameters([by_signal[s] for s in STATUS_SIGNALS]),
            identity_read=_read_parameters([by_signal[s] for s in _IDENTITY]),
            recipe_read=_read_parameters([by_signal[s] for s in _RECIPE]),
            status_recipe_read=_read_parameters(
                [by_signal[s] for s in (*STATUS_SIGNALS, *_RECIPE)]
            ),
            results_read=_read_parameters([by_signal[s] for s in _RESULTS] + list(measured_ids)),
            measured_names=measured,
            event_filter=await self._event_filter(link, event_type),
        )
        self._resolved = resolved
        self._attach_error = None
        items = [ItemSpec(by_signal[s], key) for key, s in enumerate(STATUS_SIGNALS)]
        items.append(ItemSpec(node, _EVENT_KEY, resolved.event_filter))
        return items

    def attached(self) -> None:
        self._hub.online()
        self._report_status()  # initial values that came before the subscription's answer

    def attach_failed(self, error: Exception) -> None:
        self._resolved = None
        self._attach_error = error
        self._hub.offline(str(error))

    def connection_lost(self, reason: str, *, refused: bool = False) -> None:
        self._resolved = None
        self._latest.clear()
        self._attach_error = None
        self._offline_reason = reason
        self._hub.offline(reason, refused=refused)

    def values_changed(self, changes: Sequence[tuple[int, ua.DataValue]]) -> None:
        for key, value in changes:
            self._latest[key] = value
        if self._hub.connected:  # else attached() reports them: online first, then the status
            self._report_status()

    def _report_status(self) -> None:
        if len(self._latest) < len(STATUS_SIGNALS):
            return  # the initial values of a new subscription are still coming
        values = {STATUS_SIGNALS[k]: v for k, v in self._latest.items() if k >= 0}
        try:
            status = codec.decode_status(values)
        except codec.MalformedValue as exc:
            if str(exc) != self._bad_status:
                log.warning("malformed status notification", tool_id=self.tool_id, error=str(exc))
            self._bad_status = str(exc)
            return
        self._bad_status = None
        self._hub.status(status)

    def event_received(self, key: int, fields: Sequence[ua.Variant]) -> None:
        if key != _EVENT_KEY or len(fields) < 5:
            return
        code, text, severity = (f.Value for f in fields[2:5])
        log.warning("tool alarm", tool_id=self.tool_id, code=code, text=text, severity=severity)

    # -- resolution helpers ----------------------------------------------------------------

    async def _node_id(self, link: Link, address: Address) -> ua.NodeId:
        assert address.node_id is not None
        assert address.namespace_uri is not None
        index = await link.namespace_index(address.namespace_uri)
        try:
            return ua.NodeId.from_string(f"ns={index};{address.node_id}")
        except Exception as exc:
            raise ConfigurationError(
                f"{self._map.path}: bad node id {address.node_id!r}: {exc}", tool_id=self.tool_id
            ) from None

    async def _resolve_from(
        self, link: Link, start: ua.NodeId, addresses: Sequence[Address], what: str
    ) -> list[tuple[ua.NodeId | None, str]]:
        """Each address's node id, or None with what went wrong."""
        paths: list[ua.BrowsePath] = []
        slots: list[int] = []
        found: list[tuple[ua.NodeId | None, str]] = []
        for address in addresses:
            if address.node_id is not None:
                found.append((await self._node_id(link, address), ""))
                continue
            names = [
                ua.QualifiedName(q.name, await link.namespace_index(q.namespace_uri))
                for q in address.browse_path
            ]
            slots.append(len(found))
            found.append((None, ""))
            paths.append(ua.BrowsePath(StartingNode=start, RelativePath=relative_path(names)))
        if not paths:
            return found
        results = await link.translate(paths)
        if len(results) != len(paths):
            raise ProtocolError(
                f"{what}: asked for {len(paths)} paths, got {len(results)}",
                tool_id=self.tool_id,
                request="resolve nodes",
            )
        for slot, result, path in zip(slots, results, paths, strict=True):
            if result.StatusCode.is_good() and result.Targets:
                target = result.Targets[0].TargetId
                found[slot] = (
                    ua.NodeId(target.Identifier, target.NamespaceIndex, target.NodeIdType),
                    "",
                )
            else:
                text = "/".join(e.TargetName.Name for e in path.RelativePath.Elements)
                found[slot] = (
                    None,
                    f"{what}: {text} not found ({result.StatusCode.name}); "
                    f"check the node map {self._map.path.name}",
                )
        return found

    def _check_class(self, reported: ua.DataValue, request: str) -> None:
        name = self._decode(request, lambda: codec.as_str("equipment_class", reported))
        if name != self.equipment_class.value:
            raise ConfigurationError(
                f"the tool says it is a {name}, the line configuration says "
                f"{self.equipment_class.value}",
                tool_id=self.tool_id,
                request=request,
            )

    async def _event_filter(self, link: Link, event_type: ua.NodeId) -> ua.EventFilter:
        """Select EventType, Time and the alarm fields; only events of the alarm type."""
        alarm = self._map.alarm_event

        def operand(type_id: ua.NodeId, *names: ua.QualifiedName) -> ua.SimpleAttributeOperand:
            return ua.SimpleAttributeOperand(
                TypeDefinitionId=type_id, BrowsePath=list(names), AttributeId=AttributeIds.Value
            )

        fields = [
            operand(_BASE_EVENT_TYPE, ua.QualifiedName("EventType", 0)),
            operand(_BASE_EVENT_TYPE, ua.QualifiedName("Time", 0)),
        ]
        for q in (alarm.code, alarm.text, alarm.severity):
            fields.append(
                operand(
                    event_type,
                    ua.QualifiedName(q.name, await link.namespace_index(q.namespace_uri)),
                )
            )
        of_type = ua.ContentFilterElement(
            FilterOperator=ua.FilterOperator.OfType,
            FilterOperands=[ua.LiteralOperand(Value=ua.Variant(event_type, ua.VariantType.NodeId))],
        )
        return ua.EventFilter(
            SelectClauses=fields, WhereClause=ua.ContentFilter(Elements=[of_type])
        )

    # -- requests --------------------------------------------------------------------------

    def _nodes(self, request: str) -> tuple[EndpointSession, _Resolved]:
        session, resolved = self._session, self._resolved
        if session is not None and resolved is not None:
            return session, resolved
        if isinstance(self._attach_error, ConfigurationError):
            raise ConfigurationError(
                self._attach_error.message, tool_id=self.tool_id, request=request
            )
        if self._closed:
            reason = "the driver is closed"
        elif not self._started:
            reason = "the driver is not started"
        elif self._attach_error is not None:
            reason = f"the tool's nodes are not usable: {self._attach_error}"
        else:
            reason = f"not connected ({self._offline_reason})"
        raise ToolUnreachable(reason, tool_id=self.tool_id, request=request)

    def _decode(self, request: str, decode: Callable[[], T]) -> T:
        try:
            return decode()
        except codec.MalformedValue as exc:
            raise ProtocolError(str(exc), tool_id=self.tool_id, request=request) from exc

    async def _read(
        self, request: str, params: Callable[[_Resolved], ua.ReadParameters]
    ) -> tuple[_Resolved, list[ua.DataValue]]:
        session, resolved = self._nodes(request)
        return resolved, await session.read(self.tool_id, request, params(resolved))

    async def identify(self) -> ToolIdentity:
        _, values = await self._read("identify", lambda r: r.identity_read)
        self._check_class(values[0], "identify")
        return self._decode(
            "identify",
            lambda: codec.decode_identity(self.tool_id, dict(zip(_IDENTITY, values, strict=True))),
        )

    async def status(self) -> ToolStatus:
        _, values = await self._read("status", lambda r: r.status_read)
        return self._status_from(values, "status")

    async def active_recipe(self) -> RecipeInfo | None:
        _, values = await self._read("active_recipe", lambda r: r.recipe_read)
        return self._recipe_from(values, "active_recipe")

    async def status_and_recipe(self) -> tuple[ToolStatus, RecipeInfo | None]:
        request = "status_and_recipe"
        _, values = await self._read(request, lambda r: r.status_recipe_read)
        split = len(STATUS_SIGNALS)
        return self._status_from(values[:split], request), self._recipe_from(
            values[split:], request
        )

    def _status_from(self, values: Sequence[ua.DataValue], request: str) -> ToolStatus:
        return self._decode(
            request, lambda: codec.decode_status(dict(zip(STATUS_SIGNALS, values, strict=True)))
        )

    def _recipe_from(self, values: Sequence[ua.DataValue], request: str) -> RecipeInfo | None:
        return self._decode(
            request, lambda: codec.decode_recipe(dict(zip(_RECIPE, values, strict=True)))
        )

    async def verify_recipe(self, expected: Recipe) -> RecipeInfo:
        actual = await self.active_recipe()
        wanted = expected.info()
        if actual != wanted:
            raise RecipeMismatch(expected=wanted, actual=actual, tool_id=self.tool_id)
        return wanted

    async def results(self) -> JobResults | None:
        resolved, values = await self._read("results", lambda r: r.results_read)
        fixed = dict(zip(_RESULTS, values[: len(_RESULTS)], strict=True))
        measured = dict(zip(resolved.measured_names, values[len(_RESULTS) :], strict=True))
        return self._decode("results", lambda: codec.decode_results(fixed, measured, self._spec))

    # -- commands --------------------------------------------------------------------------

    async def _command(
        self, request: str, method: Method, args: list[ua.Variant], *, alarm_explains: bool = True
    ) -> None:
        """Call ``method`` and check its answer. A WRONG_STATE refusal from a tool in ALARM
        is :class:`ToolAlarmed` unless not ``alarm_explains`` (a reset: the alarm is what it
        is about, the tool's reason says why it stays)."""
        session, resolved = self._nodes(request)
        call = ua.CallMethodRequest(
            ObjectId=resolved.tool_object, MethodId=resolved.methods[method], InputArguments=args
        )
        result = await session.call(self.tool_id, request, call)
        code, reason = self._decode(request, lambda: codec.decode_refusal(result.OutputArguments))
        if code == RefusalCode.OK:
            return
        try:
            name = RefusalCode(code).name
        except ValueError:
            name = f"refusal code {code}"
        refused = CommandRefused(
            f"refused ({name}): {reason}", tool_id=self.tool_id, request=request, code=code
        )
        if code == RefusalCode.WRONG_STATE and alarm_explains:
            # A tool in ALARM refuses for that reason: say so, with the alarm.
            try:
                status = await self.status()
            except DriverError:
                raise refused from None
            if status.state is ProcessState.ALARM and status.alarm is not None:
                raise ToolAlarmed(status.alarm, tool_id=self.tool_id, request=request) from refused
        raise refused

    async def set_mode(self, mode: Mode) -> None:
        await self._command("set_mode", Method.SET_MODE, codec.encode_mode(mode))

    async def load_recipe(self, recipe: Recipe) -> None:
        try:
            wrong = recipe.wrong_class(self.equipment_class.value)
            if wrong is not None:
                raise ValueError(wrong)
            args = codec.encode_load_recipe(recipe)
        except (TypeError, ValueError) as exc:
            raise CommandRefused(
                str(exc),
                tool_id=self.tool_id,
                request="load_recipe",
                code=RefusalCode.INVALID_ARGUMENT,
            ) from exc
        await self._command("load_recipe", Method.LOAD_RECIPE, args)

    async def start_job(self, job: Job) -> None:
        await self._command("start_job", Method.START_JOB, codec.encode_start_job(job))

    async def abort(self) -> None:
        await self._command("abort", Method.ABORT, [])

    async def reset_alarm(self) -> None:
        await self._command("reset_alarm", Method.RESET_ALARM, [], alarm_explains=False)

    async def acknowledge_results(self, job_id: str) -> None:
        await self._command(
            "acknowledge_results", Method.ACKNOWLEDGE_RESULTS, codec.encode_job_id(job_id)
        )

    def __repr__(self) -> str:
        return f"OpcUaDriver({self.tool_id!r}, {self._endpoint.url})"
