"""The lot tracker's rules: one pure function per operation.

Each takes the lot as it is (and whatever else the rule needs to see: its flow, its rejected
sites), the command and the time, and returns a :class:`~mes.domain.model.Change` describing
everything to write, or raises a :mod:`mes.domain.errors` refusal. Nothing here does I/O; the
service layer loads, calls and stores, in one transaction.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from flows import Flow, LotContext, Value, ValueSpec, Violation
from mes.domain.commands import (
    AbortStep,
    CompleteLot,
    GivenValue,
    HoldLot,
    MergeLots,
    RecordJob,
    ReleaseLot,
    ReworkLot,
    ScrapLot,
    ScrapSites,
    SiteRejectGiven,
    SplitLot,
    StartJob,
    StartLot,
    TrackIn,
    TrackOut,
)
from mes.domain.errors import (
    InvalidInput,
    LimitViolated,
    OperationNotAllowed,
    ReworkNotAllowed,
    SplitMergeNotAllowed,
    StepNotAllowed,
)
from mes.domain.lifecycle import INITIAL_STATE, require
from mes.domain.model import (
    LOT_ID_PATTERN,
    MAX_CARRIERS,
    MAX_SITE_COLS,
    MAX_SITE_ROWS,
    PRIORITY_RANGE,
    REJECT_CODE_PATTERN,
    SCRAP_STEP,
    Carrier,
    Change,
    HistoryEntry,
    Hold,
    HoldSource,
    JobRecord,
    JobStatus,
    Lot,
    LotState,
    Operation,
    RunningStep,
    SiteRef,
    SiteReject,
)

SINGULATION_STEP = "DICE"
"""At DICE the good sites become the lot's unit count (flows.md, "Strips, panels and sites")."""


# -- helpers ---------------------------------------------------------------------------------


def _entry(
    lot: Lot,
    operation: Operation,
    user: str,
    now: datetime,
    state_after: LotState,
    *,
    state_before: LotState | None = None,
    step: str | None = None,
    tool: str | None = None,
    reason: str | None = None,
    data: Mapping[str, Any] | None = None,
) -> HistoryEntry:
    return HistoryEntry(
        lot_id=lot.id,
        operation=operation,
        user=user,
        at=now,
        state_before=lot.state if state_before is None else state_before,
        state_after=state_after,
        step=step,
        tool=tool,
        reason=reason,
        data=dict(data or {}),
    )


def _single(before: Lot, after: Lot, entry: HistoryEntry, **extra: Any) -> Change:
    return Change(
        lots=(after,), expected_versions={before.id: before.version}, entries=(entry,), **extra
    )


def _moved(before: Lot, now: datetime, **changes: Any) -> Lot:
    return replace(before, updated_at=now, version=before.version + 1, **changes)


def _require_text(value: str | None, what: str, lot_id: str) -> str:
    if value is None or not value.strip():
        raise InvalidInput(f"{what} needs a reason (--reason TEXT)", lot_id=lot_id)
    return value.strip()


