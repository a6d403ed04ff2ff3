"""OPC UA simulator: several virtual tools behind one asyncua server, as a gateway would serve them.

The information model is :mod:`simulators.opcua_model` (docs/equipment.md, "OPC UA"). Each
:class:`~simulators.engine.VirtualTool` is mirrored into its nodes on every change
(``VirtualTool.subscribe``); a method call mirrors before it answers, so a read after the answer
sees the new state. Alarms also go out as events, after the values.

Switches for tests: :meth:`OpcUaToolServer.drop_connections` (close every client connection and
session, optionally refuse new ones a while), :meth:`OpcUaToolServer.stall` (stop answering, the
sockets open), stop/start on the same port (a restart), and
:meth:`OpcUaToolServer.inject_raw_value` (a malformed value).

Security (:mod:`simulators.opcua_security`): given a :class:`SimulatorSecurity`, the server
offers only signed and encrypted endpoints with its own certificate, checks clients'
certificates against its trust list, and lets only a tool's operators command it. Without one
(``security=None``: tests that are not about security, for speed) it is plain OPC UA with
anonymous access, as a tool that can do no better would be.

Start-up is kept lean: no clock task, and the standard address space is copied on access from
one built once per process.
Run ``python -m simulators.opcua_server --help`` to serve tools from the command line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from asyncua import ua
from asyncua.common.node import Node
from asyncua.server.event_generator import EventGenerator
from asyncua.server.server import Server
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes

from drivers.model import (
    Alarm,
    EquipmentClass,
    RefusalCode,
    ToolStatus,
)
from drivers.pki import application_uris
from simulators.engine import Refused, SimulationSettings, VirtualTool
from simulators.opcua_model import (
    ALARM_EVENT_FIELDS,
    APPLICATION_URI,
    DEFAULTS,
    FOLDERS,
    MEASURED_TYPES,
    METHODS,
    NAMESPACE_URI,
    REFUSAL_OUTPUTS,
    SEVERITY_1000,
    VARIABLES,
    Argument,
    BadCall,
    LeanInternalServer,
    argument,
    check_arguments,
    job_from,
    mirror_values,
    mode_from,
    node_id,
    recipe_from,
    status,
    variable_item,
)
from simulators.opcua_security import SimulatorSecurity

V = ua.VariantType


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
        security: SimulatorSecurity | None = None,
    ):
        self.security = security
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
        server = Server(iserver=LeanInternalServer())
        await server.init()
        server.set_endpoint(f"opc.tcp://{self.host}:{self.port}")
        server.set_server_name(self.name)
        server.disable_clock()
        if self.security is None:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
            server.set_identity_tokens([ua.AnonymousIdentityToken])
            await server.set_application_uri(APPLICATION_URI)
        else:
            await self.security.apply(server)
            own, _, _ = self.security.pki.own()
            await server.set_application_uri(next(iter(application_uris(own)), APPLICATION_URI))
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
        base = server.get_node(node_id(ObjectIds.BaseEventType))
        event_type = await base.add_object_type(
            node_id("AlarmEventType", ns), ua.QualifiedName("AlarmEventType", ns)
        )
        for name, vtype, _ in ALARM_EVENT_FIELDS:
            await event_type.add_property(
                node_id(f"AlarmEventType/{name}", ns),
                ua.QualifiedName(name, ns),
                DEFAULTS[vtype],
                varianttype=vtype,
            )
        self._event_type = event_type
        self._tools_folder = await server.nodes.objects.add_folder(
            node_id("Tools", ns), ua.QualifiedName("Tools", ns)
        )
        for tool in self.tools.values():
            await self._build_tool(server, tool)

    async def _build_tool(self, server: Server, tool: VirtualTool) -> None:
        ns, tid = self._ns, tool.tool_id
        obj = await self._tools_folder.add_object(node_id(tid, ns), ua.QualifiedName(tid, ns))
        parents: dict[str, Node] = {"": obj}
        for path in FOLDERS:
            head, _, name = path.rpartition("/")
            parents[path] = await parents[head].add_object(
                node_id(f"{tid}/{path}", ns), ua.QualifiedName(name, ns)
            )
        declared = list(VARIABLES) + [
            (f"Results/Measured/{n}", MEASURED_TYPES[s.type], s.unit or "")
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
            variables[path] = (node_id(f"{tid}/{path}", ns), vtype)
            items.append(
                variable_item(
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
                node_id(f"{tid}/{method}", ns),
                ua.QualifiedName(method, ns),
                self._handler(tid, method, inputs),
                [argument(*a) for a in inputs],
                [argument(*a) for a in REFUSAL_OUTPUTS],
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
                event.Severity = SEVERITY_1000.get(int(alarm.severity), 500)
                await entry.events.trigger(message=alarm.text)

    # -- methods ----------------------------------------------------------------------------------

    def _handler(
        self, tool_id: str, method: str, declared: Sequence[Argument]
    ) -> Callable[..., Awaitable[Any]]:
        commands: dict[str, Callable[[VirtualTool, list[object]], None]] = {
            "LoadRecipe": lambda t, a: t.load_recipe(recipe_from(*a)),
            "StartJob": lambda t, a: t.start_job(job_from(a)),
            "Abort": lambda t, a: t.abort(),
            "ResetAlarm": lambda t, a: t.reset_alarm(),
            "AcknowledgeResults": lambda t, a: t.acknowledge_results(str(a[0])),
            "SetMode": lambda t, a: t.set_mode(mode_from(a[0])),
        }
        command = commands[method]

        async def handle(parent: ua.NodeId, *variants: ua.Variant) -> Any:
            try:
                arguments = check_arguments(variants, declared)
            except BadCall as bad:
                return bad.result
            entry = self._nodes.get(tool_id)
            if entry is None:
                return status(StatusCodes.BadNodeIdUnknown)
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
        return node_id(f"{tool_id}/{path}", self._ns)

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
    security: SimulatorSecurity | None = None,
) -> None:
    """Serve ``tools`` until cancelled or sent SIGTERM/SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    async with OpcUaToolServer(tools, host=host, port=port, security=security) as server:
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
    parser.add_argument(
        "--pki",
        default="pki-sim",
        metavar="DIR",
        help="PKI directory: the server's certificate (made on first start) and the clients "
        "it trusts (trusted/certs); default: ./pki-sim",
    )
    parser.add_argument(
        "--credentials",
        metavar="FILE",
        help="a user (TOML: username, password; mode 0600) who operates every tool",
    )
    parser.add_argument(
        "--anonymous-read", action="store_true", help="let anonymous clients read the tools"
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="plain OPC UA: policy None, anonymous users may command (tests, benchmarks)",
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.equipment_classes) - set(names))
    if unknown:
        parser.error(
            f"unknown equipment class {', '.join(unknown)}; choose from {', '.join(names)}"
        )
    classes = [EquipmentClass(c) for c in args.equipment_classes] or list(EquipmentClass)
    security = None if args.insecure else _security(parser, args)
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
        asyncio.run(serve(tools, host=args.host, port=args.port, ready=ready, security=security))


def _security(parser: argparse.ArgumentParser, args: argparse.Namespace) -> SimulatorSecurity:
    from pathlib import Path

    from drivers.credentials import read_credentials
    from drivers.pki import PkiError
    from simulators.certificate import simulator_pki

    if not args.credentials and not args.anonymous_read:
        parser.error("nobody could log in: give --credentials (or --anonymous-read, or --insecure)")
    passwords: dict[str, tuple[str, frozenset[str]]] = {}
    try:
        pki = simulator_pki(Path(args.pki), [args.host])
        if args.credentials:
            user = read_credentials(Path(args.credentials))
            passwords[user.username] = (user.password, frozenset({"*"}))
    except PkiError as exc:
        parser.error(str(exc))
    print(f"certificate {pki.own_certificate}; trusted clients in {pki.trusted}", flush=True)
    return SimulatorSecurity(pki, passwords=passwords, anonymous_read=args.anonymous_read)


if __name__ == "__main__":
    main()
