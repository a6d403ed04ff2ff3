"""Statistical process control per (step, measured value, tool), with control limits from a
baseline window or set by engineering, and the run rules checked at each new point. Pure, no
I/O. A chart is of one of three kinds (:class:`ChartKind`):

- ``lot``: an individuals / moving-range chart of one point per lot at each track-out of the
  step (the lot's value: the mean of its carriers when they were measured job by job): a lot
  whose flow runs the step twice (the recon flows' FILL, a step of each wiring layer) or that
  is reworked through it adds a point at each pass. Center = the mean of the baseline points;
  sigma = their mean moving range / 1.128 (d2 for ranges of two); limits center +- 3 sigma.
- ``carrier``: the same chart with one point per carrier at each pass (each job's value), so
  a lot of four carriers adds four points a pass, checked one after the other.
- ``subgroup``: an X-bar / S chart of one point per lot at each pass, its subgroup the lot's
  carriers at that pass: the point is their mean, plotted against center +- 3 sigma /
  sqrt(n) for its n carriers, and their standard deviation s is checked against the S
  chart's limits (rule 9). Center = the baseline's grand mean (each lot weighted by its
  carriers); sigma = the mean of s / c4(n) over its subgroups of two or more (the spread
  within a lot: the short-term sigma). Subgroup sizes may differ from lot to lot (the limits
  follow n); c4(n) is exact (gamma functions), so any n works.

The rules (a violation is reported at the point that completes it; "zone" distances are in
sigma from the center). Rules 1-4 are the Western Electric rules, always on; 5-8 are the
Nelson rules the Western Electric set lacks, on when a chart is configured with them:

1. one point beyond 3 sigma;
2. two of three points in a row beyond 2 sigma, on the same side;
3. four of five points in a row beyond 1 sigma, on the same side;
4. eight points in a row on the same side of the center;
5. six points in a row steadily increasing or decreasing (Nelson 3);
6. fourteen points in a row alternating up and down (Nelson 4);
7. fifteen points in a row within 1 sigma, either side (Nelson 7);
8. eight points in a row beyond 1 sigma, either side (Nelson 8).

On a subgroup chart the zones are those of the point's own n (sigma / sqrt(n)), and one more
rule is always on:

9. a lot's spread (the standard deviation of its carriers' values) beyond the S chart's
   control limits for its n: above c4 sigma + 3 sigma sqrt(1 - c4^2), or below c4 sigma -
   3 sigma sqrt(1 - c4^2) where that is above 0 (six carriers or more).
"""

from __future__ import annotations

import itertools
import math
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from mes.domain.errors import InvalidInput

SPC_USER = "SPC"
"""Who disqualifies a tool when a chart set with ``inhibit`` finds a violation (the
qualification table's ``by``): ``pkgline spc clear`` lifts only those."""

D2 = 1.128
"""d2 for moving ranges of two points."""
D4 = 3.267
"""D4 for moving ranges of two points."""

RULES: dict[int, str] = {
    1: "one point beyond 3 sigma",
    2: "two of three points beyond 2 sigma on one side",
    3: "four of five points beyond 1 sigma on one side",
    4: "eight points in a row on one side of the center",
    5: "six points in a row steadily increasing or decreasing",
    6: "fourteen points in a row alternating up and down",
    7: "fifteen points in a row within 1 sigma",
    8: "eight points in a row beyond 1 sigma, either side",
    9: "a lot's spread beyond the S chart's limits",
}
WESTERN_ELECTRIC = (1, 2, 3, 4)
WITH_NELSON = (1, 2, 3, 4, 5, 6, 7, 8)
SPREAD = 9
"""The S chart's rule: on every subgroup chart."""


class ChartKind(StrEnum):
    """What a chart's points are (the module's docstring says how each is computed)."""

    LOT = "lot"
    """Individuals / moving range: one point per lot at each pass through the step, the lot's
    value."""
    CARRIER = "carrier"
    """Individuals / moving range: one point per carrier at each pass, each job's value."""
    SUBGROUP = "subgroup"
    """X-bar / S: one point per lot at each pass, the mean and spread of its carriers'
    values."""


KIND_TEXT: dict[str, str] = {
    ChartKind.LOT: "individuals chart, one point per lot at each pass through the step",
    ChartKind.CARRIER: "individuals chart, one point per carrier at each pass through the step",
    ChartKind.SUBGROUP: "X-bar / S chart of each lot's carriers, a point at each pass through the "
    "step",
}
"""Each kind in words, for the CLI and the station."""


