"""SPC's carrier and subgroup charts as pure functions: c4 and the S chart's limits against
the published tables; a subgroup chart's zones follow each lot's n (an X-bar chart of equal
subgroups is an individuals chart with sigma / sqrt(n)); rule 9 fires on a lot's spread
beyond its S limits and only there; limits from a baseline of lots of different sizes; what
a track-out adds to each kind; Cpk and Ppk of a subgroup chart are those of the carriers'
values it summarizes (hypothesis)."""

from __future__ import annotations

import math
import statistics
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mes.domain.spc import (
    SPREAD,
    WESTERN_ELECTRIC,
    WITH_NELSON,
    ChartKind,
    Point,
    c4,
    capability,
    capability_of,
    configure,
    observations,
    observe,
    rules_at_end,
    spread_limits,
    subgroup_limits,
)

NOW = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)
CENTER, SIGMA = 25.0, 1.0


def point(x: float, n: int = 1, s: float | None = None, lot: str = "L") -> Point:
    return Point("DIE_ATTACH", "blt", "DB-1", lot, NOW, x, n=n, s=s)


@pytest.mark.parametrize(
    ("n", "expected"),
    [(2, 0.7979), (3, 0.8862), (4, 0.9213), (5, 0.9400), (10, 0.9727), (25, 0.9896)],
)
def test_c4_is_the_tables(n: int, expected: float) -> None:
    assert c4(n) == pytest.approx(expected, abs=5e-5)


@pytest.mark.parametrize(
    ("n", "b5", "b6"),  # B5 and B6: the S chart's limits in sigma
    [(2, 0.0, 2.606), (5, 0.0, 1.964), (6, 0.029, 1.874), (10, 0.276, 1.669), (25, 0.559, 1.420)],
)
def test_the_s_charts_limits_are_the_tables(n: int, b5: float, b6: float) -> None:
    lower, upper = spread_limits(2.0, n)
    assert (lower / 2, upper / 2) == (pytest.approx(b5, abs=5e-4), pytest.approx(b6, abs=5e-4))


@given(
    st.lists(st.floats(-5, 5), min_size=1, max_size=15),
    st.integers(2, 30),
    st.sampled_from([WESTERN_ELECTRIC, WITH_NELSON]),
)
def test_an_xbar_chart_of_equal_subgroups_is_an_individuals_chart_of_sigma_over_root_n(
    zs: list[float], n: int, rules: tuple[int, ...]
) -> None:
    """Means of n values judged with sigma / sqrt(n): the same rules fire as on an
    individuals chart whose sigma is that."""
    within = SIGMA / math.sqrt(n)
    xs = [CENTER + z * within for z in zs]
    subgroups = rules_at_end(xs, CENTER, SIGMA, rules, ns=[n] * len(xs))
    assert subgroups == rules_at_end(xs, CENTER, within, rules)


def test_a_mean_beyond_its_own_limits_fires_though_one_value_there_would_not() -> None:
    assert [v.rule for v in rules_at_end([26.6], CENTER, SIGMA, WESTERN_ELECTRIC, ns=[4])] == [1]
    assert rules_at_end([26.6], CENTER, SIGMA, WESTERN_ELECTRIC) == []
    assert rules_at_end([26.4], CENTER, SIGMA, WESTERN_ELECTRIC, ns=[4]) == []


@pytest.mark.parametrize(("n", "s", "fires"), [(4, 2.2, True), (4, 2.0, False), (4, 0.0, False)])
def test_rule_9_fires_on_a_spread_above_the_s_charts_upper_limit(
    n: int, s: float, fires: bool
) -> None:
    rules = (*WESTERN_ELECTRIC, SPREAD)  # upper limit for 4: 2.088 sigma
    found = [v.rule for v in rules_at_end([CENTER], CENTER, SIGMA, rules, ns=[n], s=s)]
    assert found == ([SPREAD] if fires else [])


def test_rule_9_fires_on_a_spread_below_the_lower_limit_from_six_carriers_on() -> None:
    rules = (SPREAD,)  # lower limit for 10: 0.276 sigma; for 5 there is none
    assert [v.rule for v in rules_at_end([CENTER], CENTER, SIGMA, rules, ns=[10], s=0.1)] == [9]
    assert rules_at_end([CENTER], CENTER, SIGMA, rules, ns=[5], s=0.0) == []
    assert rules_at_end([CENTER], CENTER, SIGMA, rules, ns=[1], s=None) == []  # no spread
    assert rules_at_end([CENTER], CENTER, SIGMA, rules, s=9.0) == []  # not a subgroup chart