def check_lot_id(lot_id: str) -> None:
    if not LOT_ID_PATTERN.match(lot_id):
        raise InvalidInput(
            f"lot id {lot_id!r} is not valid: expected 1-32 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )


def context(lot: Lot, *, extra_recorded: Mapping[str, Value] | None = None) -> LotContext:
    recorded = dict(lot.recorded)
    if extra_recorded:
        recorded.update(extra_recorded)
    return LotContext(
        params=lot.params, site_rows=lot.site_rows, site_cols=lot.site_cols, recorded=recorded
    )


def position_of(lot: Lot, flow: Flow) -> tuple[frozenset[str], bool, int | None, int | None]:
    """(next steps, may the flow end here, current layer, layers) for a lot.

    A pending rework narrows the next steps to the reworked step."""
    pos = flow.position(lot.path, lot.params)
    if lot.pending_rework is not None:
        return frozenset({lot.pending_rework}), False, pos.layer, pos.layers
    return pos.next_steps, pos.complete, pos.layer, pos.layers


def next_steps(lot: Lot, flow: Flow) -> frozenset[str]:
    if lot.state is not LotState.WAITING:
        return frozenset()
    return position_of(lot, flow)[0]


def next_in_order(lot: Lot, flow: Flow) -> tuple[str, ...]:
    """The steps a waiting lot may take next, in the order its flow writes them (the first is
    the one an unattended line runs)."""
    if lot.state is not LotState.WAITING:
        return ()
    if lot.pending_rework is not None:
        return (lot.pending_rework,)
    return flow.position(lot.path, lot.params).in_flow_order


def coerce_values(
    specs: Mapping[str, ValueSpec], given: Mapping[str, GivenValue], what: str, lot_id: str
) -> dict[str, Value]:
    """Turn given values (text or typed) into values of the flow's types."""
    out: dict[str, Value] = {}
    for name, raw in given.items():
        spec = specs.get(name)
        if spec is None:
            expected = ", ".join(sorted(specs)) or "none"
            raise InvalidInput(
                f"{what} has no value named {name!r}; expected: {expected}",
                lot_id=lot_id,
                allowed=sorted(specs),
            )
        try:
            out[name] = _coerce(spec, raw)
        except ValueError as exc:
            raise InvalidInput(f"{what}: {exc}", lot_id=lot_id) from None
    return out


def _coerce(spec: ValueSpec, raw: GivenValue) -> Value:
    if isinstance(raw, str):
        return spec.parse(raw)
    if isinstance(raw, bool):
        raise ValueError(f"{spec.name}: expected a {spec.type}, got {raw!r}")
    if spec.type == "str":
        raise ValueError(f"{spec.name}: expected a word, got {raw!r}")
    if spec.type == "int":
        if float(raw) != int(raw):
            raise ValueError(f"{spec.name}: expected a whole number, got {raw!r}")
        return int(raw)
    value = float(raw)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{spec.name}: expected a finite number, got {raw!r}")
    return value


def _resolve_carrier(lot: Lot, given: str) -> str:
    if given in lot.carriers:
        return given
    if given.isdigit() and 1 <= int(given) <= len(lot.carriers):
        return lot.carriers[int(given) - 1]
    raise InvalidInput(
        f"carrier {given!r} is not in lot {lot.id}; its carriers are "
        f"{', '.join(lot.carriers)} (or their positions 1..{len(lot.carriers)})",
        lot_id=lot.id,
        allowed=lot.carriers,
    )


def resolve_sites(
    lot: Lot,
    given: Iterable[SiteRejectGiven],
    already: Mapping[SiteRef, SiteReject],
    *,
    step: str,
    path_index: int,
) -> tuple[SiteReject, ...]:
    """Check rejects given for ``lot`` and turn them into site rejects.

    Refused: an unknown carrier, a row/col outside the carrier, a malformed code, the same site
    twice, or a site rejected before (a rejected site stays rejected)."""
    out: list[SiteReject] = []
    seen: set[SiteRef] = set()
    for g in given:
        carrier = _resolve_carrier(lot, g.carrier)
        if not (1 <= g.row <= lot.site_rows and 1 <= g.col <= lot.site_cols):
            raise InvalidInput(
                f"site {carrier}:{g.row}:{g.col} is outside the carrier: rows are "
                f"1..{lot.site_rows}, columns 1..{lot.site_cols}",
                lot_id=lot.id,
            )
        if not REJECT_CODE_PATTERN.match(g.code):
            raise InvalidInput(
                f"reject code {g.code!r} is not valid: expected an upper-case word such as "
                "VOID or MISSING_BALL (A-Z, 0-9, _; at most 24)",
                lot_id=lot.id,
            )
        site = SiteRef(carrier, g.row, g.col)
        if site in seen:
            raise InvalidInput(f"site {site} is given twice", lot_id=lot.id)
        before = already.get(site)
        if before is not None:
            raise InvalidInput(
                f"site {site} was already rejected at {before.step} ({before.code}): "
                "a rejected site stays rejected",
                lot_id=lot.id,
            )
        seen.add(site)
        out.append(SiteReject(carrier, g.row, g.col, g.code, step, path_index))
    return tuple(out)


def _units(path: Sequence[str], good_sites: int) -> int | None:
    return good_sites if SINGULATION_STEP in path else None


def _violations_text(violations: Sequence[Any]) -> str:
    return "; ".join(v.message for v in violations)


# -- start -----------------------------------------------------------------------------------


def start_lot(cmd: StartLot, flow: Flow, now: datetime) -> Change:
    check_lot_id(cmd.lot_id)
    if not 1 <= cmd.carriers <= MAX_CARRIERS:
        raise InvalidInput(f"a lot has 1 to {MAX_CARRIERS} carriers, not {cmd.carriers}")
    if not (1 <= cmd.site_rows <= MAX_SITE_ROWS and 1 <= cmd.site_cols <= MAX_SITE_COLS):
        raise InvalidInput(
            f"a carrier has 1 to {MAX_SITE_ROWS} rows and 1 to {MAX_SITE_COLS} columns of "
            f"sites, not {cmd.site_rows} x {cmd.site_cols}"
        )
    if cmd.priority not in PRIORITY_RANGE:
        raise InvalidInput(
            f"priority is {PRIORITY_RANGE.start} (most urgent) to {PRIORITY_RANGE.stop - 1}, "
            f"not {cmd.priority}"
        )
    given = coerce_values(
        flow.lot_params, cmd.params, f"flow {flow.name} lot parameters", cmd.lot_id
    )
    params = {
        name: spec.default for name, spec in flow.lot_params.items() if spec.default is not None
    }
    params.update(given)
    carriers = tuple(f"{cmd.lot_id}-{n:02d}" for n in range(1, cmd.carriers + 1))
    total = cmd.carriers * cmd.site_rows * cmd.site_cols
    lot = Lot(
        id=cmd.lot_id,
        flow=flow.name,
        flow_version=flow.version,
        state=INITIAL_STATE,
        params=params,
        priority=cmd.priority,
        site_rows=cmd.site_rows,
        site_cols=cmd.site_cols,
        carriers=carriers,
        total_sites=total,
        good_sites=total,
        created_at=now,
        updated_at=now,
        created_by=cmd.user,
    )
    violations = flow.check_lot_start(params, context(lot))
    if violations:
        raise LimitViolated(
            f"lot {cmd.lot_id} refused: {_violations_text(violations)}",
            violations,
            lot_id=cmd.lot_id,
        )
    try:
        flow.position((), params)
    except ValueError as exc:  # a PathError, or a repeat count the parameters make impossible
        raise InvalidInput(f"lot {cmd.lot_id} refused: {exc}", lot_id=cmd.lot_id) from None
    entry = HistoryEntry(
        lot_id=lot.id,
        operation=Operation.START,
        user=cmd.user,
        at=now,
        state_before=None,
        state_after=lot.state,
        data={
            "flow": flow.name,
            "flow_version": flow.version,
            "params": params,
            "priority": cmd.priority,
            "carriers": list(carriers),
            "site_rows": cmd.site_rows,
            "site_cols": cmd.site_cols,
        },
    )
    new_carriers = tuple(
        Carrier(cid, lot.id, n, cmd.site_rows, cmd.site_cols) for n, cid in enumerate(carriers, 1)
    )
    return Change(
        lots=(lot,),
        expected_versions={lot.id: None},
        entries=(entry,),
        new_carriers=new_carriers,
    )


# -- track-in / track-out / abort ------------------------------------------------------------


def track_in(lot: Lot, flow: Flow, cmd: TrackIn, now: datetime) -> Change:
    require(lot.state, Operation.TRACK_IN, lot.id)
    allowed, _, _, _ = position_of(lot, flow)
    if cmd.step not in allowed:
        done = " ".join(lot.path) if lot.path else "(nothing yet)"
        if lot.pending_rework is not None:
            why = f"lot {lot.id} was sent back for rework to {lot.pending_rework} and must run it next"
        elif cmd.step not in flow.steps:
            why = f"{cmd.step} is not a step of flow {flow.name}"
        else:
            why = f"{cmd.step} is not allowed now in flow {flow.name}"
        raise StepNotAllowed(
            f"{why} (document {flow.document}, claims {flow.claims}); after: {done}; "
            f"allowed next: {', '.join(sorted(allowed)) or 'nothing (the flow is complete)'}",
            lot_id=lot.id,
            allowed=sorted(allowed),
            claim=f"{flow.document}: {flow.claims}",
        )
    spec = flow.steps[cmd.step]
    values: dict[str, Value] = spec.recipe_defaults()
    values.update(coerce_values(spec.recipe, cmd.values, f"step {cmd.step} recipe", lot.id))
    violations = flow.check_track_in(cmd.step, values, context(lot))
    if violations:
        raise LimitViolated(
            f"track-in of lot {lot.id} at {cmd.step} refused: {_violations_text(violations)}",
            violations,
            lot_id=lot.id,
        )
    running = RunningStep(cmd.step, cmd.tool, values, now, cmd.user)
    after = _moved(lot, now, state=LotState.RUNNING, running=running)
    entry = _entry(
        lot,
        Operation.TRACK_IN,
        cmd.user,
        now,
        after.state,
        step=cmd.step,
        tool=cmd.tool,
        data={"values": values, "path_index": len(lot.path)},
    )
    return _single(lot, after, entry)


def track_out(
    lot: Lot,
    flow: Flow,
    cmd: TrackOut,
    rejected: Mapping[SiteRef, SiteReject],
    now: datetime,
) -> Change:
    """Finish the running step: record measured values and rejects; the lot waits for its next
    step, or goes on hold (a measured value outside a claimed limit, or no good site left), or
    completes (the flow ends here and allows nothing more)."""
    require(lot.state, Operation.TRACK_OUT, lot.id)
    assert lot.running is not None
    step = lot.running.step
    spec = flow.steps[step]
    measured = coerce_values(spec.measured, cmd.measured, f"step {step} measured values", lot.id)
    rejects = resolve_sites(lot, cmd.rejects, rejected, step=step, path_index=len(lot.path))
    violations = flow.check_track_out(
        step, measured, context(lot, extra_recorded=lot.running.values)
    )
    after, entry = _finish_step(
        lot, flow, measured, rejects, violations, cmd.user, now, dict(cmd.tool_data)
    )
    return _single(lot, after, entry, rejects=rejects)


def _finish_step(
    lot: Lot,
    flow: Flow,
    measured: Mapping[str, Value],
    rejects: Sequence[SiteReject],
    violations: Sequence[Violation],
    user: str,
    now: datetime,
    tool_data: Mapping[str, Any],
) -> tuple[Lot, HistoryEntry]:
    """The running step is done: the lot's new state and the track-out history entry."""
    assert lot.running is not None
    step = lot.running.step
    path_index = len(lot.path)
    path = (*lot.path, step)
    good = lot.good_sites - len(rejects)
    recorded = {**lot.recorded, **lot.running.values, **measured}
    hold: Hold | None = None
    if violations:
        hold = Hold(
            f"measured at {step}: {_violations_text(violations)}", user, now, HoldSource.LIMIT
        )
    elif good <= 0:
        hold = Hold(f"every site of lot {lot.id} has been rejected", user, now, HoldSource.LIMIT)
    state = LotState.HOLD if hold else LotState.WAITING
    if state is LotState.WAITING:
        following, may_end, _, _ = position_of(replace(lot, path=path, pending_rework=None), flow)
        if may_end and not following:
            state = LotState.COMPLETED
    after = _moved(
        lot,
        now,
        state=state,
        path=path,
        running=None,
        hold=hold,
        recorded=recorded,
        good_sites=good,
        units=_units(path, good),
        pending_rework=None,
    )
    data: dict[str, Any] = {
        "measured": dict(measured),
        "rejects": [f"{r.carrier_id}:{r.row}:{r.col}:{r.code}" for r in rejects],
        "path_index": path_index,
        "good_sites": good,
    }
    if after.units is not None:
        data["units"] = after.units
    if violations:
        data["violations"] = [
            {"value": v.value_name, "given": v.value, "expected": v.expected, "claim": v.claim}
            for v in violations
        ]
    if tool_data:
        data["tool_data"] = dict(tool_data)
    entry = _entry(
        lot,
        Operation.TRACK_OUT,
        user,
        now,
        state,
        step=step,
        tool=lot.running.tool,
        reason=hold.reason if hold else None,
        data=data,
    )
    return after, entry


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
    carrier = _resolve_carrier(lot, cmd.carrier)
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
    after = _moved(lot, now)
    entry = _entry(
        lot,
        Operation.JOB_START,
        cmd.user,
        now,
        after.state,
        step=running.step,
        tool=cmd.tool,
        data={"job": cmd.job_id, "carrier": carrier},
    )
    return _single(lot, after, entry, jobs=((job, None),))


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
) -> Change:
    """Record one carrier's results. The last carrier of the step also tracks the lot out, in
    the same change: measured values are checked carrier by carrier (any one outside a claimed
    limit holds the lot) and recorded as their mean; every carrier's rejects are recorded.

    ``done`` are the jobs recorded already at this step occurrence for the lot's carriers."""
    require(lot.state, Operation.JOB_RECORD, lot.id)
    running = _require_running_on(lot, job.tool_id)
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
        spec.measured, cmd.measured, f"step {running.step} measured values", lot.id
    )
    foreign = [g for g in cmd.rejects if _resolve_carrier(lot, g.carrier) != job.carrier_id]
    if foreign:
        raise InvalidInput(
            f"job {job.job_id} processed carrier {job.carrier_id}; rejects name other carriers",
            lot_id=lot.id,
        )
    taken = dict(rejected)
    for other in done:
        taken.update({r.site: r for r in other.rejects})
    rejects = resolve_sites(lot, cmd.rejects, taken, step=running.step, path_index=len(lot.path))
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
    if not finished:
        after = _moved(lot, now)
        entry = _entry(
            lot,
            Operation.JOB_RECORD,
            cmd.user,
            now,
            after.state,
            step=running.step,
            tool=job.tool_id,
            data=job_data,
        )
        return _single(lot, after, entry, jobs=((recorded, JobStatus.STARTED),))
    jobs = [*done, recorded]
    ctx = context(lot, extra_recorded=running.values)
    violations: dict[str, Violation] = {}
    for j in jobs:
        for v in flow.check_track_out(running.step, j.measured, ctx):
            violations.setdefault(v.message, v)
    all_rejects = tuple(r for j in jobs for r in j.rejects)
    job_entry = _entry(
        lot,
        Operation.JOB_RECORD,
        cmd.user,
        now,
        LotState.RUNNING,
        step=running.step,
        tool=job.tool_id,
        data=job_data,
    )
    after, out_entry = _finish_step(
        replace(lot, version=lot.version + 1),
        flow,
        _aggregate(spec.measured, [j.measured for j in jobs]),
        all_rejects,
        list(violations.values()),
        cmd.user,
        now,
        {"jobs": [j.job_id for j in jobs]},
    )
    return Change(
        lots=(after,),
        expected_versions={lot.id: lot.version},
        entries=(job_entry, out_entry),
        rejects=all_rejects,
        jobs=((recorded, JobStatus.STARTED),),
    )


