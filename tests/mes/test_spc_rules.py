"""SPC's run rules as pure functions, on constructed series (hypothesis): each rule fires
exactly on the pattern it names, at the point that completes it, and not one point short of
it; the Nelson rules 5-8 only when configured; the rules do not depend on the units (shifting
and scaling a series with its limits changes nothing); limits from a baseline and Cpk/Ppk on
known numbers."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mes.domain.errors import InvalidInput
from mes.domain.spc import (
    WESTERN_ELECTRIC,
    WITH_NELSON,
    all_violations,
    capability,
    configure,
    limits_from,
    rules_at_end,
)

CENTER, SIGMA = 10.0, 2.0
NOW = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)


def x(z: float) -> float:
    return CENTER + z * SIGMA


inside = st.floats(-0.9, 0.9)
"""Points well within 1 sigma."""
side = st.sampled_from([1, -1])


def fired(zs: list[float], rules: tuple[int, ...] = WITH_NELSON) -> set[int]:
    return {v.rule for v in rules_at_end([x(z) for z in zs], CENTER, SIGMA, rules)}


def calm(zs: list[float]) -> list[float]:
    """A prefix that completes no rule: alternating sides within 1 sigma, levels varied."""
    return [abs(z) * (1 if i % 2 else -1) for i, z in enumerate(zs)][-7:]


@given(st.lists(inside, max_size=6), st.floats(3.001, 50), side)
def test_rule_1_fires_on_a_point_beyond_3_sigma(prefix: list[float], z: float, s: int) -> None:
    assert 1 in fired([*calm(prefix), s * z], WESTERN_ELECTRIC)


@given(st.lists(inside, max_size=6), st.floats(-3, 3))
def test_rule_1_does_not_fire_within_3_sigma(prefix: list[float], z: float) -> None:
    assert 1 not in fired([*calm(prefix), z], WESTERN_ELECTRIC)


@given(st.floats(2.001, 2.99), st.floats(2.001, 2.99), inside, side, st.booleans())
def test_rule_2_fires_on_two_of_three_beyond_2_sigma_on_one_side(
    a: float, b: float, c: float, s: int, gap_first: bool
) -> None:
    last3 = [c, s * a, s * b] if gap_first else [s * a, c, s * b]
    assert 2 in fired(last3)
    assert 2 not in fired([c, -s * a, s * b])  # the other side does not count
    assert 2 not in fired([s * a, s * b, c])  # the last point must be one of them


@given(st.lists(st.floats(1.001, 1.99), min_size=4, max_size=4), inside, side)
def test_rule_3_fires_on_four_of_five_beyond_1_sigma_on_one_side(
    beyond: list[float], other: float, s: int
) -> None:
    assert 3 in fired([other, *(s * z for z in beyond)])
    assert 3 not in fired([other, other, *(s * z for z in beyond[:3])])


@given(st.lists(st.floats(0.01, 0.9), min_size=8, max_size=8), side)
def test_rule_4_fires_on_eight_in_a_row_on_one_side_not_seven(zs: list[float], s: int) -> None:
    assert 4 in fired([s * z for z in zs], WESTERN_ELECTRIC)
    assert 4 not in fired([-s * 0.5, *(s * z for z in zs[1:])], WESTERN_ELECTRIC)


@given(st.lists(st.floats(0.01, 0.2), min_size=5, max_size=5), side)
def test_rule_5_fires_on_a_six_point_trend_only_with_nelson(steps: list[float], s: int) -> None:
    zs = [-0.6 * s]
    for d in steps:
        zs.append(zs[-1] + s * d)
    assert 5 in fired(zs, WITH_NELSON)
    assert 5 not in fired(zs, WESTERN_ELECTRIC)
    assert 5 not in fired([*zs[:-1], zs[-2]])  # a flat last step breaks the trend


@given(st.lists(st.floats(0.1, 0.9), min_size=14, max_size=14))
def test_rule_6_fires_on_fourteen_alternating_points(levels: list[float]) -> None:
    zs = [z if i % 2 else -z for i, z in enumerate(levels)]
    assert 6 in fired(zs)
    assert 6 not in fired(zs[1:])  # thirteen


@given(st.lists(inside, min_size=15, max_size=15))
def test_rule_7_fires_on_fifteen_points_within_1_sigma(zs: list[float]) -> None:
    assert 7 in fired(zs)
    assert 7 not in fired(zs, WESTERN_ELECTRIC)
    assert 7 not in fired([*zs[:-1], 1.5])


@given(st.lists(st.floats(1.01, 2.9), min_size=8, max_size=8))
def test_rule_8_fires_on_eight_points_beyond_1_sigma_either_side(levels: list[float]) -> None:
    zs = [z if i % 2 else -z for i, z in enumerate(levels)]
    assert 8 in fired(zs)
    assert 4 not in fired(zs)  # both sides: no run on one side
    assert 8 not in fired([0.5, *zs[1:]])


@given(
    st.lists(st.floats(-5, 5), min_size=1, max_size=30),
    st.floats(-1e3, 1e3),
    st.floats(0.01, 100),
)
def test_the_rules_do_not_depend_on_the_units(zs: list[float], shift: float, scale: float) -> None:
    xs = [x(z) for z in zs]
    moved = [shift + scale * v for v in xs]
    one = all_violations(xs, CENTER, SIGMA, WITH_NELSON)
    other = all_violations(moved, shift + scale * CENTER, scale * SIGMA, WITH_NELSON)
    assert [(v.rule, v.points) for v in one] == [(v.rule, v.points) for v in other] or any(
        math.isclose(abs(z), k, abs_tol=1e-6) for z in zs for k in (1, 2, 3)
    )


def test_limits_come_from_the_mean_and_the_mean_moving_range() -> None:
    center, sigma = limits_from([10, 12, 11, 13, 12])
    assert center == pytest.approx(11.6)
    assert sigma == pytest.approx(((2 + 1 + 2 + 1) / 4) / 1.128)
    with pytest.raises(InvalidInput, match="do not vary"):
        limits_from([5, 5, 5, 5, 5])
    with pytest.raises(InvalidInput, match="at least 5 points"):
        limits_from([1, 2, 3])


def test_cpk_and_ppk_on_known_numbers() -> None:
    xs = [9.0, 11.0, 9.0, 11.0]  # mean 10, moving ranges 2: within sigma 2 / 1.128
    cpk, ppk = capability(xs, 7.0, 16.0)  # sample sd 1.1547
    assert cpk == pytest.approx(3.0 / (3 * 2 / 1.128))  # (10 - 7) / 3 sigma within
    assert ppk == pytest.approx(3.0 / (3 * 1.1547005), rel=1e-6)
    assert capability(xs, None, None) == (None, None)
    assert capability([1.0], 0.0, 2.0) == (None, None)
    assert capability([4.0, 4.0, 4.0], 0.0, 8.0) == (None, None)  # no variation


def test_cpk_is_the_processs_not_the_sigma_engineering_set_the_chart_with() -> None:
    """A chart set at center 5, sigma 0.5 whose points swing 9, 1, 9, ...: every point breaks
    rule 1, and Cpk (against USL 15) is the swing's, 0.47, not 6.67 from the chart's sigma
    (found by the probe)."""
    cpk, _ = capability([9.0, 1.0, 9.0, 1.0, 9.0, 1.0], None, 15.0)
    assert cpk == pytest.approx(10 / (3 * 8 / 1.128))
    assert cpk is not None and round(cpk, 2) == 0.47


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ({"baseline_n": 4}, "a baseline is 5 to 1,000 points, not 4"),
        ({"baseline_n": 10**20}, "a baseline is 5 to 1,000 points"),
        ({"center": math.nan, "sigma": 1.0}, "the center must be a finite number, not nan"),
        ({"center": 1.0, "sigma": math.inf}, "sigma must be a finite number above 0, not inf"),
        ({"center": 1.0, "sigma": 0.0}, "sigma must be a finite number above 0, not 0"),
        ({"center": 1e308, "sigma": 1e308}, "past what a number holds"),
        ({"center": 1.0}, "give the center and sigma together"),
    ],
)
def test_a_chart_with_a_bad_baseline_or_limits_is_refused_naming_what_is_wrong(
    given: dict[str, Any], says: str
) -> None:
    with pytest.raises(InvalidInput, match=says):
        configure("DIE_ATTACH", "bond_line_thickness_um", "DB-1", "eng", NOW, **given)
