"""A tool over Modbus TCP, in equipment words: :class:`ModbusDriver`.

The controller calls ``load_recipe``, ``start_job``, ``results``...; this adapter turns them
into reads and writes of the registers its map names (:mod:`drivers.modbus.regmap`), through
one :class:`~drivers.modbus.session.ModbusSession`. The controller never sees a register.

Commands use a handshake a PLC can implement (docs/equipment.md, "Command handshake")::

    controller                                         tool
        |-- read answer block (last sequence S) ------->|
        |-- write arguments (holding registers) ------->|
        |-- write [command code, S+1] in one request -->|  runs the command once
        |-- read answer block ------------------------->|  code, reason, then sequence
        |<-------------- sequence == S+1 ? -------------|  (re-read until the timeout)

A refusal is :class:`~drivers.errors.CommandRefused` with the tool's code and reason, or
:class:`~drivers.errors.ToolAlarmed` when the tool refused because it is in ALARM (except
a refused reset: that is about the alarm, and the tool's reason is what counts). Arguments
the map cannot carry (an id too long for its field, a value the class does not take) are
refused the same way, with INVALID_ARGUMENT, before anything is written.

After :meth:`ModbusDriver.start`, one supervision task keeps the connection: it polls the
status block (one read request) every ``poll_interval_s``, at a fixed rate and at a phase of
the tool's own (:class:`~drivers.supervision.PollClock`; spread over a line's tools by
:meth:`~drivers.factory.DriverFactory.create_all`), and publishes changes through
:class:`~drivers.supervision.EventHub`; when the tool stops answering it reports
ConnectionLost once and reconnects with capped, jittered backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass

import structlog

from drivers.catalogue import ClassSpec, class_spec
from drivers.config import ModbusEndpoint, ToolConfig
from drivers.errors import (
    CommandRefused,
    ConfigurationError,
    DriverError,
    ProtocolError,
    RecipeMismatch,
    ToolAlarmed,
    ToolTimeout,
)
from drivers.interface import ToolEvent
from drivers.modbus.codec import (
    BlockCodec,
    CodecError,
    FieldCodec,
    Value,
    int_enum,
    pack_site_codes,
    site_registers,
    unpack_site_codes,
)
from drivers.modbus.mapfile import register_map_for
from drivers.modbus.regmap import MAX_READ, MAX_WRITE, Command, RegisterMap
from drivers.modbus.session import ModbusSession
from drivers.model import (
    Alarm,
    AlarmSeverity,
    EquipmentClass,
    Job,
    JobResults,
    MeasuredValue,
    Mode,
    ProcessState,
    Recipe,
    RecipeInfo,
    RefusalCode,
    SiteMap,
    ToolIdentity,
    ToolStatus,
)
from drivers.pki import Pki, check_tls_peer, tls_client_context
from drivers.supervision import EventHub, PollClock, backoff_delays

log = structlog.get_logger("pkgline.drivers.modbus")

_ANSWER_FIRST_PAUSE_S = 0.002
_ANSWER_MAX_PAUSE_S = 0.05
_RESULTS_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class _Answer:
    sequence: int
    code: int
    reason: str


def _int(values: Mapping[str, Value], name: str) -> int:
    value = values[name]
    if not isinstance(value, int):  # pragma: no cover - the map checks field types
        raise CodecError(f"{name}: expected an integer field, got {value!r}")
    return value


def _str(values: Mapping[str, Value], name: str) -> str:
    value = values[name]
    if not isinstance(value, str):  # pragma: no cover - the map checks field types
        raise CodecError(f"{name}: expected a string field, got {value!r}")
    return value


def _chunks(writes: Sequence[tuple[int, list[int]]], size: int) -> list[tuple[int, list[int]]]:
    """Runs of registers split into requests of at most ``size`` registers."""
    return [
        (address + offset, registers[offset : offset + size])
        for address, registers in writes
        for offset in range(0, len(registers), size)
    ]


class ModbusDriver:
    """Controls one tool over Modbus TCP (implements :class:`drivers.interface.ToolDriver`).

    ``ModbusDriver(config)`` with a :class:`~drivers.config.ToolConfig` whose endpoint is a
    :class:`~drivers.config.ModbusEndpoint`; the map is the endpoint's ``map`` file or the
    packaged map of the class (``register_map`` overrides both). The status is polled at
    ``poll_phase_s`` in each poll interval (:class:`~drivers.supervision.PollClock`; default:
    a phase taken from the tool id). Nothing happens on the network until :meth:`start`;
    :meth:`close` ends everything and is idempotent.
    """

    def __init__(
        self,
        config: ToolConfig,
        *,
        register_map: RegisterMap | None = None,
        poll_phase_s: float | None = None,
    ) -> None:
        endpoint = config.endpoint
        if not isinstance(endpoint, ModbusEndpoint):
            raise ConfigurationError(
                f"the endpoint speaks {endpoint.transport}, not modbus", tool_id=config.id
            )
        self._config = config
        self._policy = config.policy
        self._clock = PollClock(config.id, self._policy.poll_interval_s, poll_phase_s)
        self._map = register_map or register_map_for(config.equipment_class, endpoint.map)
        if self._map.equipment_class is not config.equipment_class:
            raise ConfigurationError(
                f"{self._map.path}: the map is for {self._map.equipment_class.value}, "
                f"not {config.equipment_class.value}",
                tool_id=config.id,
            )
        self._spec: ClassSpec = class_spec(config.equipment_class)
        self._hub = EventHub(config.id)
        self._session = ModbusSession(
            tool_id=config.id,
            host=endpoint.host,
            port=endpoint.port,
            unit_id=endpoint.unit_id,
            timeout_s=self._policy.timeout_s,
            on_lost=self._lost,
            tls=_tls_context(config.id, endpoint),
            tls_identity=(
                Pki(endpoint.tls.pki).own_fingerprint
                if endpoint.tls is not None and endpoint.tls.pki is not None
                else None
            ),
            tls_peer_check=(
                functools.partial(check_tls_peer, Pki(endpoint.tls.pki))
                if endpoint.tls is not None and endpoint.tls.pki is not None
                else None
            ),
        )
        self._commands = asyncio.Lock()
        self._supervisor: asyncio.Task[None] | None = None
        self._pause: asyncio.Future[None] | None = None
        self._closed = False
        self._last_status: tuple[list[int], ToolStatus] | None = None
        self._recipe_bits = {f.name: i for i, f in enumerate(self._map.recipe.fields)}
        self._measured_runs = self._runs(self._map.measured)
        self._status_labels = {f.name: f.label for f in self._map.status.fields}

    @staticmethod
    def _runs(block: BlockCodec) -> tuple[tuple[int, int, tuple[FieldCodec, ...]], ...]:
        runs = []
        for start, count in block.runs():
            inside = tuple(f for f in block.fields if start <= f.address < start + count)
            runs.append((start, count, inside))
        return tuple(runs)

    # -- what the tool is -------------------------------------------------------------------

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
        return frozenset(self._recipe_bits)

    @property
    def register_map(self) -> RegisterMap:
        return self._map

    @property
    def poll_phase_s(self) -> float:
        """Where in each poll interval the status is read (s after ``k * interval``)."""
        return self._clock.phase_s

    # -- supervision ------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect (one attempt) and begin supervising; returns whether or not the tool
        answered. The tool counts as connected once its status has been read."""
        if self._closed:
            raise RuntimeError(f"the driver of {self.tool_id} is closed; make a new one")
        if self._supervisor is not None:
            return
        try:
            await self._session.connect()
        except DriverError as exc:
            self._hub.offline(exc.message)
        self._supervisor = asyncio.get_running_loop().create_task(
            self._supervise(), name=f"modbus-supervision-{self.tool_id}"
        )
        self._supervisor.add_done_callback(self._supervision_ended)

    async def close(self) -> None:
        """Stop supervising, close the connection, end every events() stream. Idempotent."""
        if self._closed:
            return
        self._closed = True
        task, self._supervisor = self._supervisor, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._session.close()
        self._hub.close()

    def events(self) -> AsyncIterator[ToolEvent]:
        return self._hub.subscribe()

    def _lost(self, reason: str) -> None:
        # Called by the session, at once, whenever the connection drops.
        self._hub.offline(reason)
        pause = self._pause
        if pause is not None and not pause.done():
            pause.set_result(None)

    def _supervision_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("supervision failed", tool_id=self.tool_id, exc_info=task.exception())
            self._hub.offline(f"supervision failed: {task.exception()!r}")

    async def _supervise(self) -> None:
        delays = backoff_delays(self._policy)
        clock = self._clock
        loop = asyncio.get_running_loop()
        while True:
            if self._session.identity_changed():
                self._session.renew()  # a renewed certificate: reconnect at once with it
                with contextlib.suppress(DriverError):  # else: retried with backoff below
                    await self._session.connect()
            if not self._session.connected:
                await asyncio.sleep(next(delays))
                try:
                    await self._session.connect()
                except DriverError as exc:
                    self._hub.offline(exc.message)
                    continue
            try:
                status = await self.status()
            except DriverError as exc:
                self._hub.offline(exc.message)
                if not self._session.connected:
                    continue
            else:
                if not self._session.connected:
                    # answered, then dropped before this task ran again: ConnectionLost is
                    # out already, and online now would announce a connection that is gone
                    continue
                delays = backoff_delays(self._policy)
                self._hub.online()
                self._hub.status(status)
            await self._wait(clock.delay(loop.time()))

    async def _wait(self, seconds: float) -> None:
        """Sleep until the next poll, or until the connection drops."""
        loop = asyncio.get_running_loop()
        pause: asyncio.Future[None] = loop.create_future()
        self._pause = pause
        timer = loop.call_later(seconds, lambda: None if pause.done() else pause.set_result(None))
        try:
            await pause
        finally:
            timer.cancel()
            self._pause = None

    # -- reading ----------------------------------------------------------------------------

    async def _read_block(self, block: BlockCodec, request: str) -> dict[str, Value]:
        registers = await self._session.read_input_registers(
            block.start, block.count, request=request
        )
        return self._decoded(block, registers, request)

    def _decoded(self, block: BlockCodec, registers: list[int], request: str) -> dict[str, Value]:
        try:
            return block.decode(registers)
        except CodecError as exc:
            raise self._garbage(exc, request) from exc

    def _garbage(self, exc: Exception, request: str) -> ProtocolError:
        return ProtocolError(
            f"the tool's registers hold an invalid value: {exc}",
            tool_id=self.tool_id,
            request=request,
        )

    async def status(self) -> ToolStatus:
        """State, mode, progress, job, alarm and results flag: one read of the status block."""
        block = self._map.status
        registers = await self._session.read_input_registers(
            block.start, block.count, request="status"
        )
        last = self._last_status
        if last is not None and last[0] == registers:
            return last[1]  # nothing changed: no decoding
        try:
            status = self._status_from(block.decode(registers))
        except CodecError as exc:
            raise self._garbage(exc, "status") from exc
        self._last_status = (registers, status)
        return status

    def _status_from(self, values: Mapping[str, Value]) -> ToolStatus:
        labels = self._status_labels
        severity = _int(values, "alarm_severity")
        alarm = None
        if severity:
            alarm = Alarm(
                code=_int(values, "alarm_code"),
                text=_str(values, "alarm_text"),
                severity=int_enum(AlarmSeverity, severity, labels["alarm_severity"]),
            )
        return ToolStatus(
            state=int_enum(ProcessState, _int(values, "state"), labels["state"]),
            mode=int_enum(Mode, _int(values, "mode"), labels["mode"]),
            sites_done=_int(values, "sites_done"),
            sites_total=_int(values, "sites_total"),
            job_id=_str(values, "job_id") or None,
            alarm=alarm,
            results_waiting=bool(values["results_waiting"]),
        )

    async def identify(self) -> ToolIdentity:
        values = await self._read_block(self._map.identity, "identify")
        name = _str(values, "equipment_class")
        try:
            equipment_class = EquipmentClass(name)
        except ValueError:
            raise ProtocolError(
                f"the tool reports an unknown equipment class {name!r}",
                tool_id=self.tool_id,
                request="identify",
            ) from None
        if equipment_class is not self.equipment_class:
            raise ConfigurationError(
                f"the tool reports class {equipment_class.value}, but it is configured as "
                f"{self.equipment_class.value} (wrong address or wrong map?)",
                tool_id=self.tool_id,
                request="identify",
            )
        return ToolIdentity(
            tool_id=_str(values, "tool_id"),
            equipment_class=equipment_class,
            manufacturer=_str(values, "manufacturer"),
            model=_str(values, "model"),
            serial_number=_str(values, "serial_number"),
            software_version=_str(values, "software_version"),
        )

    async def active_recipe(self) -> RecipeInfo | None:
        values = await self._read_block(self._map.active_recipe, "active_recipe")
        if not values["present"]:
            return None
        return RecipeInfo(
            name=_str(values, "name"),
            version=_int(values, "version"),
            checksum=_int(values, "checksum"),
        )

    async def status_and_recipe(self) -> tuple[ToolStatus, RecipeInfo | None]:
        """Two reads: the status and active recipe blocks are too far apart for one."""
        return await self.status(), await self.active_recipe()

    async def verify_recipe(self, expected: Recipe) -> RecipeInfo:
        want = expected.info()
        actual = await self.active_recipe()
        if actual != want:
            raise RecipeMismatch(expected=want, actual=actual, tool_id=self.tool_id)
        assert actual is not None
        return actual

    async def results(self) -> JobResults | None:
        """The finished job's results, read consistently: the results sequence number is read
        before and after the values and the site map, and the read repeated if it moved."""
        header_block = self._map.results
        sequence_field = header_block.field("sequence")
        for _ in range(_RESULTS_ATTEMPTS):
            header = await self._read_block(header_block, "results")
            if not header["present"]:
                return None
            measured = await self._read_measured()
            rows, cols = _int(header, "rows"), _int(header, "cols")
            codes = await self._read_site_map(rows, cols)
            after = await self._session.read_input_registers(
                sequence_field.address, sequence_field.size, request="results"
            )
            if after[0] == header["sequence"]:
                try:
                    site_map = SiteMap(rows, cols, codes)
                except ValueError as exc:
                    raise self._garbage(exc, "results") from exc
                return JobResults(
                    job_id=_str(header, "job_id"),
                    lot_id=_str(header, "lot_id"),
                    step=_str(header, "step"),
                    carrier_id=_str(header, "carrier_id"),
                    measured=measured,
                    site_map=site_map,
                )
        raise ProtocolError(
            f"the results kept changing while being read ({_RESULTS_ATTEMPTS} attempts)",
            tool_id=self.tool_id,
            request="results",
        )

    async def _read_measured(self) -> dict[str, MeasuredValue]:
        measured: dict[str, MeasuredValue] = {}
        for start, count, fields in self._measured_runs:
            registers = await self._session.read_input_registers(start, count, request="results")
            try:
                for f in fields:
                    raw = f.decode_at(registers, f.address - start)
                    measured[f.name] = self._spec.measured[f.name].check(raw)
            except (CodecError, ValueError) as exc:
                raise self._garbage(exc, "results") from exc
        return measured

    async def _read_site_map(self, rows: int, cols: int) -> tuple[int, ...]:
        area = self._map.outgoing
        sites = rows * cols
        if not 1 <= sites <= area.max_sites:
            raise ProtocolError(
                f"the results' site map is {rows}x{cols}: the map holds 1 to "
                f"{area.max_sites} sites",
                tool_id=self.tool_id,
                request="results",
            )
        registers: list[int] = []
        needed = site_registers(sites)
        for offset in range(0, needed, MAX_READ):
            count = min(MAX_READ, needed - offset)
            registers += await self._session.read_input_registers(
                area.address + offset, count, request="results"
            )
        return unpack_site_codes(registers, sites)

    # -- commands ---------------------------------------------------------------------------

    def _invalid(self, command: Command, message: str) -> CommandRefused:
        return CommandRefused(
            f"refused before sending (INVALID_ARGUMENT): {message}",
            tool_id=self.tool_id,
            request=command.value,
            code=RefusalCode.INVALID_ARGUMENT,
        )

    def _encode(
        self, command: Command, block: BlockCodec, values: Mapping[str, Value]
    ) -> list[tuple[int, list[int]]]:
        try:
            return block.encode_runs(values)
        except CodecError as exc:
            raise self._invalid(command, str(exc)) from exc

    async def _read_answer(self, request: str) -> _Answer:
        values = await self._read_block(self._map.answer, request)
        return _Answer(_int(values, "sequence"), _int(values, "code"), _str(values, "reason"))

    async def _command(
        self,
        command: Command,
        writes: Sequence[tuple[int, list[int]]],
        *,
        alarm_explains: bool = True,
    ) -> None:
        """Send ``command`` and wait for its answer. A WRONG_STATE refusal from a tool in
        ALARM is :class:`ToolAlarmed` unless not ``alarm_explains`` (a reset: the alarm is
        what it is about, the tool's reason says why it stays)."""
        request = command.value
        async with self._commands:
            last = await self._read_answer(request)
            sequence = last.sequence % 0xFFFF + 1
            for address, registers in _chunks(writes, MAX_WRITE):
                await self._session.write_registers(address, registers, request=request)
            trigger = self._encode(
                command,
                self._map.command,
                {"code": self._map.command_codes[command], "sequence": sequence},
            )
            for address, registers in trigger:  # one run: the map keeps them adjacent
                await self._session.write_registers(address, registers, request=request)
            answer = await self._await_answer(sequence, request)
        if answer.code == RefusalCode.OK:
            return
        try:
            code = int_enum(RefusalCode, answer.code, self._map.answer.field("code").label)
        except CodecError as exc:
            raise self._garbage(exc, request) from exc
        if code is RefusalCode.WRONG_STATE and alarm_explains:
            await self._raise_if_alarmed(request)
        detail = f": {answer.reason}" if answer.reason else ""
        raise CommandRefused(
            f"refused ({code.name}){detail}", tool_id=self.tool_id, request=request, code=code
        )

    async def _await_answer(self, sequence: int, request: str) -> _Answer:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._policy.timeout_s
        pause = _ANSWER_FIRST_PAUSE_S
        while True:
            answer = await self._read_answer(request)
            if answer.sequence == sequence:
                return answer
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise ToolTimeout(
                    f"the tool did not answer command {request} (sequence {sequence}) within "
                    f"{self._policy.timeout_s:g} s",
                    tool_id=self.tool_id,
                    request=request,
                )
            await asyncio.sleep(min(pause, remaining))
            pause = min(2 * pause, _ANSWER_MAX_PAUSE_S)

    async def _raise_if_alarmed(self, request: str) -> None:
        try:
            status = await self.status()
        except DriverError:
            return  # the refusal itself is what the caller gets
        if status.state is ProcessState.ALARM and status.alarm is not None:
            raise ToolAlarmed(status.alarm, tool_id=self.tool_id, request=request)

    async def set_mode(self, mode: Mode) -> None:
        writes = self._encode(Command.SET_MODE, self._map.mode, {"mode": int(Mode(mode))})
        await self._command(Command.SET_MODE, writes)

    async def load_recipe(self, recipe: Recipe) -> None:
        command = Command.LOAD_RECIPE
        wrong = recipe.wrong_class(self.equipment_class.value)
        if wrong is not None:
            raise self._invalid(command, wrong)
        mask = 0
        values: dict[str, Value] = {}
        for name, value in recipe.body.items():
            bit = self._recipe_bits.get(name)
            if bit is None:
                if name in self._map.unmapped_recipe:
                    raise self._invalid(command, f"this tool's map has no register for {name}")
                raise self._invalid(
                    command,
                    f"{self.equipment_class.value} takes no recipe value {name!r}; expected "
                    f"some of {', '.join(sorted(self._recipe_bits))}",
                )
            try:
                values[name] = self._spec.recipe[name].check(value)
            except ValueError as exc:
                raise self._invalid(command, str(exc)) from exc
            mask |= 1 << bit
        header: dict[str, Value] = {
            "name": recipe.name,
            "version": recipe.version,
            "present_mask": mask,
        }
        writes = self._encode(command, self._map.recipe_header, header)
        writes += self._encode(command, self._map.recipe, values)
        await self._command(command, writes)

    async def start_job(self, job: Job) -> None:
        command = Command.START_JOB
        site_map = job.site_map
        area = self._map.incoming
        if len(site_map.codes) > area.max_sites:
            raise self._invalid(
                command,
                f"a {site_map.rows}x{site_map.cols} site map has {len(site_map.codes)} sites; "
                f"the tool takes at most {area.max_sites}",
            )
        header: dict[str, Value] = {
            "job_id": job.job_id,
            "lot_id": job.lot_id,
            "step": job.step,
            "carrier_id": job.carrier_id,
            "rows": site_map.rows,
            "cols": site_map.cols,
        }
        writes = self._encode(command, self._map.job, header)
        writes.append((area.address, pack_site_codes(site_map.codes)))
        await self._command(command, writes)

    async def abort(self) -> None:
        await self._command(Command.ABORT, [])

    async def reset_alarm(self) -> None:
        await self._command(Command.RESET_ALARM, [], alarm_explains=False)

    async def acknowledge_results(self, job_id: str) -> None:
        command = Command.ACKNOWLEDGE_RESULTS
        writes = self._encode(command, self._map.acknowledge, {"job_id": job_id})
        await self._command(command, writes)

    def __repr__(self) -> str:
        endpoint = self._config.endpoint
        assert isinstance(endpoint, ModbusEndpoint)
        return (
            f"ModbusDriver({self.tool_id!r}, {self.equipment_class.value}, "
            f"{endpoint.host}:{endpoint.port})"
        )


def _tls_context(tool_id: str, endpoint: ModbusEndpoint) -> Callable[[], ssl.SSLContext] | None:
    """Modbus/TCP Security's TLS context, made at each connection, or None (plain)."""
    tls = endpoint.tls
    if tls is None:
        return None
    if tls.pki is None:
        raise ConfigurationError(
            "no PKI directory for Modbus/TCP Security: set `pki` in line.toml "
            "(or the endpoint's tls.pki)",
            tool_id=tool_id,
        )
    pki = Pki(tls.pki)
    return lambda: tls_client_context(pki)
