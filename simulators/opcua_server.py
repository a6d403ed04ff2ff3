"""OPC UA simulator: several virtual tools behind one asyncua server, as a gateway would serve them.

The information model (namespace ``urn:pkgline:equipment``; docs/equipment.md, "OPC UA")::

    Objects/Tools/<tool_id>                  object, EventNotifier: emits AlarmEventType events
        Identification/  EquipmentClass, Manufacturer, Model, SerialNumber, SoftwareVersion
        State (Int32 ProcessState), StateName (String), Mode (Int32 Mode)
        Progress/        SitesDone, SitesTotal (UInt32)
        Recipe/          ActiveName (String), ActiveVersion (Int32), ActiveChecksum (UInt32)
        Job/             JobId, LotId, Step, CarrierId (String)
        Results/         Available (Boolean), JobId, LotId, Step, CarrierId (String),
                         SiteMapRows, SiteMapCols (UInt16), SiteMapCodes (ByteString),
                         Measured/<value> (Double | Int32 | String, per the class catalogue)
        Alarm/           ActiveCode (Int32, 0 = none), Text (String), Severity (Int32, 0 = none)
        LoadRecipe, StartJob, Abort, ResetAlarm, AcknowledgeResults, SetMode   (methods)

Every method answers ``RefusalCode`` (Int32) and ``Reason`` (String) with a Good status; a call
whose arguments do not fit the declared types or count fails with BadInvalidArgument /
BadArgumentsMissing / BadTooManyArguments instead. Node ids are strings,
``ns=<pkgline>;s=<tool_id>/<path>``, stable across restarts.

Each :class:`~simulators.engine.VirtualTool` is mirrored into its nodes on every change
(``VirtualTool.subscribe``); a method call mirrors before it answers, so a read after the answer
sees the new state. Alarms also go out as events, after the values.

Start-up is kept lean: no certificates, only the None security policy and anonymous login,
no clock task, and the standard address space (~6,000 nodes, ~2 s to build in asyncua) is built
once per process and copied for each server (~0.2 s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import dataclasses
import datetime
import json
import signal
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from asyncua import ua
from asyncua.common.node import Node
from asyncua.server.address_space import (
    AddressSpace,
    AttributeValue,
    NodeData,
    NodeManagementService,
)
from asyncua.server.event_generator import EventGenerator
from asyncua.server.internal_server import InternalServer
from asyncua.server.server import Server
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes

from drivers.model import (
    Alarm,
    EquipmentClass,
    Job,
    Mode,
    Recipe,
    RecipeValue,
    RefusalCode,
    SiteMap,
    ToolStatus,
)
from simulators.engine import Refused, SimulationSettings, VirtualTool

NAMESPACE_URI = "urn:pkgline:equipment"
APPLICATION_URI = "urn:pkgline:simulator"

V = ua.VariantType


def _node_id(identifier: int | str, namespace: int = 0) -> ua.NodeId:
    # asyncua annotates identifiers and indexes with its own int/str subclasses.
    return ua.NodeId(cast(ua.String, identifier), ua.Int16(namespace))


def _status(code: int) -> ua.StatusCode:
    return ua.StatusCode(ua.UInt32(code))


_SEVERITY_1000 = {1: 300, 2: 600, 3: 900}
"""BaseEventType.Severity (1..1000) for our alarm severities (warning, error, fatal)."""

# -- the standard address space, built once per process ---------------------------------------

_standard: AddressSpace | None = None
_IMMUTABLE = (
    str,
    bytes,
    int,
    float,
    bool,
    type(None),
    ua.LocalizedText,
    ua.QualifiedName,
    ua.NodeId,
    datetime.datetime,
)


def _copy_value(value: ua.DataValue | None) -> ua.DataValue | None:
    # Values are replaced, not changed, on writes, so immutable ones are shared; asyncua does
    # change lists (NamespaceArray) and structures (ServerStatus) in place, so those are copied.
    if value is None or value.Value is None or isinstance(value.Value.Value, _IMMUTABLE):
        return value
    if isinstance(value.Value.Value, list):
        return dataclasses.replace(
            value, Value=dataclasses.replace(value.Value, Value=list(value.Value.Value))
        )
    return copy.deepcopy(value)


def _copy_node(source: NodeData) -> NodeData:
    node = NodeData(source.nodeid)
    node.attributes = {}
    for attr, value in source.attributes.items():
        copied = AttributeValue(ua.DataValue())
        copied.value = _copy_value(value.value)  # may be None, as in asyncua's own nodes
        node.attributes[attr] = copied
    # ReferenceDescriptions are only changed when a node is renamed; we never rename standard
    # nodes, so they are shared (the lists are not: servers add references to standard nodes).
    node.references = list(source.references)
    node.call = source.call
    return node


class _StandardNodes(MutableMapping[ua.NodeId, NodeData]):
    """A server's nodes: its own, plus the standard address space copied node by node the
    first time each is touched (most never are)."""

    def __init__(self, template: AddressSpace):
        self._template = template
        self._own: dict[ua.NodeId, NodeData] = {}
        self._deleted: set[ua.NodeId] = set()

    def __getitem__(self, key: ua.NodeId) -> NodeData:
        try:
            return self._own[key]
        except KeyError:
            if key in self._deleted or key not in self._template:
                raise
        node = self._own[key] = _copy_node(self._template[key])
        return node

    def __setitem__(self, key: ua.NodeId, value: NodeData) -> None:
        self._own[key] = value
        self._deleted.discard(key)

    def __delitem__(self, key: ua.NodeId) -> None:
        if key not in self:
            raise KeyError(key)
        self._own.pop(key, None)
        self._deleted.add(key)

    def __contains__(self, key: object) -> bool:
        return key in self._own or (
            isinstance(key, ua.NodeId) and key not in self._deleted and key in self._template
        )

    def __iter__(self) -> Iterator[ua.NodeId]:
        yield from self._own
        for key in self._template.keys():  # noqa: SIM118 (AddressSpace has no __iter__)
            if key not in self._own and key not in self._deleted:
                yield key

    def __len__(self) -> int:
        return sum(1 for _ in self)


class _LeanInternalServer(InternalServer):
    """An InternalServer whose standard address space is copied on access from one built
    once per process, instead of being built again (asyncua does the same from a shelve file
    with ``load_aspace_shelf``; this keeps it in memory)."""

    async def load_standard_address_space(self, shelf_file: Any = None) -> None:
        global _standard
        if _standard is None:
            from asyncua.server.standard_address_space import standard_address_space

            space = AddressSpace()
            await asyncio.to_thread(
                standard_address_space.fill_address_space, NodeManagementService(space)
            )
            _standard = space
        self.aspace._nodes = _StandardNodes(_standard)  # type: ignore[assignment]


# -- the model of one tool ---------------------------------------------------------------------

_FOLDERS = ("Identification", "Progress", "Recipe", "Job", "Results", "Results/Measured", "Alarm")

VARIABLES: tuple[tuple[str, ua.VariantType, str], ...] = (
    ("Identification/EquipmentClass", V.String, "equipment class (drivers/classes.yaml)"),
    ("Identification/Manufacturer", V.String, "manufacturer"),
    ("Identification/Model", V.String, "model"),
    ("Identification/SerialNumber", V.String, "serial number"),
    ("Identification/SoftwareVersion", V.String, "software version"),
    ("State", V.Int32, "process state, wire value (0 IDLE .. 6 ABORTED)"),
    ("StateName", V.String, "process state name, for people"),
    ("Mode", V.Int32, "mode, wire value (1 PRODUCTION .. 4 MAINTENANCE)"),
    ("Progress/SitesDone", V.UInt32, "sites processed in the running job"),
    ("Progress/SitesTotal", V.UInt32, "good sites the running job will process"),
    ("Recipe/ActiveName", V.String, "active recipe name ('' when none)"),
    ("Recipe/ActiveVersion", V.Int32, "active recipe version"),
    ("Recipe/ActiveChecksum", V.UInt32, "CRC-32 of the active recipe, computed by the tool"),
    ("Job/JobId", V.String, "job id of the running or finished job ('' when none)"),
    ("Job/LotId", V.String, "lot id of that job"),
    ("Job/Step", V.String, "step code of that job"),
    ("Job/CarrierId", V.String, "carrier id of that job"),
    ("Results/Available", V.Boolean, "results wait for acknowledgement"),
    ("Results/JobId", V.String, "job the results belong to"),
    ("Results/LotId", V.String, "lot id of that job"),
    ("Results/Step", V.String, "step code of that job"),
    ("Results/CarrierId", V.String, "carrier id of that job"),
    ("Results/SiteMapRows", V.UInt16, "rows of the outgoing site map"),
    ("Results/SiteMapCols", V.UInt16, "columns of the outgoing site map"),
    ("Results/SiteMapCodes", V.ByteString, "outgoing site codes, one byte per site, row-major"),
    ("Alarm/ActiveCode", V.Int32, "active alarm code, 0 when none"),
    ("Alarm/Text", V.String, "active alarm text"),
    ("Alarm/Severity", V.Int32, "1 warning, 2 error, 3 fatal; 0 when no alarm"),
)

_MEASURED_TYPES = {"float": V.Double, "int": V.Int32, "enum": V.String}
_DEFAULTS: dict[ua.VariantType, object] = {
    V.String: "",
    V.Int32: 0,
    V.UInt32: 0,
    V.UInt16: 0,
    V.Boolean: False,
    V.ByteString: b"",
    V.Double: 0.0,
}

Argument = tuple[str, ua.VariantType, str]
_REFUSAL_OUTPUTS: tuple[Argument, ...] = (
    ("RefusalCode", V.Int32, "0 accepted, else why the tool refused (docs/equipment.md)"),
    ("Reason", V.String, "the refusal in words ('' when accepted)"),
)
METHODS: dict[str, tuple[Argument, ...]] = {
    "LoadRecipe": (
        ("Name", V.String, "recipe name"),
        ("Version", V.Int32, "recipe version"),
        ("Body", V.String, 'JSON object of body values, e.g. {"mold_temperature_c": 175.0}'),
    ),
    "StartJob": (
        ("JobId", V.String, "job id, chosen by the controller"),
        ("LotId", V.String, "lot id"),
        ("Step", V.String, "step code"),
        ("CarrierId", V.String, "carrier id"),
        ("Rows", V.UInt16, "site map rows"),
        ("Cols", V.UInt16, "site map columns"),
        ("SiteMap", V.ByteString, "incoming site codes, row-major: 0 process, else skip"),
    ),
    "Abort": (),
    "ResetAlarm": (),
    "AcknowledgeResults": (("JobId", V.String, "job whose results are recorded"),),
    "SetMode": (("Mode", V.Int32, "1 PRODUCTION, 2 ENGINEERING, 3 SETUP, 4 MAINTENANCE"),),
}

ALARM_EVENT_FIELDS: tuple[Argument, ...] = (
    ("AlarmCode", V.Int32, "alarm code"),
    ("AlarmText", V.String, "alarm text (also the event's Message)"),
    ("AlarmSeverity", V.Int32, "1 warning, 2 error, 3 fatal (Severity: 300, 600, 900)"),
)


def _argument(name: str, vtype: ua.VariantType, description: str) -> ua.Argument:
    return ua.Argument(
        Name=name,
        DataType=_node_id(vtype.value),
        ValueRank=-1,
        ArrayDimensions=[],
        Description=ua.LocalizedText(description),
    )


def _variable_item(
    parent: ua.NodeId,
    node_id: ua.NodeId,
    name: ua.QualifiedName,
    value: ua.Variant,
    description: str,
) -> ua.AddNodesItem:
    """A read-only scalar BaseDataVariable, as asyncua's add_variable makes, with a description."""
    attributes = ua.VariableAttributes(
        DisplayName=ua.LocalizedText(name.Name),
        Description=ua.LocalizedText(description or name.Name),
        Value=value,
        DataType=_node_id(value.VariantType.value),
        ValueRank=ua.ValueRank.Scalar,
        AccessLevel=ua.AccessLevel.CurrentRead.mask,
        UserAccessLevel=ua.AccessLevel.CurrentRead.mask,
    )
    return ua.AddNodesItem(
        ParentNodeId=parent,
        ReferenceTypeId=_node_id(ObjectIds.HasComponent),
        RequestedNewNodeId=node_id,
        BrowseName=name,
        NodeClass=ua.NodeClass.Variable,
        NodeAttributes=attributes,
        TypeDefinition=_node_id(ObjectIds.BaseDataVariableType),
    )


