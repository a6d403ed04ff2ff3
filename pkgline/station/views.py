"""What a lot's page shows, read from the service layer for the person looking (``by=``):
its route, strip maps, yields, limits, history and the steps an operator runs by hand (the
line page's: :mod:`pkgline.station.line_view`). Plain values for the templates; no rule is
decided here: the service layer refuses what the person may not read or do.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flows import Flow
from flows.model import ValueSpec
from mes.domain.authority import Action, Context, Principal, effective_action
from mes.domain.equipment import DispatchMode
from mes.domain.errors import LotTrackerError
from mes.domain.interlocks import MANUAL_CLASS, consumable_blocks
from mes.domain.material_reach import Source
from mes.domain.model import SCRAP_STEP, Lot, LotState, Operation
from mes.domain.reasons import ReasonCode
from mes.domain.report import CarrierMap, LotReport, hold_entry
from mes.equipment import EquipmentService
from mes.ports import ToolQuery
from pkgline.bootstrap import Services
from pkgline.hold_views import hold_record, placed_by
from pkgline.station.line_view import now
from pkgline.station.stripmap import LegendEntry, code_colours, legend, strip_map_svg
from pkgline.station.work_views import spec_text, value_fields, window_words
from pkgline.tool_views import tracked_lots


@dataclass(frozen=True, slots=True)
class RouteStep:
    step: str
    status: str
    """``done``, ``current`` (running now), ``next`` (allowed next), ``on-release`` (a held
    lot's next once released) or ``later``."""


@dataclass(frozen=True, slots=True)
class CarrierView:
    id: str
    rows: int
    cols: int
    good: int
    rejected: int
    svg: str


@dataclass(frozen=True, slots=True)
class LotView:
    report: LotReport
    route: tuple[RouteStep, ...]
    carriers: tuple[CarrierView, ...]
    legend: tuple[LegendEntry, ...]
    limits: tuple[StepLimits, ...] = ()
    signers: dict[str, int] | None = None
    """How many people sign each signed action of the page (``release``, ``rework``,
    ``scrap``, ``scrap_sites``): two where ``[signatures] two_signers`` asks."""
    shown: tuple[str, int | None] = ("all", None)
    """Which rejects the maps show (:func:`map_filter`)."""
    materials: tuple[Source, ...] = ()
    """What went into the lot (``lot genealogy``): each material lot, at which step and tool,
    and through which lots (a split's parent, a lot merged into it)."""
    rework_steps: tuple[str, ...] = ()
    """The steps a held lot may be sent back to: those of its path its flow marks reworkable,
    latest first (the lot tracker says whether the rework may undo what came after)."""
    migrate_to: tuple[int, ...] = ()
    """The other approved versions of the lot's flow, a waiting or held lot may move to
    (engineering; the lot tracker checks its path against the version)."""
    by_hand: tuple[HandStep, ...] = ()
    """What an operator does at the station with the lot's steps that run on no tool: the
    next ones to track in (their recipe values), or the running one to track out (its
    measured values)."""
    hold_record: tuple[tuple[str, str], ...] = ()
    """What the hold's entry records of the work done before it (``lot show``'s rows under
    the hold: :func:`pkgline.hold_views.hold_record`)."""
    family: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """The lots this one is related to, as ``lot show``'s genealogy (:func:`family_of`)."""
    reason_codes: tuple[ReasonCode, ...] = ()
    """The active hold and scrap reason codes of the catalogue (``pkgline reason list``),
    offered beside the hold's and the scrap's code fields."""
    hold_code: ReasonCode | None = None
    """The reason code the lot's hold was placed with (retired since or not): it may name
    the roles that release it."""
    hold_placed_by: str = ""
    """Who placed the lot's hold, in words (:func:`pkgline.hold_views.placed_by`): a person,
    the line controller, or a system's API key."""


@dataclass(frozen=True, slots=True)
class HandStep:
    """A step run by hand (on no tool) as a form: track it in with its recipe values, or
    out with its measured values (the fields: pkgline.station.work_views.value_fields)."""

    step: str
    description: str
    action: str
    """``track-in`` or ``track-out``."""
    fields: tuple[Any, ...]
    tools: tuple[str, ...] = ()
    """A step on a tool: the tools of its class switched to manual and qualified for the
    step, one of which an operator picks (the interlocks decide whether it may run the step
    now)."""
    busy: Mapping[str, str] = field(default_factory=dict)
    """Of ``tools``, those a lot runs on now (tool id -> lot id): said beside them."""
    blocked: Mapping[str, list[str]] = field(default_factory=dict)
    """Of ``tools``, those whose track-ins are refused now for what is on them (a material
    lot quarantined, expired or thawing, a durable past its life; tool id -> why): said
    beside them, as the line page's tiles say it."""


def route_of(report: LotReport, flow_steps: tuple[str, ...]) -> tuple[RouteStep, ...]:
    """The flow's steps in its order, each marked done, current, next, on-release or later
    for the lot."""
    lot = report.lot
    done = set(lot.path)
    current = lot.running.step if lot.running is not None else None
    following = set(report.next_steps)
    once_released = set(report.next_after_release)
    out = []
    for step in flow_steps:
        if step == current:
            status = "current"
        elif step in following:
            status = "next"
        elif step in once_released:
            status = "on-release"
        elif step in done:
            status = "done"
        else:
            status = "later"
        out.append(RouteStep(step, status))
    return tuple(out)


MAP_VIEW = re.compile(r"^(all|at|upto)(?::(\d{1,4}))?$")


def map_filter(text: str, steps: int) -> tuple[str, int | None] | str:
    """Which rejects the strip maps show: ``all`` (every one so far), ``at:N`` (those of the
    N-th step of the path only) or ``upto:N`` (cumulative, through the N-th step); a message
    saying what was expected otherwise."""
    found = MAP_VIEW.fullmatch(text or "all")
    expected = f"expected all, at:N or upto:N with N a step of the path (1 to {steps})"
    if found is None or (found[1] == "all") != (found[2] is None):
        return f"map {text!r}: {expected}"
    if found[1] == "all":
        return ("all", None)
    n = int(found[2])
    if not 1 <= n <= steps:
        return f"map {text!r}: {expected}"
    return (found[1], n)


def _shown(maps: tuple[CarrierMap, ...], view: tuple[str, int | None]) -> tuple[CarrierMap, ...]:
    kind, n = view
    if n is None:
        return maps
    index = n - 1
    if kind == "at":  # what that step rejected (not the sites scrapped by hand)
        keep = [
            [r for r in m.rejects if r.path_index == index and r.step != SCRAP_STEP] for m in maps
        ]
    else:  # through that step: what it and the steps before rejected, and scrapped before it
        keep = [
            [
                r
                for r in m.rejects
                if r.path_index < index or (r.path_index == index and r.step != SCRAP_STEP)
            ]
            for m in maps
        ]
    return tuple(
        CarrierMap(m.carrier, tuple(k), m.scrapped) for m, k in zip(maps, keep, strict=True)
    )


def family_of(report: LotReport) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The lots ``report``'s lot is related to, each kind with its lots: its parent (it was
    split off), its children (split off it), the lots merged into it and the one it was
    merged into, from its own history as ``lot show`` reads them; none: no relative."""
    lot = report.lot
    own = [e for e in report.history if e.lot_id == lot.id]
    kinds = (
        ("parent", (lot.parent_id,) if lot.parent_id else ()),
        ("children", report.children),
        ("merged in", tuple(str(e.data["merged"]) for e in own if e.operation is Operation.MERGE)),
        (
            "merged into",
            tuple(str(e.data["into"]) for e in own if e.operation is Operation.MERGE_INTO),
        ),
    )
    return tuple((kind, ids) for kind, ids in kinds if ids)


ACTIVE = (LotState.WAITING, LotState.RUNNING, LotState.HOLD)
"""The states in which the lot page has a hold's or a scrap's form."""


async def lot_view(
    services: Services,
    who: Principal,
    lot_id: str,
    shown: tuple[str, int | None] = ("all", None),
) -> LotView:
    """A lot as ``who`` may see it (UnknownLot when there is none of that id); its strip maps
    as ``shown`` says (:func:`map_filter`)."""
    lots = services.lots.acting_as(who)
    report = await lots.report(lot_id)
    flow = lots.flow_of(report.lot)  # the version the lot runs on
    colours = code_colours(r.code for m in report.carriers for r in m.rejects)
    maps = _shown(report.carriers, shown)
    carriers = tuple(
        CarrierView(
            m.carrier.id,
            m.carrier.rows,
            m.carrier.cols,
            m.good_sites,
            len(m.rejects),
            strip_map_svg(m, colours),
        )
        for m in maps
    )
    policy = services.lots.signing.policy
    lot = report.lot
    held_by = lot.hold.source if lot.hold is not None else None
    release = effective_action(Action.RELEASE, Context(lot.id, held_by))
    materials = await services.materials.acting_as(who).genealogy(lot_id)
    held = [
        i
        for i, e in enumerate(report.history)
        if e.lot_id == lot.id and e.operation is Operation.HOLD
    ]
    later = (
        [(e.operation.value, e.step, e.data) for e in report.history[held[-1] + 1 :]]
        if held
        else []
    )
    codes = await services.reasons.find(retired=True, by=who) if lot.state in ACTIVE else []
    hold_code = lot.hold.code if lot.hold is not None else None
    return LotView(
        report,
        route_of(report, tuple(flow.steps)),
        carriers,
        tuple(legend(maps)),
        step_limits(report, flow),
        {
            "release": policy.signers(release),
            "rework": policy.signers(Action.REWORK),
            "migrate": policy.signers(Action.MIGRATE),
            "scrap": policy.signers(Action.SCRAP),
            "scrap_sites": policy.signers(Action.SCRAP_SITES),
        },
        shown,
        tuple(materials),
        tuple(
            dict.fromkeys(
                step for step in reversed(lot.path) if flow.steps[step].rework is not None
            )
        ),
        await migrate_to(services, who, lot),
        await by_hand(services, who, report, flow),
        tuple(hold_record(report.history[held[-1]].data if held else {}, later))
        if lot.hold
        else (),
        family_of(report),
        tuple(r for r in codes if r.active),
        next((r for r in codes if r.code == hold_code), None),
        _hold_placed_by(report),
    )


def _hold_placed_by(report: LotReport) -> str:
    """Who placed the lot's hold, in words (the empty string when it is not held)."""
    lot = report.lot
    if lot.hold is None:
        return ""
    entry = hold_entry(lot, report.history)
    return placed_by(lot.hold.user, entry.by if entry else None, entry.auth if entry else None)


