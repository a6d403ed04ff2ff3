"""The poll clock: fixed rate, a phase per tool, missed ticks skipped."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.supervision import PollClock


def test_the_phase_comes_from_the_tool_id_and_stays_the_same() -> None:
    assert PollClock("DB-1", 0.2).phase_s == PollClock("DB-1", 0.2).phase_s
    phases = {PollClock(f"T-{i}", 0.2).phase_s for i in range(13)}
    assert len(phases) == 13
    assert all(0.0 <= p < 0.2 for p in phases)
    # a line's tools are spread over the interval, not bunched at one instant
    assert max(phases) - min(phases) > 0.1


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