def mirror_values(tool: VirtualTool) -> dict[str, object]:
    """What the tool's variables hold now (paths as in VARIABLES, measured values included)."""
    status, recipe, job, results = tool.status, tool.active_recipe, tool.job, tool.results
    alarm = status.alarm
    values: dict[str, object] = {
        "State": int(status.state),
        "StateName": status.state.name,
        "Mode": int(status.mode),
        "Progress/SitesDone": status.sites_done,
        "Progress/SitesTotal": status.sites_total,
        "Recipe/ActiveName": recipe.name if recipe else "",
        "Recipe/ActiveVersion": recipe.version if recipe else 0,
        "Recipe/ActiveChecksum": recipe.checksum if recipe else 0,
        "Job/JobId": job.job_id if job else "",
        "Job/LotId": job.lot_id if job else "",
        "Job/Step": job.step if job else "",
        "Job/CarrierId": job.carrier_id if job else "",
        "Results/Available": results is not None,
        "Results/JobId": results.job_id if results else "",
        "Results/LotId": results.lot_id if results else "",
        "Results/Step": results.step if results else "",
        "Results/CarrierId": results.carrier_id if results else "",
        "Results/SiteMapRows": results.site_map.rows if results else 0,
        "Results/SiteMapCols": results.site_map.cols if results else 0,
        "Results/SiteMapCodes": bytes(results.site_map.codes) if results else b"",
        "Alarm/ActiveCode": alarm.code if alarm else 0,
        "Alarm/Text": alarm.text if alarm else "",
        "Alarm/Severity": int(alarm.severity) if alarm else 0,
    }
    for name, spec in tool.spec.measured.items():
        value = results.measured.get(name) if results else None
        default = _DEFAULTS[_MEASURED_TYPES[spec.type]]
        values[f"Results/Measured/{name}"] = default if value is None else value
    return values