def _abandoned(open_jobs: Sequence[JobRecord]) -> tuple[tuple[JobRecord, JobStatus | None], ...]:
    return tuple(
        (replace(j, status=JobStatus.ABANDONED), JobStatus.STARTED)
        for j in open_jobs
        if j.status is JobStatus.STARTED
    )


def abort(lot: Lot, cmd: AbortStep, now: datetime, open_jobs: Sequence[JobRecord] = ()) -> Change:
    """Back to waiting at the same position: the running step did not happen. Carriers whose
    jobs are recorded stay done at this step; an open job is abandoned."""
    require(lot.state, Operation.ABORT, lot.id)
    assert lot.running is not None
    after = _moved(lot, now, state=LotState.WAITING, running=None)
    entry = _entry(
        lot,
        Operation.ABORT,
        cmd.user,
        now,
        after.state,
        step=lot.running.step,
        tool=lot.running.tool,
        reason=cmd.reason,
    )
    return _single(lot, after, entry, jobs=_abandoned(open_jobs))


# -- hold / release / scrap ------------------------------------------------------------------


def hold(lot: Lot, cmd: HoldLot, now: datetime, open_jobs: Sequence[JobRecord] = ()) -> Change:
    """Hold a lot. A running step is abandoned (and its open job): on release the lot waits
    for it again."""
    require(lot.state, Operation.HOLD, lot.id)
    reason = _require_text(cmd.reason, "a hold", lot.id)
    running = lot.running
    after = _moved(
        lot, now, state=LotState.HOLD, running=None, hold=Hold(reason, cmd.user, now, cmd.source)
    )
    data: dict[str, Any] = {"source": cmd.source.value}
    if running is not None:
        data["abandoned_step"] = running.step
    entry = _entry(
        lot,
        Operation.HOLD,
        cmd.user,
        now,
        after.state,
        step=running.step if running else lot.step,
        tool=running.tool if running else None,
        reason=reason,
        data=data,
    )
    return _single(lot, after, entry, jobs=_abandoned(open_jobs))


