"""The lot tracker's rules: one pure function per operation.

Each takes the lot as it is (and whatever else the rule needs to see: its flow, its rejected
sites, its jobs), the command and the time, and returns a :class:`~mes.domain.model.Change`
describing everything to write, or raises a :mod:`mes.domain.errors` refusal. Nothing here
does I/O; the service layer loads, calls and stores, in one transaction. Jobs (one carrier on
a tool) are in :mod:`mes.domain.jobs`; a step's track-in and track-out in
:mod:`mes.domain.steps`; split and merge in :mod:`mes.domain.genealogy`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from flows import Flow
from mes.domain.commands import (
    AbortStep,
    CompleteLot,
    HoldLot,
    ReleaseLot,
    ReworkLot,
    ScrapLot,
    ScrapSites,
    StartLot,
)
from mes.domain.common import (
    check_lot_id,
    coerce_values,
    context,
    history_entry,
    moved_lot,
    position_of,
    require_reason,
    resolve_sites,
    single_change,
    units_after,
    violations_text,
)
from mes.domain.errors import (
    InvalidInput,
    LimitViolated,
    ReworkNotAllowed,
    StepNotAllowed,
)
from mes.domain.flowversions import FIRST_VERSION
from mes.domain.lifecycle import INITIAL_STATE, require
from mes.domain.model import (
    MAX_CARRIERS,
    MAX_SITE_COLS,
    MAX_SITE_ROWS,
    PRIORITY_RANGE,
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
    SiteRef,
    SiteReject,
    StepCode,
)
from mes.domain.text import counted

# -- start -----------------------------------------------------------------------------------


def start_lot(cmd: StartLot, flow: Flow, now: datetime, version: int = FIRST_VERSION) -> Change:
    """Start a lot on ``flow``, the published ``version`` of it (default: the first, which
    ``db upgrade`` publishes the flow files as)."""
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
        flow.lot_params,
        cmd.params,
        f"lot parameters of flow {flow.name}",
        cmd.lot_id,
        field="params",
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
        flow_version=version,
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
            f"lot {cmd.lot_id} refused: {violations_text(violations)}",
            violations,
            lot_id=cmd.lot_id,
            fields=[f"params.{v.value_name}" for v in violations],
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
            "flow_version": lot.flow_version,
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


# -- abort (track-in and track-out: mes.domain.steps) ----------------------------------------


def _abandoned(open_jobs: Sequence[JobRecord]) -> tuple[tuple[JobRecord, JobStatus | None], ...]:
    return tuple(
        (replace(j, status=JobStatus.ABANDONED), JobStatus.STARTED)
        for j in open_jobs
        if j.status is JobStatus.STARTED
    )


def abort(lot: Lot, cmd: AbortStep, now: datetime, step_jobs: Sequence[JobRecord] = ()) -> Change:
    """Back to waiting at the same position: the running step did not happen. Carriers whose
    jobs are recorded stay done at this step, and the lot must then run it next
    (:func:`unfinished`); an open job is abandoned. ``step_jobs``: the running step's."""
    require(lot.state, Operation.ABORT, lot.id)
    assert lot.running is not None
    after = moved_lot(
        lot, now, state=LotState.WAITING, running=None, pending_rework=unfinished(lot, step_jobs)
    )
    entry = history_entry(
        lot,
        Operation.ABORT,
        cmd.user,
        now,
        after.state,
        step=lot.running.step,
        tool=lot.running.tool,
        reason=cmd.reason,
    )
    return single_change(lot, after, entry, jobs=_abandoned(step_jobs))


def unfinished(lot: Lot, step_jobs: Sequence[JobRecord]) -> StepCode | None:
    """The step a lot must run next once a hold or an abort stops it: the running step, when
    carriers are done there already (the others still to do: another step the flow allows at
    this position would leave the lot's carriers at different steps), else what it had to
    run next before (a rework's step)."""
    running = lot.running
    if running is not None and any(
        j.status is JobStatus.RECORDED and j.step == running.step for j in step_jobs
    ):
        return running.step
    return lot.pending_rework


# -- hold / release / scrap ------------------------------------------------------------------