@dataclass(eq=False)
class _ToolNodes:
    tool: VirtualTool
    object_node: Node
    variables: dict[str, tuple[ua.NodeId, ua.VariantType]]
    events: EventGenerator
    written: dict[str, object] = field(default_factory=dict)
    pending_alarms: list[Alarm] = field(default_factory=list)
    last_alarm: Alarm | None = None
    unsubscribe: Callable[[], None] | None = None


class _BadCall(Exception):
    def __init__(self, result: ua.CallMethodResult):
        self.result = result


def _check_arguments(variants: Sequence[ua.Variant], declared: Sequence[Argument]) -> list[object]:
    if len(variants) < len(declared):
        raise _BadCall(ua.CallMethodResult(StatusCode=_status(StatusCodes.BadArgumentsMissing)))
    if len(variants) > len(declared):
        raise _BadCall(ua.CallMethodResult(StatusCode=_status(StatusCodes.BadTooManyArguments)))
    statuses = [
        ua.StatusCode() if v.VariantType == vtype else _status(StatusCodes.BadTypeMismatch)
        for v, (_, vtype, _) in zip(variants, declared, strict=True)
    ]
    if any(not s.is_good() for s in statuses):
        raise _BadCall(
            ua.CallMethodResult(
                StatusCode=_status(StatusCodes.BadInvalidArgument),
                InputArgumentResults=statuses,
            )
        )
    return [v.Value for v in variants]