def release(lot: Lot, flow: Flow, cmd: ReleaseLot, now: datetime) -> Change:
    require(lot.state, Operation.RELEASE, lot.id)
    assert lot.hold is not None
    state = LotState.WAITING
    following, may_end, _, _ = position_of(lot, flow)
    if may_end and not following:
        state = LotState.COMPLETED
    after = _moved(lot, now, state=state, hold=None)
    entry = _entry(
        lot,
        Operation.RELEASE,
        cmd.user,
        now,
        state,
        step=lot.step,
        reason=cmd.reason,
        data={"held_for": lot.hold.reason, "held_by": lot.hold.user},
    )
    return _single(lot, after, entry)


def scrap(lot: Lot, cmd: ScrapLot, now: datetime) -> Change:
    require(lot.state, Operation.SCRAP, lot.id)
    reason = _require_text(cmd.reason, "scrapping a lot", lot.id)
    after = _moved(lot, now, state=LotState.SCRAPPED, hold=None, good_sites=0, units=None)
    entry = _entry(
        lot,
        Operation.SCRAP,
        cmd.user,
        now,
        after.state,
        step=lot.step,
        reason=reason,
        data={"good_sites_scrapped": lot.good_sites},
    )
    return _single(lot, after, entry)


def scrap_sites(
    lot: Lot, cmd: ScrapSites, rejected: Mapping[SiteRef, SiteReject], now: datetime
) -> Change:
    require(lot.state, Operation.SCRAP_SITES, lot.id)
    reason = _require_text(cmd.reason, "scrapping sites", lot.id)
    if not cmd.sites:
        raise InvalidInput("name the sites to scrap (CARRIER:ROW:COL)", lot_id=lot.id)
    rejects = resolve_sites(lot, cmd.sites, rejected, step=SCRAP_STEP, path_index=len(lot.path))
    good = lot.good_sites - len(rejects)
    state, held = lot.state, lot.hold
    if good <= 0 and state is LotState.WAITING:
        state = LotState.HOLD
        held = Hold(
            f"every site of lot {lot.id} has been rejected", cmd.user, now, HoldSource.LIMIT
        )
    after = _moved(lot, now, state=state, hold=held, good_sites=good, units=_units(lot.path, good))
    entry = _entry(
        lot,
        Operation.SCRAP_SITES,
        cmd.user,
        now,
        state,
        step=lot.step,
        reason=reason,
        data={
            "sites": [f"{r.carrier_id}:{r.row}:{r.col}:{r.code}" for r in rejects],
            "good_sites": good,
        },
    )
    return _single(lot, after, entry, rejects=rejects)