def c4(n: int) -> float:
    """The mean of a sample standard deviation of ``n`` normal values, in sigma (n >= 2):
    sqrt(2 / (n - 1)) * Gamma(n / 2) / Gamma((n - 1) / 2); 0.7979 for 2, 0.9400 for 5."""
    return math.sqrt(2 / (n - 1)) * math.exp(math.lgamma(n / 2) - math.lgamma((n - 1) / 2))


def spread_limits(sigma: float, n: int) -> tuple[float, float]:
    """The S chart's (lower, upper) control limits for subgroups of ``n`` (n >= 2)."""
    k = c4(n)
    half = 3 * sigma * math.sqrt(max(1 - k * k, 0.0))
    return max(k * sigma - half, 0.0), k * sigma + half


WINDOW = 15
"""The most points a rule looks back over (rule 7)."""
MIN_BASELINE = 5
MAX_BASELINE = 1000
"""The most points a baseline may take: each point the chart takes reads the baseline's
points until it is complete (20 to 125 is usual)."""


@dataclass(frozen=True, slots=True)
class Violation:
    rule: int
    points: tuple[int, ...]
    """Indexes of the points that make it, in the series checked."""

    @property
    def text(self) -> str:
        return f"rule {self.rule} ({RULES[self.rule]})"


def _beyond(zs: Sequence[float], k: float, side: int) -> list[bool]:
    return [z * side > k for z in zs]


def rules_at_end(
    xs: Sequence[float],
    center: float,
    sigma: float,
    rules: Sequence[int],
    *,
    ns: Sequence[int] | None = None,
    s: float | None = None,
) -> list[Violation]:
    """The violations completed by the last point of ``xs`` (oldest first). ``ns``: each
    point's subgroup size, on a subgroup chart (its zones are in sigma / sqrt(n)); ``s``: the
    last point's spread, which rule 9 checks against the S chart's limits for its n."""
    n = len(xs)
    if n == 0 or sigma <= 0:
        return []
    if ns is None:
        zs = [(x - center) / sigma for x in xs]
    else:
        zs = [(x - center) * math.sqrt(k) / sigma for x, k in zip(xs, ns, strict=True)]
    last = n - 1
    found: list[Violation] = []

    def tail(k: int) -> tuple[int, ...]:
        return tuple(range(n - k, n))

    def k_of_m(k: int, m: int, limit: float) -> tuple[int, ...] | None:
        if n < m:
            return None
        side = 1 if zs[last] > 0 else -1
        if not zs[last] * side > limit:
            return None
        hits = [i for i in tail(m) if zs[i] * side > limit]
        return tuple(hits) if len(hits) >= k else None

    for rule in rules:
        points: tuple[int, ...] | None = None
        if rule == 1:
            points = (last,) if abs(zs[last]) > 3 else None
        elif rule == 2:
            points = k_of_m(2, 3, 2)
        elif rule == 3:
            points = k_of_m(4, 5, 1)
        elif rule == 4 and n >= 8:
            window = zs[n - 8 :]
            if all(z > 0 for z in window) or all(z < 0 for z in window):
                points = tail(8)
        elif rule == 5 and n >= 6:
            steps = [xs[i + 1] - xs[i] for i in range(n - 6, n - 1)]
            if all(d > 0 for d in steps) or all(d < 0 for d in steps):
                points = tail(6)
        elif rule == 6 and n >= 14:
            steps = [xs[i + 1] - xs[i] for i in range(n - 14, n - 1)]
            if all(d != 0 for d in steps) and all(
                (steps[i] > 0) != (steps[i + 1] > 0) for i in range(len(steps) - 1)
            ):
                points = tail(14)
        elif rule == 7 and n >= 15 and all(abs(z) < 1 for z in zs[n - 15 :]):
            points = tail(15)
        elif rule == 8 and n >= 8 and all(abs(z) > 1 for z in zs[n - 8 :]):
            points = tail(8)
        elif rule == SPREAD and ns is not None and s is not None and ns[last] >= 2:
            lower, upper = spread_limits(sigma, ns[last])
            points = (last,) if not lower <= s <= upper else None
        if points is not None:
            found.append(Violation(rule, points))
    return found


