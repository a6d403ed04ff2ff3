"""``pkgline events status`` and ``pkgline line status`` tell the feed's backlog (events
waiting, the oldest one's age, the last published); ``pkgline events tail`` refuses a line
without ``[events]`` and a lot id that cannot be a topic level."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mes.adapters.database import create_engine
from mes.adapters.outbox import OutboxReader, OutboxStore
from pkgline.events.relay import Relay
from simulators.line import write_line_config
from tests.controller.conftest import FLOWS, Stack, line_config, start_lots, wait_until
from tests.events.conftest import Mosquitto, events_config, free_port, running

pytestmark = pytest.mark.parametrize("database", ["sqlite_url"], indirect=True)


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
