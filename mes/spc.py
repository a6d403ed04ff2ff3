"""SPC's service side: engineering's charts (one transaction each), the check of every new
point at track-out inside the lot's own transaction (a violation holds the lot, source SPC,
with the rule and the points, and may disqualify the tool for the step), and ``spc show``.

The rules are pure (:mod:`mes.domain.spc`); docs/interlocks.md, "SPC", says how they are
numbered and where the limits come from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from flows import FlowLibrary
from mes.domain import spc as rules
from mes.domain.authority import Action, Principal
from mes.domain.errors import InvalidInput, OperationNotAllowed, UnknownTool
from mes.domain.interlocks import Qualification
from mes.domain.model import Change, Hold, HoldSource, Lot, LotState, Operation
from mes.domain.spc import Chart, Point, Violation
from mes.domain.text import one_line
from mes.engineering import ChangeRecord, chart_state, qualification_change
from mes.guard import Guard, Guarded, SecurityLog
from mes.known_tools import naming_the_tools
from mes.ports import (
    UnitOfWorkFactory,
    Work,
    each_together,
    get_qualifications,
    get_tools,
    save_qualifications,
    together,
)
from mes.ports_spc import add_points, count_points, get_charts, get_points, save_chart

if TYPE_CHECKING:
    from mes.flowversions import VersionedFlows


def spc_on_track_out(before: Lot, change: Change, user: str, now: datetime) -> Work[Change]:
    """The lot ``before`` tracked out by ``change``: each measured value of the step that is
    charted on the tool gets its point, checked by the chart's rules; a violation holds the
    lot (source SPC, the rule and the points, in the track-out's own entry) and, where the
    chart says so, disqualifies the tool for the step. One query when nothing is charted."""
    at = [i for i, e in enumerate(change.entries) if e.operation is Operation.TRACK_OUT]
    if not at:
        return change
    entry = change.entries[at[-1]]
    step, tool = entry.step, entry.tool
    if step is None or tool is None:
        return change
    measured = _numbers(entry.data.get("measured", {}))
    if before.running is not None:  # read with the lot: its step's
        charts = yield from get_charts(None, running_lot=before.id)
    else:  # a step tracked out by a job recorded after the lot left the tool
        charts = yield from get_charts(step, tool_id=tool)
    charts = [c for c in charts if c.value in measured]
    if not charts:
        return change
    by_carrier = {
        carrier: _numbers(values)
        for carrier, values in dict(entry.data.get("measured_by_carrier", {})).items()
    }
    found: list[dict[str, Any]] = []
    points: list[Point] = []
    inhibited: list[str] = []
    # every chart's recent points in one round (on PostgreSQL one statement)
    recents = yield from each_together(
        get_points(
            c.step,
            c.value,
            c.tool_id,
            last=max(rules.WINDOW - 1, c.baseline_n if c.center is None else 0),
        )
        for c in charts
    )
    for before_chart, recent in zip(charts, recents, strict=True):
        chart = before_chart
        carriers = [(c, v[chart.value]) for c, v in by_carrier.items() if chart.value in v]
        for x, carrier, n, spread in rules.observations(
            chart.kind, measured[chart.value], carriers
        ):
            new = Point(
                chart.step,
                chart.value,
                chart.tool_id,
                before.id,
                now,
                x,
                carrier_id=carrier,
                n=n,
                s=spread,
            )
            after, point, broken = rules.observe(chart, recent, new)
            points.append(point)
            found.extend(_violation_dict(after, v, [*recent, point]) for v in broken)
            if broken and after.inhibit and after.value not in inhibited:
                inhibited.append(after.value)
            recent, chart = [*recent, point], after
        if chart != before_chart:
            yield from save_chart(chart)  # its limits, from the baseline just completed
    yield from add_points(points)
    if not found:
        return change
    text = "; ".join(
        f"SPC {v['value']} on {tool}{_of_carrier(v)}: rule {v['rule']} ({v['text']})" for v in found
    )
    if inhibited:
        reason = f"SPC at {step}: {text}"
        yield from save_qualifications(
            [Qualification(tool, step, False, rules.SPC_USER, now, reason)]
        )
    lot = change.lots[0]
    data = {**entry.data, "spc": found}
    if lot.state is LotState.HOLD:  # held already (a limit): the violations are added
        new_entry = replace(entry, data=data)
        return replace(change, entries=_replaced(change, at[-1], new_entry))
    hold = Hold(f"at {step}: {text}", user, now, HoldSource.SPC)
    held = replace(lot, state=LotState.HOLD, hold=hold)
    new_entry = replace(entry, state_after=LotState.HOLD, reason=hold.reason, data=data)
    return replace(
        change, lots=(held, *change.lots[1:]), entries=_replaced(change, at[-1], new_entry)
    )


def _numbers(values: Any) -> dict[str, float]:
    """The numeric values of a record's measured values (SPC charts only numbers)."""
    return {
        k: float(v)
        for k, v in dict(values).items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


def _of_carrier(violation: dict[str, Any]) -> str:
    """On a carrier chart: the carrier whose point completed the violation."""
    points = violation["points"]
    carrier = points[-1].get("carrier") if points else None
    return f" (carrier {carrier})" if carrier else ""


def _replaced(change: Change, index: int, entry: Any) -> tuple[Any, ...]:
    entries = list(change.entries)
    entries[index] = entry
    return tuple(entries)


def _violation_dict(chart: Chart, v: Violation, series: list[Point]) -> dict[str, Any]:
    return {
        "value": chart.value,
        "rule": v.rule,
        "text": rules.RULES[v.rule],
        "points": [_point_dict(series[i]) for i in v.points if i < len(series)],
        "center": chart.center,
        "sigma": chart.sigma,
    }


def _point_dict(p: Point) -> dict[str, Any]:
    """A point of a violation, as the track-out's entry records it: its lot and value, and
    its carrier (a carrier chart's) or its n and s (a subgroup chart's)."""
    found: dict[str, Any] = {"lot": p.lot_id, "x": p.x}
    if p.carrier_id is not None:
        found["carrier"] = p.carrier_id
    if p.n > 1:
        found.update(n=p.n, s=p.s)
    return found


@dataclass(frozen=True, slots=True)
class ChartView:
    """One chart for ``spc show``: its points, limits, violations and capability."""

    chart: Chart
    points: list[Point]
    violations: list[Violation]
    cpk: float | None
    ppk: float | None
    spec_lower: float | None
    spec_upper: float | None
    spec_from: str | None = None
    """Where the spec limits come from (``fo-organic v2``), or why there are none though
    flows give some (they differ between the flows that run the step)."""
    total: int | None = None
    """How many points the chart has, when ``points`` are only its newest (``show``'s
    ``last``): the violations are then those its track-outs recorded on them, and Cpk and
    Ppk are of them alone."""


@dataclass(frozen=True, slots=True)
class ChartSummary:
    """One chart of a list: how many points it has and the newest that broke a rule."""

    chart: Chart
    points: int
    last_violation: Point | None
    """The newest point its track-out recorded as breaking a rule, among the chart's newest
    ``looked`` points (None: none of them did)."""
    looked: int


class SpcService(Guarded):
    """Engineering's SPC charts."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        flows: FlowLibrary,
        clock: Callable[[], datetime],
        *,
        principal: Principal | None = None,
        security: SecurityLog | None = None,
        versions: VersionedFlows | None = None,
    ):
        """``versions``: the published flow versions; the spec limits ``show`` compares with
        are those of the version new lots of each flow start on (the flow files' without)."""
        self._uow = uow
        self._flows = flows
        self._versions = versions
        self._clock = clock
        self._guard = Guard(principal, security, clock)

    def _check_value(self, step: str, value: str) -> None:
        info = self._flows.step_codes.get(step)
        if info is None:
            raise InvalidInput(f"{step} is not a step code", allowed=sorted(self._flows.step_codes))
        known = sorted(
            {
                name
                for flow in self._flows.flows.values()
                if step in flow.steps
                for name, spec in flow.steps[step].measured.items()
                if spec.type in ("float", "int")
            }
        )
        if value not in known:
            raise InvalidInput(
                f"{value} is not a numeric value measured at {step}; expected one of "
                f"{', '.join(known) or '(none)'}",
                allowed=known,
            )

    async def configure(
        self,
        step: str,
        value: str,
        tool_id: str,
        user: str,
        *,
        baseline_n: int = 20,
        nelson: bool = False,
        inhibit: bool = False,
        center: float | None = None,
        sigma: float | None = None,
        kind: str = rules.ChartKind.LOT,
        by: Principal | None = None,
    ) -> Chart:
        """Set a chart (replacing the one of its step, value and tool): limits given, or
        from the first ``baseline_n`` points from now on. Recorded in the security log
        (``spc_set``, the chart before and after: :mod:`mes.engineering`), in the same
        transaction."""
        await self._guard.allow(by, Action.SPC)
        self._check_value(step, value)
        try:
            chart_kind = rules.ChartKind(kind)
        except ValueError:
            known = [k.value for k in rules.ChartKind]
            raise InvalidInput(
                f"{kind!r} is not a kind of chart; expected one of {', '.join(known)}",
                allowed=known,
            ) from None
        record = ChangeRecord.of(self._guard.who(by), user, "spc_set", self._clock())
        chart = rules.configure(
            step,
            value,
            tool_id,
            user,
            record.at,
            baseline_n=baseline_n,
            nelson=nelson,
            inhibit=inhibit,
            center=center,
            sigma=sigma,
            kind=chart_kind,
        )
        if center is not None:
            await self._check_center(step, value, center)

        def work() -> Work[Chart]:
            tool = (yield from get_tools([tool_id])).get(tool_id)
            if tool is None:
                raise UnknownTool(f"there is no tool {tool_id}", tool_id=tool_id)
            if self._flows.step_codes[step].equipment_class != tool.equipment_class:
                raise InvalidInput(
                    f"{tool_id} is a {tool.equipment_class}; {step} runs on a "
                    f"{self._flows.step_codes[step].equipment_class}"
                )
            before = yield from get_charts(step, tool_id=tool_id, value=value)
            yield from save_chart(chart)
            yield from record.write(
                {
                    "step": step,
                    "value": value,
                    "tool": tool_id,
                    "before": chart_state(before[0] if before else None),
                    "after": chart_state(chart),
                }
            )
            return chart

        try:
            return await self._uow.write(work())
        except UnknownTool as unknown:  # the tools there are, as the tool commands say them
            raise await naming_the_tools(self._uow, unknown) from None

    async def _check_center(self, step: str, value: str, center: float) -> None:
        """A center set by engineering outside the value's spec limits (those new lots are
        checked against) is refused: a process centred out of spec is no process to chart,
        and it is the mark of limits typed in another unit (0.025 for 25 um)."""
        lower, upper, spec_from = await self._spec(step, value)
        if (lower is None or center >= lower) and (upper is None or center <= upper):
            return
        units = {
            flow.steps[step].measured[value].unit
            for flow in self._flows.flows.values()
            if step in flow.steps and value in flow.steps[step].measured
        }
        unit = f" {units.pop()}" if len(units) == 1 and None not in units else ""
        if lower is not None and upper is not None:
            window = f"{lower:g} to {upper:g}{unit}"
        elif lower is not None:
            window = f"at least {lower:g}{unit}"
        else:
            window = f"at most {upper:g}{unit}"
        raise InvalidInput(
            f"center {center:g} is outside the spec limits of {value} at {step}, {window} "
            f"({spec_from}); expected a center within them, in the value's unit"
            + (f" ({unit.strip()})" if unit else "")
        )

    async def clear(
        self, step: str, tool_id: str, user: str, reason: str, *, by: Principal | None = None
    ) -> Qualification:
        """An engineer clears a tool an SPC violation inhibited: qualified for the step
        again. Refused for a tool SPC did not inhibit at that step (qualified, never
        qualified, or disqualified by engineering: ``tool qualify`` is theirs). Recorded in
        the security log (``spc_clear``, the qualification before and after), in the same
        transaction."""
        await self._guard.allow(by, Action.SPC)
        if step not in self._flows.step_codes:
            raise InvalidInput(f"{step} is not a step code", allowed=sorted(self._flows.step_codes))
        why = one_line(reason, "the reason")
        record = ChangeRecord.of(self._guard.who(by), user, "spc_clear", self._clock())
        q = Qualification(tool_id, step, True, user, record.at, f"SPC cleared: {why}")

        def work() -> Work[Qualification]:
            if not (yield from get_tools([tool_id])):
                raise UnknownTool(f"there is no tool {tool_id}", tool_id=tool_id)
            found = yield from get_qualifications(step=step, tool_id=tool_id)
            current = next((f for f in found if f.step == step), None)
            if current is None or current.qualified:
                raise OperationNotAllowed(
                    f"{tool_id} is not inhibited by SPC at {step}: nothing to clear "
                    "(spc clear lifts only an SPC violation's inhibit)"
                )
            if current.by != rules.SPC_USER:
                raise OperationNotAllowed(
                    f"{tool_id} was disqualified for {step} by {current.by}"
                    + (f" ({current.reason})" if current.reason else "")
                    + ", not by SPC: engineering qualifies it again with pkgline tool qualify "
                    f"{tool_id} --step {step}"
                )
            yield from save_qualifications([q])
            yield from record.write(qualification_change(tool_id, step, found, q, why))
            return q

        try:
            return await self._uow.write(work())
        except UnknownTool as unknown:  # the tools there are, as the tool commands say them
            raise await naming_the_tools(self._uow, unknown) from None

    async def charts(
        self, *, step: str | None = None, tool_id: str | None = None, by: Principal | None = None
    ) -> list[Chart]:
        """Every chart set (by step, value, tool), or a step's, or a tool's: what SPC watches.
        Refused (InvalidInput, UnknownTool) for a step or tool that does not exist."""
        return [s.chart for s in await self.summaries(step=step, tool_id=tool_id, by=by)]

    async def summaries(
        self,
        *,
        step: str | None = None,
        tool_id: str | None = None,
        looked: int = 0,
        by: Principal | None = None,
    ) -> list[ChartSummary]:
        """:meth:`charts`, with each one's number of points and the newest of its newest
        ``looked`` points that broke a rule (two statements a chart, every chart's side by side:
        one round trip on PostgreSQL; none with ``looked`` 0, the points then not counted: 0)."""
        await self._guard.allow(by, Action.READ)
        if step is not None and step not in self._flows.step_codes:
            known = sorted(self._flows.step_codes)
            raise InvalidInput(
                f"there is no step {step}; expected one of the flows' step codes", allowed=known
            )

        def work() -> Work[list[ChartSummary]]:
            if tool_id is not None and not (yield from get_tools([tool_id])):
                raise UnknownTool(f"there is no tool {tool_id}", tool_id=tool_id)
            charts = yield from get_charts(step, tool_id=tool_id)
            if not looked:
                return [ChartSummary(c, 0, None, 0) for c in charts]
            totals, newest = yield from together(  # every chart's reads side by side
                each_together(count_points(c.step, c.value, c.tool_id) for c in charts),
                each_together(get_points(c.step, c.value, c.tool_id, last=looked) for c in charts),
            )
            return [
                ChartSummary(c, total, next((p for p in reversed(points) if p.rules), None), looked)
                for c, total, points in zip(charts, totals, newest, strict=True)
            ]

        async with self._uow(readonly=True) as uow:
            return await uow.run(work(), commit=True)

    async def show(
        self,
        step: str,
        value: str,
        *,
        tool_id: str | None = None,
        last: int | None = None,
        by: Principal | None = None,
    ) -> list[ChartView]:
        """The charts of (step, value), on one tool or all: points, limits, violations,
        Cpk and Ppk against the step's spec limits. ``last``: only the newest ``last`` points
        of a chart that has more are read (the station's page, whatever the chart's length:
        :meth:`_recent`)."""
        await self._guard.allow(by, Action.READ)
        self._check_value(step, value)
        lower, upper, spec_from = await self._spec(step, value)

        def work() -> Work[list[ChartView]]:
            if tool_id is not None and not (yield from get_tools([tool_id])):
                raise UnknownTool(f"there is no tool {tool_id}", tool_id=tool_id)
            views = []
            for chart in (yield from get_charts(step, tool_id=tool_id, value=value)):
                if last is not None:
                    total = yield from count_points(step, value, chart.tool_id)
                    if total > last:
                        view = yield from _recent(chart, last, total, lower, upper, spec_from)
                        views.append(view)
                        continue
                points = yield from get_points(step, value, chart.tool_id)
                found: list[Violation] = []
                if chart.center is not None and chart.sigma is not None:
                    # the points since the chart was set, as the track-outs checked them
                    # (after its baseline, where the limits came from one): earlier points
                    # were another chart's
                    first = len(points) - len(rules.since_set(chart, points))
                    ours = points[first:]
                    start = (
                        rules.baseline_end(ours, chart.baseline_n, chart.kind) or 0
                        if chart.limits_source == "baseline"
                        else 0
                    )
                    subgroups = chart.kind is rules.ChartKind.SUBGROUP
                    found = [
                        Violation(v.rule, tuple(i + first for i in v.points))
                        for v in rules.all_violations(
                            [p.x for p in ours],
                            chart.center,
                            chart.sigma,
                            chart.rules,
                            start,
                            ns=[p.n for p in ours] if subgroups else None,
                            ss=[p.s for p in ours] if subgroups else None,
                        )
                    ]
                cpk, ppk = rules.capability_of(chart.kind, points, lower, upper)
                views.append(ChartView(chart, points, found, cpk, ppk, lower, upper, spec_from))
            return views

        async with self._uow(readonly=True) as uow:
            return await uow.run(work(), commit=True)

    async def _spec(self, step: str, value: str) -> tuple[float | None, float | None, str | None]:
        """The spec limits of ``value`` at ``step`` that new lots are checked against: of each
        flow that runs the step, the version its new lots start on (its file without
        versions). (lower, upper, where from); none, saying so, where the flows differ."""
        found: dict[tuple[float | None, float | None], list[str]] = {}
        if self._versions is not None:
            await self._versions.load()  # an approval or retirement since this process began
        for name, packaged in sorted(self._flows.flows.items()):
            flow, where = packaged, name
            if self._versions is not None and self._versions.loaded and self._versions.has(name):
                active = await self._versions.active(name)
                if active is None:
                    continue  # no version of it starts lots: it checks no new lot
                where, flow = f"{name} v{active[0]}", active[1]
            spec = flow.steps[step].measured.get(value) if step in flow.steps else None
            if spec is not None and spec.spec is not None:
                lower = None if spec.spec.lower is None else float(spec.spec.lower)
                upper = None if spec.spec.upper is None else float(spec.spec.upper)
                found.setdefault((lower, upper), []).append(where)
        if len(found) == 1:
            ((lower, upper), flows), *_ = found.items()
            return lower, upper, ", ".join(flows)
        if not found:
            return None, None, None
        differ = "; ".join(
            f"{', '.join(flows)}: {_bound(lo)} to {_bound(hi)}" for (lo, hi), flows in found.items()
        )
        return None, None, f"none: the flows' spec limits differ ({differ})"


def _recent(
    chart: Chart,
    last: int,
    total: int,
    lower: float | None,
    upper: float | None,
    spec_from: str | None,
) -> Work[ChartView]:
    """The newest ``last`` of a chart's ``total`` points, read alone: each violation is one
    its track-out recorded on a point (the rule that held the lot), numbered over the whole
    chart; Cpk and Ppk of these points."""
    points = yield from get_points(chart.step, chart.value, chart.tool_id, last=last)
    first = total - len(points)
    found = [Violation(r, (first + i,)) for i, p in enumerate(points) for r in p.rules]
    cpk, ppk = rules.capability_of(chart.kind, points, lower, upper)
    return ChartView(chart, points, found, cpk, ppk, lower, upper, spec_from, total)


def _bound(limit: float | None) -> str:
    return "-" if limit is None else f"{limit:g}"
