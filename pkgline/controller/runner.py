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
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

from drivers.errors import DriverError, ToolUnreachable
from drivers.interface import ConnectionLost, ConnectionRestored, StatusChanged, ToolEvent
from drivers.model import Mode, ProcessState, ToolStatus
from mes.adapters.driver import DatabaseUnavailable
from mes.domain.errors import LotTrackerError
from mes.domain.model import Lot
from mes.service import StepView
from pkgline.controller.quarantine import Quarantined
from pkgline.controller.runner_base import (
    LOT_CHECK_S,
    PROGRESS_REPORT_S,
    READ_PAUSE_FIRST_S,
    READ_PAUSE_MAX_S,
    RETRY_S,
    SETUP_TIMEOUT_S,
    DispatchNow,
    JobEnd,
    RunnerObserver,
    StepGivenUp,
)
from pkgline.controller.runner_steps import StepRunner

__all__ = [
    "LOT_CHECK_S",
    "PROGRESS_REPORT_S",
    "READ_PAUSE_FIRST_S",
    "READ_PAUSE_MAX_S",
    "RETRY_S",
    "SETUP_TIMEOUT_S",
    "DispatchNow",
    "JobEnd",
    "RunnerObserver",
    "StepGivenUp",
    "ToolRunner",
]

log = structlog.get_logger("pkgline.controller")


class ToolRunner(StepRunner):
    """Follows one tool and runs the lots tracked in on it: what the line controller sees of
    it, and the two tasks that run it (following its events; working its lots)."""

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
        lots waits for the tool to be brought back first). It never ends the line. A database
        that cannot be used now quarantines nothing: the part starts again (:meth:`_unforeseen`)."""
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

    async def _unforeseen(self, exc: Exception, what: str) -> None:
        """Quarantine the tool for ``exc``, which the runner did not foresee while ``what``.
        Not for a database that cannot be used now, wherever it is met: that is no fault of
        the tool but an outage (logged on its edges), and what waits for the database stays
        on the tool until it is back (found by the probe: a refused connection quarantined a
        tool whose results were being settled)."""
        if isinstance(exc, DatabaseUnavailable):
            self._outage.failed("tool results", exc)
            return
        log.error("unexpected error in the tool's runner", stage=what, exc_info=exc)
        await self.quarantine.enter(
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