def _refused(code: RefusalCode, reason: str) -> Refused:
    return Refused(code, reason)


def _recipe_from(name: object, version: object, body: object) -> Recipe:
    try:
        values = json.loads(str(body)) if body else {}
    except json.JSONDecodeError as exc:
        raise _refused(RefusalCode.INVALID_ARGUMENT, f"recipe body is not JSON: {exc}") from None
    if not isinstance(values, dict) or not all(
        isinstance(v, int | float | str) and not isinstance(v, bool) for v in values.values()
    ):
        raise _refused(
            RefusalCode.INVALID_ARGUMENT, "recipe body must be a JSON object of numbers and words"
        )
    body_values: dict[str, RecipeValue] = dict(values)
    assert isinstance(name, str)
    assert isinstance(version, int)
    return Recipe(name, version, body_values)


def _job_from(values: Sequence[object]) -> Job:
    job_id, lot_id, step, carrier_id, rows, cols, codes = values
    # _check_arguments has checked the variant types.
    assert isinstance(rows, int)
    assert isinstance(cols, int)
    assert codes is None or isinstance(codes, bytes)
    try:
        site_map = SiteMap(rows, cols, tuple(codes or b""))
    except ValueError as exc:
        raise _refused(RefusalCode.INVALID_ARGUMENT, f"site map: {exc}") from None
    return Job(str(job_id), str(lot_id), str(step), str(carrier_id), site_map)