# -- rework / complete -----------------------------------------------------------------------


def rework(
    lot: Lot, flow: Flow, cmd: ReworkLot, now: datetime, done_jobs: Sequence[JobRecord] = ()
) -> Change:
    """Send a held lot back to the most recent occurrence of a reworkable step.

    Allowed when the flow marks the step reworkable, every step completed since then is one
    the rework may undo, and that occurrence has not been reworked its maximum number of
    times. The lot then waits for exactly that step."""
    require(lot.state, Operation.REWORK, lot.id)
    reason = _require_text(cmd.reason, "a rework", lot.id)
    reworkable = sorted(code for code, s in flow.steps.items() if s.rework is not None)
    spec = flow.steps.get(cmd.step)
    if spec is None or spec.rework is None:
        raise ReworkNotAllowed(
            f"{cmd.step} is not a reworkable step of flow {flow.name}; reworkable: "
            f"{', '.join(reworkable) or 'none'}",
            lot_id=lot.id,
            allowed=reworkable,
        )
    if cmd.step not in lot.path:
        raise ReworkNotAllowed(
            f"lot {lot.id} has not run {cmd.step} yet, so it cannot be reworked", lot_id=lot.id
        )
    index = len(lot.path) - 1 - lot.path[::-1].index(cmd.step)
    undone = lot.path[index + 1 :]
    beyond = [s for s in undone if s not in spec.rework.through]
    if beyond:
        raise ReworkNotAllowed(
            f"a rework to {cmd.step} would undo {', '.join(beyond)}; {cmd.step} may be reworked "
            f"only through {', '.join(sorted(spec.rework.through)) or 'nothing after it'}",
            lot_id=lot.id,
        )
    occurrence = lot.path[: index + 1].count(cmd.step)
    key = f"{cmd.step}#{occurrence}"
    done = lot.rework_counts.get(key, 0)
    if done >= spec.rework.max_reworks:
        raise ReworkNotAllowed(
            f"{cmd.step} (occurrence {occurrence}) of lot {lot.id} has been reworked {done} "
            f"time(s); flow {flow.name} allows {spec.rework.max_reworks}",
            lot_id=lot.id,
        )
    path = lot.path[:index]
    after = _moved(
        lot,
        now,
        state=LotState.WAITING,
        hold=None,
        path=path,
        pending_rework=cmd.step,
        rework_counts={**lot.rework_counts, key: done + 1},
        units=_units(path, lot.good_sites),
    )
    entry = _entry(
        lot,
        Operation.REWORK,
        cmd.user,
        now,
        after.state,
        step=cmd.step,
        reason=reason,
        data={
            "path_index": index,
            "undone": list(lot.path[index:]),
            "rework_count": done + 1,
            "max_reworks": spec.rework.max_reworks,
        },
    )
    superseded = tuple(
        (replace(j, status=JobStatus.SUPERSEDED), JobStatus.RECORDED)
        for j in done_jobs
        if j.status is JobStatus.RECORDED and j.path_index >= index
    )
    return _single(lot, after, entry, jobs=superseded)


