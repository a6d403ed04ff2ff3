"""The lot tracker's rules of a step: track a lot in (the step order, the claimed limits on
its recipe values, their set-point windows) and out (its measured values and rejects,
checked against the claims, the spec limits and, by :mod:`mes.spc`, the charts), and the end
of a step the jobs of a tool share (:func:`finish_step`, :mod:`mes.domain.jobs`). Pure functions, as
:mod:`mes.domain.operations`; a step on a tool is tracked out by whoever tracked it in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from flows import Flow, Value, Violation
from flows.model import format_value
from flows.speclimits import window_text
from mes.domain.commands import (
    TrackIn,
    TrackOut,
)
from mes.domain.common import (
    coerce_values,
    context,
    history_entry,
    moved_lot,
    position_of,
    resolve_sites,
    single_change,
    units_after,
    violations_text,
)
from mes.domain.errors import (
    InvalidInput,
    LimitViolated,
    OperationNotAllowed,
    StepNotAllowed,
)
from mes.domain.lifecycle import require
from mes.domain.model import (
    Change,
    HistoryEntry,
    Hold,
    HoldSource,
    Lot,
    LotState,
    Operation,
    RunningStep,
    SiteRef,
    SiteReject,
)
from mes.domain.text import utc_stamp


def track_in(lot: Lot, flow: Flow, cmd: TrackIn, now: datetime) -> Change:
    require(lot.state, Operation.TRACK_IN, lot.id)
    allowed, _, _, _ = position_of(lot, flow)
    if cmd.step not in allowed:
        done = " ".join(lot.path) if lot.path else "(nothing yet)"
        if lot.pending_rework is not None:
            why = (
                f"lot {lot.id} must run {lot.pending_rework} next: it was sent back for rework "
                "to it, or a hold or an abort stopped it there with carriers done (they are "
                f"not run again; pkgline lot show {lot.id})"
            )
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
    values.update(
        coerce_values(
            spec.recipe, cmd.values, f"recipe values of step {cmd.step}", lot.id, field="values"
        )
    )
    recipe, earlier = flow.track_in_violations(cmd.step, values, context(lot))
    violations = recipe + earlier
    if violations:
        raise LimitViolated(
            f"track-in of lot {lot.id} at {cmd.step} refused: {violations_text(violations)}",
            violations,
            lot_id=lot.id,
            fields=[f"values.{v.value_name}" for v in recipe] + [None] * len(earlier),
        )
    refuse_outside_window(lot, flow, cmd.step, values)
    by_hand = cmd.tool is not None and not cmd.dispatched
    running = RunningStep(cmd.step, cmd.tool, values, now, cmd.user, by_hand=by_hand)
    after = moved_lot(lot, now, state=LotState.RUNNING, running=running)
    entry = history_entry(
        lot,
        Operation.TRACK_IN,
        cmd.user,
        now,
        after.state,
        step=cmd.step,
        tool=cmd.tool,
        data={
            "values": values,
            "path_index": len(lot.path),
            # a tool step with no tool named: done off the line's tools (mes.domain.interlocks)
            **(
                {"off_tools": True} if cmd.tool is None and spec.equipment_class != "manual" else {}
            ),
        },
    )
    return single_change(lot, after, entry)


def refuse_outside_window(lot: Lot, flow: Flow, step: str, values: Mapping[str, Value]) -> None:
    """Refuse (InvalidInput, nothing written) recipe values outside their set-point windows
    (line practice, ``window:`` in the flow files): a set point the line does not run never
    reaches the tool. The field named is the first value outside (``values.NAME``); the
    message names each, its window and origin, and what is expected. Defaults sit inside
    their windows (the loader refuses a flow where one does not)."""
    outside = flow.check_window(step, values)
    if not outside:
        return
    recipe = flow.steps[step].recipe
    wanted = []
    for v in outside:
        spec = recipe[v.value_name]
        assert spec.window is not None
        unit = f" {spec.unit}" if spec.unit else ""
        default = "" if spec.default is None else f" (default {format_value(spec.default)}{unit})"
        window = window_text(spec.window, spec.unit, target=False)
        within = window if window.startswith("at ") else f"from {window}"
        wanted.append(f"{v.value_name} {within}{default}")
    raise InvalidInput(
        f"track-in of lot {lot.id} at {step} refused: "
        + "; ".join(v.message for v in outside)
        + f"; expected {'; '.join(wanted)}; nothing was changed",
        lot_id=lot.id,
        field=f"values.{outside[0].value_name}",
    )


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
    if cmd.step is not None and cmd.step != step:
        raise StepNotAllowed(
            f"track-out of {cmd.step} refused: lot {lot.id} runs {step} "
            f"(tracked in at {lot.running.since.isoformat()}), not {cmd.step}; nothing was changed",
            lot_id=lot.id,
            allowed=(step,),
        )
    if lot.running.tool is not None and lot.running.by_hand == cmd.dispatched:
        raise OperationNotAllowed(_whose_step(lot, lot.running), lot_id=lot.id)
    spec = flow.steps[step]
    measured = coerce_values(
        spec.measured, cmd.measured, f"measured values of step {step}", lot.id, field="measured"
    )
    rejects = resolve_sites(
        lot, cmd.rejects, rejected, step=step, path_index=len(lot.path), field="rejects"
    )
    violations = flow.check_track_out(
        step, measured, context(lot, extra_recorded=lot.running.values)
    ) + flow.check_spec(step, measured)
    after, entry = finish_step(
        lot, flow, measured, rejects, violations, cmd.user, now, dict(cmd.tool_data)
    )
    return single_change(lot, after, entry, rejects=rejects)


def _whose_step(lot: Lot, running: RunningStep) -> str:
    """Why the track-out of a step on a tool is not the caller's. The line controller tracks
    out the steps it tracked in (job by job, with the tool's results: a track-out by hand would
    leave the tool's job open and put values no tool measured in their place); the operator
    who tracked a step in by hand, the tool in manual, tracks it out (the controller leaves it
    be: no tool job ran it)."""
    since = utc_stamp(running.since, seconds=True)
    if running.by_hand:
        return (
            f"track-out of lot {lot.id} refused: {running.step} on {running.tool} was tracked "
            f"in by hand by {running.user} at {since}; its line controller leaves it to them "
            "(no tool job ran it); nothing was changed"
        )
    return (
        f"track-out of lot {lot.id} refused: {running.step} runs on {running.tool}, tracked in "
        f"by its line controller ({running.user}) at {since}, which tracks it out with the "
        f"tool's results; nothing was changed. To take the lot off the tool: pkgline lot "
        f"abort {lot.id} --reason ... (it waits at {running.step} again; the tool's job is "
        f"aborted) or pkgline lot hold {lot.id} --reason ...; to finish the step by hand, abort "
        f"it, switch the tool to manual (pkgline tool manual {running.tool}) and track the lot "
        "in and out there"
    )


def finish_step(
    lot: Lot,
    flow: Flow,
    measured: Mapping[str, Value],
    rejects: Sequence[SiteReject],
    violations: Sequence[Violation],
    user: str,
    now: datetime,
    tool_data: Mapping[str, Any],
    by_carrier: Mapping[str, Mapping[str, Value]] | None = None,
) -> tuple[Lot, HistoryEntry]:
    """The running step is done: the lot's new state and the track-out history entry.
    ``by_carrier``: each carrier's measured values, where they were recorded job by job
    (``measured`` is then what they make together); the entry keeps them, in the lot's
    carrier order, for SPC's carrier and subgroup charts."""
    assert lot.running is not None
    step = lot.running.step
    path_index = len(lot.path)
    path = (*lot.path, step)
    good = lot.good_sites - len(rejects)
    recorded = {**lot.recorded, **lot.running.values, **measured}
    hold: Hold | None = None
    if violations:
        hold = Hold(
            f"measured at {step}: {violations_text(violations)}", user, now, HoldSource.LIMIT
        )
    elif good <= 0:
        hold = Hold(f"every site of lot {lot.id} has been rejected", user, now, HoldSource.LIMIT)
    state = LotState.HOLD if hold else LotState.WAITING
    if state is LotState.WAITING:
        following, may_end, _, _ = position_of(replace(lot, path=path, pending_rework=None), flow)
        if may_end and not following:
            state = LotState.COMPLETED
    after = moved_lot(
        lot,
        now,
        state=state,
        path=path,
        running=None,
        hold=hold,
        recorded=recorded,
        good_sites=good,
        units=units_after(path, good),
        pending_rework=None,
    )
    data: dict[str, Any] = {
        "measured": dict(measured),
        "rejects": [f"{r.carrier_id}:{r.row}:{r.col}:{r.code}" for r in rejects],
        "path_index": path_index,
        "good_sites": good,
    }
    if by_carrier:
        data["measured_by_carrier"] = {
            c: dict(by_carrier[c]) for c in lot.carriers if c in by_carrier
        }
    if after.units is not None:
        data["units"] = after.units
    if violations:
        data["violations"] = [
            {
                "value": v.value_name,
                "given": v.value,
                "expected": v.expected,
                "claim": v.claim,
                "kind": v.kind,
            }
            for v in violations
        ]
    if tool_data:
        data["tool_data"] = dict(tool_data)
    entry = history_entry(
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