def _mode_from(value: object) -> Mode:
    try:
        return Mode(int(value) if isinstance(value, int) else -1)
    except ValueError:
        raise _refused(RefusalCode.INVALID_ARGUMENT, f"unknown mode {value!r}") from None


class OpcUaToolServer:
    """Serves several virtual tools over OPC UA (a gateway). Use as an async context manager,
    or :meth:`start` / :meth:`stop` (the transport only: tools keep their state, so a stop and a
    start is a server restart) and :meth:`close` (stop, and stop the tools' processes).

    ``port=0`` asks the system for a free port; after the first start the server keeps that
    port, so a restart is reachable at the same :attr:`url`.
    """

    def __init__(
        self,
        tools: Iterable[VirtualTool] = (),
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        name: str = "pkgline OPC UA simulator",
    ):
        self.host = host
        self.port = port
        self.name = name
        self.tools: dict[str, VirtualTool] = {}
        for tool in tools:
            self._add(tool)
        self._server: Server | None = None
        self._ns = 0
        self._nodes: dict[str, _ToolNodes] = {}
        self._dirty: dict[str, None] = {}
        self._wake = asyncio.Event()
        self._mirror_task: asyncio.Task[None] | None = None
        self._reopen_task: asyncio.Task[None] | None = None
        self._flush_lock = asyncio.Lock()
        self._max_connections = 0
        self.startup_s: float | None = None
        """How long the last :meth:`start` took (seconds)."""

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The endpoint URL (``opc.tcp://host:port``), valid once started."""
        if self.port == 0:
            raise RuntimeError("the server has no port until it is started")
        return f"opc.tcp://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def _add(self, tool: VirtualTool) -> None:
        if tool.tool_id in self.tools:
            raise ValueError(f"tool {tool.tool_id!r} is already served")
        if "/" in tool.tool_id:
            raise ValueError(
                f"tool ids are used in node ids and may not contain '/': {tool.tool_id!r}"
            )
        self.tools[tool.tool_id] = tool

    async def add_tool(self, tool: VirtualTool) -> VirtualTool:
        """Serve one more tool (at once, if the server is running)."""
        self._add(tool)
        if self._server is not None:
            await self._build_tool(self._server, tool)
        return tool

    def tool(self, tool_id: str) -> VirtualTool:
        return self.tools[tool_id]

    async def start(self) -> None:
        if self._server is not None:
            return
        loop = asyncio.get_running_loop()
        began = loop.time()
        server = Server(iserver=_LeanInternalServer())
        await server.init()
        server.set_endpoint(f"opc.tcp://{self.host}:{self.port}")
        server.set_server_name(self.name)
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        server.set_identity_tokens([ua.AnonymousIdentityToken])
        server.disable_clock()
        await server.set_application_uri(APPLICATION_URI)
        self._ns = await server.register_namespace(NAMESPACE_URI)
        try:
            await self._build_model(server)
            await server.start()
        except BaseException:
            await self._stop_server(server)
            raise
        assert server.bserver is not None
        self.port = server.bserver.port
        self._server = server
        self._mirror_task = loop.create_task(self._mirror_loop(), name=f"opcua-mirror {self.url}")
        self.startup_s = loop.time() - began

    async def stop(self) -> None:
        """Stop serving: every client connection and session is closed. Tools keep running."""
        server, self._server = self._server, None
        for task in (self._mirror_task, self._reopen_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._mirror_task = self._reopen_task = None
        for entry in self._nodes.values():
            if entry.unsubscribe is not None:
                entry.unsubscribe()
        self._nodes.clear()
        self._dirty.clear()
        if server is not None:
            await self._stop_server(server)

    async def close(self) -> None:
        """Stop serving and stop every tool's running process."""
        await self.stop()
        await asyncio.gather(*(tool.close() for tool in self.tools.values()))

    async def __aenter__(self) -> OpcUaToolServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @staticmethod
    async def _close_sessions(server: Server) -> None:
        # asyncua keeps a session that has subscriptions alive when its connection drops (so a
        # client may resume it); we end them, with their tasks, like a real restart would.
        iserver = server.iserver
        sessions = list(getattr(iserver, "_external_sessions", {}).values())
        for session in sessions:
            timeout_task = getattr(session, "_timeout_task", None)
            await session.close_session(True)
            if isinstance(timeout_task, asyncio.Task):
                with contextlib.suppress(asyncio.CancelledError):
                    await timeout_task
        subscriptions = iserver.subscription_service.subscriptions
        await iserver.subscription_service.delete_subscriptions(list(subscriptions))

    async def _stop_server(self, server: Server) -> None:
        await server.stop()
        await self._close_sessions(server)

    async def drop_connections(self, refuse_for_s: float = 0.0) -> None:
        """Close every client connection and session now, as a crashing gateway would; then,
        for ``refuse_for_s`` seconds, close new connections as soon as they open."""
        server = self._require()
        if refuse_for_s > 0:
            self._max_connections = max(self._max_connections, server.iserver.max_connections)
            server.iserver.max_connections = 0
        for transport in list(server.iserver.asyncio_transports):
            transport.close()
        await asyncio.sleep(0)  # let asyncua see the connections go
        await self._close_sessions(server)
        if refuse_for_s > 0:
            if self._reopen_task is not None:
                self._reopen_task.cancel()
            self._reopen_task = asyncio.get_running_loop().create_task(
                self._reopen_after(server, refuse_for_s)
            )

    async def _reopen_after(self, server: Server, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        server.iserver.max_connections = self._max_connections

    def stall(self, stalled: bool = True) -> None:
        """Stop (or resume) reading from every client connection open now: the sockets stay
        open but no request is answered, like a hung gateway. New connections are served."""
        server = self._require()
        for transport in server.iserver.asyncio_transports:
            if stalled:
                transport.pause_reading()
            else:
                transport.resume_reading()

    def _require(self) -> Server:
        if self._server is None:
            raise RuntimeError("the OPC UA simulator is not running")
        return self._server

    # -- building the address space -------------------------------------------------------------

    async def _build_model(self, server: Server) -> None:
        ns = self._ns
        base = server.get_node(_node_id(ObjectIds.BaseEventType))
        event_type = await base.add_object_type(
            _node_id("AlarmEventType", ns), ua.QualifiedName("AlarmEventType", ns)
        )
        for name, vtype, _ in ALARM_EVENT_FIELDS:
            await event_type.add_property(
                _node_id(f"AlarmEventType/{name}", ns),
                ua.QualifiedName(name, ns),
                _DEFAULTS[vtype],
                varianttype=vtype,
            )
        self._event_type = event_type
        self._tools_folder = await server.nodes.objects.add_folder(
            _node_id("Tools", ns), ua.QualifiedName("Tools", ns)
        )
        for tool in self.tools.values():
            await self._build_tool(server, tool)

    async def _build_tool(self, server: Server, tool: VirtualTool) -> None:
        ns, tid = self._ns, tool.tool_id
        obj = await self._tools_folder.add_object(_node_id(tid, ns), ua.QualifiedName(tid, ns))
        parents: dict[str, Node] = {"": obj}
        for path in _FOLDERS:
            head, _, name = path.rpartition("/")
            parents[path] = await parents[head].add_object(
                _node_id(f"{tid}/{path}", ns), ua.QualifiedName(name, ns)
            )
        declared = list(VARIABLES) + [
            (f"Results/Measured/{n}", _MEASURED_TYPES[s.type], s.unit or "")
            for n, s in tool.spec.measured.items()
        ]
        identity = tool.identity
        initial = mirror_values(tool) | {
            "Identification/EquipmentClass": tool.equipment_class.value,
            "Identification/Manufacturer": identity.manufacturer,
            "Identification/Model": identity.model,
            "Identification/SerialNumber": identity.serial_number,
            "Identification/SoftwareVersion": identity.software_version,
        }
        variables: dict[str, tuple[ua.NodeId, ua.VariantType]] = {}
        items = []
        for path, vtype, description in declared:
            head, _, name = path.rpartition("/")
            variables[path] = (_node_id(f"{tid}/{path}", ns), vtype)
            items.append(
                _variable_item(
                    parents[head].nodeid,
                    variables[path][0],
                    ua.QualifiedName(name, ns),
                    ua.Variant(initial[path], vtype),
                    description,
                )
            )
        # One AddNodes call for the tool's variables (asyncua's add_variable is one per node).
        for result in await server.iserver.isession.add_nodes(items):
            result.StatusCode.check()
        for method, inputs in METHODS.items():
            await obj.add_method(
                _node_id(f"{tid}/{method}", ns),
                ua.QualifiedName(method, ns),
                self._handler(tid, method, inputs),
                [_argument(*a) for a in inputs],
                [_argument(*a) for a in _REFUSAL_OUTPUTS],
            )
        events = await server.get_event_generator(self._event_type, emitting_node=obj.nodeid)
        entry = _ToolNodes(tool, obj, variables, events, written=dict(initial))
        entry.last_alarm = tool.status.alarm
        entry.unsubscribe = tool.subscribe(lambda status: self._changed(entry, status))
        self._nodes[tid] = entry

    # -- mirroring --------------------------------------------------------------------------------

    def _changed(self, entry: _ToolNodes, status: ToolStatus) -> None:
        """VirtualTool listener (synchronous): remember alarm edges, schedule a flush."""
        if status.alarm is not None and status.alarm != entry.last_alarm:
            entry.pending_alarms.append(status.alarm)
        entry.last_alarm = status.alarm
        self._dirty[entry.tool.tool_id] = None
        self._wake.set()

    async def _mirror_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._dirty:
                tool_id = next(iter(self._dirty))
                entry = self._nodes.get(tool_id)
                if entry is None:
                    self._dirty.pop(tool_id, None)
                    continue
                await self._flush(entry)

    async def _flush(self, entry: _ToolNodes) -> None:
        """Write what changed, then emit pending alarm events."""
        server = self._server
        if server is None:
            return
        async with self._flush_lock:
            self._dirty.pop(entry.tool.tool_id, None)
            for path, value in mirror_values(entry.tool).items():
                if entry.written.get(path) == value:
                    continue
                node_id, vtype = entry.variables[path]
                await server.write_attribute_value(node_id, ua.DataValue(ua.Variant(value, vtype)))
                entry.written[path] = value
            alarms, entry.pending_alarms = entry.pending_alarms, []
            for alarm in alarms:
                event = entry.events.event
                event.AlarmCode = alarm.code
                event.AlarmText = alarm.text
                event.AlarmSeverity = int(alarm.severity)
                event.Severity = _SEVERITY_1000.get(int(alarm.severity), 500)
                await entry.events.trigger(message=alarm.text)

    # -- methods ----------------------------------------------------------------------------------

    def _handler(
        self, tool_id: str, method: str, declared: Sequence[Argument]
    ) -> Callable[..., Awaitable[Any]]:
        commands: dict[str, Callable[[VirtualTool, list[object]], None]] = {
            "LoadRecipe": lambda t, a: t.load_recipe(_recipe_from(*a)),
            "StartJob": lambda t, a: t.start_job(_job_from(a)),
            "Abort": lambda t, a: t.abort(),
            "ResetAlarm": lambda t, a: t.reset_alarm(),
            "AcknowledgeResults": lambda t, a: t.acknowledge_results(str(a[0])),
            "SetMode": lambda t, a: t.set_mode(_mode_from(a[0])),
        }
        command = commands[method]

        async def handle(parent: ua.NodeId, *variants: ua.Variant) -> Any:
            try:
                arguments = _check_arguments(variants, declared)
            except _BadCall as bad:
                return bad.result
            entry = self._nodes.get(tool_id)
            if entry is None:
                return _status(StatusCodes.BadNodeIdUnknown)
            try:
                command(entry.tool, arguments)
            except Refused as refused:
                code, reason = refused.code, refused.reason
            else:
                code, reason = RefusalCode.OK, ""
            await self._flush(entry)
            return [ua.Variant(int(code), V.Int32), ua.Variant(reason, V.String)]

        return handle

    # -- for tests ----------------------------------------------------------------------------------

    def node_id(self, tool_id: str, path: str) -> ua.NodeId:
        """The node id of a tool's variable or method (``"State"``, ``"Results/Available"``)."""
        return _node_id(f"{tool_id}/{path}", self._ns)

    def inject_raw_value(self, tool_id: str, path: str, value: ua.Variant) -> None:
        """Make a variable read as ``value`` whatever its declared type (to test how clients
        take malformed values), until the tool next changes that variable."""
        server = self._require()
        entry = self._nodes[tool_id]
        node_id, _ = entry.variables[path]
        data = ua.DataValue(value)
        server.set_attribute_value_callback(node_id, lambda _node, _attr: data)
        entry.written.pop(path, None)


# -- command line ---------------------------------------------------------------------------------


async def serve(
    tools: Sequence[VirtualTool],
    *,
    host: str = "127.0.0.1",
    port: int = 4840,
    ready: Callable[[OpcUaToolServer], None] | None = None,
) -> None:
    """Serve ``tools`` until cancelled or sent SIGTERM/SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    async with OpcUaToolServer(tools, host=host, port=port) as server:
        if ready is not None:
            ready(server)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve simulated tools over OPC UA (a gateway).")
    names = [c.value for c in EquipmentClass]
    parser.add_argument(
        "equipment_classes",
        nargs="*",
        help=f"classes to serve (default: all): {', '.join(names)}",
        metavar="CLASS",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4840)
    parser.add_argument("--per-class", type=int, default=1, help="tools of each class")
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--reject-rate", type=float, default=0.0)
    parser.add_argument("--alarm-rate", type=float, default=0.0)
    parser.add_argument("--seed", type=int)
    args = parser.parse_args(argv)
    unknown = sorted(set(args.equipment_classes) - set(names))
    if unknown:
        parser.error(
            f"unknown equipment class {', '.join(unknown)}; choose from {', '.join(names)}"
        )
    classes = [EquipmentClass(c) for c in args.equipment_classes] or list(EquipmentClass)
    tools = [
        VirtualTool(
            f"{cls.value.upper().replace('_', '-')}-{n}",
            cls,
            SimulationSettings(args.time_scale, args.reject_rate, args.alarm_rate, args.seed),
        )
        for cls in classes
        for n in range(1, args.per_class + 1)
    ]

    def ready(server: OpcUaToolServer) -> None:
        print(
            f"listening on {server.url} ({len(tools)} tools; started in "
            f"{server.startup_s or 0:.3f} s)",
            flush=True,
        )

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(tools, host=args.host, port=args.port, ready=ready))


if __name__ == "__main__":
    main()