def complete(lot: Lot, flow: Flow, cmd: CompleteLot, now: datetime) -> Change:
    """End a waiting lot where its flow may end (only optional steps remain)."""
    require(lot.state, Operation.COMPLETE, lot.id)
    following, may_end, _, _ = position_of(lot, flow)
    if not may_end:
        raise StepNotAllowed(
            f"flow {flow.name} cannot end after {' '.join(lot.path) or 'nothing'}; "
            f"required next: {', '.join(sorted(following))}",
            lot_id=lot.id,
            allowed=sorted(following),
            claim=f"{flow.document}: {flow.claims}",
        )
    after = _moved(lot, now, state=LotState.COMPLETED)
    entry = _entry(
        lot,
        Operation.COMPLETE,
        cmd.user,
        now,
        after.state,
        step=lot.step,
        reason=cmd.reason,
        data={"good_sites": lot.good_sites, "units": lot.units, "skipped": sorted(following)},
    )
    return _single(lot, after, entry)


# -- split / merge ---------------------------------------------------------------------------


def split(lot: Lot, cmd: SplitLot, rejects: Collection[SiteReject], now: datetime) -> Change:
    """Move some carriers of ``lot`` into a new child lot at the same position and state."""
    require(lot.state, Operation.SPLIT, lot.id)
    check_lot_id(cmd.child_id)
    if cmd.child_id == lot.id:
        raise SplitMergeNotAllowed("a lot cannot be split into itself", lot_id=lot.id)
    if not cmd.carriers:
        raise InvalidInput("name the carriers to split off (--carriers)", lot_id=lot.id)
    moving = tuple(dict.fromkeys(_resolve_carrier(lot, c) for c in cmd.carriers))
    staying = tuple(c for c in lot.carriers if c not in moving)
    if not staying:
        raise SplitMergeNotAllowed(
            f"splitting every carrier of lot {lot.id} would leave it empty; keep at least one",
            lot_id=lot.id,
        )
    per_carrier = Counter(r.carrier_id for r in rejects)
    sites_per_carrier = lot.site_rows * lot.site_cols
    child_total = sites_per_carrier * len(moving)
    child_good = child_total - sum(per_carrier[c] for c in moving)
    parent_good = lot.good_sites - child_good
    child = replace(
        lot,
        id=cmd.child_id,
        carriers=moving,
        total_sites=child_total,
        good_sites=child_good,
        units=_units(lot.path, child_good),
        parent_id=lot.id,
        created_at=now,
        updated_at=now,
        created_by=cmd.user,
        version=1,
    )
    parent = _moved(
        lot,
        now,
        carriers=staying,
        total_sites=lot.total_sites - child_total,
        good_sites=parent_good,
        units=_units(lot.path, parent_good),
    )
    parent_entry = _entry(
        lot,
        Operation.SPLIT,
        cmd.user,
        now,
        parent.state,
        step=lot.step,
        reason=cmd.reason,
        data={"child": child.id, "carriers": list(moving)},
    )
    child_entry = _entry(
        child,
        Operation.SPLIT_FROM,
        cmd.user,
        now,
        child.state,
        state_before=lot.state,
        step=lot.step,
        reason=cmd.reason,
        data={"parent": lot.id, "carriers": list(moving)},
    )
    moved = {cid: (child.id, n) for n, cid in enumerate(moving, 1)}
    moved.update({cid: (lot.id, n) for n, cid in enumerate(staying, 1)})
    return Change(
        lots=(parent, child),
        expected_versions={lot.id: lot.version, child.id: None},
        entries=(parent_entry, child_entry),
        moved_carriers=moved,
    )