async def running_on(services: Services, who: Principal, tools: tuple[str, ...]) -> dict[str, str]:
    """The lot running on each of ``tools`` that runs one (by tool id): the picker says so
    beside the tool, whose track-in the interlocks would refuse while it runs. One read of
    the lots running on those tools (:func:`pkgline.tool_views.tracked_lots`)."""
    found = await tracked_lots(services.lots.acting_as(who), tools)
    return {tool: lot.id for tool, lot in found.items()}


async def blocked_on(
    services: Services, who: Principal, tools: tuple[str, ...]
) -> dict[str, list[str]]:
    """Why each of ``tools`` refuses every track-in now for what is on it (those it refuses
    none are left out; :func:`mes.domain.interlocks.consumable_blocks`, as the line page's
    tiles): one read of the durables mounted and one of the material lots loaded."""
    if not tools:
        return {}
    blocks = consumable_blocks(
        await services.durables.acting_as(who).list(mounted=True),
        await services.materials.acting_as(who).find(loaded=True),
        now(),
    )
    return {tool: blocks[tool] for tool in tools if tool in blocks}


async def tools_in_manual(equipment: EquipmentService, equipment_class: str) -> tuple[str, ...]:
    """The tools of ``equipment_class`` switched to manual, read a page at a time."""
    found: list[str] = []
    after: str | None = None
    while True:
        page = await equipment.page(ToolQuery(equipment_class=equipment_class, after=after))
        found += [t.id for t in page.tools if t.dispatch is DispatchMode.MANUAL]
        if not page.more:
            return tuple(found)
        after = page.tools[-1].id


