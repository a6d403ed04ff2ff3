"""The state and the primitives of a tool's runner (:class:`RunnerBase`): what the tool was
last heard to do and how that is reported to equipment tracking, waiting on the tool, the
requests that run in the background (the acknowledge of results), reading and checking a job's
results, and giving a lot back or holding it. :mod:`pkgline.controller.runner_results` settles
the results left on the tool, :mod:`pkgline.controller.runner_steps` runs one step of one lot,
and :class:`pkgline.controller.runner.ToolRunner` is the runner the line controller drives.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from datetime import datetime
from typing import Any, Literal, Protocol, TypeVar

import structlog

from drivers.catalogue import class_spec
from drivers.interface import ToolDriver
from drivers.model import JobResults, ProcessState, RecipeInfo, SiteMap, ToolStatus
from flows import Flow
from mes.domain import commands as cmd
from mes.domain.equipment import ToolSnapshot
from mes.domain.errors import LotTrackerError
from mes.domain.model import HoldSource, Lot, SiteReject
from mes.domain.text import printable
from mes.equipment import EquipmentService
from mes.service import LotService, StepView, utc_now
from pkgline.config import LineTool
from pkgline.controller import edge, translate
from pkgline.controller.feed import NoFeed, ToolFeed
from pkgline.controller.outage import DatabaseOutage
from pkgline.controller.quarantine import Quarantine
from pkgline.controller.translate import CheckedResults, ExpectedResults

log = structlog.get_logger("pkgline.controller")
T = TypeVar("T")

SETUP_TIMEOUT_S = 600.0
"""How long a recipe load may take before the step is given up."""
LOT_CHECK_S = 5.0
"""While a job runs: how often to check that its lot is still running here."""
READ_PAUSE_FIRST_S = 0.005
READ_PAUSE_MAX_S = 0.5
"""Waiting for a state (recipe setup): the pauses between direct reads of the tool's status."""
PROGRESS_REPORT_S = 1.0
"""Progress (sites done) is written to equipment tracking at most this often."""
RETRY_S = 2.0

JobEnd = Literal["complete", "alarm", "aborted", "lost", "withdrawn"]


class RunnerObserver(Protocol):
    """Timing hooks for measurements (the throughput benchmark); a no-op by default."""

    def job_done_seen(self, tool_id: str, job_id: str) -> None:
        """The controller has seen the tool report the job complete."""

    def job_starting(self, tool_id: str, job_id: str) -> None:
        """The controller is about to send the tool the next start."""


class DispatchNow(Protocol):
    """Asks the line controller for a dispatch pass (:meth:`LineController.wake`)."""

    def __call__(self, *, lot_waits: bool = False) -> None:
        """This tool may take a lot; ``lot_waits``: a lot it ran waits at a step again."""


def _no_dispatch(*, lot_waits: bool = False) -> None:
    return None


class _NoObserver:
    def job_done_seen(self, tool_id: str, job_id: str) -> None:
        return None

    def job_starting(self, tool_id: str, job_id: str) -> None:
        return None


class StepGivenUp(Exception):
    """The step cannot go on on this tool now; the lot was given back or held."""


