"""``pkgline events status`` and ``pkgline line status`` tell the feed's backlog (events
waiting, the oldest one's age, the last published); ``pkgline events tail`` refuses a line
without ``[events]`` and a lot id that cannot be a topic level, and rides out a broker that
goes away while it follows."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import aiomqtt
import pytest

from mes.adapters.database import create_engine
from mes.adapters.outbox import OutboxReader, OutboxStore
from pkgline.events.config import EventsConfig
from pkgline.events.relay import Relay
from pkgline.events.topics import Topics
from simulators.line import write_line_config
from tests.controller.conftest import FLOWS, Stack, line_config, start_lots, wait_until
from tests.events.conftest import Mosquitto, events_config, free_port, running

pytestmark = pytest.mark.parametrize("database", ["migrated_sqlite_url"], indirect=True)


async def pkgline(db: str, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "pkgline", *args],
        env={**os.environ, "PKGLINE_DB": db, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_status_commands_tell_the_backlog_then_the_last_event_published(
    stack: Stack, broker: Mosquitto
) -> None:
    ids = await start_lots(stack.lots, FLOWS[:2])
    before = json.loads((await pkgline(stack.url, "events", "status", "--json")).stdout)
    assert before["backlog"] == 2 and before["last_published_id"] is None
    assert before["lag_s"] >= 0 and before["oldest_waiting_at"] is not None
    line = await pkgline(stack.url, "line", "status")
    assert "event feed: 2 events waiting, the oldest for" in line.stdout
    assert "none published yet" in line.stdout
    engine = create_engine(stack.url)
    relay = Relay(events_config(broker.port), OutboxStore(engine), controller="cli")
    try:
        async with running(relay):

            async def drained() -> bool:
                return (await OutboxReader(engine).backlog()).events == 0

            await wait_until(drained, timeout_s=30, what="published")
    finally:
        await engine.dispose()
    after = json.loads((await pkgline(stack.url, "events", "status", "--json")).stdout)
    assert after["backlog"] == 0 and after["lag_s"] == 0
    assert after["last_published_id"] == 2
    text = (await pkgline(stack.url, "events", "status")).stdout
    assert "event feed: 0 events waiting; last published: id 2 at" in text
    as_json = json.loads((await pkgline(stack.url, "line", "status", "--json")).stdout)
    assert as_json["events"]["backlog"] == 0
    assert len(ids) == 2


async def test_tail_refuses_a_line_without_events_a_lot_id_no_topic_can_hold_and_a_broker_down(
    stack: Stack, tmp_path: Path
) -> None:
    config = line_config(tools=["DB-1"])
    path = write_line_config(config, tmp_path / "line.toml")
    off = await pkgline(stack.url, "events", "tail", "--config", str(path))
    assert off.returncode == 2 and "no [events] table: the feed is off" in off.stderr
    on = write_line_config(
        config.model_copy(update={"events": events_config(1)}), tmp_path / "on.toml"
    )
    bad = await pkgline(stack.url, "events", "tail", "--config", str(on), "--lot", "a/#")
    assert bad.returncode == 2 and "cannot be a topic level" in bad.stderr
    nobody = write_line_config(
        config.model_copy(update={"events": events_config(free_port())}), tmp_path / "no.toml"
    )
    down = await pkgline(stack.url, "events", "tail", "--config", str(nobody))
    assert down.returncode == 4 and "Connection refused" in down.stderr
    assert "Errno" not in down.stderr, down.stderr


def _lot_event(event_id: int, lot: str) -> dict[str, object]:
    return {
        "id": event_id,
        "time": "2026-12-02T07:03:14.101+00:00",
        "lot": lot,
        "kind": "LotTrackedIn",
        "state_before": "WAITING",
        "state_after": "RUNNING",
        "step": "WIRE_BOND",
        "tool": "WB-1",
        "user": "controller",
    }


async def _publish(events: EventsConfig, topic: str, payload: dict[str, object]) -> None:
    async with aiomqtt.Client("127.0.0.1", events.port, identifier="test-publisher") as client:
        await client.publish(topic, json.dumps(payload), qos=1)


async def test_tail_says_it_lost_the_broker_and_follows_again_once_it_is_back(
    stack: Stack, broker: Mosquitto, tmp_path: Path
) -> None:
    """Found by the probe: the broker going away ended a tail with a traceback (aiomqtt's
    "Disconnected during message iteration"). It says so on stderr, reconnects with the
    feed's backoff, and says what it cannot show: what was published meanwhile."""
    events = events_config(broker.port)
    config = line_config(tools=["DB-1"]).model_copy(update={"events": events})
    path = write_line_config(config, tmp_path / "line.toml")
    topics = Topics.of(events.root, events.site, events.area, events.line or config.name)
    tail = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pkgline", "events", "tail", "--config", str(path), "--count", "2",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PKGLINE_DB": stack.url, "COLUMNS": "200"},
    )  # fmt: skip
    assert tail.stdout is not None and tail.stderr is not None
    try:
        async with asyncio.timeout(60):
            assert (await tail.stderr.readline()).decode().startswith("following ")
            await _publish(events, topics.lot_events("L1"), _lot_event(7, "L1"))
            assert (await tail.stdout.readline()).decode().startswith("#7  ")
            await asyncio.to_thread(broker.stop)
            lost = (await tail.stderr.readline()).decode()
            assert lost.startswith(f"warning: connection to the broker {events.url} lost ("), lost
            assert lost.rstrip().endswith("; reconnecting"), lost
            await asyncio.to_thread(broker.start)
            again = (await tail.stderr.readline()).decode()
            assert again.startswith(f"following {topics.all_lot_events} on {events.url} again")
            assert "(pkgline events list --after 7 replays them)" in again, again
            await _publish(events, topics.lot_events("L2"), _lot_event(8, "L2"))
            assert (await tail.stdout.readline()).decode().startswith("#8  ")
            assert await tail.wait() == 0  # --count 2
            rest = (await tail.stderr.read()).decode()
    finally:
        if tail.returncode is None:
            tail.kill()
            await tail.wait()
    assert "Traceback" not in rest, rest