def hold(lot: Lot, cmd: HoldLot, now: datetime, step_jobs: Sequence[JobRecord] = ()) -> Change:
    """Hold a lot. A running step is abandoned (and its open job): on release the lot waits
    for it again. ``step_jobs``: the jobs of the running step; the record keeps which
    carriers were done (recorded) and which job was open, so that an engineer can decide to
    run only what is left."""
    require(lot.state, Operation.HOLD, lot.id)
    reason = require_reason(cmd.reason, "a hold", lot.id, coded="hold")
    running = lot.running
    after = moved_lot(
        lot,
        now,
        state=LotState.HOLD,
        running=None,
        hold=Hold(reason, cmd.user, now, cmd.source, cmd.code),
        pending_rework=unfinished(lot, step_jobs),
    )
    data: dict[str, Any] = {**(cmd.data or {}), "source": cmd.source.value}
    if cmd.code is not None:
        data["code"] = cmd.code
    if running is not None:
        data["abandoned_step"] = running.step
        data["carriers_done"] = [j.carrier_id for j in step_jobs if j.status is JobStatus.RECORDED]
        data["jobs_open"] = [
            {"job": j.job_id, "carrier": j.carrier_id}
            for j in step_jobs
            if j.status is JobStatus.STARTED
        ]
    entry = history_entry(
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
    return single_change(lot, after, entry, jobs=_abandoned(step_jobs))


def release(lot: Lot, flow: Flow, cmd: ReleaseLot, now: datetime) -> Change:
    require(lot.state, Operation.RELEASE, lot.id)
    assert lot.hold is not None
    state = LotState.WAITING
    following, may_end, _, _ = position_of(lot, flow)
    if may_end and not following:
        state = LotState.COMPLETED
    after = moved_lot(lot, now, state=state, hold=None)
    entry = history_entry(
        lot,
        Operation.RELEASE,
        cmd.user,
        now,
        state,
        step=lot.step,
        reason=cmd.reason,
        data={
            "held_for": lot.hold.reason,
            "held_by": lot.hold.user,
            "held_source": lot.hold.source.value,
        },
    )
    return single_change(lot, after, entry)


def scrap(lot: Lot, cmd: ScrapLot, now: datetime) -> Change:
    require(lot.state, Operation.SCRAP, lot.id)
    reason = require_reason(cmd.reason, "scrapping a lot", lot.id, coded="scrap")
    after = moved_lot(lot, now, state=LotState.SCRAPPED, hold=None, good_sites=0, units=None)
    entry = history_entry(
        lot,
        Operation.SCRAP,
        cmd.user,
        now,
        after.state,
        step=lot.step,
        reason=reason,
        data={"good_sites_scrapped": lot.good_sites}
        | ({"code": cmd.code} if cmd.code is not None else {}),
    )
    return single_change(lot, after, entry)


def scrap_sites(
    lot: Lot, cmd: ScrapSites, rejected: Mapping[SiteRef, SiteReject], now: datetime
) -> Change:
    require(lot.state, Operation.SCRAP_SITES, lot.id)
    reason = require_reason(cmd.reason, "scrapping sites", lot.id)
    if not cmd.sites:
        raise InvalidInput("name the sites to scrap (CARRIER:ROW:COL)", lot_id=lot.id)
    rejects = resolve_sites(
        lot, cmd.sites, rejected, step=SCRAP_STEP, path_index=len(lot.path), field="sites"
    )
    good = lot.good_sites - len(rejects)
    state, held = lot.state, lot.hold
    if good <= 0 and state is LotState.WAITING:
        state = LotState.HOLD
        held = Hold(
            f"every site of lot {lot.id} has been rejected", cmd.user, now, HoldSource.LIMIT
        )
    after = moved_lot(
        lot, now, state=state, hold=held, good_sites=good, units=units_after(lot.path, good)
    )
    entry = history_entry(
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
    return single_change(lot, after, entry, rejects=rejects)


# -- rework / complete -----------------------------------------------------------------------


def rework(
    lot: Lot, flow: Flow, cmd: ReworkLot, now: datetime, done_jobs: Sequence[JobRecord] = ()
) -> Change:
    """Send a held lot back to the most recent occurrence of a reworkable step.

    Allowed when the flow marks the step reworkable, every step completed since then is one
    the rework may undo, and that occurrence has not been reworked its maximum number of
    times. The lot then waits for exactly that step."""
    require(lot.state, Operation.REWORK, lot.id)
    reason = require_reason(cmd.reason, "a rework", lot.id)
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
            f"{cmd.step} (occurrence {occurrence}) of lot {lot.id} has been reworked "
            f"{counted(done, 'time')}; flow {flow.name} allows {spec.rework.max_reworks}",
            lot_id=lot.id,
        )
    path = lot.path[:index]
    after = moved_lot(
        lot,
        now,
        state=LotState.WAITING,
        hold=None,
        path=path,
        pending_rework=cmd.step,
        rework_counts={**lot.rework_counts, key: done + 1},
        units=units_after(path, lot.good_sites),
    )
    entry = history_entry(
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
    superseded = tuple(  # an abandoned job's results, should they come, are moot too
        (replace(j, status=JobStatus.SUPERSEDED), j.status)
        for j in done_jobs
        if j.status in (JobStatus.RECORDED, JobStatus.ABANDONED) and j.path_index >= index
    )
    return single_change(lot, after, entry, jobs=superseded)


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
    after = moved_lot(lot, now, state=LotState.COMPLETED)
    entry = history_entry(
        lot,
        Operation.COMPLETE,
        cmd.user,
        now,
        after.state,
        step=lot.step,
        reason=cmd.reason,
        data={"good_sites": lot.good_sites, "units": lot.units, "skipped": sorted(following)},
    )
    return single_change(lot, after, entry)