class RunnerBase:
    """A tool's runner: its state and the primitives its layers share."""

    def __init__(
        self,
        tool: LineTool,
        driver: ToolDriver,
        lots: LotService,
        equipment: EquipmentService,
        *,
        user: str,
        dispatch_now: DispatchNow = _no_dispatch,
        observer: RunnerObserver | None = None,
        report: Callable[[str, ToolSnapshot, datetime], None] | None = None,
        outage: DatabaseOutage | None = None,
        feed: ToolFeed | None = None,
    ):
        self.tool = tool
        self.tool_id = tool.id
        self.steps: frozenset[str] = frozenset(tool.steps or ())
        self._driver = driver
        self._lots = lots
        self._equipment = equipment
        self._user = user
        self._spec = class_spec(tool.equipment_class)
        self._class = tool.equipment_class.value
        self._dispatch_now = dispatch_now
        """Called when this tool may take a lot; with ``lot_waits=True`` when a lot it ran
        waits again (at its next step, or given back)."""
        self._observer = observer or _NoObserver()
        self._submit = report or (lambda *_: None)
        self._outage = outage or DatabaseOutage()
        """Told when the database is unavailable (it logs that on the edges, once for the
        whole controller)."""
        self._feed = feed or NoFeed()
        """Live tool data (Sparkplug): each state, recipe and measured values as observed."""
        self._status: ToolStatus | None = None
        self._last_seen: ToolStatus | None = None
        """The last status the tool reported, kept while it does not answer."""
        self._connected = False
        self._epoch = 0
        self._changed = asyncio.Event()
        self.first_contact = asyncio.Event()
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self._views: dict[str, StepView] = {}
        """Step views read when lots were tracked in, for their first run here."""
        self._current: str | None = None
        self._reported: ToolSnapshot | None = None
        self._reported_at = 0.0
        self._in_flight: set[asyncio.Task[Any]] = set()
        self._acknowledging: asyncio.Task[None] | None = None
        self._acknowledged_under: ToolStatus | None = None
        """The status last heard when the last acknowledge succeeded: results it shows are
        gone from the tool (no need to read it again to know)."""
        self._step_over = False
        """The current lot's step is tracked out; its last results are being acknowledged."""
        self._finishing: Lot | None = None
        """The current lot, while the results of its step's last job are being recorded."""
        self._progress: tuple[str, int, int] | None = None
        """The last job progress the tool reported: (job id, sites done, sites total)."""
        self.quarantine = Quarantine(self.tool_id, lots, equipment, user=user)
        self.stopping = False

    def _report(
        self, *, reason: str | None = None, force: bool = False, status: ToolStatus | None = None
    ) -> None:
        """Tell equipment tracking what the tool does (written in the background, stamped
        with now): at once when its state, mode, alarm, job or connection changes; progress
        alone at most once a second. ``status``: what the tool is known to do, when that is
        not what it last reported (:meth:`_job_taken`)."""
        snap = translate.snapshot(
            status or self._status or self._last_seen,
            connected=self._connected,
            lot_id=self._current,
            reason=reason,
        )
        last = self._reported
        now = time.monotonic()
        if last is not None and not force:
            same = (
                last.connected == snap.connected
                and last.e10 == snap.e10
                and last.process_state == snap.process_state
                and last.mode == snap.mode
                and last.alarm == snap.alarm
                and last.job_id == snap.job_id
                and last.lot_id == snap.lot_id
            )
            if same and (
                snap.sites_done == last.sites_done or now - self._reported_at < PROGRESS_REPORT_S
            ):
                return
        at = utc_now()
        self._submit(self.tool_id, snap, at)
        self._feed.tool_seen(self.tool_id, snap, at)
        self._reported, self._reported_at = snap, now

    def _job_taken(self, job_id: str, sites: int) -> None:
        """The tool answered START_JOB with OK: it executes the job from now on. Reported at
        once, so that E10 productive time counts from the job's start, also for a job that
        completes before the next poll or publish would have shown it executing (none of it
        would count). What the tool reports next (EXECUTING, COMPLETE) follows as usual."""
        seen = self._status
        if seen is None or not self._connected or seen.job_id == job_id:
            return  # not answering, or already seen with this job (running or done)
        self._report(
            status=replace(
                seen,
                state=ProcessState.EXECUTING,
                job_id=job_id,
                sites_done=0,
                sites_total=sites,
                alarm=None,
                results_waiting=False,
            )
        )

    async def _wait_for(self, condition: Callable[[], bool], within_s: float | None) -> bool:
        """Wait until ``condition()`` holds after a tool event, at most ``within_s``."""
        loop = asyncio.get_running_loop()
        deadline = None if within_s is None else loop.time() + within_s
        while not condition():
            self._changed.clear()
            if condition():
                break
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return False
            try:
                async with asyncio.timeout(remaining):  # see LineController._dispatch_loop
                    await self._changed.wait()
            except TimeoutError:
                return condition()
        return True

    async def _wait_connected(self) -> None:
        await self._wait_for(lambda: self._connected and self._status is not None, None)

    async def _read_until(
        self, states: frozenset[ProcessState], within_s: float
    ) -> tuple[ToolStatus, RecipeInfo | None]:
        """Read the tool's status and active recipe directly (no stale event; one request
        where the protocol can) until it is in one of ``states``: again after each new status
        event, and at the latest after a pause that starts at ``READ_PAUSE_FIRST_S`` and
        doubles up to ``READ_PAUSE_MAX_S``. A change the tool makes at once (a recipe a server
        shows a moment after the call) is seen at once; a long setup is not read in a tight
        loop."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        pause = READ_PAUSE_FIRST_S
        while True:
            before = self._status
            status, recipe = await self._driver.status_and_recipe()
            if status.state in states:
                return status, recipe
            if loop.time() >= deadline:
                raise StepGivenUp(
                    f"tool {self.tool_id} stayed {status.state.name} for {within_s:.0f} s "
                    f"(waiting for {', '.join(s.name for s in states)})"
                )

            def changed(before: ToolStatus | None = before) -> bool:
                return self._status is not before

            await self._wait_for(changed, min(pause, max(0.0, deadline - loop.time())))
            pause = min(2 * pause, READ_PAUSE_MAX_S)

    async def _read_results(
        self, expected: ExpectedResults, flow: Flow, first: JobResults | None = None
    ) -> CheckedResults:
        return await edge.read_results(self._driver, expected, flow, self._spec, first)

    async def _rejected_before(self, lot: Lot) -> list[SiteReject]:
        """Sites rejected before this step (the map the tool was given)."""
        return await self._lots.rejected_sites(lot.id)

    async def _acknowledge(self, job_id: str) -> None:
        await self._driver.acknowledge_results(job_id)
        self._acknowledged_under = self._status

    def _background(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.get_running_loop().create_task(work)
        self._in_flight.add(task)
        task.add_done_callback(self._background_done)
        return task

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        """Its failure is raised to whoever awaits it (:meth:`_acknowledged`); one nobody
        awaits any more (the runner was stopped meanwhile) is logged here, not left to
        asyncio's "exception was never retrieved"."""
        self._in_flight.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.debug("background tool request failed", error=str(exc))

    async def _shielded(self, work: Coroutine[Any, Any, T]) -> T:
        return await asyncio.shield(self._background(work))

    async def _acknowledged(self) -> None:
        """The last acknowledge has reached the tool (its errors are raised here)."""
        task, self._acknowledging = self._acknowledging, None
        if task is not None:
            await asyncio.shield(task)

    def _partial(
        self, job_id: str, carrier_id: str | None, incoming: SiteMap | None
    ) -> dict[str, Any]:
        return edge.partial_work(job_id, carrier_id, incoming, self._progress, self._status)

    async def _hold(
        self, lot: Lot, reason: str, source: HoldSource, data: dict[str, Any] | None = None
    ) -> None:
        reason = printable(reason)  # it may carry a tool's own text (an alarm's)
        log.warning("holding lot", lot=lot.id, reason=reason)
        try:
            await self._lots.hold(cmd.HoldLot(lot.id, self._user, reason, source, data))
        except LotTrackerError as exc:
            log.info("lot not held: it moved meanwhile", lot=lot.id, reason=exc.message)

    async def _give_back(self, lot: Lot, reason: str) -> None:
        """Abort the step: the lot waits at the same step again, with the reason recorded."""
        log.warning("giving the lot back", lot=lot.id, reason=reason)
        try:
            await self._lots.abort(cmd.AbortStep(lot.id, self._user, reason))
        except LotTrackerError as exc:
            log.info("lot not given back: it moved meanwhile", lot=lot.id, reason=exc.message)


def alarm_text(status: ToolStatus | None) -> str:
    if status is None or status.alarm is None:
        return "no alarm details"
    a = status.alarm
    return f"alarm {a.code} ({a.severity.name.lower()}): {a.text}"