def merge(child: Lot, target: Lot, cmd: MergeLots, now: datetime) -> Change:
    """Merge ``child`` into ``target``: same flow, same position, both waiting."""
    if child.id == target.id:
        raise SplitMergeNotAllowed("a lot cannot be merged into itself", lot_id=child.id)
    require(child.state, Operation.MERGE_INTO, child.id)
    require(target.state, Operation.MERGE, target.id)
    differences = []
    if (child.flow, child.flow_version) != (target.flow, target.flow_version):
        differences.append(
            f"flow {child.flow} v{child.flow_version} vs {target.flow} v{target.flow_version}"
        )
    if child.path != target.path:
        differences.append(
            f"position after {' '.join(child.path) or 'nothing'} vs "
            f"{' '.join(target.path) or 'nothing'}"
        )
    if dict(child.params) != dict(target.params):
        differences.append(f"lot parameters {dict(child.params)} vs {dict(target.params)}")
    if child.pending_rework != target.pending_rework:
        differences.append("a pending rework on one of them")
    if (child.site_rows, child.site_cols) != (target.site_rows, target.site_cols):
        differences.append(
            f"carrier size {child.site_rows}x{child.site_cols} vs "
            f"{target.site_rows}x{target.site_cols}"
        )
    if differences:
        raise SplitMergeNotAllowed(
            f"lot {child.id} cannot be merged into {target.id}: they differ in "
            + "; ".join(differences),
            lot_id=child.id,
        )
    carriers = (*target.carriers, *child.carriers)
    good = target.good_sites + child.good_sites
    counts = dict(target.rework_counts)
    for key, n in child.rework_counts.items():
        counts[key] = max(n, counts.get(key, 0))
    merged = _moved(
        target,
        now,
        carriers=carriers,
        total_sites=target.total_sites + child.total_sites,
        good_sites=good,
        units=_units(target.path, good),
        rework_counts=counts,
    )
    absorbed = _moved(child, now, state=LotState.MERGED, carriers=())
    target_entry = _entry(
        target,
        Operation.MERGE,
        cmd.user,
        now,
        merged.state,
        step=target.step,
        reason=cmd.reason,
        data={"merged": child.id, "carriers": list(child.carriers)},
    )
    child_entry = _entry(
        child,
        Operation.MERGE_INTO,
        cmd.user,
        now,
        absorbed.state,
        step=child.step,
        reason=cmd.reason,
        data={"into": target.id, "carriers": list(child.carriers)},
    )
    moved = {cid: (target.id, n) for n, cid in enumerate(carriers, 1)}
    return Change(
        lots=(absorbed, merged),
        expected_versions={child.id: child.version, target.id: target.version},
        entries=(child_entry, target_entry),
        moved_carriers=moved,
    )


__all__ = [
    "SINGULATION_STEP",
    "abort",
    "check_lot_id",
    "coerce_values",
    "complete",
    "context",
    "hold",
    "merge",
    "next_in_order",
    "next_steps",
    "position_of",
    "record_job",
    "release",
    "resolve_sites",
    "rework",
    "scrap",
    "scrap_sites",
    "split",
    "start_job",
    "start_lot",
    "track_in",
    "track_out",
]
