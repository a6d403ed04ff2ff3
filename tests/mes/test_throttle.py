"""The throttle of failed password checks per place: a place that failed ``limit`` checks
within the window has its next checks refused until the oldest of them ages out; places are
counted apart; memory stays bounded. Pure: checked against a plain model with hypothesis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mes.domain.throttle import FailureThrottle

T0 = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=10)


def test_the_limit_th_failure_in_the_window_throttles_until_the_oldest_ages_out() -> None:
    throttle = FailureThrottle(3, WINDOW)
    for minute in (0, 1, 2):
        assert throttle.check("host 10.0.0.9", T0 + timedelta(minutes=minute)) is None
        throttle.failed("host 10.0.0.9", T0 + timedelta(minutes=minute))
    throttled = throttle.check("host 10.0.0.9", T0 + timedelta(minutes=4))
    assert throttled is not None
    assert (throttled.failures, throttled.retry_after, throttled.retry_after_seconds) == (
        3,
        timedelta(minutes=6),
        360,
    )
    assert throttled.message() == (
        "too many failed password checks from host 10.0.0.9 (3 in 10 minutes): nothing was "
        "checked; try again in 360 s"
    )
    assert throttle.check("host 10.0.0.7", T0 + timedelta(minutes=4)) is None  # another place
    assert throttle.check("host 10.0.0.9", T0 + WINDOW - timedelta(microseconds=1)) is not None
    assert throttle.check("host 10.0.0.9", T0 + WINDOW) is None  # the first aged out
    assert throttle.check("host 10.0.0.9", T0 + WINDOW + timedelta(minutes=2)) is None
    assert throttle.places() == 0  # all aged out: forgotten


def test_retry_after_is_rounded_up_to_whole_seconds_and_is_at_least_one() -> None:
    throttle = FailureThrottle(1, timedelta(seconds=10))
    throttle.failed("p", T0)
    almost = throttle.check("p", T0 + timedelta(seconds=9, microseconds=999_999))
    assert almost is not None and almost.retry_after_seconds == 1
    partial = throttle.check("p", T0 + timedelta(seconds=2, milliseconds=500))
    assert partial is not None and partial.retry_after_seconds == 8


def test_memory_is_bounded_the_place_failed_longest_ago_is_forgotten_first() -> None:
    throttle = FailureThrottle(2, WINDOW, max_places=3)
    for i, place in enumerate(("a", "b", "c")):
        throttle.failed(place, T0 + timedelta(seconds=i))
        throttle.failed(place, T0 + timedelta(seconds=i))
    throttle.failed("a", T0 + timedelta(seconds=5))  # a failed again: now b is the oldest
    throttle.failed("d", T0 + timedelta(seconds=6))
    assert throttle.places() == 3
    now = T0 + timedelta(seconds=7)
    assert throttle.check("b", now) is None  # forgotten
    assert throttle.check("a", now) is not None and throttle.check("c", now) is not None


@pytest.mark.parametrize(
    ("limit", "window", "places", "why"),
    [
        (0, WINDOW, 1, "at least 1 failure, not 0"),
        (1, timedelta(0), 1, "longer than nothing"),
        (1, WINDOW, 0, "at least 1 place, not 0"),
    ],
)
def test_a_throttle_that_could_never_check_is_refused(
    limit: int, window: timedelta, places: int, why: str
) -> None:
    with pytest.raises(ValueError, match=why):
        FailureThrottle(limit, window, max_places=places)


@given(
    limit=st.integers(1, 5),
    events=st.lists(
        st.tuples(st.sampled_from("xy"), st.integers(0, 40), st.booleans()), max_size=60
    ),
)
def test_throttled_exactly_when_limit_failures_of_the_place_are_within_the_window(
    limit: int, events: list[tuple[str, int, bool]]
) -> None:
    """Against a model that keeps every failure: a check is refused exactly when ``limit``
    or more of the place's failures are younger than the window, and then until the
    limit-th youngest ages out. Time only goes forward; a refused check counts nothing."""
    window = timedelta(seconds=10)
    throttle = FailureThrottle(limit, window)
    model: dict[str, list[datetime]] = {"x": [], "y": []}
    now = T0
    for place, step, fails in events:
        now += timedelta(seconds=step / 4)
        recent = [t for t in model[place] if t > now - window]
        throttled = throttle.check(place, now)
        if len(recent) >= limit:
            assert throttled is not None
            assert throttled.retry_after == recent[-limit] + window - now
            continue
        assert throttled is None
        if fails:
            throttle.failed(place, now)
            model[place].append(now)
