"""The line controller: the tools one ``pkgline serve`` owns, and the lots it runs on them.

Start: claim the tools in equipment tracking (a tool has one controller), connect to each
(supervised on its own), wait until every tool has answered or been found unreachable, then
recover (lots running on our tools are followed, results left on a tool are recorded once) and
tell systemd we are ready. Then, until asked to stop: dispatch waiting lots to idle tools,
complete manual steps if configured to, carry out the alarm resets operators ask for
(:mod:`pkgline.controller.resets`), report a heartbeat and the one-line status, and ping
the watchdog. Stop: no new jobs; what is being recorded is finished; then exit.

The database may fail at any time (:mod:`mes.adapters.errors`): every loop that meets
:class:`DatabaseUnavailable` (read-only and retryable included) waits and tries again, with
backoff; the outage itself is logged on the edge by :class:`DatabaseHealth`. The watchdog is
fed by a task of its own that touches no database, so it goes on while the event loop turns;
and a stop takes at most ``controller.stop_timeout_s``, whatever the database does (what
still hangs then is cancelled: the tools keep their results for the next start).

Several controllers may share one PostgreSQL database, each with its own tools: they only
ever start lots on their own tools, and a lot two of them reach for is taken by one (the
other's track-in is refused by the version check).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import socket
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import structlog

from drivers.interface import ToolDriver
from flows import FlowLibrary
from mes.adapters.driver import DatabaseUnavailable
from mes.adapters.health import DatabaseHealth
from mes.domain.equipment import CONTROLLER_STOPPED, ControllerRecord, LineFence, ToolRegistration
from mes.domain.errors import LineHeld, ToolOwnedElsewhere
from mes.domain.text import counted
from mes.equipment import EquipmentService
from mes.service import LotService, utc_now
from pkgline.config import ConfigError, LineConfig, LineTool
from pkgline.controller import HEARTBEAT_S, STALE_AFTER_S
from pkgline.controller.dispatcher import Dispatcher
from pkgline.controller.feed import DeclarationWatch, ToolFeed
from pkgline.controller.outage import DatabaseOutage
from pkgline.controller.reporter import EquipmentReporter
from pkgline.controller.resets import ResetDesk
from pkgline.controller.runner import RunnerObserver, ToolRunner
from pkgline.controller.spool import Spool
from pkgline.security import certificate_notes
from pkgline.systemd import Notifier

log = structlog.get_logger("pkgline.controller")

STOPPED = CONTROLLER_STOPPED
STARTING = "starting"
"""The status of a controller that has claimed its line and is connecting to its tools."""
FLUSH_S = 10.0
"""On stop: how long to wait for tool states still to be written."""
FIRST_CONTACT_MARGIN_S = 10.0
DB_RETRY_FIRST_S = 0.5
DB_RETRY_MAX_S = 5.0
"""A loop that found the database unavailable tries again after these pauses (doubling)."""
STOP_RESERVE_S = 5.0
"""Of ``controller.stop_timeout_s``: kept for what ``pkgline serve`` closes after the
controller (tool connections, the database engine)."""
FINAL_RECORD_S = 5.0
"""Of the stop: kept for recording the stop itself (the tools unmonitored from now)."""


def db_retry_delays() -> Iterator[float]:
    """Pauses before trying the database again: doubling from ``DB_RETRY_FIRST_S`` to
    ``DB_RETRY_MAX_S``."""
    delay = DB_RETRY_FIRST_S
    while True:
        yield delay
        delay = min(delay * 2, DB_RETRY_MAX_S)


def freeze_startup_objects() -> None:
    """Take what the process has made so far (modules, flows, configuration, drivers,
    connections) out of the cyclic garbage collector's reach, for good: a full collection
    walks every object it tracks, and on a line controller that is a pause of the event loop
    of about 100 ms (150,000 objects), which every tool waiting for its next job sits through.
    After the freeze, full collections walk only what was made since. Garbage is collected
    first, so none of it is kept. For a daemon, once, when it has started (``gc.freeze``)."""
    gc.collect()
    gc.freeze()


def connections_needed(config: LineConfig) -> int:
    """Database connections the controller may use at once (its engine's pool size): one per
    tool (each runner writes one thing at a time), one each for a dispatch pass, the
    reporter, manual steps and the heartbeat; at least 5, and at most 24, so that several
    controllers can share one PostgreSQL."""
    return max(5, min(24, len(config.tools) + 4))


def tool_steps(tool: LineTool, library: FlowLibrary) -> tuple[str, ...]:
    """The steps a tool may run: as configured (checked against its class), else every step
    of its class."""
    of_class = [
        code
        for code, info in library.step_codes.items()
        if info.equipment_class == tool.equipment_class.value
    ]
    if tool.steps is None:
        return tuple(of_class)
    wrong = [s for s in tool.steps if s not in of_class]
    if wrong:
        raise ConfigError(
            f"tool {tool.id} ({tool.equipment_class.value}) cannot run {', '.join(wrong)}; "
            f"its class runs {', '.join(of_class) or 'no step'}"
        )
    return tool.steps


def describe_endpoint(tool: LineTool) -> str:
    endpoint = tool.endpoint
    if endpoint.transport == "modbus":
        return f"modbus://{endpoint.host}:{endpoint.port}/{endpoint.unit_id}"
    return f"{endpoint.url} {endpoint.object_name or tool.id}"


class LineController:
    def __init__(
        self,
        config: LineConfig,
        lots: LotService,
        equipment: EquipmentService,
        drivers: Sequence[ToolDriver],
        *,
        notifier: Notifier | None = None,
        observer: RunnerObserver | None = None,
        before_ready: Callable[[], None] = lambda: None,
        feed: ToolFeed | None = None,
        database: DatabaseHealth | None = None,
        status_of_parts: Sequence[Callable[[], str]] = (),
    ):
        """``feed``: told every tool state, recipe and measured values (Sparkplug B).
        ``before_ready``: called once every tool has answered (or been found unreachable)
        and the recovery has begun, before the first dispatch and READY (``pkgline serve``
        freezes the startup objects there: :func:`freeze_startup_objects`). ``database``:
        the store's health (the one its unit-of-work factory feeds), for the status line.
        ``status_of_parts``: phrases added to the STATUS line (the event feed's backlog)."""
        self.config = config
        self._database = database
        self.name = config.name
        self._lots = lots
        self._equipment = equipment
        self._library = lots.flows
        self._notifier = notifier or Notifier(None)
        self._user = config.controller.user
        spool = Spool(config.controller.spool_path(config.name), config.controller.spool_max_bytes)
        spool.check()  # a spool directory it cannot write is a configuration error
        self._outage = DatabaseOutage(lambda: self._reporter.details())
        self._reporter = EquipmentReporter(equipment, spool, outage=self._outage)
        self._status_of_parts = tuple(status_of_parts)
        by_id = {d.tool_id: d for d in drivers}
        self.runners: dict[str, ToolRunner] = {}
        for tool in config.tools:
            steps = tool_steps(tool, self._library)
            runner = ToolRunner(
                tool.model_copy(update={"steps": steps}),
                by_id[tool.id],
                lots,
                equipment,
                user=self._user,
                dispatch_now=self.wake,
                observer=observer,
                report=self._reporter.submit,
                outage=self._outage,
                feed=feed,
            )
            self.runners[tool.id] = runner
        self.resets = ResetDesk(self.name, equipment, self.runners, by_id, outage=self._outage)
        self._declarations = (
            DeclarationWatch(self.name, equipment, feed, outage=self._outage)
            if feed is not None and feed.wants_declarations
            else None
        )
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._dispatcher = Dispatcher(
            self.name,
            config.controller,
            lots,
            self.runners,
            self._user,
            self._wake.set,
            self._outage,
        )
        self._started_at = utc_now()
        self._fence = LineFence(STALE_AFTER_S, process_alive)
        self._line_lost = False
        """Another controller took the line (this one stalled): it stops, recording nothing."""
        self._claimed = False
        self._previous: ControllerRecord | None = None
        """What the line's last controller recorded, read when this one claimed the line."""
        self.ready = asyncio.Event()
        self._before_ready = before_ready
        self._certificate_notes: list[str] = []
        self._stop_deadline: float | None = None
        """The event loop's time by which a stop asked for is to be done."""

    # -- control -----------------------------------------------------------------------------

    def wake(self, *, lot_waits: bool = False) -> None:
        """Dispatch now: a tool may have become free, or (``lot_waits``) a lot this
        controller moved waits at a step."""
        if lot_waits:
            self._dispatcher.lot_waits()
        self._wake.set()

    def request_stop(self) -> None:
        if self._stop_deadline is None:
            budget = self.config.controller.stop_timeout_s - STOP_RESERVE_S
            self._stop_deadline = asyncio.get_running_loop().time() + max(budget, 1.0)
        self._stop.set()

    def status_line(self) -> str:
        up = sum(1 for r in self.runners.values() if r.connected)
        running, waiting = self._dispatcher.counts
        status = (
            f"{up}/{len(self.runners)} tools answering, {counted(running, 'lot')} running "
            f"here, {waiting} waiting"
        )
        away = self._database.describe() if self._database is not None else None
        if away is None and self._outage.down:
            away = "database unavailable"
        spooled = self._reporter.describe()
        # certificates that expire within 30 days (pkgline.security), read at each heartbeat
        return "; ".join(
            [
                *([away] if away else []),
                status,
                *([spooled] if spooled else []),
                *self._certificate_notes,
                *(part() for part in self._status_of_parts),
            ]
        )

    # -- the main loop -----------------------------------------------------------------------

    async def claim_line(self) -> None:
        """Make the line this controller's before it touches anything (its tools, the event
        feed): refused with LineHeld, nothing written, while another controller drives it
        (:func:`~mes.domain.equipment.line_holder`). Each heartbeat claims it again. What the
        line's last controller recorded is kept for the start (did it stop, or die?)."""
        self._previous = next(
            (c for c in await self._equipment.controllers() if c.name == self.name), None
        )
        await self._equipment.heartbeat(self._record(STARTING), fence=self._fence)
        self._claimed = True

    async def run(self) -> None:
        """Run until :meth:`request_stop`. Raises if a part of the controller fails."""
        await self._reporter.open()
        try:
            await self._run()
        finally:
            await self._reporter.close()

    async def _run(self) -> None:
        # What the last run spooled is written first, before anything else is (registering
        # the tools would make their records newer than the spooled states).
        await self._reporter.write_spooled()
        if not self._claimed:
            await self.claim_line()
        previous = self._previous
        try:
            await self._equipment.register(
                self.name,
                [
                    ToolRegistration(
                        r.tool_id,
                        r.tool.equipment_class.value,
                        describe_endpoint(r.tool),
                        r.tool.steps or (),
                    )
                    for r in self.runners.values()
                ],
            )
        except ToolOwnedElsewhere:  # line.toml names another line's tool: not a start
            await self._record_stop()  # or the line would stay listed as starting, for ever
            raise
        if previous is not None and previous.status != STOPPED:
            # It died without a word: nobody followed the tools since its last heartbeat, or
            # since just after the last state it spooled (not at that very time: a tool's
            # changes have distinct times, see the reporter).
            since = previous.heartbeat_at
            if self._reporter.last_spooled_at is not None:
                since = max(since, self._reporter.last_spooled_at + timedelta(microseconds=1))
            await self._equipment.mark_unmonitored(
                list(self.runners), since, "line controller died (last heartbeat)"
            )
        log.info("line controller starting", line=self.name, tools=len(self.runners))
        tasks: list[asyncio.Task[Any]] = [
            asyncio.create_task(self._reporter.run(), name="equipment-reporter"),
            # from the start, not from READY: the claim must not go stale while tools answer
            asyncio.create_task(self._heartbeat_loop(), name="heartbeat"),
        ]
        if self._declarations is not None:  # from the start too: the first births carry them
            tasks.append(asyncio.create_task(self._declarations.run(), name="declarations"))
        tasks += [
            asyncio.create_task(runner.run(), name=f"tool-{tool_id}")
            for tool_id, runner in self.runners.items()
        ]
        failure: BaseException | None = None
        try:
            await self._first_contact()
            await self._reporter.flush()  # every tool's state is on record before READY
            self._before_ready()
            await self._dispatcher.dispatch_once()
            self.ready.set()
            self._notifier.ready(self.status_line())
            log.info("line controller ready", status=self.status_line())
            loops = [
                asyncio.create_task(self._dispatch_loop(), name="dispatch"),
                asyncio.create_task(self.resets.run(), name="alarm-resets"),
                asyncio.create_task(self._watchdog_loop(), name="watchdog"),
            ]
            if self.config.controller.auto_manual_steps:
                loops.append(
                    asyncio.create_task(self._dispatcher.manual_loop(), name="manual-steps")
                )
            stop = asyncio.create_task(self._stop.wait(), name="stop")
            done, _ = await asyncio.wait(
                [stop, *tasks, *loops], return_when=asyncio.FIRST_COMPLETED
            )
            failed = [t for t in done if t is not stop]
            tasks += loops
            tasks.append(stop)
            for task in failed:
                exc = task.exception()
                if exc is not None:
                    raise exc
        except BaseException as exc:
            failure = exc
            raise
        finally:
            try:
                await self._shutdown(tasks)
            except Exception as exc:
                if failure is None:
                    raise
                # what ended the controller is raised, not what its stop met after it
                log.error("the stop failed too", error=str(exc), exc_info=exc)

    async def _first_contact(self) -> None:
        """Every tool answered or was found unreachable (READY comes after this)."""
        limit = (
            max(
                (
                    r.tool.policy.timeout_s + r.tool.policy.poll_interval_s
                    for r in self.runners.values()
                ),
                default=0.0,
            )
            * 3
            + FIRST_CONTACT_MARGIN_S
        )
        waiting = [asyncio.create_task(r.first_contact.wait()) for r in self.runners.values()]
        if waiting:
            _, pending = await asyncio.wait(waiting, timeout=limit)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _shutdown(self, tasks: Sequence[asyncio.Task[Any]]) -> None:
        """Finish what is being recorded, then record the stop: all of it by the stop's
        deadline (``controller.stop_timeout_s`` after it was asked for), whatever the
        database does. What still waits then is cancelled; what it would have recorded is
        on the tools, recorded at the next start."""
        self._notifier.stopping("finishing what is being recorded")
        log.info("line controller stopping: finishing what is being recorded")
        loop = asyncio.get_running_loop()
        if self._stop_deadline is None:  # not asked to: a part failed
            self.request_stop()
        assert self._stop_deadline is not None
        deadline = self._stop_deadline
        work_until = deadline - min(FINAL_RECORD_S, (deadline - loop.time()) / 4)
        for runner in self.runners.values():
            runner.stopping = True
        if not await _within(
            asyncio.gather(*(r.in_flight() for r in self.runners.values()), return_exceptions=True),
            work_until,
        ):
            log.warning("stopping without what is still being recorded: it is on the tools")
        reporter = tasks[0] if tasks else None
        await _cancelled(tasks[1:], work_until)
        await _within(
            asyncio.gather(*(r.close() for r in self.runners.values()), return_exceptions=True),
            work_until,
        )
        if reporter is not None and not reporter.done():
            if not await _within(self._reporter.flush(), min(work_until, loop.time() + FLUSH_S)):
                log.warning("stopping without recording the last tool states")
            reporter.cancel()
            await _within(asyncio.gather(reporter, return_exceptions=True), deadline)
        try:
            recorded = await _within(self._record_stop(), deadline)
        except DatabaseUnavailable as exc:
            log.warning("cannot record the stop", error=str(exc))
        else:
            if not recorded:
                log.warning("cannot record the stop: the database did not answer in time")
        log.info("line controller stopped")

    async def _record_stop(self) -> None:
        if self._line_lost:
            return  # the line's tools and record are the other controller's now
        await self._equipment.mark_unmonitored(
            list(self.runners), utc_now(), "line controller stopped"
        )
        await self._equipment.heartbeat(self._record(STOPPED))

    async def _dispatch_loop(self) -> None:
        """One pass at a time: a full pass every interval (lots started or tracked in by
        operators, tools switched back to auto); between them, a pass over the waiting lots
        whenever :meth:`wake` is called, unless nothing changed that it could act on (no lot
        of ours waits anew and no tool is idle that the last pass did not find idle). Passes
        do not overlap: on SQLite every transaction waits for the one writer, and more of
        them at once only make each one slower."""
        interval = self.config.controller.dispatch_interval_s
        loop = asyncio.get_running_loop()
        last_full = loop.time()
        retry = db_retry_delays()
        while True:
            # asyncio.timeout, not wait_for: on Python 3.11, wait_for returns normally when the
            # event is set just as the task is cancelled, and the cancellation is lost (the
            # loop then ran on and held up the controller's stop). Fixed in 3.12.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._wake.wait()
            self._wake.clear()
            if self._reporter.backlog:
                continue  # what waited for the database is written first: see the reporter
            full = loop.time() - last_full >= interval
            try:
                await self._dispatcher.dispatch_once(full=full)
            except DatabaseUnavailable as exc:
                self._outage.failed("dispatch", exc)
                await asyncio.sleep(next(retry))
                continue
            retry = db_retry_delays()
            if full:  # (it may only have read: the outage ends at a write, see outage.py)
                last_full = loop.time()

    async def _watchdog_loop(self) -> None:
        """Ping systemd's watchdog and report STATUS while the event loop turns: no database
        call in between (an outage is no hang; STATUS says the database is away)."""
        watchdog = self._notifier.watchdog_interval_s
        tick = HEARTBEAT_S
        if watchdog is not None:
            tick = min(tick, watchdog * self.config.controller.watchdog_fraction)
        last_status = None
        loop = asyncio.get_running_loop()
        while True:
            self._notifier.watchdog()
            if last_status is None or loop.time() - last_status >= HEARTBEAT_S:
                self._notifier.status(self._status_now())
                last_status = loop.time()
            await asyncio.sleep(tick)

    async def _heartbeat_loop(self) -> None:
        """Record this controller's heartbeat (and status) every ``HEARTBEAT_S``."""
        while True:
            try:
                try:
                    await self._equipment.heartbeat(
                        self._record(self._status_now()), fence=self._fence
                    )
                except LineHeld as exc:
                    # Stalled past the heartbeat's staleness, another controller took the
                    # line: this one stops, and leaves the tools and the record to it.
                    self._line_lost = True
                    log.error("line controller stopping: lost its line", reason=exc.message)
                    raise
                # waiting lots past a queue-time limit go on hold now, not at their track-in
                for held in await self._lots.hold_expired_queue_times(self._user):
                    log.warning("queue time exceeded: lot held", lot=held.lot.id)
            except DatabaseUnavailable as exc:  # the outage is logged on its edges
                self._outage.failed("heartbeat", exc)
            else:
                self._outage.answered()
            await asyncio.sleep(HEARTBEAT_S)

    def _status_now(self) -> str:
        """The status line with the certificates read again (their expiry, for STATUS and the
        heartbeat alike: each writes what it read itself, whichever comes first)."""
        self._certificate_notes = certificate_notes(self.config)
        return self.status_line()

    def _record(self, status: str) -> ControllerRecord:
        return ControllerRecord(
            name=self.name,
            host=socket.gethostname(),
            pid=os.getpid(),
            started_at=self._started_at,
            heartbeat_at=utc_now(),
            status=status,
            tools=tuple(self.runners),
            # what keeps waiting lots off the tools; a stopped controller keeps none off
            refusals=() if status == STOPPED else self._dispatcher.refusals(),
        )


def process_alive(record: ControllerRecord) -> bool:
    """Whether the controller of ``record`` may still run: on another host it may (its
    heartbeat tells); on this one, while a process with its pid exists (a controller that
    crashed leaves its line at once to the one systemd starts next, not after the staleness).
    Another instance in this very process is taken for alive."""
    if record.host != socket.gethostname():
        return True
    try:
        os.kill(record.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # somebody else's process: it exists
        pass
    try:  # a zombie (killed, not yet reaped by its parent) runs nothing
        stat = Path(f"/proc/{record.pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return True
    return stat[stat.rfind(")") + 2 :][:1] not in ("Z", "X")


CANCEL_AGAIN_S = 0.1
"""How long a task cancelled on stop may go on before it is cancelled again."""


async def _cancelled(tasks: Sequence[asyncio.Task[Any]], deadline: float) -> bool:
    """Cancel ``tasks`` and wait for them to end, until the event loop's time ``deadline``
    (True when they all did). One that goes on is cancelled again: in Python 3.11 a
    cancellation can be lost, when ``asyncio.wait_for`` (which pymodbus connects with) is
    cancelled at the moment what it waits for ends. A stop that came as a tool refused the
    connection then waited for the whole stop timeout (45 s)."""
    loop = asyncio.get_running_loop()
    pending = {t for t in tasks if not t.done()}
    while pending and loop.time() < deadline:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(
            pending, timeout=min(CANCEL_AGAIN_S, max(0.0, deadline - loop.time()))
        )
    for task in tasks:  # retrieved, so that none is reported as never retrieved
        if task.done() and not task.cancelled():
            task.exception()
    return not pending


async def _within(work: Awaitable[Any], deadline: float) -> bool:
    """Await ``work`` until the event loop's time ``deadline``; cancelled then (False)."""
    try:
        async with asyncio.timeout_at(deadline):
            await work
    except TimeoutError:
        return False
    return True
