"""The database's health as the units of work find it, logged on the edge: one line when it
goes away, one a minute while it stays away (with how many units of work failed), one once it
has answered again for a few seconds (a failover's flapping is one outage); a read-only
database is back only once a write went through; refusals for a passing reason are no outage
and are logged at most once a minute."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from structlog.testing import capture_logs

from mes.adapters.errors import DatabaseReadOnly, DatabaseRetryable, DatabaseUnavailable
from mes.adapters.health import DatabaseHealth


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _events(logs: Sequence[Mapping[str, Any]]) -> list[str]:
    return [str(entry["event"]) for entry in logs]


def test_an_outage_is_logged_once_then_once_a_minute_with_counts_then_once_when_it_ends() -> None:
    clock = Clock()
    health = DatabaseHealth(clock=clock)
    with capture_logs() as logs:
        for _ in range(480):  # 8 failures a second, for a minute
            health.failed(DatabaseUnavailable("the database did not answer in time"))
            clock.now += 0.125
        health.failed(DatabaseUnavailable("connection refused"))  # a minute on: logged
        for _ in range(50):
            clock.now += 0.125
            health.failed(DatabaseUnavailable("connection refused"))
        health.answered(wrote=False)
        assert health.down is None  # back at once for the status line
        clock.now += 3
        health.answered(wrote=True)
        health.answered(wrote=True)
    assert _events(logs) == [
        "database unavailable: waiting for it",
        "database still unavailable",
        "database available again",
    ]
    down, still, up = logs
    assert down["reason"] == "the database did not answer in time"
    assert still["failed"] == 481 and still["for_s"] == 60
    assert still["reason"] == "connection refused"
    assert up["failed"] == 531 and up["after_s"] == 66.2
    assert health.down is None


def test_the_status_phrase_says_how_long_the_database_has_been_away() -> None:
    clock = Clock()
    health = DatabaseHealth(clock=clock)
    assert health.describe() is None
    with capture_logs():
        health.failed(DatabaseUnavailable("connection refused"))
        clock.now += 185
    assert health.describe() == "database unavailable for 3 min"


def test_a_failover_that_drops_every_pooled_connection_is_logged_as_one_outage() -> None:
    clock = Clock()
    health = DatabaseHealth(clock=clock)
    with capture_logs() as logs:
        for _ in range(10):  # each pooled connection fails once, new ones answer in between
            health.failed(DatabaseUnavailable("connection was closed in the middle of operation"))
            clock.now += 0.1
            health.answered(wrote=True)
            clock.now += 0.1
        clock.now += 3
        health.answered(wrote=False)
    assert _events(logs) == ["database unavailable: waiting for it", "database available again"]
    assert logs[1]["failed"] == 10


def test_a_read_only_database_is_back_only_once_a_write_went_through() -> None:
    clock = Clock()
    health = DatabaseHealth(clock=clock)
    with capture_logs() as logs:
        health.failed(DatabaseReadOnly("cannot execute INSERT in a read-only transaction"))
        health.answered(wrote=False)  # reads still work on a standby
        assert health.down is not None and health.down.kind == "read-only"
        assert health.describe() == "database read-only for 0 s"
        health.answered(wrote=True)
        clock.now += 3
        health.answered(wrote=False)
    assert health.down is None
    assert _events(logs) == [
        "database read-only: no writes until it accepts them again",
        "database available again",
    ]


def test_an_unreachable_database_that_comes_back_read_only_is_logged_as_read_only() -> None:
    health = DatabaseHealth(clock=Clock())
    with capture_logs() as logs:
        health.failed(DatabaseUnavailable("connection refused"))
        health.failed(DatabaseUnavailable("connection refused"))
        health.failed(DatabaseReadOnly("cannot execute UPDATE in a read-only transaction"))
        health.failed(DatabaseReadOnly("cannot execute UPDATE in a read-only transaction"))
    assert _events(logs) == [
        "database unavailable: waiting for it",
        "database read-only: no writes until it accepts them again",
    ]


def test_refusals_for_a_passing_reason_are_no_outage_and_are_counted_once_a_minute() -> None:
    clock = Clock()
    health = DatabaseHealth(clock=clock)
    with capture_logs() as logs:
        for _ in range(30):
            health.failed(DatabaseRetryable("deadlock detected"))
            clock.now += 1
        for _ in range(31):
            health.failed(DatabaseRetryable("too many connections"))
            clock.now += 1
    assert health.down is None
    assert _events(logs) == ["database refused work for now; it is tried again"] * 2
    assert logs[1]["refusals"] == 60
    assert logs[1]["reasons"] == {"deadlock detected": 29, "too many connections": 31}
