"""The line controller: the tools one ``pkgline serve`` owns, and the lots it runs on them.

Start: claim the tools in equipment tracking (a tool has one controller), connect to each
(supervised on its own), wait until every tool has answered or been found unreachable, then
recover (lots running on our tools are followed, results left on a tool are recorded once) and
tell systemd we are ready. Then, until asked to stop: dispatch waiting lots to idle tools,
complete manual steps if configured to, report a heartbeat and the one-line status, and ping
the watchdog. Stop: no new jobs; what is being recorded is finished; then exit.

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
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import structlog

from drivers.interface import ToolDriver
from flows import FlowLibrary
from mes.adapters.driver import DatabaseUnavailable
from mes.domain import commands as cmd
from mes.domain.equipment import ControllerRecord, DispatchMode, ToolRegistration
from mes.domain.errors import ConcurrentUpdate, LotTrackerError
from mes.domain.model import LotHead, LotState
from mes.equipment import EquipmentService
from mes.service import LotService, Outcome, TrackedIn, utc_now
from pkgline.config import ConfigError, LineConfig, LineTool
from pkgline.controller.dispatch import Candidate, choose, keeps_tool, next_step_of
from pkgline.controller.reporter import EquipmentReporter
from pkgline.controller.runner import RunnerObserver, ToolRunner
from pkgline.systemd import Notifier

log = structlog.get_logger("pkgline.controller")

MANUAL = "manual"
STOPPED = "stopped"
HEARTBEAT_S = 5.0
FLUSH_S = 10.0
"""On stop: how long to wait for tool states still to be written."""
FIRST_CONTACT_MARGIN_S = 10.0


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
    ):
        """``before_ready``: called once every tool has answered (or been found unreachable)
        and the recovery has begun, before the first dispatch and READY (``pkgline serve``
        freezes the startup objects there: :func:`freeze_startup_objects`)."""
        self.config = config
        self.name = config.name
        self._lots = lots
        self._equipment = equipment
        self._library = lots.flows
        self._notifier = notifier or Notifier(None)
        self._user = config.controller.user
        self._reporter = EquipmentReporter(equipment)
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
            )
            self.runners[tool.id] = runner
        self._manual_wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._started_at = utc_now()
        self._counts = (0, 0)
        self._lots_moved = True
        """A lot this controller moved waits at a step since the last pass began."""
        self._unserved: frozenset[str] = frozenset()
        """The tools the last pass left idle: no waiting lot it read fits them."""
        self._next: dict[str, tuple[LotHead, Candidate | None]] = {}
        """Each waiting lot's head as last read, and the step it goes to next."""
        self.ready = asyncio.Event()
        self._before_ready = before_ready

    # -- control -----------------------------------------------------------------------------

    def wake(self, *, lot_waits: bool = False) -> None:
        """Dispatch now: a tool may have become free, or (``lot_waits``) a lot this
        controller moved waits at a step."""
        if lot_waits:
            self._lots_moved = True
        self._wake.set()

    def request_stop(self) -> None:
        self._stop.set()

    def status_line(self) -> str:
        up = sum(1 for r in self.runners.values() if r.connected)
        running, waiting = self._counts
        return (
            f"{up}/{len(self.runners)} tools answering, {running} lots running here, "
            f"{waiting} waiting"
        )

    # -- the main loop -----------------------------------------------------------------------

    async def run(self) -> None:
        """Run until :meth:`request_stop`. Raises if a part of the controller fails."""
        previous = next(
            (c for c in await self._equipment.controllers() if c.name == self.name), None
        )
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
        if previous is not None and previous.status != STOPPED:
            # It died without a word: nobody followed the tools since its last heartbeat.
            await self._equipment.mark_unmonitored(
                list(self.runners),
                previous.heartbeat_at,
                "line controller died (last heartbeat)",
            )
        log.info("line controller starting", line=self.name, tools=len(self.runners))
        tasks: list[asyncio.Task[Any]] = [
            asyncio.create_task(self._reporter.run(), name="equipment-reporter")
        ]
        tasks += [
            asyncio.create_task(runner.run(), name=f"tool-{tool_id}")
            for tool_id, runner in self.runners.items()
        ]
        try:
            await self._first_contact()
            await self._reporter.flush()  # every tool's state is on record before READY
            self._before_ready()
            await self._dispatch_once()
            self.ready.set()
            self._notifier.ready(self.status_line())
            log.info("line controller ready", status=self.status_line())
            loops = [
                asyncio.create_task(self._dispatch_loop(), name="dispatch"),
                asyncio.create_task(self._heartbeat_loop(), name="heartbeat"),
            ]
            if self.config.controller.auto_manual_steps:
                loops.append(asyncio.create_task(self._manual_loop(), name="manual-steps"))
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
        finally:
            await self._shutdown(tasks)

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
        self._notifier.stopping("finishing what is being recorded")
        log.info("line controller stopping: finishing what is being recorded")
        for runner in self.runners.values():
            runner.stopping = True
        await asyncio.gather(
            *(r.in_flight() for r in self.runners.values()), return_exceptions=True
        )
        reporter = tasks[0] if tasks else None
        for task in tasks[1:]:
            task.cancel()
        await asyncio.gather(*tasks[1:], return_exceptions=True)
        await asyncio.gather(*(r.close() for r in self.runners.values()), return_exceptions=True)
        if reporter is not None and not reporter.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._reporter.flush(), FLUSH_S)
            reporter.cancel()
            await asyncio.gather(reporter, return_exceptions=True)
        try:
            await self._equipment.mark_unmonitored(
                list(self.runners), utc_now(), "line controller stopped"
            )
            await self._equipment.heartbeat(self._record(STOPPED))
        except (DatabaseUnavailable, OSError) as exc:
            log.warning("cannot record the stop", error=str(exc))
        log.info("line controller stopped")

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
        while True:
            # asyncio.timeout, not wait_for: on Python 3.11, wait_for returns normally when the
            # event is set just as the task is cancelled, and the cancellation is lost (the
            # loop then ran on and held up the controller's stop). Fixed in 3.12.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._wake.wait()
            self._wake.clear()
            full = loop.time() - last_full >= interval
            try:
                await self._dispatch_once(full=full)
            except DatabaseUnavailable as exc:
                log.warning("cannot dispatch: database unavailable", error=str(exc))
                continue
            if full:
                last_full = loop.time()

    async def _heartbeat_loop(self) -> None:
        watchdog = self._notifier.watchdog_interval_s
        tick = HEARTBEAT_S
        if watchdog is not None:
            tick = min(tick, watchdog * self.config.controller.watchdog_fraction)
        last_beat = 0.0
        loop = asyncio.get_running_loop()
        while True:
            self._notifier.watchdog()
            if loop.time() - last_beat >= HEARTBEAT_S:
                status = self.status_line()
                self._notifier.status(status)
                try:
                    await self._equipment.heartbeat(self._record(status))
                except DatabaseUnavailable as exc:
                    log.warning("cannot record the heartbeat", error=str(exc))
                try:  # waiting lots past a queue-time limit go on hold now, not at track-in
                    for held in await self._lots.hold_expired_queue_times(self._user):
                        log.warning("queue time exceeded: lot held", lot=held.lot.id)
                except DatabaseUnavailable as exc:
                    log.warning("cannot check queue times", error=str(exc))
                last_beat = loop.time()
            await asyncio.sleep(tick)

    def _record(self, status: str) -> ControllerRecord:
        return ControllerRecord(
            name=self.name,
            host=socket.gethostname(),
            pid=os.getpid(),
            started_at=self._started_at,
            heartbeat_at=utc_now(),
            status=status,
            tools=tuple(self.runners),
        )

    # -- dispatching -------------------------------------------------------------------------

    async def _dispatch_once(self, *, full: bool = True) -> None:
        """Start waiting lots on idle tools and complete manual steps when configured to; a
        full pass also follows lots running on our tools (tracked in by an operator, or left
        running by a controller that stopped)."""
        idle = frozenset(t for t, r in self.runners.items() if r.is_idle())
        if not full and not self._lots_moved and idle <= self._unserved:
            # Nothing new since the last pass: no lot of ours waits anew, no tool is newly
            # idle. What others change (operators) is for the full passes.
            return
        self._lots_moved = False
        try:
            await self._pass(full, idle)
        except BaseException:
            self._lots_moved = True  # the next pass reads again
            raise

    async def _pass(self, full: bool, idle: frozenset[str]) -> None:
        states = [LotState.WAITING, LotState.RUNNING] if full else [LotState.WAITING]
        dispatching = self.config.controller.dispatch and bool(idle)
        if dispatching:  # the tools' dispatch modes are read with the lots, not after them
            lots, modes = await self._lots.dispatch_view(states, self.name)
        else:
            lots, modes = await self._lots.heads(states), {}
        if full:
            for lot in lots:
                runner = self.runners.get(lot.tool or "") if lot.state is LotState.RUNNING else None
                if runner is not None and not runner.is_working_on(lot.id):
                    runner.assign(lot.id)
        candidates = self._candidates(lots)
        working = sum(1 for r in self.runners.values() if r.current_lot is not None)
        self._counts = (working, len(candidates))
        self._unserved = await self._start_on_idle_tools(candidates, modes) if dispatching else idle
        if self.config.controller.auto_manual_steps and any(
            self._is_manual(c.step) for c in candidates
        ):
            self._manual_wake.set()

    async def _start_on_idle_tools(
        self, candidates: list[Candidate], modes: Mapping[str, DispatchMode]
    ) -> frozenset[str]:
        """Track the most urgent fitting lot in on each idle tool in auto (``modes``: the
        tools' dispatch modes, read with the lots, so an operator's switch to manual counts):
        all of them in one transaction (on SQLite, one wait for the writer, not one per
        tool). The idle tools left without a lot."""
        picks: list[tuple[Candidate, ToolRunner]] = []
        left: set[str] = set()
        for tool_id, runner in sorted(self.runners.items()):
            if not runner.is_idle():
                continue
            pick = choose(candidates, runner.steps)
            if (
                modes.get(tool_id) is not DispatchMode.AUTO
                or pick is None
                or self._waits_for_its_lot(runner, pick)
            ):
                left.add(tool_id)
                continue
            candidates.remove(pick)
            picks.append((pick, runner))
        if picks:
            await self._track_in(picks)
        return frozenset(left)

    async def _track_in(self, picks: list[tuple[Candidate, ToolRunner]]) -> None:
        """Each pick on its tool, in one transaction when none of the lots moved meanwhile."""
        try:
            results = await self._lots.track_in_all(
                [
                    cmd.TrackIn(
                        pick.lot.id, pick.step, self._user, tool=runner.tool_id, dispatched=True
                    )
                    for pick, runner in picks
                ]
            )
        except ConcurrentUpdate:  # one of them moved meanwhile: the others one by one
            for pick, runner in picks:
                await self._start(pick, runner)
            return
        for (pick, runner), result in zip(picks, results, strict=True):
            self._started(pick, runner, result)

    def _waits_for_its_lot(self, runner: ToolRunner, pick: Candidate) -> bool:
        """The lot the tool is finishing goes on there once tracked out, and before ``pick``
        (:func:`keeps_tool`): it is dispatched then."""
        finishing = runner.finishing
        return finishing is not None and keeps_tool(
            finishing, self._lots.next_in_order_after_step(finishing), pick, runner.steps
        )

    async def _start(self, pick: Candidate, runner: ToolRunner) -> None:
        try:
            outcome: Outcome | LotTrackerError = await self._lots.track_in(
                cmd.TrackIn(
                    pick.lot.id, pick.step, self._user, tool=runner.tool_id, dispatched=True
                )
            )
        except LotTrackerError as exc:
            outcome = exc
        self._started(pick, runner, outcome)

    def _started(
        self, pick: Candidate, runner: ToolRunner, outcome: Outcome | LotTrackerError
    ) -> None:
        if isinstance(outcome, LotTrackerError):
            log.info("lot not started", lot=pick.lot.id, step=pick.step, reason=outcome.message)
            return
        if outcome.lot.state is not LotState.RUNNING:  # held at track-in (a queue time)
            hold = outcome.lot.hold
            log.warning(
                "lot held at track-in",
                lot=pick.lot.id,
                step=pick.step,
                reason=hold.reason if hold else None,
            )
            return
        log.info("lot dispatched", lot=pick.lot.id, step=pick.step, tool_id=runner.tool_id)
        runner.assign(pick.lot.id, outcome.view if isinstance(outcome, TrackedIn) else None)

    def _candidates(self, lots: Sequence[LotHead]) -> list[Candidate]:
        """Each waiting lot with the step it goes to next. The store gives the same head
        object for a lot it has not changed since the last read: its step is then the one
        found last time, not worked out from its flow again."""
        known, self._next = self._next, {}
        found: list[Candidate] = []
        for lot in lots:
            if lot.state is not LotState.WAITING:
                continue
            last = known.get(lot.id)
            if last is not None and last[0] is lot:
                candidate = last[1]
            else:
                candidate = next_step_of(lot, self._lots.next_in_order(lot))
            self._next[lot.id] = (lot, candidate)
            if candidate is not None:
                found.append(candidate)
        return found

    def _is_manual(self, step: str) -> bool:
        info = self._library.step_codes.get(step)
        return info is not None and info.equipment_class == MANUAL

    async def _manual_loop(self) -> None:
        """Complete the manual steps lots wait at (``auto_manual_steps``), woken by the
        dispatch passes that find some. Apart from dispatching: each one completed costs two
        transactions, and a batch of new lots must not keep an idle tool waiting."""
        while True:
            await self._manual_wake.wait()
            self._manual_wake.clear()
            try:
                waiting = self._candidates(await self._lots.heads([LotState.WAITING]))
                await self._complete_manual_steps([c for c in waiting if self._is_manual(c.step)])
            except DatabaseUnavailable as exc:
                log.warning("cannot complete manual steps: database unavailable", error=str(exc))

    async def _complete_manual_steps(self, candidates: list[Candidate]) -> None:
        for candidate in candidates:
            lot = candidate.lot
            try:
                await self._lots.track_in(cmd.TrackIn(lot.id, candidate.step, self._user))
                await self._lots.track_out(cmd.TrackOut(lot.id, self._user))
            except LotTrackerError as exc:
                log.info(
                    "manual step not completed", lot=lot.id, step=candidate.step, reason=exc.message
                )
                continue
            log.info("manual step completed", lot=lot.id, step=candidate.step)
            self.wake(lot_waits=True)