def test_a_subgroup_charts_limits_come_from_lots_of_different_sizes() -> None:
    baseline = [point(25.0, 2, 0.8), point(26.0, 4, 1.0), point(24.0, 1), point(25.5, 3, 1.2)]
    center, sigma = subgroup_limits(baseline) or (0.0, 0.0)
    assert center == pytest.approx((2 * 25.0 + 4 * 26.0 + 24.0 + 3 * 25.5) / 10)
    assert sigma == pytest.approx(statistics.fmean([0.8 / c4(2), 1.0 / c4(4), 1.2 / c4(3)]))
    assert subgroup_limits([point(25.0), point(26.0)]) is None  # no lot of two carriers
    assert subgroup_limits([point(25.0, 3, 0.0), point(26.0, 2, 0.0)]) is None  # alike


def test_what_a_track_out_adds_to_each_kind_of_chart() -> None:
    carriers = [("L-01", 25.0), ("L-02", 26.0), ("L-03", 27.0)]
    assert observations(ChartKind.LOT, 26.0, carriers) == [(26.0, None, 1, None)]
    assert observations(ChartKind.CARRIER, 26.0, carriers) == [
        (25.0, "L-01", 1, None),
        (26.0, "L-02", 1, None),
        (27.0, "L-03", 1, None),
    ]
    assert observations(ChartKind.SUBGROUP, 26.0, carriers) == [(26.0, None, 3, 1.0)]
    for kind in ChartKind:  # tracked out by hand: the lot's one value
        assert observations(kind, 26.0, []) == [(26.0, None, 1, None)]


def test_a_subgroup_chart_takes_its_limits_and_then_checks_both_charts() -> None:
    chart = configure(
        "DIE_ATTACH", "blt", "DB-1", "eng1", NOW, baseline_n=5, kind=ChartKind.SUBGROUP
    )
    assert chart.rules == (*WESTERN_ELECTRIC, SPREAD)
    recent: list[Point] = []
    for x, s in [(25.0, 0.9), (25.2, 1.1), (24.8, 1.0), (25.1, 0.8), (24.9, 1.2)]:
        chart, added, found = observe(chart, recent, point(x, 4, s))
        assert found == []
        recent.append(added)
    assert chart.limits_source == "baseline" and chart.center == pytest.approx(25.0)
    assert chart.limits_for(4) == (
        pytest.approx(chart.center - 1.5 * chart.sigma),  # type: ignore[operator]
        pytest.approx(chart.center + 1.5 * chart.sigma),  # type: ignore[operator]
    )
    _, wide, found = observe(chart, recent, point(25.0, 4, 3.5))
    assert [v.rule for v in found] == [SPREAD] and wide.rules == (SPREAD,)
    assert [v.points for v in found] == [(5,)]  # numbered over the chart's points


measured = st.integers(0, 10_000).map(lambda i: i / 100)
"""A measurement as a tool reports it: 0 to 100 in steps of 0.01."""
lots = st.lists(st.lists(measured, min_size=1, max_size=8), min_size=2, max_size=12)


@given(lots, st.floats(-50, 50), st.floats(60, 200))
def test_a_subgroup_charts_ppk_is_that_of_every_carriers_value(
    groups: list[list[float]], lower: float, upper: float
) -> None:
    """Ppk from each lot's n, mean and s (pooled) equals Ppk from the carriers' values; Cpk
    uses the spread within the lots."""
    points = [
        point(statistics.fmean(g), len(g), statistics.stdev(g) if len(g) >= 2 else None)
        for g in groups
    ]
    values = [x for g in groups for x in g]
    cpk, ppk = capability_of(ChartKind.SUBGROUP, points, lower, upper)
    _, expected = capability(values, lower, upper)
    assert (ppk is None) == (expected is None)
    if ppk is not None and expected is not None and statistics.stdev(values) > 1e-6:
        assert ppk == pytest.approx(expected, rel=1e-6, abs=1e-9)
    within = [p.s / c4(p.n) for p in points if p.n >= 2 and p.s is not None]
    if not within or statistics.fmean(within) <= 0:
        assert cpk is None
    else:
        mean = statistics.fmean(values)
        sigma = statistics.fmean(within)
        assert cpk == pytest.approx(min(upper - mean, mean - lower) / (3 * sigma))


def test_a_carrier_or_lot_charts_capability_is_that_of_its_points() -> None:
    points = [point(x) for x in (9.0, 11.0, 10.0, 12.0)]
    for kind in (ChartKind.LOT, ChartKind.CARRIER):
        assert capability_of(kind, points, 7.0, 16.0) == capability(
            [9.0, 11.0, 10.0, 12.0], 7.0, 16.0
        )


def test_lots_of_one_value_have_no_ppk_though_the_pooled_mean_rounds() -> None:
    """Found by hypothesis: the grand mean of 1.35, 1.35, 1.35 pooled from two lots rounds,
    leaving a sigma of 1e-16 and a Ppk of 1.6e15 where the carriers' values gave none."""
    points = [point(1.35, 1, None), point(1.35, 2, 0.0)]
    assert capability_of(ChartKind.SUBGROUP, points, 0.0, 60.0) == (None, None)
    assert capability([1.35, 1.35, 1.35], 0.0, 60.0) == (None, None)
