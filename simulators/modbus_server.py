"""A virtual tool behind a Modbus TCP server: :class:`ModbusToolServer`.

One server wraps one :class:`~simulators.engine.VirtualTool` and speaks the register map of
its class (``drivers/maps/modbus``), exactly as a real tool following docs/equipment.md would:

- input registers show the tool: status, command answer, identity, active recipe, results
  and outgoing site map. The tool's changes (:meth:`VirtualTool.subscribe`) mark the image
  stale; it is rebuilt before the next read, so every read sees the tool as it is now;
- a write that reaches the command sequence register runs the command once per new sequence
  number, with the arguments already written; a refusal (:class:`~simulators.engine.Refused`)
  becomes the answer's refusal code and reason;
- addresses outside the map are illegal (Modbus exception 2), as on a real tool; function
  codes other than the documented 3, 4 and 16 (coils, discrete inputs, a single-register
  write, ...) are illegal functions (exception 1): a command runs from a function 16 write
  only (tests/simulators/test_modbus_server.py holds this and docs/equipment.md together).

The server is pymodbus' ``ModbusTcpServer`` (or TLS server; their connections:
:mod:`simulators.modbus_connections`) with a ``SimDevice`` whose ``action`` hook sees every
request. Faults for tests: :meth:`ModbusToolServer.drop_connections` (optionally
refusing new connections for a while), the tool's :meth:`~VirtualTool.inject_alarm`, and
the tool's :class:`~simulators.engine.SimulationSettings` (time scale, reject and alarm rate).

Run one from a shell: ``python -m simulators.modbus_server molder --port 5020``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import ssl
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

import structlog
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from drivers.modbus.codec import (
    BlockCodec,
    CodecError,
    Value,
    fit_text,
    pack_site_codes,
    unpack_site_codes,
)
from drivers.modbus.mapfile import packaged_map
from drivers.modbus.regmap import Command, RegisterMap
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
from drivers.pki import CertificateRejected, Pki, PkiError
from drivers.tls import check_tls_peer
from simulators.engine import ALARM_JOB_FAULT, Refused, SimulationSettings, VirtualTool
from simulators.modbus_connections import CheckedTlsServer, TcpServer

log = structlog.get_logger("pkgline.simulators")

_READ_INPUT = 4
_WRITE_MULTIPLE = 16
FUNCTION_CODES = frozenset({3, 4, 16})
"""What docs/equipment.md says a tool answers; anything else is an illegal function."""


class ModbusToolServer:
    """Serves one virtual tool over Modbus TCP.

    ``port=0`` binds a free port; :attr:`port` is the bound port after :meth:`start` (and is
    kept for the next start, so a stopped server comes back on the same port). Use
    ``async with ModbusToolServer(tool) as server:`` or :meth:`start` / :meth:`stop`. The
    server does not own the tool: close the tool yourself.
    """

    def __init__(
        self,
        tool: VirtualTool,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        register_map: RegisterMap | None = None,
        tls: ssl.SSLContext | None = None,
        pki: Pki | None = None,
    ) -> None:
        """``tls``: serve Modbus/TCP Security (TLS, the client's certificate required) with
        this context (drivers.tls.tls_server_context); none: plain Modbus TCP. ``pki``: the
        PKI the context was made from; each client's certificate is checked against its
        revocation lists right after the handshake (read at each connection), and a revoked
        one is disconnected before any request is served, with a log line."""
        self.tool = tool
        self.tls = tls
        self.pki = pki
        self.host = host
        self._port = port
        self.register_map = register_map or packaged_map(tool.equipment_class)
        if self.register_map.equipment_class is not tool.equipment_class:
            raise ValueError(
                f"the map is for {self.register_map.equipment_class.value}, the tool is a "
                f"{tool.equipment_class.value}"
            )
        self._server: ModbusTcpServer | None = None
        self._relisten: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._stale = True
        self._answer: tuple[int, int, str] = (0, RefusalCode.OK, "")
        self._results_sequence = 0
        self._results_seen: object = None

    # -- life cycle ------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port the server listens on (after the first start, the bound port)."""
        return self._port

    @property
    def serving(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        """Listen on ``host:port`` (port 0: a free one). Raises OSError when it cannot."""
        if self._unsubscribe is None:
            self._unsubscribe = self.tool.subscribe(self._tool_changed)
        self._stale = True
        if self._server is None:
            await self._listen()

    async def stop(self) -> None:
        """Stop listening, close every connection. Idempotent."""
        relisten, self._relisten = self._relisten, None
        if relisten is not None:
            relisten.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await relisten
        await self._close_server()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    async def __aenter__(self) -> ModbusToolServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _listen(self) -> None:
        server = (
            TcpServer(self._device(), address=(self.host, self._port))
            if self.tls is None
            else CheckedTlsServer(
                self._device(),
                address=(self.host, self._port),
                sslctx=self.tls,
                peer_check=self._check_client,
            )
        )
        try:
            await server.serve_forever(background=True)
        except RuntimeError as exc:
            raise self._cannot_listen(exc) from None
        listener = server.transport
        assert isinstance(listener, asyncio.Server)
        self._port = listener.sockets[0].getsockname()[1]
        self._server = server
        self._stale = True  # a new server starts with an empty image

    def _cannot_listen(self, exc: RuntimeError) -> OSError:
        """Why the server cannot listen, in the OS's words. pymodbus logs the OSError of its
        bind and raises "Could not start listen, please check address." instead: binding the
        address again here gets that reason back (the port taken: EADDRINUSE, "Address
        already in use"), so that a caller can tell a taken port from other failures."""
        where = f"{self.host}:{self._port}"
        try:
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio's
                probe.bind((self.host, self._port))
        except OSError as reason:
            return OSError(reason.errno, f"cannot listen on {where}: {reason.strerror}")
        return OSError(f"cannot listen on {where}: {exc}")  # free again by now

    async def _close_server(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        await server.shutdown()  # type: ignore[no-untyped-call]  # pymodbus leaves it unannotated
        # Transports close their sockets, and request handlers finish, on the next turns.
        for _ in range(3):
            await asyncio.sleep(0)

    async def drop_connections(self, refuse_for_s: float = 0.0) -> None:
        """Close every client connection now, as a tool whose network cable is pulled. With
        ``refuse_for_s``, also stop listening for that long (connections are refused)."""
        server = self._server
        if server is None:
            return
        if refuse_for_s > 0:
            await self._close_server()
            self._relisten = asyncio.get_running_loop().create_task(
                self._listen_after(refuse_for_s), name=f"modbus-sim-relisten-{self.tool.tool_id}"
            )
            return
        for handler in list(server.active_connections.values()):
            handler.close()
        await asyncio.sleep(0)

    async def _listen_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self._relisten = None
        try:
            await self._listen()
        except OSError as exc:  # the port was taken meanwhile: the tool stays away
            log.warning("simulator cannot listen again", tool_id=self.tool.tool_id, error=str(exc))

    def _check_client(self, transport: asyncio.BaseTransport | None) -> bool:
        """Whether the client that just finished its TLS handshake may stay: its certificate
        is not revoked (:func:`drivers.tls.check_tls_peer`). Logs a refusal."""
        if self.pki is None:
            return True
        peer = transport.get_extra_info("peername") if transport is not None else None
        try:
            check_tls_peer(self.pki, transport)
        except (CertificateRejected, PkiError, OSError) as exc:
            log.warning(
                "simulator refused a client's certificate",
                tool_id=self.tool.tool_id,
                peer=f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer),
                reason=exc.reason.value if isinstance(exc, CertificateRejected) else "PkiError",
                error=exc.message if isinstance(exc, CertificateRejected) else str(exc),
            )
            return False
        return True

    def inject_alarm(self, alarm: Alarm = ALARM_JOB_FAULT) -> None:
        """Raise an alarm on the tool now (see :meth:`VirtualTool.inject_alarm`)."""
        self.tool.inject_alarm(alarm)

    def _tool_changed(self, status: ToolStatus) -> None:
        self._stale = True

    # -- registers -------------------------------------------------------------------------

    def _device(self) -> SimDevice:
        def blocks(spans: Sequence[tuple[int, int]]) -> list[SimData]:
            return [SimData(a, count=c, values=0, datatype=DataType.REGISTERS) for a, c in spans]

        unused = [SimData(0, count=16, values=False, datatype=DataType.BITS)]
        return SimDevice(
            id=0,  # answers every unit id
            simdata=(
                unused,
                list(unused),
                blocks(self.register_map.spans("holding")),
                blocks(self.register_map.spans("input")),
            ),
            action=self._on_request,
        )

    async def _on_request(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        # pymodbus calls this for every request, after checking the addresses and before
        # storing written values: ``registers`` is the whole table, modifiable in place.
        if function_code not in FUNCTION_CODES:
            return ExcCodes.ILLEGAL_FUNCTION
        if function_code == _READ_INPUT:
            if self._stale:
                self._stale = False
                self._render(registers, start_address)
        elif set_values is not None and function_code == _WRITE_MULTIPLE:
            offset = address - start_address
            registers[offset : offset + count] = [int(v) for v in set_values]
            sequence = self.register_map.command.field("sequence").address
            if address <= sequence < address + count:
                self._run_command(registers, start_address)
        return None

    def _put(
        self, table: list[int], base: int, block: BlockCodec, values: dict[str, Value]
    ) -> None:
        for address, regs in block.encode_runs(values):
            table[address - base : address - base + len(regs)] = regs

    def _render(self, table: list[int], base: int) -> None:
        """Rebuild the input registers from the tool."""
        regmap, tool = self.register_map, self.tool
        status = tool.status
        alarm = status.alarm
        alarm_text = regmap.status.field("alarm_text").capacity
        self._put(
            table,
            base,
            regmap.status,
            {
                "state": int(status.state),
                "mode": int(status.mode),
                "sites_done": status.sites_done,
                "sites_total": status.sites_total,
                "results_waiting": int(status.results_waiting),
                "alarm_severity": int(alarm.severity) if alarm else 0,
                "alarm_code": alarm.code if alarm else 0,
                "alarm_text": fit_text(alarm.text, alarm_text) if alarm else "",
                "job_id": status.job_id or "",
            },
        )
        sequence, code, reason = self._answer
        self._put(
            table,
            base,
            regmap.answer,
            {
                "code": code,
                "reason": fit_text(reason, regmap.answer.field("reason").capacity),
                "sequence": sequence,
            },
        )
        identity = tool.identity
        self._put(
            table,
            base,
            regmap.identity,
            {
                name: fit_text(text, regmap.identity.field(name).capacity)
                for name, text in (
                    ("tool_id", identity.tool_id),
                    ("equipment_class", identity.equipment_class.value),
                    ("manufacturer", identity.manufacturer),
                    ("model", identity.model),
                    ("serial_number", identity.serial_number),
                    ("software_version", identity.software_version),
                )
            },
        )
        recipe = tool.active_recipe
        self._put(
            table,
            base,
            regmap.active_recipe,
            {
                "present": int(recipe is not None),
                "name": recipe.name if recipe else "",
                "version": recipe.version if recipe else 0,
                "checksum": recipe.checksum if recipe else 0,
            },
        )
        self._render_results(table, base)

    def _render_results(self, table: list[int], base: int) -> None:
        regmap = self.register_map
        results = self.tool.results
        if results is not self._results_seen:
            self._results_seen = results
            if results is not None:
                self._results_sequence = self._results_sequence % 0xFFFF + 1
        header: dict[str, Value] = {"sequence": self._results_sequence, "present": 0}
        if results is not None:
            header |= {
                "present": 1,
                "job_id": results.job_id,
                "lot_id": results.lot_id,
                "step": results.step,
                "carrier_id": results.carrier_id,
                "rows": results.site_map.rows,
                "cols": results.site_map.cols,
            }
            measured = {
                name: value
                for name, value in results.measured.items()
                if name not in regmap.unmapped_measured
            }
            self._put(table, base, regmap.measured, measured)
            area = regmap.outgoing
            codes = pack_site_codes(results.site_map.codes)
            table[area.address - base : area.address - base + len(codes)] = codes
        self._put(table, base, regmap.results, header)

    # -- commands --------------------------------------------------------------------------

    def _run_command(self, table: list[int], base: int) -> None:
        regmap = self.register_map
        command_block = regmap.command
        values = command_block.decode(self._slice(table, base, command_block))
        code, sequence = int(values["code"]), int(values["sequence"])
        if sequence == 0 or sequence == self._answer[0]:
            return  # no command, or this one ran already: its answer stands
        try:
            command = regmap.command_name(code)
            if command is None:
                raise Refused(RefusalCode.UNKNOWN_COMMAND, f"unknown command code {code}")
            self._dispatch(command, table, base)
            self._answer = (sequence, RefusalCode.OK, "")
        except Refused as refused:
            self._answer = (sequence, refused.code, refused.reason)
        except (CodecError, ValueError) as exc:
            self._answer = (sequence, RefusalCode.INVALID_ARGUMENT, str(exc))
        self._stale = True

    @staticmethod
    def _slice(table: list[int], base: int, block: BlockCodec) -> list[int]:
        return table[block.start - base : block.start - base + block.count]

    def _dispatch(self, command: Command, table: list[int], base: int) -> None:
        regmap, tool = self.register_map, self.tool
        if command is Command.LOAD_RECIPE:
            header = regmap.recipe_header.decode(self._slice(table, base, regmap.recipe_header))
            mask = int(header["present_mask"])
            body: dict[str, RecipeValue] = {}
            for bit, f in enumerate(regmap.recipe.fields):
                if mask >> bit & 1:
                    body[f.name] = f.decode_at(table, f.address - base)
            tool.load_recipe(Recipe(str(header["name"]), int(header["version"]), body))
        elif command is Command.START_JOB:
            job = regmap.job.decode(self._slice(table, base, regmap.job))
            rows, cols = int(job["rows"]), int(job["cols"])
            area = regmap.incoming
            if not 1 <= rows * cols <= area.max_sites:
                raise Refused(
                    RefusalCode.INVALID_ARGUMENT,
                    f"a {rows}x{cols} site map: this tool takes 1 to {area.max_sites} sites",
                )
            start = area.address - base
            codes = unpack_site_codes(table[start : start + area.count], rows * cols)
            tool.start_job(
                Job(
                    job_id=str(job["job_id"]),
                    lot_id=str(job["lot_id"]),
                    step=str(job["step"]),
                    carrier_id=str(job["carrier_id"]),
                    site_map=SiteMap(rows, cols, codes),
                )
            )
        elif command is Command.ABORT:
            tool.abort()
        elif command is Command.RESET_ALARM:
            tool.reset_alarm()
        elif command is Command.ACKNOWLEDGE_RESULTS:
            ack = regmap.acknowledge.decode(self._slice(table, base, regmap.acknowledge))
            tool.acknowledge_results(str(ack["job_id"]))
        elif command is Command.SET_MODE:
            mode = regmap.mode.decode(self._slice(table, base, regmap.mode))
            tool.set_mode(Mode(int(mode["mode"])))

    def __repr__(self) -> str:
        return f"ModbusToolServer({self.tool!r}, {self.host}:{self._port})"


async def serve(
    equipment_class: EquipmentClass,
    *,
    tool_id: str | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    settings: SimulationSettings | None = None,
    ready: Callable[[int], None] | None = None,
    tls: ssl.SSLContext | None = None,
    pki: Pki | None = None,
) -> None:
    """Run one simulated tool until cancelled; ``ready(port)`` is called once it listens."""
    tool = VirtualTool(tool_id or f"SIM-{equipment_class.value}", equipment_class, settings)
    server = ModbusToolServer(tool, host=host, port=port, tls=tls, pki=pki)
    try:
        await server.start()
        if ready is not None:
            ready(server.port)
        await asyncio.Event().wait()
    finally:
        await server.stop()
        await tool.close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a simulated tool over Modbus TCP.")
    parser.add_argument("equipment_class", choices=[c.value for c in EquipmentClass])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5020)
    parser.add_argument("--tool-id")
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--reject-rate", type=float, default=0.0)
    parser.add_argument("--alarm-rate", type=float, default=0.0)
    parser.add_argument("--seed", type=int)
    parser.add_argument(
        "--tls-pki",
        metavar="DIR",
        help="serve Modbus/TCP Security with this PKI directory (made on first use; clients "
        "must present a certificate from its trust list); default: plain Modbus TCP",
    )
    args = parser.parse_args(argv)
    settings = SimulationSettings(args.time_scale, args.reject_rate, args.alarm_rate, args.seed)
    tls, pki = None, None
    if args.tls_pki:
        from drivers.tls import tls_server_context
        from simulators.certificate import simulator_pki

        pki = simulator_pki(Path(args.tls_pki), [args.host])
        tls = tls_server_context(pki)

    def ready(port: int) -> None:
        print(f"{args.equipment_class} listening on {args.host}:{port}", flush=True)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            serve(
                EquipmentClass(args.equipment_class),
                tool_id=args.tool_id,
                host=args.host,
                port=args.port,
                settings=settings,
                ready=ready,
                tls=tls,
                pki=pki,
            )
        )


if __name__ == "__main__":
    main()
