"""A tool over Modbus TCP, in equipment words: :class:`ModbusDriver`.

The controller calls ``load_recipe``, ``start_job``, ``results``...; this adapter turns them
into reads and writes of the registers its map names (:mod:`drivers.modbus.regmap`), through
one :class:`~drivers.modbus.session.ModbusSession`. The controller never sees a register.

Reading the tool's blocks is :mod:`drivers.modbus.reads`; commands go through the handshake of
:mod:`drivers.modbus.handshake` (docs/equipment.md, "Command handshake"). Arguments the map
cannot carry (an id too long for its field, a value the class does not take) are refused
with INVALID_ARGUMENT before anything is written.

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
from collections.abc import AsyncIterator, Callable

import structlog

from drivers.catalogue import ClassSpec, class_spec
from drivers.config import ModbusEndpoint, ToolConfig
from drivers.errors import ConfigurationError, DriverError, SecurityRefused
from drivers.interface import ToolEvent
from drivers.modbus.codec import Value, pack_site_codes
from drivers.modbus.handshake import CommandChannel
from drivers.modbus.mapfile import register_map_for
from drivers.modbus.reads import ToolReader
from drivers.modbus.regmap import Command, RegisterMap
from drivers.modbus.session import ModbusSession
from drivers.model import (
    EquipmentClass,
    Job,
    JobResults,
    Mode,
    Recipe,
    RecipeInfo,
    ToolIdentity,
    ToolStatus,
)
from drivers.pki import Pki
from drivers.supervision import EventHub, PollClock, backoff_delays
from drivers.tls import check_tls_peer, tls_client_context

log = structlog.get_logger("pkgline.drivers.modbus")


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
        self._reader = ToolReader(
            config.id, config.equipment_class, self._session, self._map, self._spec
        )
        self._channel = CommandChannel(
            config.id, self._session, self._map, self._reader, self._policy.timeout_s
        )
        self._supervisor: asyncio.Task[None] | None = None
        self._pause: asyncio.Future[None] | None = None
        self._closed = False
        self._recipe_bits = {f.name: i for i, f in enumerate(self._map.recipe.fields)}

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
                    self._hub.offline(exc.message, refused=isinstance(exc, SecurityRefused))
                    continue
            try:
                status = await self.status()
            except DriverError as exc:
                self._hub.offline(exc.message, refused=isinstance(exc, SecurityRefused))
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

    # -- reading (drivers.modbus.reads) ----------------------------------------------------------------------------

    async def status(self) -> ToolStatus:
        """State, mode, progress, job, alarm and results flag: one read of the status block."""
        return await self._reader.status()

    async def identify(self) -> ToolIdentity:
        return await self._reader.identify()

    async def active_recipe(self) -> RecipeInfo | None:
        return await self._reader.active_recipe()

    async def status_and_recipe(self) -> tuple[ToolStatus, RecipeInfo | None]:
        """Two reads: the status and active recipe blocks are too far apart for one."""
        return await self.status(), await self.active_recipe()

    async def verify_recipe(self, expected: Recipe) -> RecipeInfo:
        return await self._reader.verify_recipe(expected)

    async def results(self) -> JobResults | None:
        """The finished job's results, read consistently (:meth:`ToolReader.results`)."""
        return await self._reader.results()

    # -- commands (drivers.modbus.handshake) ---------------------------------------------------------------------------

    async def set_mode(self, mode: Mode) -> None:
        writes = self._channel.encode(Command.SET_MODE, self._map.mode, {"mode": int(Mode(mode))})
        await self._channel.send(Command.SET_MODE, writes)

    async def load_recipe(self, recipe: Recipe) -> None:
        command = Command.LOAD_RECIPE
        wrong = recipe.wrong_class(self.equipment_class.value)
        if wrong is not None:
            raise self._channel.invalid(command, wrong)
        mask = 0
        values: dict[str, Value] = {}
        for name, value in recipe.body.items():
            bit = self._recipe_bits.get(name)
            if bit is None:
                if name in self._map.unmapped_recipe:
                    raise self._channel.invalid(
                        command, f"this tool's map has no register for {name}"
                    )
                raise self._channel.invalid(
                    command,
                    f"{self.equipment_class.value} takes no recipe value {name!r}; expected "
                    f"some of {', '.join(sorted(self._recipe_bits))}",
                )
            try:
                values[name] = self._spec.recipe[name].check(value)
            except ValueError as exc:
                raise self._channel.invalid(command, str(exc)) from exc
            mask |= 1 << bit
        header: dict[str, Value] = {
            "name": recipe.name,
            "version": recipe.version,
            "present_mask": mask,
        }
        writes = self._channel.encode(command, self._map.recipe_header, header)
        writes += self._channel.encode(command, self._map.recipe, values)
        await self._channel.send(command, writes)

    async def start_job(self, job: Job) -> None:
        command = Command.START_JOB
        site_map = job.site_map
        area = self._map.incoming
        if len(site_map.codes) > area.max_sites:
            raise self._channel.invalid(
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
        writes = self._channel.encode(command, self._map.job, header)
        writes.append((area.address, pack_site_codes(site_map.codes)))
        await self._channel.send(command, writes)

    async def abort(self) -> None:
        await self._channel.send(Command.ABORT, [])

    async def reset_alarm(self) -> None:
        await self._channel.send(Command.RESET_ALARM, [], alarm_explains=False)

    async def acknowledge_results(self, job_id: str) -> None:
        command = Command.ACKNOWLEDGE_RESULTS
        writes = self._channel.encode(command, self._map.acknowledge, {"job_id": job_id})
        await self._channel.send(command, writes)

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