def all_violations(
    xs: Sequence[float],
    center: float,
    sigma: float,
    rules: Sequence[int],
    start: int = 0,
    *,
    ns: Sequence[int] | None = None,
    ss: Sequence[float | None] | None = None,
) -> list[Violation]:
    """Every violation in ``xs``, each at the point that completes it (from ``start`` on:
    the points before are the baseline). ``ns`` and ``ss``: a subgroup chart's sizes and
    spreads, point by point (:func:`rules_at_end`)."""
    found: list[Violation] = []
    for end in range(max(start, 0), len(xs)):
        lo = max(0, end + 1 - WINDOW)
        for v in rules_at_end(
            xs[lo : end + 1],
            center,
            sigma,
            rules,
            ns=None if ns is None else ns[lo : end + 1],
            s=None if ss is None else ss[end],
        ):
            found.append(Violation(v.rule, tuple(i + lo for i in v.points)))
    return found


def limits_from(baseline: Sequence[float]) -> tuple[float, float]:
    """(center, sigma) from a baseline window: the mean, and the mean moving range / d2.
    Refused (InvalidInput) for fewer than MIN_BASELINE points or no variation a number can
    tell from the center."""
    if len(baseline) < MIN_BASELINE:
        raise InvalidInput(
            f"control limits need a baseline of at least {MIN_BASELINE} points, not {len(baseline)}"
        )
    found = baseline_limits(baseline)
    if found is None:
        raise InvalidInput("the baseline points do not vary: no control limits from them")
    return found


def baseline_limits(baseline: Sequence[float]) -> tuple[float, float] | None:
    """:func:`limits_from`, or None when the points do not vary (a value the tool reports
    as its set point, the same at every lot): no limits from them."""
    ranges = [abs(baseline[i + 1] - baseline[i]) for i in range(len(baseline) - 1)]
    if not ranges:
        return None
    center, sigma = statistics.fmean(baseline), statistics.fmean(ranges) / D2
    return (center, sigma) if _resolvable(center, sigma) else None


def subgroup_limits(points: Sequence[Point]) -> tuple[float, float] | None:
    """(center, sigma) from a subgroup chart's baseline: the grand mean (each point weighted
    by its n) and the mean of s / c4(n) over its subgroups of two or more. None when none of
    them has a spread a number can tell from 0 (every lot of one carrier, or its carriers
    alike): no limits from them."""
    total = sum(p.n for p in points)
    within = [p.s / c4(p.n) for p in points if p.n >= 2 and p.s is not None]
    if not total or not within:
        return None
    center, sigma = math.fsum(p.x * p.n for p in points) / total, statistics.fmean(within)
    return (center, sigma) if _resolvable(center, sigma) else None


def limits_of(kind: ChartKind, points: Sequence[Point]) -> tuple[float, float] | None:
    """(center, sigma) from a baseline of ``points`` of a chart of ``kind``, or None when
    they give none (:func:`baseline_limits`, :func:`subgroup_limits`)."""
    if kind is ChartKind.SUBGROUP:
        return subgroup_limits(points)
    return baseline_limits([p.x for p in points])


def _resolvable(center: float, sigma: float) -> bool:
    """A sigma the chart can use: a finite normal number, above 0, that moves the center."""
    return math.isfinite(sigma) and sigma >= sys.float_info.min and center + sigma != center


def since_set(chart: Chart, points: Sequence[Point]) -> list[Point]:
    """The points of ``points`` (oldest first) recorded since ``chart`` was set: those of a
    chart it replaced are kept and shown, but are not its baseline nor checked against it."""
    return [p for p in points if p.at >= chart.set_at]


def baseline_end(points: Sequence[Point], n: int, kind: ChartKind = ChartKind.LOT) -> int | None:
    """Where the points after the baseline start, in the ``points`` of a chart of ``kind``
    whose limits came from a baseline of ``n``: after the first ``n`` points in a row that
    give limits (as :func:`observe` took them); None while there are none."""
    for end in range(n, len(points) + 1):
        if limits_of(kind, points[end - n : end]) is not None:
            return end
    return None


NO_SPREAD = 1e-12
"""A sigma at most this fraction of the mean (or of 1) is no variation (:func:`_index`)."""


