"""One step of one lot on a tool (:class:`StepRunner`): make the step's recipe active and
verify it, then for each carrier not done at the step start the job on the tool, write it
down, wait for its end and record its results; an alarm, an abort, a job the tool lost or a
lot taken off the tool while its job runs end the step as the module
:mod:`pkgline.controller.runner` says.
"""

from __future__ import annotations

import contextlib

import structlog

from drivers.errors import CommandRefused, DriverError, RecipeMismatch
from drivers.model import Job, ProcessState, Recipe, SiteMap
from mes.adapters.driver import DatabaseUnavailable
from mes.domain import commands as cmd
from mes.domain.equipment import DispatchMode
from mes.domain.errors import LotTrackerError
from mes.domain.interlocks import check_tool_class
from mes.domain.model import Carrier, HoldSource, JobStatus, Lot, LotState
from mes.service import utc_now
from pkgline.controller import translate
from pkgline.controller.runner_base import (
    LOT_CHECK_S,
    SETUP_TIMEOUT_S,
    JobEnd,
    StepGivenUp,
    alarm_text,
)
from pkgline.controller.runner_results import ResultsOnTool

log = structlog.get_logger("pkgline.controller")


class StepRunner(ResultsOnTool):
    """Runs the step a lot is tracked in at on the tool."""

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
        if running.by_hand:  # the operator's, on the tool in manual: tracked out by them
            log.info("lot tracked in by hand left to its operator", user=running.user)
            return
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
            except CommandRefused as exc:  # held, not given back: it would come straight back
                await self._hold(
                    lot,
                    f"tool {self.tool_id} refused job {job_id} (carrier {carrier.id}): "
                    f"{exc.message}; check the carrier and the tool, then release the lot",
                    HoldSource.CONTROLLER,
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
                f"alarm on {self.tool_id} during job {job_id}: {alarm_text(self._status)}",
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
            # held, not given back: the same recipe would be sent again at once, and refused
            # again, as fast as the controller can dispatch (found by the probe)
            await self._hold(
                lot,
                f"tool {self.tool_id} refused recipe {recipe.name}: {exc.message}; check the "
                "lot's recipe values against the tool's, then release the lot",
                HoldSource.CONTROLLER,
            )
            raise StepGivenUp("recipe refused") from exc
        log.info("recipe loaded", recipe=recipe.name, version=recipe.version)
        status, active = await self._read_until(
            frozenset({ProcessState.READY, ProcessState.ALARM}), SETUP_TIMEOUT_S
        )
        if status.state is ProcessState.ALARM:
            await self._hold(
                lot,
                f"alarm on {self.tool_id} during recipe setup: {alarm_text(status)}",
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
                f"alarm on {self.tool_id} during job {job_id} (carrier {carrier.id}): {alarm_text(self._status)}",
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
