"""The poll clock: fixed rate, a phase per tool (spread evenly over a line's tools), missed
ticks skipped."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.supervision import PollClock, spread_phases


def test_the_phase_comes_from_the_tool_id_and_stays_the_same() -> None:
    assert PollClock("DB-1", 0.2).phase_s == PollClock("DB-1", 0.2).phase_s
    phases = {PollClock(f"T-{i}", 0.2).phase_s for i in range(13)}
    assert len(phases) == 13
    assert all(0.0 <= p < 0.2 for p in phases)
    # a line's tools are spread over the interval, not bunched at one instant
    assert max(phases) - min(phases) > 0.1


def test_the_tools_of_a_line_are_spread_evenly_over_their_poll_interval() -> None:
    line = [("MOLD-1", 0.2), ("DB-1", 0.2), ("GRIND-1", 0.2), ("WB-1", 0.2), ("LAM-1", 0.5)]
    phases = spread_phases(line)
    assert phases == pytest.approx(
        {"DB-1": 0.0, "GRIND-1": 0.05, "MOLD-1": 0.1, "WB-1": 0.15, "LAM-1": 0.0}
    )
    # the same line, listed in another order, gets the same phases (the same after a restart)
    assert spread_phases(reversed(line)) == phases
    # from their ids alone, three of these tools fall within 4 ms of each other
    by_id = sorted(PollClock(t, 0.2).phase_s for t in ("LAM-1", "WB-1", "GRIND-1"))
    assert by_id[-1] - by_id[0] < 0.004


@given(
    ids=st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=40, unique=True),
    interval=st.floats(min_value=0.01, max_value=60.0),
)
def test_spread_phases_are_evenly_spaced_inside_the_interval(
    ids: list[str], interval: float
) -> None:
    phases = sorted(spread_phases((t, interval) for t in ids).values())
    assert len(phases) == len(ids)
    assert phases[0] == 0.0 and phases[-1] < interval
    gaps = [b - a for a, b in itertools.pairwise([*phases, interval])]
    assert gaps == pytest.approx([interval / len(ids)] * len(ids))


def test_a_given_phase_is_kept_and_one_outside_the_interval_is_refused() -> None:
    clock = PollClock("DB-1", 0.2, 0.05)
    assert clock.phase_s == 0.05
    assert clock.delay(10.0) == pytest.approx(0.05)
    with pytest.raises(ValueError, match=r"in \[0, 0\.2\)"):
        PollClock("DB-1", 0.2, 0.2)


def test_polls_run_at_a_fixed_rate_whatever_a_poll_takes() -> None:
    clock = PollClock("MOLD-1", 0.2)
    now = 100.0
    first = now + clock.delay(now)
    assert first == pytest.approx(clock.phase_s + 0.2 * round((first - clock.phase_s) / 0.2))
    ticks = [first]
    for took in (0.001, 0.15, 0.0, 0.05):  # the poll at each tick takes this long
        now = ticks[-1] + took
        ticks.append(now + clock.delay(now))
    assert [b - a for a, b in itertools.pairwise(ticks)] == pytest.approx([0.2] * 4)


def test_a_tick_woken_a_hair_early_does_not_poll_twice() -> None:
    clock = PollClock("DICE-1", 0.2)
    now = 50.0
    tick = now + clock.delay(now)
    after = clock.delay(tick - 1e-6)  # the timer fired a microsecond early
    assert after == pytest.approx(0.2 + 1e-6)


def test_ticks_missed_by_a_long_poll_are_skipped_not_caught_up() -> None:
    clock = PollClock("PLATE-1", 0.2)
    tick = 10.0 + clock.delay(10.0)
    late = tick + 0.65  # the poll took more than three intervals
    delay = clock.delay(late)
    assert 0.0 < delay <= 0.2
    assert late + delay == pytest.approx(tick + 0.8)


@given(
    tool=st.text(min_size=1, max_size=20),
    interval=st.floats(min_value=0.01, max_value=60.0),
    now=st.floats(min_value=0.0, max_value=1e6),
)
def test_the_first_delay_is_within_one_interval(tool: str, interval: float, now: float) -> None:
    delay = PollClock(tool, interval).delay(now)
    assert 0.0 < delay <= interval * (1 + 1e-9)
