"""Between the lot tracker and the equipment: pure translations, so that neither knows the
other's words.

- Sites: the lot tracker counts rows and columns from 1 per carrier and names rejects
  (``VOID``); a tool's site map is row-major from (0, 0) with numeric codes of its class.
- Recipes: a flow step's recipe values under the names the tool uses, only those its class
  takes (material and claim values stay in the lot record).
- Measured values: a tool's results under the flow's names.
- Results: what a tool reports for a job, checked against what the controller expects
  (:func:`check_results`) before anything of it is recorded.
- Status: a tool's process state and mode as a SEMI E10 state for equipment tracking.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
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
from mes.domain.text import printable

NOT_PROCESSED = "NOT_PROCESSED"
"""The reject code for a site that came in good but that the tool reports it skipped."""


class ResultsRefused(Exception):
    """Results a tool sent that do not fit: what was received and what was expected. They are
    not recorded nor acknowledged (the controller quarantines the tool)."""

    def __init__(self, what: str, received: object, expected: str):
        self.what = what
        self.received = received
        self.expected = expected
        super().__init__(f"{what}: received {received!r}, expected {expected}")

    def data(self) -> dict[str, Any]:
        """For the record (history data): plain JSON values."""
        received = self.received
        if not isinstance(received, str | int | float | bool | type(None)):
            received = repr(received)
        return {"what": self.what, "received": received, "expected": self.expected}


@dataclass(frozen=True, slots=True)
class ExpectedResults:
    """What the results of one job must say: the job the controller started (or adopted),
    the lot and step it runs, the carrier and the site map the tool was given."""

    job_id: str
    lot_id: str
    step: str
    carrier: Carrier
    incoming: SiteMap


@dataclass(frozen=True, slots=True)
class CheckedResults:
    """Results that fit, with what the lot tracker records of them."""

    results: JobResults
    measured: dict[str, Value]
    rejects: tuple[SiteRejectGiven, ...]


def check_results(
    results: JobResults | None, expected: ExpectedResults, flow: Flow, spec: ClassSpec
) -> CheckedResults:
    """Results checked against what the job was: its job, lot, step and carrier; a site map
    of the carrier's shape with codes of the class; measured values the class has, of their
    type and within their physical range. Raises :class:`ResultsRefused` at the first that
    does not fit. A tool that leaves the step or carrier empty is taken at its word for the
    job (the job id names them)."""
    if results is None:
        raise ResultsRefused("results", None, f"the results of job {expected.job_id}")
    if results.job_id != expected.job_id:
        raise ResultsRefused("job id", results.job_id, expected.job_id)
    if results.lot_id != expected.lot_id:
        raise ResultsRefused("lot", results.lot_id, expected.lot_id)
    if results.step and results.step != expected.step:
        known = "" if results.step in flow.steps else f", a step of flow {flow.name}"
        raise ResultsRefused("step", results.step, expected.step + known)
    if results.carrier_id and results.carrier_id != expected.carrier.id:
        raise ResultsRefused("carrier", results.carrier_id, expected.carrier.id)
    out, given = results.site_map, expected.incoming
    if (out.rows, out.cols) != (given.rows, given.cols):
        raise ResultsRefused(
            "site map", f"{out.rows}x{out.cols}", f"{given.rows}x{given.cols} (the carrier's)"
        )
    allowed = {SITE_GOOD, SITE_SKIPPED, *spec.reject_codes}
    for index, code in enumerate(out.codes):
        if code not in allowed:
            row, col = divmod(index, out.cols)
            raise ResultsRefused(
                f"site code at {row + 1}:{col + 1}",
                code,
                f"0 (good), 1 (skipped) or a {spec.equipment_class.value} reject code "
                f"({', '.join(str(c) for c in sorted(spec.reject_codes))})",
            )
    for name, value in results.measured.items():
        value_spec = spec.measured.get(name)
        if value_spec is None:
            raise ResultsRefused(
                "measured value",
                name,
                f"one the {spec.equipment_class.value} class measures "
                f"({', '.join(sorted(spec.measured))})",
            )
        try:
            value_spec.check_physical(value)
        except ValueError as exc:
            raise ResultsRefused(f"measured value {name}", value, str(exc)) from None
    return CheckedResults(
        results,
        measured_for_flow(flow, expected.step, results),
        outgoing_rejects(expected.carrier, given, out, spec),
    )


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


def sites_done(incoming: SiteMap, count: int) -> list[tuple[int, int]]:
    """The sites (row, col from 1) a tool that reported ``count`` sites done has processed:
    the first ``count`` good sites of its incoming map, in the row-major order in which a
    tool works them (the equipment model's order)."""
    good = [i for i, code in enumerate(incoming.codes) if code == SITE_GOOD][: max(count, 0)]
    return [(i // incoming.cols + 1, i % incoming.cols + 1) for i in good]


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
    flow: Flow,
    step: str,
    values: Mapping[str, Value],
    accepted: Iterable[str],
    version: int,
) -> Recipe:
    """The recipe to download for ``step``: the step's values under the tool's names, those
    the tool's class accepts, marked with the step's equipment class (a driver refuses it for
    a tool of another class). Its version is the lot's flow version (``version``, the
    published one, never the flow file's own ``version:``): a tool reporting another recipe
    is refused naming it."""
    takes = frozenset(accepted)
    body = {
        name: value for name, value in flow.steps[step].to_tool(values).items() if name in takes
    }
    return Recipe(
        flow.recipe_name(step),
        version,
        body,
        equipment_class=flow.steps[step].equipment_class,
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
            "text": printable(status.alarm.text),
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
            reason=printable(reason or "not answering"),
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
        reason=None if reason is None else printable(reason),
    )
