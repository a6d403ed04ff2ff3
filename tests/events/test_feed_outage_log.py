"""A broker outage in the relay's log: one warning when it begins (the broker's address, no
secret), a reminder at most every few minutes while it lasts (how long, how many attempts),
and one line when the feed is back (how long it was down, how many attempts, how many events
waited), not a warning at every retry. The outage's length is read from the relay's
monotonic clock, moved by hand here: no test waits minutes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import structlog

from mes.adapters.database import create_engine
from mes.adapters.outbox import OutboxReader, OutboxStore
from pkgline.events.outage import STILL_DOWN_EVERY_S
from pkgline.events.relay import Relay
from tests.controller.conftest import FLOWS, Stack, start_lots, wait_until
from tests.events.conftest import Mosquitto, attempts, drained, events_config, running


class Seconds:
    """A monotonic clock moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _said(logs: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == event]


@pytest.mark.parametrize("database", ["migrated_sqlite_url"], indirect=True)
async def test_a_broker_outage_is_logged_when_it_begins_now_and_then_and_when_it_ends(
    stack: Stack, tmp_path: Path
) -> None:
    broker = Mosquitto(tmp_path / "outage-broker")
    broker.start()
    events = events_config(broker.port, backoff_initial_s=0.05, backoff_max_s=0.2)
    engine = create_engine(stack.url)
    reader = OutboxReader(engine)
    clock = Seconds()
    relay = Relay(events, OutboxStore(engine), controller="feed-outage", monotonic=clock)
    address = f"mqtt://127.0.0.1:{broker.port}"
    try:
        with structlog.testing.capture_logs() as logs:
            async with running(relay):
                await wait_until(
                    lambda: bool(_said(logs, "event feed connected")), timeout_s=30, what="up"
                )
                broker.stop()
                await start_lots(stack.lots, FLOWS[:3])  # events that wait for the broker
                await wait_until(lambda: len(attempts(logs)) >= 8, timeout_s=60, what="retries")
                [down] = _said(logs, "event feed down")  # once, not at every retry
                assert down["log_level"] == "warning" and down["broker"] == address
                assert _said(logs, "event feed still down") == []
                retries = _said(logs, "event feed retry")
                assert retries and all(e["log_level"] == "debug" for e in retries)

                clock.now += STILL_DOWN_EVERY_S + 1  # minutes later, still down
                count = len(attempts(logs))
                await wait_until(
                    lambda: len(attempts(logs)) >= count + 8, timeout_s=60, what="more retries"
                )
                [still] = _said(logs, "event feed still down")  # once in those minutes
                assert still["log_level"] == "warning" and still["broker"] == address
                assert still["down_s"] >= STILL_DOWN_EVERY_S and still["attempts"] > 8
                assert still["events_waiting"] == 3

                clock.now += 30
                broker.start()
                await wait_until(
                    lambda: bool(_said(logs, "event feed back")), timeout_s=60, what="back"
                )
                await wait_until(drained(reader), timeout_s=30, what="the waiting events out")
        [back] = _said(logs, "event feed back")
        assert back["log_level"] == "info" and back["broker"] == address
        assert back["down_s"] >= STILL_DOWN_EVERY_S + 30
        assert back["events_waited"] == 3 and back["attempts"] >= 16
        assert len(_said(logs, "event feed down")) == 1
        assert len(_said(logs, "event feed still down")) == 1
        assert len(_said(logs, "event feed connected")) == 1  # the first connection only
    finally:
        await engine.dispose()
        broker.stop()
