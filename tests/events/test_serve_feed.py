"""``pkgline serve`` publishes its line's events (the relay runs inside it): killed with
SIGKILL mid-run and started again, a few times, the feed misses nothing and repeats an event
only with the same id; its death is told by the MQTT will. ``pkgline events tail`` prints the
feed and ``pkgline events status`` the outbox's backlog."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mes.adapters.database import create_engine
from mes.adapters.outbox import OutboxReader
from mes.domain.model import LotState
from pkgline.events.topics import Topics
from simulators.line import write_line_config
from tests.controller.conftest import (
    FLOWS,
    Stack,
    all_in,
    line_config,
    lots_in,
    simulated,
    start_lots,
    wait_until,
)
from tests.events.conftest import (
    Mosquitto,
    all_outbox_ids,
    check_feed,
    events_config,
    stopped,
    subscribed,
)

pytestmark = pytest.mark.slow


def _pkgline(*args: str, log: Path, db: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "pkgline", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PKGLINE_DB": db},
        )


@pytest.mark.timeout(240)
@pytest.mark.parametrize("database", ["migrated_sqlite_url"], indirect=True)
async def test_serve_killed_with_sigkill_mid_run_misses_no_event_and_repeats_only_by_id(
    stack: Stack, broker: Mosquitto, tmp_path: Path
) -> None:
    events = events_config(broker.port)
    config = line_config(name="feed-serve", time_scale=0.05).model_copy(update={"events": events})
    path = write_line_config(config, tmp_path / "line.toml")
    topics = Topics.of(events.root, events.site, events.area, "line-test")
    rng = random.Random(15)
    log = tmp_path / "serve.log"
    engine = create_engine(stack.url)
    try:
        async with simulated(config), subscribed(events, topics) as sub:
            ids = await start_lots(stack.lots, FLOWS[:5])
            tail = _pkgline(
                "events", "tail", "--config", str(path), "--lot", ids[0], "--json", "--count", "3",
                log=tmp_path / "tail.log", db=stack.url,
            )  # fmt: skip
            for n in range(3):
                proc = _pkgline("serve", "--config", str(path), log=log, db=stack.url)
                try:
                    # Killed while it publishes: once its relay is connected, at a random moment.
                    await wait_until(
                        lambda n=n: log.read_text().count("event feed connected") > n,
                        timeout_s=60,
                        what="the relay connected",
                    )
                    await asyncio.sleep(rng.uniform(0.3, 2.5))
                finally:
                    proc.send_signal(signal.SIGKILL)
                    await asyncio.to_thread(proc.wait, 10)
            proc = _pkgline("serve", "--config", str(path), log=log, db=stack.url)
            try:

                async def done() -> bool:
                    return all_in(await lots_in(stack.lots, ids), LotState.COMPLETED)

                await wait_until(done, timeout_s=150, every_s=0.5, what="every lot completed")
                reader = OutboxReader(engine)

                async def drained() -> bool:
                    return (await reader.backlog()).events == 0

                await wait_until(drained, timeout_s=30, what="the outbox published")
            finally:
                proc.send_signal(signal.SIGTERM)
                assert await asyncio.to_thread(proc.wait, 30) == 0
            rows = await all_outbox_ids(reader)
            await wait_until(
                lambda: len({e["id"] for e in sub.events()}) >= len(rows), timeout_s=30
            )
            await wait_until(stopped(sub, config.name), timeout_s=10, what="offline, stopped")
            assert await asyncio.to_thread(tail.wait, 30) == 0
        check_feed(sub, rows)
        deaths = [
            m.payload["reason"]
            for m in sub.of(f"/controllers/{config.name}/status")
            if m.payload["status"] == "offline"
        ]
        assert deaths.count("connection lost") == 3  # the will, once per SIGKILL
        assert deaths[-1] == "stopped"
        tailed = [json.loads(line) for line in (tmp_path / "tail.log").read_text().splitlines()]
        assert [e["lot"] for e in tailed] == [ids[0]] * 3
        assert [e["id"] for e in tailed] == sorted(e["id"] for e in tailed)
        status = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "pkgline", "events", "status", "--json", "--db", stack.url],
            capture_output=True,
            check=True,
        )
        report = json.loads(status.stdout)
        assert report["backlog"] == 0 and report["last_published_id"] == rows[-1][0]
    finally:
        await engine.dispose()