async def migrate_to(services: Services, who: Principal, lot: Lot) -> tuple[int, ...]:
    """The approved versions of ``lot``'s flow other than its own, when it waits or is held
    (none where the flows are not versioned)."""
    from mes.domain.flowversions import VersionState

    if lot.state not in (LotState.WAITING, LotState.HOLD):
        return ()
    try:
        versions = await services.flow_versions.versions(lot.flow, by=who)
    except LotTrackerError:  # no version published (a schema made without db upgrade)
        return ()
    return tuple(
        v.version
        for v in versions
        if v.state is VersionState.APPROVED and v.version != lot.flow_version
    )


async def by_hand(
    services: Services, who: Principal, report: LotReport, flow: Flow
) -> tuple[HandStep, ...]:
    """The lot's steps an operator runs at the station. When it waits: each next step run on
    no tool (class ``manual``: a substrate or carrier entering the line), and each next step
    on a tool of which some are switched to manual (``pkgline tool manual``: the operator
    runs it there, not the line controller). When it runs a step on no tool, or one tracked
    in by hand (on a tool in manual then, whatever its mode now): that step, to track out.
    A step its line controller tracked in is the controller's to track out, with the tool's
    results (mes.domain.steps.track_out), whatever the tool's mode now: the page offers
    to abort or hold it."""
    lot = report.lot
    equipment = services.equipment.acting_as(who)
    if lot.state is LotState.WAITING:
        steps = []
        for step in report.next_steps:
            spec = flow.steps[step]
            tools: tuple[str, ...] = ()
            if spec.equipment_class != MANUAL_CLASS:
                tools = await tools_in_manual(equipment, spec.equipment_class)
                if tools:  # a tool not qualified for the step would only be refused
                    qualified = await services.qualifications.acting_as(who).list(step=step)
                    runs = {q.tool_id for q in qualified if q.qualified}
                    tools = tuple(t for t in tools if t in runs)
                if not tools:
                    continue
            steps.append(
                HandStep(
                    step,
                    spec.description,
                    "track-in",
                    value_fields(spec.recipe),
                    tools,
                    await running_on(services, who, tools),
                    await blocked_on(services, who, tools),
                )
            )
        return tuple(steps)
    running = lot.running
    if running is None:
        return ()
    if running.tool is not None and not running.by_hand:
        return ()  # its line controller's, tracked out with the tool's results
    spec = flow.steps[running.step]
    return (HandStep(running.step, spec.description, "track-out", value_fields(spec.measured)),)


