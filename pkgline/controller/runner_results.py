"""The results left on a tool (:class:`ResultsOnTool`): after a controller restart, a lost
connection or a failed acknowledge, results waiting on the tool are recorded if they are not
yet (a job the tool ran before the controller wrote it down is adopted), then acknowledged;
results that do not fit quarantine the tool. And the record of a completed job's results.
"""

from __future__ import annotations

import structlog

from drivers.model import JobResults, SiteMap
from mes.domain import commands as cmd
from mes.domain.errors import LotTrackerError
from mes.domain.model import Carrier, JobRecord, JobStatus, Lot, LotState
from mes.service import JobOutcome, utc_now
from pkgline.controller import edge, translate
from pkgline.controller.quarantine import Quarantined
from pkgline.controller.runner_base import RunnerBase
from pkgline.controller.translate import CheckedResults, ExpectedResults, ResultsRefused

log = structlog.get_logger("pkgline.controller")


class ResultsOnTool(RunnerBase):
    """Settles the results a tool holds, and records a job's results."""

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
        elif job.status in (JobStatus.STARTED, JobStatus.ABANDONED):
            # abandoned: a hold or an abort took the lot off the tool while it ran the job,
            # and the tool completed it all the same: the carrier was processed, its results
            # are recorded (refused only when the lot has moved on since)
            lot = await self._lots.get(job.lot_id)
            carriers = {c.id: c for c in await self._lots.carriers(lot.id)}
            if job.carrier_id not in carriers:  # split off the held lot since
                log.warning(
                    "results of a job abandoned by a hold, for a carrier split off its lot "
                    "since: acknowledged without recording",
                    job_id=job.job_id,
                    lot=lot.id,
                    carrier=job.carrier_id,
                )
                await self._driver.acknowledge_results(results.job_id)
                return
            carrier = carriers[job.carrier_id]
            incoming = translate.incoming_site_map(carrier, await self._rejected_before(lot))
            expected = ExpectedResults(job.job_id, lot.id, job.step, carrier, incoming)
            try:
                checked = await self._read_results(expected, self._lots.flow_of(lot), results)
            except ResultsRefused as exc:
                if await self._released(results, exc):
                    return
                raise await self._refuse(exc, lot.id, job.job_id, carrier.id) from None
            log.info(
                "recording results found on the tool",
                job_id=job.job_id,
                lot=lot.id,
                job_status=job.status.value,
            )
            try:
                await self._record(lot, carrier, job.job_id, checked)
                return
            except LotTrackerError as exc:
                if job.status is not JobStatus.ABANDONED:
                    raise
                log.warning(
                    "results of a job abandoned by a hold or an abort, for a lot that has "
                    "moved on since: acknowledged without recording",
                    job_id=job.job_id,
                    lot=lot.id,
                    carrier=carrier.id,
                    measured=checked.measured,
                    rejects=len(checked.rejects),
                    reason=exc.message,
                )
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
