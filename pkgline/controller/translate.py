"""Between the lot tracker and the equipment: pure translations, so that neither knows the
other's words.

- Sites: the lot tracker counts rows and columns from 1 per carrier and names rejects
  (``VOID``); a tool's site map is row-major from (0, 0) with numeric codes of its class.
- Recipes: a flow step's recipe values under the names the tool uses, only those its class
  takes (material and claim values stay in the lot record).
- Measured values: a tool's results under the flow's names.
- Status: a tool's process state and mode as a SEMI E10 state for equipment tracking.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from drivers.catalogue import ClassSpec
from drivers.model import (
    SITE_GOOD,
    SITE_SKIPPED,
    JobResults,
    Recipe,
    SiteMap,
    ToolStatus,
    e10_state,
)
from flows import Flow, Value
from mes.domain.commands import SiteRejectGiven
from mes.domain.equipment import ToolSnapshot
from mes.domain.model import Carrier, SiteReject

NOT_PROCESSED = "NOT_PROCESSED"
"""The reject code for a site that came in good but that the tool reports it skipped."""


def new_job_id() -> str:
    """A job id: 16 hex digits, unique enough to name one carrier's run on one tool."""
    return uuid.uuid4().hex[:16]


def incoming_site_map(carrier: Carrier, rejects: Iterable[SiteReject]) -> SiteMap:
    """The carrier's map as a tool takes it: 0 for a good site, 1 for a site to skip."""
    codes = [SITE_GOOD] * (carrier.rows * carrier.cols)
    for r in rejects:
        if r.carrier_id == carrier.id:
            codes[(r.row - 1) * carrier.cols + (r.col - 1)] = SITE_SKIPPED
    return SiteMap(carrier.rows, carrier.cols, tuple(codes))


def outgoing_rejects(
    carrier: Carrier, incoming: SiteMap, outgoing: SiteMap, spec: ClassSpec
) -> tuple[SiteRejectGiven, ...]:
    """The sites a job rejected: those that came in good and left with a reject code (named
    from the class catalogue), or that the tool skipped although they were good."""
    if (outgoing.rows, outgoing.cols) != (incoming.rows, incoming.cols):
        raise ValueError(
            f"the tool returned a {outgoing.rows}x{outgoing.cols} site map for carrier "
            f"{carrier.id}, which is {incoming.rows}x{incoming.cols}"
        )
    rejects = []
    for index, (before, after) in enumerate(zip(incoming.codes, outgoing.codes, strict=True)):
        if before != SITE_GOOD or after == SITE_GOOD:
            continue
        code = NOT_PROCESSED if after == SITE_SKIPPED else spec.reject_name(after)
        row, col = divmod(index, incoming.cols)
        rejects.append(SiteRejectGiven(carrier.id, row + 1, col + 1, code))
    return tuple(rejects)


def tool_recipe(
    flow: Flow, step: str, values: Mapping[str, Value], accepted: Iterable[str]
) -> Recipe:
    """The recipe to download for ``step``: the step's values under the tool's names, those
    the tool's class accepts, marked with the step's equipment class (a driver refuses it for
    a tool of another class)."""
    takes = frozenset(accepted)
    body = {
        name: value for name, value in flow.steps[step].to_tool(values).items() if name in takes
    }
    return Recipe(
        flow.recipe_name(step), flow.version, body, equipment_class=flow.steps[step].equipment_class
    )


def measured_for_flow(flow: Flow, step: str, results: JobResults) -> dict[str, Value]:
    """The values the step declares, out of what the tool measured, under the flow's names."""
    reported: dict[str, Value] = dict(results.measured)
    return flow.steps[step].from_tool(reported)


def tool_data(results: JobResults) -> dict[str, Any]:
    """What the tool reported, as it reported it (kept in history)."""
    return {"measured": dict(results.measured), "site_codes": list(results.site_map.codes)}


def snapshot(
    status: ToolStatus | None,
    *,
    connected: bool,
    lot_id: str | None = None,
    reason: str | None = None,
) -> ToolSnapshot:
    """What equipment tracking records of a tool: its E10 state and what it does. A tool that
    does not answer is unscheduled down; what it last reported (``status``) stays on record."""
    alarm = None
    if status is not None and status.alarm is not None:
        alarm = {
            "code": status.alarm.code,
            "text": status.alarm.text,
            "severity": status.alarm.severity.name.lower(),
        }
    if status is None or not connected:
        return ToolSnapshot(
            connected=False,
            e10=e10_state(None, None).value,
            process_state=status.state.name if status else None,
            mode=status.mode.name if status else None,
            alarm=alarm,
            job_id=status.job_id if status else None,
            lot_id=lot_id,
            reason=reason or "not answering",
        )
    return ToolSnapshot(
        connected=True,
        e10=status.e10.value,
        process_state=status.state.name,
        mode=status.mode.name,
        alarm=alarm,
        job_id=status.job_id,
        lot_id=lot_id,
        sites_done=status.sites_done,
        sites_total=status.sites_total,
        reason=reason,
    )
