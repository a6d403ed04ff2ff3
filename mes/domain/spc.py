"""Statistical process control per (step, measured value, tool): an individuals / moving-range
chart of one point per lot tracked out, with control limits from a baseline window or set by
engineering, and the run rules checked at each new point. Pure, no I/O.

Limits: center = the mean of the baseline points; sigma = the mean moving range / 1.128 (d2
for ranges of two); the individuals chart's limits are center +- 3 sigma, the moving-range
chart's upper limit 3.267 x the mean moving range.

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
"""

from __future__ import annotations

import itertools
import math
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

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
}
WESTERN_ELECTRIC = (1, 2, 3, 4)
WITH_NELSON = (1, 2, 3, 4, 5, 6, 7, 8)
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
    xs: Sequence[float], center: float, sigma: float, rules: Sequence[int]
) -> list[Violation]:
    """The violations completed by the last point of ``xs`` (oldest first)."""
    n = len(xs)
    if n == 0 or sigma <= 0:
        return []
    zs = [(x - center) / sigma for x in xs]
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
        if points is not None:
            found.append(Violation(rule, points))
    return found


def all_violations(
    xs: Sequence[float], center: float, sigma: float, rules: Sequence[int], start: int = 0
) -> list[Violation]:
    """Every violation in ``xs``, each at the point that completes it (from ``start`` on:
    the points before are the baseline)."""
    found: list[Violation] = []
    for end in range(max(start, 0), len(xs)):
        lo = max(0, end + 1 - WINDOW)
        for v in rules_at_end(xs[lo : end + 1], center, sigma, rules):
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


def _resolvable(center: float, sigma: float) -> bool:
    """A sigma the chart can use: a finite normal number, above 0, that moves the center."""
    return math.isfinite(sigma) and sigma >= sys.float_info.min and center + sigma != center


def since_set(chart: Chart, points: Sequence[Point]) -> list[Point]:
    """The points of ``points`` (oldest first) recorded since ``chart`` was set: those of a
    chart it replaced are kept and shown, but are not its baseline nor checked against it."""
    return [p for p in points if p.at >= chart.set_at]


def baseline_end(xs: Sequence[float], n: int) -> int | None:
    """Where the points after the baseline start, in a chart's points ``xs`` whose limits
    came from a baseline of ``n``: after the first ``n`` points in a row that vary (as
    :func:`observe` took them); None while there are none."""
    for end in range(n, len(xs) + 1):
        if baseline_limits(xs[end - n : end]) is not None:
            return end
    return None


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

    def index(sigma: float) -> float | None:
        if sigma <= 0 or not math.isfinite(sigma):
            return None
        sides = []
        if upper is not None:
            sides.append((upper - mean) / (3 * sigma))
        if lower is not None:
            sides.append((mean - lower) / (3 * sigma))
        return min(sides)

    within = statistics.fmean(abs(b - a) for a, b in itertools.pairwise(xs)) / D2
    return index(within), index(statistics.stdev(xs))


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

    @property
    def rules(self) -> tuple[int, ...]:
        return WITH_NELSON if self.nelson else WESTERN_ELECTRIC

    @property
    def ucl(self) -> float | None:
        return None if self.center is None or self.sigma is None else self.center + 3 * self.sigma

    @property
    def lcl(self) -> float | None:
        return None if self.center is None or self.sigma is None else self.center - 3 * self.sigma


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
) -> Chart:
    """A chart as engineering sets it: limits given (center and sigma together), or from a
    baseline of ``baseline_n`` points once they are in."""
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
    return Chart(step, value, tool_id, baseline_n, nelson, inhibit, by, now, center, sigma, source)


def observe(
    chart: Chart, recent: Sequence[Point], x: float, lot_id: str, now: datetime
) -> tuple[Chart, Point, list[Violation]]:
    """A new point on ``chart`` (``recent``: its latest points, oldest first; at least its
    baseline while it has no limits): the chart (with limits from the baseline once it is
    complete), the point, and the violations it completes (none while the baseline fills)."""
    if chart.center is None or chart.sigma is None:
        # the latest baseline_n points since the chart was set, once there are as many and
        # they vary: a value reported the same at every lot gives no limits, and the window
        # moves on. Points of the chart it replaced (before a process change, say) are not
        # its baseline.
        xs = [p.x for p in since_set(chart, recent)] + [x]
        limits = baseline_limits(xs[-chart.baseline_n :]) if len(xs) >= chart.baseline_n else None
        if limits is not None:
            center, sigma = limits
            chart = replace(chart, center=center, sigma=sigma, limits_source="baseline")
        return chart, Point(chart.step, chart.value, chart.tool_id, lot_id, now, x), []
    window = [*[p.x for p in since_set(chart, recent)][-(WINDOW - 1) :], x]
    found = rules_at_end(window, chart.center, chart.sigma, chart.rules)
    shift = len(recent) - len(window) + 1
    found = [Violation(v.rule, tuple(i + shift for i in v.points)) for v in found]
    point = Point(
        chart.step, chart.value, chart.tool_id, lot_id, now, x, tuple(v.rule for v in found)
    )
    return chart, point, found