# -- the claimed limits and values of each step ----------------------------------------------


@dataclass(frozen=True, slots=True)
class LimitRow:
    name: str
    kind: str
    """``recipe``, ``measured`` or ``check`` (a limit on an earlier step's value)."""
    unit: str | None
    limits: str
    """The claimed limits in words (``0.1 to 0.5 (claim 1)``), the spec limits and the
    set-point window."""
    value: Any


@dataclass(frozen=True, slots=True)
class StepLimits:
    index: int
    """The step's place in the lot's path (0-based); the running step's is the path's length."""
    step: str
    status: str
    """``done`` or ``running``."""
    rows: tuple[LimitRow, ...]


def _limit_text(spec: ValueSpec) -> str:
    parts = [f"{limit.describe()} ({limit.claim})" for limit in spec.limits]
    if spec.spec is not None:
        parts.append(spec_text(spec))
    if spec.window is not None:
        parts.append(window_words(spec))
    return "; ".join(parts) or "-"


def step_limits(report: LotReport, flow: Flow) -> tuple[StepLimits, ...]:
    """Per step the lot has done (and the one it runs), each recipe and measured value with
    its claimed limits and the value recorded, and the limits checked at its track-in on
    earlier values (with the lot's latest value of each)."""
    lot = report.lot
    recipes: dict[int, dict[str, Any]] = {}
    for entry in report.history:
        if entry.operation is Operation.TRACK_IN:
            index = int(entry.data.get("path_index", 0))
            recipes[index] = dict(entry.data.get("values") or {})
    steps: list[tuple[int, str, str, dict[str, Any]]] = [
        (p.path_index, p.step, "done", dict(p.measured)) for p in report.path
    ]
    if lot.running is not None:
        steps.append((len(lot.path), lot.running.step, "running", {}))
    out = []
    for index, code, status, measured in steps:
        spec = flow.steps.get(code)
        if spec is None:
            continue
        recipe = recipes.get(index) or (dict(lot.running.values) if lot.running else {})
        rows = [
            LimitRow(n, "recipe", s.unit, _limit_text(s), recipe.get(n))
            for n, s in spec.recipe.items()
        ]
        rows += [
            LimitRow(n, "measured", s.unit, _limit_text(s), measured.get(n))
            for n, s in spec.measured.items()
        ]
        rows += [
            LimitRow(
                c.value,
                "check",
                None,
                f"{c.describe()} ({c.claim})",
                lot.recorded.get(c.value),
            )
            for c in spec.checks
        ]
        out.append(StepLimits(index, code, status, tuple(rows)))
    return tuple(out)
