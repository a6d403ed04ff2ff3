"""One tool under the line controller: follow it, record its E10 states, and run the lots
tracked in on it, one carrier (job) at a time.

For each lot running on the tool: make the step's recipe active and verify it (a mismatch
gives the lot back, waiting, with the reason, and takes the tool out of dispatch); then for
each carrier not done at this step: start the job on the tool with the carrier's site map,
write it down as started, wait for it, record its results (the last carrier tracks the lot
out), and only then let the tool forget them. A failure anywhere loses nothing and records
nothing twice:

- a job the tool took but the controller did not write down: its results name the lot, step
  and carrier; it is adopted (written, then recorded) when that lot runs that step here;
- results recorded but not acknowledged: found on the tool again, seen recorded, acknowledged;
- results not recorded: found on the tool again, recorded, acknowledged;
- a job written as started (so the tool took it) that the tool no longer knows: it lost it;
  the lot is held, with the reason.

An alarm during a job holds the lot with the alarm in the reason, and the sites the tool
reported done before it; the tool is unscheduled down until someone resets it. A tool that
stops answering is marked down; its lot is held only if the tool comes back without the job.

Results that do not fit the job (:func:`translate.check_results`; read twice first, so that a
reading corrupted in transit is not taken for the tool's word) quarantine the tool
(:mod:`pkgline.controller.quarantine`): not acknowledged, the tool out of dispatch, the lot
held with what was received and expected. So does any exception the runner did not foresee,
logged with its traceback: it ends this tool's work, never the line controller.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from datetime import datetime
from typing import Any, Literal, Protocol, TypeVar

import structlog

from drivers.catalogue import class_spec
from drivers.errors import (
    CommandRefused,
    DriverError,
    RecipeMismatch,
    ToolUnreachable,
)
from drivers.interface import (
    ConnectionLost,
    ConnectionRestored,
    StatusChanged,
    ToolDriver,
    ToolEvent,
)
from drivers.model import (
    Job,
    JobResults,
    Mode,
    ProcessState,
    Recipe,
    RecipeInfo,
    SiteMap,
    ToolStatus,
)
from flows import Flow
from mes.adapters.driver import DatabaseUnavailable
from mes.domain import commands as cmd
from mes.domain.equipment import DispatchMode, ToolSnapshot
from mes.domain.errors import LotTrackerError
from mes.domain.interlocks import check_tool_class
from mes.domain.model import Carrier, HoldSource, JobRecord, JobStatus, Lot, LotState, SiteReject
from mes.equipment import EquipmentService
from mes.service import JobOutcome, LotService, StepView, utc_now
from pkgline.config import LineTool
from pkgline.controller import edge, translate
from pkgline.controller.feed import NoFeed, ToolFeed
from pkgline.controller.outage import DatabaseOutage
from pkgline.controller.quarantine import Quarantine, Quarantined
from pkgline.controller.translate import CheckedResults, ExpectedResults, ResultsRefused

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


class ToolRunner:
    """Follows one tool and runs the lots tracked in on it."""

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

    # -- what the line controller sees -------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def status(self) -> ToolStatus | None:
        return self._status

    @property
    def current_lot(self) -> str | None:
        return self._current

    @property
    def finishing(self) -> Lot | None:
        """The lot whose step's last job the tool has completed, while its results are being
        recorded (the lot is still running here; the tool is offered for its next lot)."""
        return self._finishing

    def is_idle(self) -> bool:
        """Ready for a new lot: answering, in production, no alarm, nothing queued, and
        either not busy with nothing waiting, or only recording and acknowledging the results
        of the last job of a step (the next lot is tracked in meanwhile and started after)."""
        status = self._status
        if not (
            self._connected
            and status is not None
            and status.mode is Mode.PRODUCTION
            and status.alarm is None
            and not self._queued
            and not self.stopping
            and not self.quarantine.active
        ):
            return False
        if self._step_over or self._finishing is not None:
            return True
        return (
            status.state in (ProcessState.IDLE, ProcessState.READY)
            and not status.results_waiting
            and self._current is None
        )

    def is_working_on(self, lot_id: str) -> bool:
        return lot_id == self._current or lot_id in self._queued

    def assign(self, lot_id: str, view: StepView | None = None) -> None:
        """Run the step ``lot_id`` is tracked in at on this tool (the lot whose step is over
        here may be tracked in again, for its next step). ``view``: what running it takes,
        read when it was tracked in (else it is read when the step begins)."""
        if lot_id in self._queued or (lot_id == self._current and not self._step_over):
            return
        self._queued.add(lot_id)
        if view is not None:
            self._views[lot_id] = view
        self._queue.put_nowait(lot_id)

    async def close(self) -> None:
        """Close the tool's driver (its connection and supervision)."""
        await self._driver.close()

    async def in_flight(self) -> None:
        """Wait for results being recorded and acknowledged right now (on shutdown)."""
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)

    # -- running -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Follow the tool and run its lots until cancelled."""
        with structlog.contextvars.bound_contextvars(tool_id=self.tool_id):
            await self._driver.start()
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(
                    self._contained(self._follow, "following the tool"),
                    name=f"follow-{self.tool_id}",
                )
                tasks.create_task(
                    self._contained(self._work, "running lots"), name=f"work-{self.tool_id}"
                )

    async def _contained(self, part: Callable[[], Coroutine[Any, Any, None]], what: str) -> None:
        """Run ``part`` of the runner; an exception nobody foresaw is logged with its
        traceback and quarantines the tool, and the part starts again (the one that works
        lots waits for the tool to be brought back first). It never ends the line."""
        while True:
            try:
                await part()
                return
            except Exception as exc:
                try:
                    await self._unforeseen(exc, what)
                except Exception:  # the quarantine's own records failed: logged, go on
                    log.exception("cannot quarantine the tool", stage=what)
                await asyncio.sleep(RETRY_S)

    async def _unforeseen(self, exc: Exception, what: str) -> Quarantined:
        log.error("unexpected error in the tool's runner", stage=what, exc_info=exc)
        return await self.quarantine.enter(
            f"controller error while {what} on {self.tool_id}: {type(exc).__name__}: {exc} "
            "(see the controller's log)"
        )

    async def _follow(self) -> None:
        async for event in self._driver.events():
            try:
                self._on_event(event)
            except Exception as exc:  # the event is taken; what it would report is not
                await self._unforeseen(exc, "following the tool")
            self._changed.set()
            if self.is_idle():
                self._dispatch_now()

    def _on_event(self, event: ToolEvent) -> None:
        if isinstance(event, ConnectionLost):
            self._connected = False
            self._status = None
            self.first_contact.set()
            self._report(reason=event.reason, force=True)
        elif isinstance(event, ConnectionRestored):
            self._connected = True
            self._epoch += 1
        elif isinstance(event, StatusChanged):
            self._connected = True
            self._status = self._last_seen = status = event.status
            if status.job_id is not None and status.state is ProcessState.EXECUTING:
                self._progress = (status.job_id, status.sites_done, status.sites_total)
            self.first_contact.set()
            self._report()

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

    async def _work(self) -> None:
        await self.first_contact.wait()
        await self.quarantine.resume()
        while True:
            if self.quarantine.active:
                self._report(force=True)
                await self.quarantine.wait_release()
                self._acknowledged_under = None  # read what the tool holds again
            try:
                await self._settle()
            except Quarantined:
                continue
            except DatabaseUnavailable as exc:  # the results stay on the tool until recorded
                self._outage.failed("tool results", exc)
                await self._wait_connected()
                await asyncio.sleep(RETRY_S)
                continue
            except DriverError as exc:
                log.warning("cannot settle the tool's results yet", error=str(exc))
                await self._wait_connected()
                await asyncio.sleep(RETRY_S)
                continue
            except Exception as exc:
                await self._unforeseen(exc, "settling the results left on the tool")
                continue
            lot_id = await self._queue.get()
            self._queued.discard(lot_id)
            self._current = lot_id
            retry = False
            try:
                with structlog.contextvars.bound_contextvars(lot_id=lot_id):
                    await self._run_step(lot_id)
            except StepGivenUp as exc:
                log.info("step given up", reason=str(exc))
            except DatabaseUnavailable as exc:
                self._outage.failed("tool results", exc)  # followed again when it is back
                retry = True
            except ToolUnreachable as exc:
                log.warning(
                    "step interrupted; will go on when possible", lot_id=lot_id, error=str(exc)
                )
                retry = True
            except DriverError as exc:
                log.warning("step interrupted by the tool", lot_id=lot_id, error=str(exc))
                retry = True
            except LotTrackerError as exc:
                log.info("lot moved by someone else", lot_id=lot_id, reason=exc.message)
            except Quarantined:
                pass  # logged and recorded; the tool waits for an operator
            except Exception as exc:
                await self._unforeseen(exc, f"running lot {lot_id}")
            finally:
                self._current = None
            try:
                await self._acknowledged()
            except DriverError as exc:  # found on the tool again and acknowledged later
                log.warning("results not acknowledged yet", error=str(exc))
            except Exception as exc:
                await self._unforeseen(exc, "acknowledging results")
            if not (self._step_over and self._queued):
                # Nothing queued: read the tool now, so it is seen idle at once. A lot queued
                # reads the tool's state before its recipe anyway.
                await self._refresh_status()
            was_over, self._step_over = self._step_over, False
            if not retry and not was_over:
                # this tool's next lot, and the lot it ran if it waits again (given back), are
                # dispatched while the report is written. A step tracked out asked for both
                # already: at its last job's completion and at its track-out (_run_step).
                self._dispatch_now(lot_waits=True)
            self._report(force=True)
            if retry:
                await self._wait_connected()
                await asyncio.sleep(RETRY_S)
                self.assign(lot_id)

    async def _refresh_status(self) -> None:
        """After a step, the status last heard may predate the acknowledge (results still
        waiting until the next poll or publish, up to ``poll_interval_s`` later): read it now,
        so that a tool that is idle asks for its next lot at once."""
        status = self._status
        if not self._connected or status is None or not status.results_waiting:
            return
        try:
            fresh = await self._driver.status()
        except DriverError:
            return  # the supervision reports it
        if self._status is status:  # no newer event meanwhile
            self._status = self._last_seen = fresh
            self._changed.set()

    # -- waiting on the tool -----------------------------------------------------------------

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

    # -- results left on the tool ------------------------------------------------------------

    async def _settle(self, *, reread: bool = False) -> None:
        """Results waiting on the tool (after a controller restart, a lost connection or a
        failed acknowledge): record them if they are not recorded yet, then acknowledge.
        Results that do not fit quarantine the tool (:class:`Quarantined`), once they have
        been read a second time (``reread``: this is the second time)."""
        await self._acknowledged()
        status = self._status
        if (
            not self._connected
            or status is None
            or not status.results_waiting
            or status is self._acknowledged_under
        ):
            return
        results = await self._driver.results()
        if results is None:
            return
        try:
            job = await self._lots.job(results.job_id) or await self._adopt(results)
        except ResultsRefused as exc:  # names a job and a lot the lot tracker does not know
            if await self._released(results, exc):
                return
            if reread:
                raise await self._refuse(exc, await self._lot_here(), results.job_id) from None
            log.info("results do not fit: reading them again", problem=str(exc))
            await self._settle(reread=True)
            return
        if job is None:
            log.warning(
                "results of a job pkgline did not start, for no lot running here: "
                "acknowledged without recording",
                job_id=results.job_id,
                lot=results.lot_id,
            )
        elif job.status is JobStatus.STARTED:
            lot = await self._lots.get(job.lot_id)
            carrier = next(c for c in await self._lots.carriers(lot.id) if c.id == job.carrier_id)
            incoming = translate.incoming_site_map(carrier, await self._rejected_before(lot))
            expected = ExpectedResults(job.job_id, lot.id, job.step, carrier, incoming)
            try:
                checked = await self._read_results(expected, self._lots.flow_of(lot), results)
            except ResultsRefused as exc:
                if await self._released(results, exc):
                    return
                raise await self._refuse(exc, lot.id, job.job_id, carrier.id) from None
            log.info("recording results found on the tool", job_id=job.job_id, lot=lot.id)
            await self._record(lot, carrier, job.job_id, checked)
            return
        else:
            log.info(
                "results already recorded: acknowledging",
                job_id=job.job_id,
                status=job.status.value,
            )
        await self._driver.acknowledge_results(results.job_id)

    async def _adopt(self, results: JobResults) -> JobRecord | None:
        """A job the tool ran that the database does not know: the controller died between
        starting it on the tool and writing it down. The tool's results name the lot, step and
        carrier; if that lot runs that step here and the carrier is not done, the job is
        written now, and its results are then recorded as usual."""
        try:
            lot = await self._lots.get(results.lot_id)
        except LotTrackerError:
            raise ResultsRefused(
                "job and lot",
                f"job {results.job_id}, lot {results.lot_id}",
                "a job or a lot the lot tracker knows",
            ) from None
        if results.step not in self._lots.flow_of(lot).steps:
            raise ResultsRefused("step", results.step, f"a step of flow {lot.flow}")
        if (
            lot.state is not LotState.RUNNING
            or lot.running is None
            or lot.running.tool != self.tool_id
            or lot.running.step != results.step
        ):
            return None
        try:
            await self._lots.start_job(
                cmd.StartJob(lot.id, results.job_id, self.tool_id, results.carrier_id, self._user)
            )
        except LotTrackerError as exc:
            log.warning(
                "job found on the tool not adopted", job_id=results.job_id, reason=exc.message
            )
            return None
        log.info(
            "adopted a job the tool ran before it was written", job_id=results.job_id, lot=lot.id
        )
        return await self._lots.job(results.job_id)

    async def _lot_here(self) -> str | None:
        """The lot running on this tool by the lot tracker's record (for a hold when the
        tool's results name none the lot tracker knows)."""
        here = [h.id for h in await self._lots.heads([LotState.RUNNING]) if h.tool == self.tool_id]
        return here[0] if len(here) == 1 else None

    async def _read_results(
        self, expected: ExpectedResults, flow: Flow, first: JobResults | None = None
    ) -> CheckedResults:
        return await edge.read_results(self._driver, expected, flow, self._spec, first)

    async def _released(self, results: JobResults, refused: ResultsRefused) -> bool:
        """An operator brought the tool back from the quarantine these results caused: they
        are acknowledged without being recorded (what they said is in the quarantine's
        record)."""
        if not self.quarantine.released:
            return False
        log.warning(
            "acknowledging results released from quarantine, without recording them",
            job_id=results.job_id,
            problem=str(refused),
        )
        await self._driver.acknowledge_results(results.job_id)
        self.quarantine.released = False
        return True

    async def _refuse(
        self,
        refused: ResultsRefused,
        lot_id: str | None,
        job_id: str,
        carrier_id: str | None = None,
    ) -> Quarantined:
        """Quarantine the tool for results that do not fit: they stay on the tool."""
        reason, data = edge.refusal(self.tool_id, job_id, carrier_id, refused)
        return await self.quarantine.enter(reason, lot_id=lot_id, data=data)

    async def _rejected_before(self, lot: Lot) -> list[SiteReject]:
        """Sites rejected before this step (the map the tool was given)."""
        return await self._lots.rejected_sites(lot.id)

    # -- one step of one lot -----------------------------------------------------------------

    async def _run_step(self, lot_id: str) -> None:
        given = self._views.pop(lot_id, None)
        await self._wait_connected()
        await self._settle()
        view = given or await self._lots.step_view(lot_id)
        lot = view.lot
        if (
            lot.state is not LotState.RUNNING
            or lot.running is None
            or lot.running.tool != self.tool_id
        ):
            return  # the results found on the tool finished the step
        running = lot.running
        flow = self._lots.flow_of(lot)
        jobs, carriers, rejected = view.jobs, view.carriers, view.rejected
        open_job = next((j for j in jobs if j.status is JobStatus.STARTED), None)
        status = self._status
        if (
            open_job is None
            and status is not None
            and status.job_id
            and status is not self._acknowledged_under
        ):
            # the tool runs a job the database does not know (written after the tool took it)
            if not await self._follow_unwritten(lot, status.job_id):
                return
            view = await self._lots.step_view(lot_id)
            lot, jobs, carriers, rejected = view.lot, view.jobs, view.carriers, view.rejected
            if lot.state is not LotState.RUNNING:
                return
        if open_job is not None:
            status = self._status
            if status is not None and status.job_id == open_job.job_id:
                carrier = next(c for c in carriers if c.id == open_job.carrier_id)
                log.info("following a job already running", job_id=open_job.job_id)
                after = await self._finish_job(
                    lot,
                    carrier,
                    translate.incoming_site_map(carrier, rejected),
                    open_job.job_id,
                    self._epoch,
                )
                if after is None:
                    return
                lot = after
                jobs = await self._lots.jobs_of_step(lot)
            else:
                await self._hold(
                    lot,
                    f"tool {self.tool_id} no longer knows job {open_job.job_id} (carrier "
                    f"{open_job.carrier_id} at {open_job.step}); its results are lost: check the carrier",
                    HoldSource.CONTROLLER,
                )
                return
        if lot.state is not LotState.RUNNING:
            return
        wrong = check_tool_class(
            running.step, flow.steps[running.step].equipment_class, self.tool_id, self._class
        )
        if wrong is not None:  # whatever the database says: the interlock's last line
            await self._give_back(lot, wrong)
            return
        recipe = translate.tool_recipe(
            flow, running.step, running.values, self._driver.recipe_parameters, lot.flow_version
        )
        await self._make_recipe_active(lot, recipe)
        self._feed.recipe_active(self.tool_id, recipe.info(), utc_now())
        done = {j.carrier_id for j in jobs if j.status is JobStatus.RECORDED}
        todo = [c for c in carriers if c.id not in done]
        for carrier in todo:
            if self.stopping:
                return
            incoming = translate.incoming_site_map(carrier, rejected)
            job_id = translate.new_job_id()
            await self._acknowledged()
            epoch = self._epoch
            self._observer.job_starting(self.tool_id, job_id)
            # The tool first, then the record: a job written as started is one the tool took,
            # and one the tool took but the controller could not write is adopted on recovery.
            try:
                await self._driver.start_job(
                    Job(job_id, lot.id, running.step, carrier.id, incoming)
                )
            except CommandRefused as exc:
                await self._give_back(
                    lot, f"tool {self.tool_id} refused job {job_id}: {exc.message}"
                )
                return
            self._job_taken(job_id, len(incoming.codes))
            try:
                await self._lots.start_job(
                    cmd.StartJob(lot.id, job_id, self.tool_id, carrier.id, self._user)
                )
            except LotTrackerError as exc:
                log.warning(
                    "lot moved while the tool took its job: aborting it", reason=exc.message
                )
                with contextlib.suppress(DriverError):
                    await self._driver.abort()
                    await self._driver.reset_alarm()
                return
            log.info("job started", job_id=job_id, carrier=carrier.id, step=running.step)
            after = await self._finish_job(
                lot, carrier, incoming, job_id, epoch, last=carrier is todo[-1]
            )
            if after is None:
                return
            if after.state is not LotState.RUNNING:
                # Tracked out. While its results are acknowledged, this tool's next lot can be
                # tracked in, and this lot's next step started elsewhere.
                self._step_over = True
                self._dispatch_now(lot_waits=True)
                return
            lot = after

    async def _follow_unwritten(self, lot: Lot, job_id: str) -> bool:
        """Wait for a job the tool took before the controller could write it down, then adopt
        and record it (:meth:`_settle`). False when the step cannot go on."""
        if await self._lots.job(job_id) is not None:
            return True  # written after all (another controller's, or recorded since)
        log.info("following a job the tool took before it was written", job_id=job_id)
        end = await self._await_job(lot, job_id, self._epoch)
        if end == "complete":
            await self._settle()
            return True
        if end == "alarm":
            await self._hold(
                lot,
                f"alarm on {self.tool_id} during job {job_id}: {_alarm_text(self._status)}",
                HoldSource.ALARM,
                self._partial(job_id, None, None),
            )
        elif end == "aborted":
            await self._give_back(lot, f"job {job_id} was aborted at tool {self.tool_id}")
            with contextlib.suppress(DriverError):
                await self._driver.reset_alarm()
        return False

    async def _make_recipe_active(self, lot: Lot, recipe: Recipe) -> None:
        await self._acknowledged()
        ready = frozenset({ProcessState.READY, ProcessState.IDLE})
        wanted = recipe.info()
        status, active = await self._read_until(ready | {ProcessState.ALARM}, SETUP_TIMEOUT_S)
        if status.state is ProcessState.ALARM:
            raise StepGivenUp(f"tool {self.tool_id} is in alarm")
        if status.state is ProcessState.READY and active == wanted:
            return  # the tool reported this recipe, checksum included: verified as read
        # IDLE, or READY with another recipe: load this one
        try:
            await self._driver.load_recipe(recipe)
        except CommandRefused as exc:
            await self._give_back(
                lot, f"tool {self.tool_id} refused recipe {recipe.name}: {exc.message}"
            )
            raise StepGivenUp("recipe refused") from exc
        log.info("recipe loaded", recipe=recipe.name, version=recipe.version)
        status, active = await self._read_until(
            frozenset({ProcessState.READY, ProcessState.ALARM}), SETUP_TIMEOUT_S
        )
        if status.state is ProcessState.ALARM:
            await self._hold(
                lot,
                f"alarm on {self.tool_id} during recipe setup: {_alarm_text(status)}",
                HoldSource.ALARM,
            )
            raise StepGivenUp("alarm during setup")
        if active != wanted:  # read with the READY after the load: the tool's own checksum
            mismatch = RecipeMismatch(expected=wanted, actual=active, tool_id=self.tool_id)
            reason = f"recipe check failed on {self.tool_id}: {mismatch.message}"
            # out of dispatch first, or the lot given back is sent straight back here
            await self._equipment.set_dispatch(
                self.tool_id, DispatchMode.MANUAL, self._user, reason
            )
            await self._give_back(lot, reason)
            raise StepGivenUp(reason)

    async def _finish_job(
        self,
        lot: Lot,
        carrier: Carrier,
        incoming: SiteMap,
        job_id: str,
        epoch: int,
        *,
        last: bool = False,
    ) -> Lot | None:
        """Wait for the job and record it: the lot as the record left it (no need to read it
        again), or None when the step cannot go on. The ``last`` job of the step: once the
        tool has completed it, the tool is offered for its next lot while the results are
        recorded (:attr:`finishing`)."""
        end = await self._await_job(lot, job_id, epoch)
        if end == "complete":
            self._observer.job_done_seen(self.tool_id, job_id)
            if last:
                self._finishing = lot
                self._dispatch_now()
            try:
                return await self._record_completed(lot, carrier, incoming, job_id)
            finally:
                self._finishing = None
        if end == "alarm":
            await self._hold(
                lot,
                f"alarm on {self.tool_id} during job {job_id} (carrier {carrier.id}): {_alarm_text(self._status)}",
                HoldSource.ALARM,
                self._partial(job_id, carrier.id, incoming),
            )
        elif end == "aborted":
            await self._give_back(lot, f"job {job_id} was aborted at tool {self.tool_id}")
            with contextlib.suppress(DriverError):
                await self._driver.reset_alarm()
        elif end == "lost":
            await self._hold(
                lot,
                f"tool {self.tool_id} came back without job {job_id} (carrier {carrier.id}): "
                "its results are lost; check the carrier",
                HoldSource.CONTROLLER,
                self._partial(job_id, carrier.id, incoming),
            )
        elif end == "withdrawn":
            log.info("lot taken off the tool while its job ran: aborting the job", job_id=job_id)
            with contextlib.suppress(DriverError):
                await self._driver.abort()
                await self._driver.reset_alarm()
        return None

    async def _record_completed(
        self, lot: Lot, carrier: Carrier, incoming: SiteMap, job_id: str
    ) -> Lot | None:
        """Read and record the results of a job the tool completed: the lot as the record
        left it, or None (held: the results are not the job's, or unusable)."""
        assert lot.running is not None
        expected = ExpectedResults(job_id, lot.id, lot.running.step, carrier, incoming)
        try:
            checked = await self._read_results(expected, self._lots.flow_of(lot))
        except ResultsRefused as exc:
            raise await self._refuse(exc, lot.id, job_id, carrier.id) from None
        outcome = await self._record(lot, carrier, job_id, checked)
        return outcome.lot

    def _job_end(self, job_id: str, epoch: int) -> JobEnd | None:
        status = self._status
        if not self._connected or status is None:
            return None
        if status.state is ProcessState.ALARM:
            return "alarm"
        if status.state is ProcessState.ABORTED:
            return "aborted"
        if status.results_waiting and status.job_id in (job_id, None):
            return "complete"
        if self._epoch > epoch and status.job_id != job_id:
            return "lost"
        return None

    async def _await_job(self, lot: Lot, job_id: str, epoch: int) -> JobEnd:
        while True:
            if await self._wait_for(lambda: self._job_end(job_id, epoch) is not None, LOT_CHECK_S):
                end = self._job_end(job_id, epoch)
                assert end is not None
                return end
            try:
                now = await self._lots.get(lot.id)
            except DatabaseUnavailable as exc:
                # Cannot check; the job goes on on the tool and is followed to its end
                # (recorded when the database is back), never given up for this.
                self._outage.failed("job check", exc)
                continue
            if (
                now.state is not LotState.RUNNING
                or now.running is None
                or now.running.tool != self.tool_id
            ):
                return "withdrawn"

    async def _record(
        self, lot: Lot, carrier: Carrier, job_id: str, checked: CheckedResults
    ) -> JobOutcome:
        """Record the results (checked), then acknowledge them on the tool. The acknowledge
        runs on while the next job is written to the database (different processes); it is
        awaited before the tool is asked for anything else. Both are shielded from shutdown."""
        measured, rejects, results = checked.measured, checked.rejects, checked.results
        self.quarantine.released = False
        await self._acknowledged()
        outcome = await self._shielded(
            self._lots.record_job(
                cmd.RecordJob(job_id, self._user, measured, rejects, translate.tool_data(results))
            )
        )
        self._feed.job_measured(self.tool_id, results, utc_now())
        log.info(
            "job recorded",
            job_id=job_id,
            carrier=carrier.id,
            rejects=len(rejects),
            lot_state=outcome.lot.state.value,
            again=outcome.already_recorded,
        )
        self._acknowledging = self._background(self._acknowledge(job_id))
        return outcome

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

    # -- giving a lot back -------------------------------------------------------------------

    def _partial(
        self, job_id: str, carrier_id: str | None, incoming: SiteMap | None
    ) -> dict[str, Any]:
        return edge.partial_work(job_id, carrier_id, incoming, self._progress, self._status)

    async def _hold(
        self, lot: Lot, reason: str, source: HoldSource, data: dict[str, Any] | None = None
    ) -> None:
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


def _alarm_text(status: ToolStatus | None) -> str:
    if status is None or status.alarm is None:
        return "no alarm details"
    a = status.alarm
    return f"alarm {a.code} ({a.severity.name.lower()}): {a.text}"