def capability(
    xs: Sequence[float], lower: float | None, upper: float | None
) -> tuple[float | None, float | None]:
    """(Cpk, Ppk) of ``xs`` against spec limits ``lower``/``upper`` (either may be None):
    Cpk with the points' within sigma (their mean moving range / d2: the short-term spread of
    the process, whatever sigma the chart's control limits were set with), Ppk with their
    overall sample standard deviation. None where it cannot be computed (no spec limit, too
    few points, no variation)."""
    if len(xs) < 2 or (lower is None and upper is None):
        return None, None
    mean = statistics.fmean(xs)
    within = statistics.fmean(abs(b - a) for a, b in itertools.pairwise(xs)) / D2
    return _index(mean, within, lower, upper), _index(mean, statistics.stdev(xs), lower, upper)


def capability_of(
    kind: ChartKind, points: Sequence[Point], lower: float | None, upper: float | None
) -> tuple[float | None, float | None]:
    """(Cpk, Ppk) of a chart's ``points``: :func:`capability` of their values, or on a
    subgroup chart, of the carriers' values they summarize: Cpk with the within-lot sigma (the
    mean of s / c4(n)), Ppk with the standard deviation of every carrier's value about the
    grand mean (pooled from each lot's n, mean and s)."""
    if kind is not ChartKind.SUBGROUP:
        return capability([p.x for p in points], lower, upper)
    total = sum(p.n for p in points)
    if total < 2 or (lower is None and upper is None):
        return None, None
    mean = math.fsum(p.x * p.n for p in points) / total
    squares = math.fsum((p.n - 1) * (p.s or 0.0) ** 2 + p.n * (p.x - mean) ** 2 for p in points)
    within = [p.s / c4(p.n) for p in points if p.n >= 2 and p.s is not None]
    cpk = _index(mean, statistics.fmean(within), lower, upper) if within else None
    return cpk, _index(mean, math.sqrt(squares / (total - 1)), lower, upper)


def _index(mean: float, sigma: float, lower: float | None, upper: float | None) -> float | None:
    """The capability index of ``mean`` and ``sigma`` against the spec limits given; None
    where the values do not vary: a sigma within floating-point noise of the mean (pooled from
    lots of equal values, the grand mean's rounding leaves 1e-16 of it, not a spread)."""
    if not math.isfinite(sigma) or sigma <= NO_SPREAD * max(1.0, abs(mean)):
        return None
    sides = []
    if upper is not None:
        sides.append((upper - mean) / (3 * sigma))
    if lower is not None:
        sides.append((mean - lower) / (3 * sigma))
    return min(sides) if sides else None


@dataclass(frozen=True, slots=True)
class Chart:
    """One chart's configuration and limits (engineering's)."""

    step: str
    value: str
    tool_id: str
    baseline_n: int
    nelson: bool
    inhibit: bool
    """A violation also disqualifies the tool for the step until an engineer clears it."""
    set_by: str
    set_at: datetime
    center: float | None = None
    sigma: float | None = None
    limits_source: str | None = None
    """``baseline`` (from the first ``baseline_n`` points) or ``engineering``; None while the
    baseline is being collected."""
    kind: ChartKind = ChartKind.LOT

    @property
    def rules(self) -> tuple[int, ...]:
        rules = WITH_NELSON if self.nelson else WESTERN_ELECTRIC
        return (*rules, SPREAD) if self.kind is ChartKind.SUBGROUP else rules

    @property
    def ucl(self) -> float | None:
        """The upper control limit of a point of one value (of a subgroup chart's point of
        n carriers: :meth:`limits_for`)."""
        return None if self.center is None or self.sigma is None else self.center + 3 * self.sigma

    @property
    def lcl(self) -> float | None:
        return None if self.center is None or self.sigma is None else self.center - 3 * self.sigma

    def limits_for(self, n: int) -> tuple[float, float] | None:
        """(LCL, UCL) of a point of ``n`` values: center +- 3 sigma / sqrt(n)."""
        if self.center is None or self.sigma is None:
            return None
        half = 3 * self.sigma / math.sqrt(n)
        return self.center - half, self.center + half


@dataclass(frozen=True, slots=True)
class Point:
    step: str
    value: str
    tool_id: str
    lot_id: str
    at: datetime
    x: float
    rules: tuple[int, ...] = ()
    """The rules this point violated when it was added."""
    carrier_id: str | None = None
    """A carrier chart's point: the carrier measured (None: the lot's one value, tracked
    out by hand)."""
    n: int = 1
    """A subgroup chart's point: how many carriers' values ``x`` is the mean of."""
    s: float | None = None
    """A subgroup chart's point of two or more values: their standard deviation."""


