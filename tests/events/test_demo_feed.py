"""The demo's event feed: each run's MQTT client id is its own, so two demos on one broker
(the one on 127.0.0.1:1883) stay connected side by side; with one id between them the broker
would close the first connection when the second came (MQTT: a client id is one session).
Each run's topic root and its controller's spool are its own too."""

from __future__ import annotations

import secrets
import time
import uuid
from pathlib import Path

from pkgline.cli.demo import _event_feed, _example_config, _fresh_database, demo_feed, demo_line
from pkgline.cli.demo_run import Demo
from pkgline.config import default_spool_dir, load_line_config
from pkgline.events.topics import Topics
from pkgline.mqtt import connect
from simulators.line import write_line_config


async def test_two_demos_feeds_keep_their_broker_connections_side_by_side(
    plant_broker: int,
) -> None:
    line = f"line-{uuid.uuid4().hex[:6]}"
    first, second = _event_feed(line, secrets.token_hex(4)), _event_feed(line, secrets.token_hex(4))
    assert first is not None and second is not None
    ids = [feed.client_id_for(line, "events") for feed in (first, second)]
    assert ids[0] != ids[1]
    assert all(i.startswith(f"pkgline-{line}-events-") and len(i) <= 64 for i in ids)
    topic = f"pkgline-test/{line}/probe"
    async with connect(first, ids[0]) as one, connect(second, ids[1]) as two:
        # A takeover would have closed the first before the second's CONNACK. Both still publish (QoS 1: each waits for its PUBACK on its own connection).
        await one.publish(topic, b"1", qos=1, timeout=5)
        await two.publish(topic, b"2", qos=1, timeout=5)


def test_a_long_line_name_keeps_the_client_id_within_mqtts_64_characters() -> None:
    from pkgline.cli.demo import _run_client_id

    made = {_run_client_id("l" * 64, "events", secrets.token_hex(4)) for _ in range(3)}
    assert len(made) == 3
    assert all(len(i) == 64 and i.startswith("pkgline-lll") for i in made)


def _run(database: Path) -> Demo:
    database.parent.mkdir(parents=True)
    now = time.monotonic()
    return Demo(
        database=database,
        url=f"sqlite:///{database}",
        config_path=database,
        config=_example_config(),
        time_scale=0.05,
        reject_rate=None,
        keep=False,
        started=now,
        deadline=now + 60,
    )


async def test_two_demo_runs_have_a_topic_root_and_a_spool_of_their_own(tmp_path: Path) -> None:
    """Found by the probe: two demos on one broker shared the topic base
    ``pkgline-demo/site/packaging/line-sim-1`` (their event ids collided, their retained
    lot and controller states overwrote each other's, and one's will said the other was
    offline), and every demo spooled into ``~/.local/state/pkgline/spool/line-sim-1.jsonl``,
    the file of any controller of that name on the account. Now a run's topic root and
    client id carry its id, and its spool is beside its database; a new run on the same
    database removes the spool an earlier one left (it would be written into the new
    database as this run's)."""
    runs = [_run(tmp_path / "one" / "pkgline-demo.db"), _run(tmp_path / "two" / "demo.db")]
    lines = [demo_line(r.config, r, demo_feed(r.config.name, r.run_id)) for r in runs]
    bases, spools = set(), set()
    for run, line in zip(runs, lines, strict=True):
        assert line.events is not None and line.database == run.url
        assert line.events.root == f"pkgline-demo-{run.run_id}"
        assert line.events.client_id_for(line.name, "events").endswith(f"-{run.run_id}")
        bases.add(Topics.of(line.events.root, line.events.site, line.events.area, line.name).base)
        spool = line.controller.spool_path(line.name)
        assert spool == run.database.with_suffix(".spool") / f"{line.name}.jsonl"
        assert default_spool_dir() not in spool.parents
        spools.add(spool)
        # as the controller and events tail read it
        written = load_line_config(write_line_config(line, run.database.with_suffix(".toml")))
        assert written.events is not None and written.events.root == line.events.root
        assert written.controller.spool_path(written.name) == spool
    assert len(bases) == 2 and len(spools) == 2
    stale = runs[0].spool_dir / f"{runs[0].config.name}.jsonl"
    stale.parent.mkdir()
    stale.write_text('{"tool": "DB-1"}\n')
    await _fresh_database(runs[0])
    assert not stale.exists()
