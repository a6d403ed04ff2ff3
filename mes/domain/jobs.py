"""Jobs: one carrier of a lot's running step processed by a tool, recorded exactly once; the
last carrier's record tracks the lot out (line controller). Pure, no I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from flows import Flow, Value, ValueSpec, Violation
from mes.domain.commands import (
    RecordJob,
    StartJob,
)
from mes.domain.common import (
    coerce_values,
    context,
    history_entry,
    moved_lot,
    resolve_carrier,
    resolve_sites,
    single_change,
)
from mes.domain.errors import (
    InvalidInput,
    OperationNotAllowed,
)
from mes.domain.lifecycle import require
from mes.domain.model import (
    Change,
    HistoryEntry,
    JobRecord,
    JobStatus,
    Lot,
    LotState,
    Operation,
    RunningStep,
    SiteRef,
    SiteReject,
)
from mes.domain.steps import finish_step

# -- jobs: one carrier of the running step on its tool (line controller) --------------------


def _require_running_on(lot: Lot, tool: str) -> RunningStep:
    running = lot.running
    assert running is not None
    if running.tool != tool:
        raise OperationNotAllowed(
            f"lot {lot.id} runs {running.step} on tool {running.tool or '(none)'}, not on {tool}",
            lot_id=lot.id,
        )
    return running


def start_job(lot: Lot, cmd: StartJob, jobs: Sequence[JobRecord], now: datetime) -> Change:
    """Record that the tool is about to process one carrier of the running step.

    ``jobs`` are the jobs of the lot's carriers at this step occurrence. A carrier done already
    is refused, and so is a second open job."""
    require(lot.state, Operation.JOB_START, lot.id)
    running = _require_running_on(lot, cmd.tool)
    if running.by_hand:
        raise OperationNotAllowed(
            f"lot {lot.id} was tracked in at {running.step} on {cmd.tool} by hand "
            f"({running.user}): its operator tracks it out, no job of the tool's runs it",
            lot_id=lot.id,
        )
    carrier = resolve_carrier(lot, cmd.carrier)
    for job in jobs:
        if job.carrier_id == carrier and job.status is JobStatus.RECORDED:
            raise InvalidInput(
                f"carrier {carrier} of lot {lot.id} is done at {running.step} already (job {job.job_id})",
                lot_id=lot.id,
            )
        if job.status is JobStatus.STARTED:
            raise OperationNotAllowed(
                f"job {job.job_id} (carrier {job.carrier_id}) of lot {lot.id} is still open",
                lot_id=lot.id,
            )
    job = JobRecord(
        job_id=cmd.job_id,
        lot_id=lot.id,
        tool_id=cmd.tool,
        step=running.step,
        path_index=len(lot.path),
        carrier_id=carrier,
        status=JobStatus.STARTED,
        started_at=now,
    )
    after = moved_lot(lot, now)
    entry = history_entry(
        lot,
        Operation.JOB_START,
        cmd.user,
        now,
        after.state,
        step=running.step,
        tool=cmd.tool,
        data={"job": cmd.job_id, "carrier": carrier},
    )
    return single_change(lot, after, entry, jobs=((job, None),))


def _aggregate(
    specs: Mapping[str, ValueSpec], values: Sequence[Mapping[str, Value]]
) -> dict[str, Value]:
    """One value per name over the carriers, by the value's type: a whole number is a count
    (missing balls), so the lot's is the sum; a measurement is averaged; a word is the common
    word (or the words joined when carriers differ)."""
    out: dict[str, Value] = {}
    names = dict.fromkeys(name for v in values for name in v)
    for name in names:
        given = [v[name] for v in values if name in v]
        kind = specs[name].type if name in specs else "str"
        if kind == "int":
            out[name] = sum(int(x) for x in given if isinstance(x, int | float))
        elif kind == "float":
            out[name] = round(
                sum(float(x) for x in given if isinstance(x, int | float)) / len(given), 6
            )
        else:
            out[name] = "/".join(dict.fromkeys(str(x) for x in given))
    return out


def record_job(
    lot: Lot,
    flow: Flow,
    job: JobRecord,
    cmd: RecordJob,
    done: Sequence[JobRecord],
    rejected: Mapping[SiteRef, SiteReject],
    now: datetime,
    history: Sequence[HistoryEntry] = (),
) -> Change:
    """Record one carrier's results. The last carrier of the step also tracks the lot out, in
    the same change: measured values are checked carrier by carrier (any one outside a claimed
    limit holds the lot) and recorded as their mean; every carrier's rejects are recorded.

    ``done`` are the jobs recorded already at this step occurrence for the lot's carriers.

    A job that a hold or an abort abandoned while the tool ran it, and that the tool completed
    all the same, is recorded too, as long as the lot has not moved on (:func:`_late`): the
    carrier was processed, and its results (rejects, values, the durables' wear) are facts.
    ``history``: the lot's, for such a job only (:func:`tracked_in_values`)."""
    require(lot.state, Operation.JOB_RECORD, lot.id)
    late = lot.state is not LotState.RUNNING
    if late:
        running = _late(lot, job, cmd.user, history)
    else:
        running = _require_running_on(lot, job.tool_id)
        if job.status is JobStatus.ABANDONED:
            raise OperationNotAllowed(
                f"job {job.job_id} (carrier {job.carrier_id}) is abandoned: a hold or an abort "
                f"took lot {lot.id} off the tool while it ran, and the lot runs "
                f"{running.step} again since",
                lot_id=lot.id,
            )
        if job.status is not JobStatus.STARTED:
            raise OperationNotAllowed(f"job {job.job_id} is {job.status.value}", lot_id=lot.id)
    if (
        job.step != running.step
        or job.path_index != len(lot.path)
        or job.carrier_id not in lot.carriers
    ):
        raise OperationNotAllowed(
            f"job {job.job_id} ({job.step}, carrier {job.carrier_id}) is not part of the step "
            f"lot {lot.id} runs now ({running.step})",
            lot_id=lot.id,
        )
    spec = flow.steps[running.step]
    measured = coerce_values(
        spec.measured,
        cmd.measured,
        f"measured values of step {running.step}",
        lot.id,
        field="measured",
    )
    foreign = [
        g for g in cmd.rejects if resolve_carrier(lot, g.carrier, field="rejects") != job.carrier_id
    ]
    if foreign:
        raise InvalidInput(
            f"job {job.job_id} processed carrier {job.carrier_id}; rejects name other carriers",
            lot_id=lot.id,
            field="rejects",
        )
    taken = dict(rejected)
    for other in done:
        taken.update({r.site: r for r in other.rejects})
    rejects = resolve_sites(
        lot, cmd.rejects, taken, step=running.step, path_index=len(lot.path), field="rejects"
    )
    recorded = replace(
        job,
        status=JobStatus.RECORDED,
        recorded_at=now,
        measured=measured,
        rejects=rejects,
        tool_data=dict(cmd.tool_data),
    )
    finished = {j.carrier_id for j in done} | {job.carrier_id} >= set(lot.carriers)
    job_data = {
        "job": job.job_id,
        "carrier": job.carrier_id,
        "measured": measured,
        "rejects": [f"{r.carrier_id}:{r.row}:{r.col}:{r.code}" for r in rejects],
    }
    was = job.status
    reason = LATE_REASON.format(state=lot.state.value) if late else None
    if not finished:  # a late one: the lot must finish the step it ran (ops.unfinished)
        after = moved_lot(lot, now, pending_rework=running.step) if late else moved_lot(lot, now)
        entry = history_entry(
            lot,
            Operation.JOB_RECORD,
            cmd.user,
            now,
            after.state,
            step=running.step,
            tool=job.tool_id,
            reason=reason,
            data=job_data,
        )
        return single_change(lot, after, entry, jobs=((recorded, was),))
    jobs = [*done, recorded]
    ctx = context(lot, extra_recorded=running.values)
    violations: dict[str, Violation] = {}
    for j in jobs:
        for v in [
            *flow.check_track_out(running.step, j.measured, ctx),
            *flow.check_spec(running.step, j.measured),  # each carrier's, as measured
        ]:
            violations.setdefault(v.message, v)
    all_rejects = tuple(r for j in jobs for r in j.rejects)
    job_entry = history_entry(
        lot,
        Operation.JOB_RECORD,
        cmd.user,
        now,
        lot.state,
        step=running.step,
        tool=job.tool_id,
        reason=reason,
        data=job_data,
    )
    after, out_entry = finish_step(
        replace(lot, version=lot.version + 1, running=running),
        flow,
        _aggregate(spec.measured, [j.measured for j in jobs]),
        all_rejects,
        list(violations.values()),
        cmd.user,
        now,
        {"jobs": [j.job_id for j in jobs]},
        {j.carrier_id: j.measured for j in jobs},
    )
    if lot.hold is not None:  # tracked out late, the lot stays held as it was
        after = replace(after, state=LotState.HOLD, hold=lot.hold)
        out_entry = replace(out_entry, state_before=LotState.HOLD, state_after=LotState.HOLD)
    elif late:
        out_entry = replace(out_entry, state_before=lot.state)
    return Change(
        lots=(after,),
        expected_versions={lot.id: lot.version},
        entries=(job_entry, out_entry),
        rejects=all_rejects,
        jobs=((recorded, was),),
    )


LATE_REASON = (
    "the tool completed this job after the lot left it ({state}): its results are recorded, "
    "the carrier was processed"
)


def needs_history(lot: Lot, job: JobRecord) -> bool:
    """Whether :func:`record_job` needs the lot's history for this job: one a hold or an
    abort abandoned, whose step's values are in the track-in's entry."""
    return lot.state is not LotState.RUNNING and job.status is JobStatus.ABANDONED


def _late(lot: Lot, job: JobRecord, user: str, history: Sequence[HistoryEntry]) -> RunningStep:
    """The step a job abandoned by a hold or an abort ran (the lot no longer runs it), for
    the record of its results, with the values it was tracked in with; refused when the lot
    has moved on since."""
    stays = job.path_index == len(lot.path) and lot.pending_rework in (None, job.step)
    if job.status is not JobStatus.ABANDONED or not stays:
        moved = "" if stays else " and has moved on since"
        raise OperationNotAllowed(
            f"lot {lot.id} is {lot.state.value}{moved}: job {job.job_id} "
            f"({job.step}, carrier {job.carrier_id}) is {job.status.value}, not one its step "
            "left open",
            lot_id=lot.id,
        )
    tracked_in = next(
        (
            e
            for e in reversed(history)
            if e.operation is Operation.TRACK_IN and e.step == job.step and e.at <= job.started_at
        ),
        None,
    )
    if tracked_in is None:
        raise OperationNotAllowed(
            f"lot {lot.id} has no track-in at {job.step} before job {job.job_id}", lot_id=lot.id
        )
    return RunningStep(
        job.step, job.tool_id, dict(tracked_in.data.get("values") or {}), tracked_in.at, user
    )