def configure(
    step: str,
    value: str,
    tool_id: str,
    by: str,
    now: datetime,
    *,
    baseline_n: int = 20,
    nelson: bool = False,
    inhibit: bool = False,
    center: float | None = None,
    sigma: float | None = None,
    kind: ChartKind = ChartKind.LOT,
) -> Chart:
    """A chart as engineering sets it: limits given (center and sigma together; a subgroup
    chart's sigma is that of one value), or from a baseline of ``baseline_n`` points once they
    are in."""
    if not MIN_BASELINE <= baseline_n <= MAX_BASELINE:
        raise InvalidInput(
            f"a baseline is {MIN_BASELINE} to {MAX_BASELINE:,} points, not {baseline_n}"
        )
    if (center is None) != (sigma is None):
        raise InvalidInput("give the center and sigma together, or neither (from a baseline)")
    if center is not None and sigma is not None:
        if not math.isfinite(center):
            raise InvalidInput(f"the center must be a finite number, not {center}")
        if not math.isfinite(sigma) or sigma <= 0:
            raise InvalidInput(f"sigma must be a finite number above 0, not {sigma}")
        if not _resolvable(center, sigma):
            raise InvalidInput(
                f"sigma {sigma:g} is too small to tell the control limits from the center "
                f"{center:g}: expected the chart's real sigma"
            )
        if not (math.isfinite(center + 3 * sigma) and math.isfinite(center - 3 * sigma)):
            raise InvalidInput(
                f"center {center:g} and sigma {sigma:g} put the control limits (center +/- 3 "
                "sigma) past what a number holds: expected the chart's real center and sigma"
            )
    source = "engineering" if center is not None else None
    return Chart(
        step, value, tool_id, baseline_n, nelson, inhibit, by, now, center, sigma, source, kind
    )


def observations(
    kind: ChartKind, lot_value: float, carriers: Sequence[tuple[str, float]]
) -> list[tuple[float, str | None, int, float | None]]:
    """The points a lot's track-out adds to a chart of ``kind``, each (x, carrier, n, s):
    ``lot_value`` is the lot's value, ``carriers`` each carrier's where they were measured job
    by job (in the lot's carrier order; none for a track-out by hand, whose one value stands
    for the lot: one point of n 1 on every kind)."""
    if kind is ChartKind.LOT or not carriers:
        return [(lot_value, None, 1, None)]
    if kind is ChartKind.CARRIER:
        return [(x, carrier, 1, None) for carrier, x in carriers]
    xs = [x for _, x in carriers]
    spread = statistics.stdev(xs) if len(xs) >= 2 else None
    return [(statistics.fmean(xs), None, len(xs), spread)]


def observe(
    chart: Chart, recent: Sequence[Point], new: Point
) -> tuple[Chart, Point, list[Violation]]:
    """A ``new`` point on ``chart`` (``recent``: its latest points, oldest first; at least its
    baseline while it has no limits): the chart (with limits from the baseline once it is
    complete), the point with the rules it broke, and the violations it completes (none while
    the baseline fills)."""
    if chart.center is None or chart.sigma is None:
        # the latest baseline_n points since the chart was set, once there are as many and
        # they give limits: a value reported the same at every lot gives none, and the window
        # moves on. Points of the chart it replaced (before a process change, say) are not
        # its baseline.
        mine = [*since_set(chart, recent), new]
        if len(mine) >= chart.baseline_n:
            found = limits_of(chart.kind, mine[-chart.baseline_n :])
            if found is not None:
                center, sigma = found
                chart = replace(chart, center=center, sigma=sigma, limits_source="baseline")
        return chart, new, []
    window = [*since_set(chart, recent)[-(WINDOW - 1) :], new]
    subgroups = chart.kind is ChartKind.SUBGROUP
    violations = rules_at_end(
        [p.x for p in window],
        chart.center,
        chart.sigma,
        chart.rules,
        ns=[p.n for p in window] if subgroups else None,
        s=new.s,
    )
    shift = len(recent) - len(window) + 1
    violations = [Violation(v.rule, tuple(i + shift for i in v.points)) for v in violations]
    return chart, replace(new, rules=tuple(v.rule for v in violations)), violations
