"""The line controller's jobs on a lot (:class:`LotJobs`): one carrier of a running step
processed by a tool, started and recorded; the last carrier's record tracks the step out,
and a job a hold or an abort abandoned that the tool completed is recorded late."""

from __future__ import annotations

from flows import Flow
from mes.domain import common
from mes.domain import jobs as job_rules
from mes.domain.authority import Action, Principal
from mes.domain.commands import (
    RecordJob,
    StartJob,
)
from mes.domain.errors import (
    InvalidInput,
)
from mes.domain.model import (
    Change,
    JobStatus,
    Lot,
    Operation,
)
from mes.durables import count_job
from mes.ports import (
    Work,
    get_history,
    get_job,
    get_job_with_lot,
    get_jobs_of,
    get_rejects_by_site,
    nothing,
    save,
    together,
)
from mes.service_core import (
    JobOutcome,
    Outcome,
)
from mes.service_writes import LotWrites
from mes.spc import spc_on_track_out


class LotJobs(LotWrites):
    """Start and record the jobs of a lot's running step (:mod:`mes.domain.jobs`)."""

    async def start_job(self, cmd: StartJob, *, by: Principal | None = None) -> Outcome:
        """Record that a tool is about to process one carrier of the lot's running step."""

        def rule(lot: Lot, _: Flow) -> Work[Change]:
            jobs, taken = yield from together(  # one round trip
                get_jobs_of(lot.id, len(lot.path), step=lot.running.step)
                if lot.running
                else nothing([]),
                get_job(cmd.job_id),
            )
            if taken is not None:
                raise InvalidInput(f"job id {cmd.job_id} is taken", lot_id=lot.id)
            return job_rules.start_job(lot, cmd, jobs, self._clock())

        return await self._on_lot(cmd.lot_id, rule, action=Action.JOB, by=by)

    async def record_job(self, cmd: RecordJob, *, by: Principal | None = None) -> JobOutcome:
        """Record a tool's results for one carrier; the last carrier tracks the lot out.

        Idempotent: results recorded before (a controller that failed before it could tell the
        tool) are not recorded again, and the outcome says so."""

        def work() -> Work[JobOutcome]:
            self._guard.check(by, Action.JOB)
            found = yield from get_job_with_lot(cmd.job_id)
            if found is None:
                raise InvalidInput(f"there is no job {cmd.job_id}")
            job, lot = found
            if job.status is JobStatus.RECORDED:
                return JobOutcome(lot, job, (), already_recorded=True)
            jobs, rejected = yield from together(  # one round trip
                get_jobs_of(lot.id, job.path_index, step=job.step), get_rejects_by_site(lot.id)
            )
            done = [j for j in jobs if j.status is JobStatus.RECORDED]
            history = (yield from get_history(lot.id)) if job_rules.needs_history(lot, job) else []
            change = job_rules.record_job(
                lot, self.flow_of(lot), job, cmd, done, rejected, self._clock(), history
            )
            if change.entries[-1].operation is Operation.TRACK_OUT:  # the last carrier
                change = yield from spc_on_track_out(lot, change, cmd.user, change.entries[-1].at)
            entries = yield from save(common.stamped(change, self._guard.who(by)))
            if job.status is JobStatus.STARTED:  # an abandoned job counted when abandoned
                yield from count_job(
                    lot, job, rejected, cmd.user, self._clock(), self._guard.who(by)
                )
            recorded = next(j for j, _ in change.jobs if j.job_id == cmd.job_id)
            return JobOutcome(change.lot, recorded, entries)

        return await self._write(work, by)
