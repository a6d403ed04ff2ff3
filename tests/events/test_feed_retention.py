"""A finished lot's retained state leaves the broker with its events: when the relay prunes
the events published more than ``retention_days`` ago, it first clears the retained state of
each finished lot whose last event goes (an empty retained message), and prunes nothing it
could not clear. Against a real Mosquitto, on SQLite and PostgreSQL, with the relay's clock
moved on by days (the lots' events are marked published at its time)."""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
import structlog

import pkgline.events.relay as relay_module
from mes.adapters.database import create_engine
from mes.adapters.outbox import OutboxReader, OutboxStore
from mes.domain import commands as cmd
from mes.service import utc_now
from pkgline.events.config import EventsConfig
from pkgline.events.relay import Relay
from pkgline.events.topics import Topics
from tests.controller.conftest import FLOWS, Stack, start_lots, wait_until
from tests.events.conftest import Mosquitto, attempts, drained, events_config, running


class FeedClock:
    """The relay's clock: now, moved on by hand."""

    def __init__(self) -> None:
        self.now = utc_now()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, days: float) -> None:
        self.now += timedelta(days=days)


@pytest.fixture(autouse=True)
def prune_often(monkeypatch: pytest.MonkeyPatch) -> None:
    """A prune every 0.2 s instead of every minute."""
    monkeypatch.setattr(relay_module, "PRUNE_S", 0.2)


async def retained_states(config: EventsConfig, topics: Topics) -> dict[str, dict[str, Any]]:
    """What a newcomer subscribing to ``lots/+/state`` gets: each lot's retained state. The
    broker sends the retained messages at the subscription, before the answer to a message
    published after it (the sentinel) on the same connection."""
    sentinel = f"{topics.base}/test/sentinel-{uuid.uuid4().hex[:8]}"
    found: dict[str, dict[str, Any]] = {}
    async with aiomqtt.Client(
        "127.0.0.1",
        config.port,
        identifier=f"newcomer-{uuid.uuid4().hex[:8]}",
        protocol=aiomqtt.ProtocolVersion.V311,
        clean_session=True,
    ) as client:
        await client.subscribe(f"{topics.base}/lots/+/state", qos=1)
        await client.subscribe(sentinel, qos=1)
        await client.publish(sentinel, b"end", qos=1)
        async with asyncio.timeout(10):
            async for message in client.messages:
                if str(message.topic) == sentinel:
                    break
                assert isinstance(message.payload, bytes) and message.retain
                found[str(message.topic).split("/")[-2]] = json.loads(message.payload)
    return found


def states_are(config: EventsConfig, topics: Topics, expected: dict[str, str]) -> Any:
    """A condition for ``wait_until``: the retained lot states are ``expected`` (lot: state)."""

    async def check() -> bool:
        found = await retained_states(config, topics)
        return {lot: state["state"] for lot, state in found.items()} == expected

    return check


async def outbox_lots(reader: OutboxReader) -> list[str]:
    """The lot of each event the outbox keeps, in id order."""
    return [e.lot_id for e in await reader.events(limit=1000)]


async def test_a_finished_lots_retained_state_goes_with_its_events_while_lots_in_progress_keep_theirs(
    stack: Stack, broker: Mosquitto
) -> None:
    """Lots started at the same moment, one scrapped, one held, one waiting, and one
    scrapped three days later: a week and a day on, the events of the first three are
    pruned, and a newcomer no longer gets the scrapped lot's state (a subscriber gets an
    empty message on its topic), but still the held and the waiting lots' states however
    old, and that of the lot scrapped later, whose last event is within the retention; once
    that event is older than the retention too, its state goes."""
    scrapped, held, waiting, late = await start_lots(stack.lots, [FLOWS[0]] * 4)
    await stack.lots.scrap(cmd.ScrapLot(scrapped, "op", "dropped"))
    await stack.lots.hold(cmd.HoldLot(held, "op", "check"))
    engine = create_engine(stack.url)
    reader = OutboxReader(engine)
    clock = FeedClock()
    events = events_config(broker.port, retention_days=7)
    relay = Relay(events, OutboxStore(engine), controller="feed-retain", clock=clock)
    topics = relay.topics
    try:
        with structlog.testing.capture_logs() as logs:
            async with running(relay):
                await wait_until(drained(reader), timeout_s=30, what="published")
                every = {scrapped: "SCRAPPED", held: "HOLD", waiting: "WAITING", late: "WAITING"}
                await wait_until(states_are(events, topics, every), timeout_s=30, what="states")
                clock.advance(days=3)
                await stack.lots.scrap(cmd.ScrapLot(late, "op", "dropped"))
                await wait_until(drained(reader), timeout_s=30, what="published")
                every[late] = "SCRAPPED"
                await wait_until(states_are(events, topics, every), timeout_s=30, what="scrap")
                async with aiomqtt.Client("127.0.0.1", broker.port) as live:
                    await live.subscribe(topics.subject_state("lot", scrapped), qos=1)
                    async with asyncio.timeout(10):  # its retained state, at once
                        assert (await anext(live.messages)).payload != b""
                    clock.advance(days=5)  # the cutoff: a day after the lots started
                    async with asyncio.timeout(10):  # the state cleared
                        cleared = await anext(live.messages)
                    assert cleared.payload == b""
                del every[scrapped]
                await wait_until(states_are(events, topics, every), timeout_s=30, what="cleared")
                assert await outbox_lots(reader) == [late]  # its scrap (the highest id)
                (newest,) = await start_lots(
                    stack.lots, [FLOWS[1]]
                )  # a newer event: the scrap may go
                await wait_until(drained(reader), timeout_s=30, what="published")
                clock.advance(days=3)  # the cutoff: a day after the late scrap
                del every[late]
                every[newest] = "WAITING"
                await wait_until(states_are(events, topics, every), timeout_s=30, what="late")
                assert len(await outbox_lots(reader)) == 1  # the newest lot's start
        cleared_logs = [e for e in logs if e["event"] == "finished lots' retained states cleared"]
        assert [e["lots"] for e in cleared_logs] == [1, 1]
    finally:
        await engine.dispose()


async def test_a_broker_away_or_refusing_at_the_prune_leaves_a_finished_lots_events_until_cleared(
    stack: Stack, tmp_path: Path
) -> None:
    """Nothing is pruned that was not cleared: with the broker stopped when the events grow
    older than the retention, and then with the broker refusing the empty state (MQTT 5, its
    ACL denies the topic: a PUBACK "Not authorized"), the outbox keeps every event; once the
    broker takes the clear, the state is gone and the events with it."""
    scrapped, waiting = await start_lots(stack.lots, [FLOWS[0]] * 2)
    await stack.lots.scrap(cmd.ScrapLot(scrapped, "op", "dropped"))
    (newest,) = await start_lots(stack.lots, [FLOWS[1]])  # the highest id, never pruned
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite #\n")
    broker = Mosquitto(tmp_path / "prune-broker", extra=f"acl_file {acl}\n")
    engine = create_engine(stack.url)
    reader = OutboxReader(engine)
    clock = FeedClock()
    events = events_config(broker.port, retention_days=7, timeout_s=1.0, backoff_max_s=0.5)
    relay = Relay(events, OutboxStore(engine), controller="feed-prune", clock=clock)
    topics = relay.topics
    broker.start()
    try:
        with structlog.testing.capture_logs() as logs:

            def downs() -> int:
                return len(attempts(logs))

            async with running(relay):
                await wait_until(drained(reader), timeout_s=30, what="published")
                await wait_until(
                    states_are(
                        events,
                        topics,
                        {scrapped: "SCRAPPED", waiting: "WAITING", newest: "WAITING"},
                    ),
                    timeout_s=30,
                    what="states",
                )
                kept = await outbox_lots(reader)
                assert len(kept) == 4
                broker.stop()
                clock.advance(days=8)
                await wait_until(lambda: downs() >= 3, timeout_s=30, what="3 retries")
                assert await outbox_lots(reader) == kept
                # Back, but refusing the scrapped lot's empty state.
                acl.write_text(
                    f"topic deny {topics.subject_state('lot', scrapped)}\n" + "topic readwrite #\n"
                )
                before = downs()
                broker.start()
                await wait_until(lambda: downs() >= before + 3, timeout_s=30, what="refusals")
                assert await outbox_lots(reader) == kept
                acl.write_text("topic readwrite #\n")
                assert broker.process is not None
                broker.process.send_signal(signal.SIGHUP)  # mosquitto reads its ACL again
                await wait_until(_pruned(reader, newest), timeout_s=30, what="pruned")
                found = await retained_states(events, topics)
                assert scrapped not in found and waiting in found
        refused = [e["error"] for e in attempts(logs)][3:]
        assert refused and all(
            "refused the message: Not authorized" in error or "timed out" in error
            for error in refused
        ), refused
    finally:
        await engine.dispose()
        broker.stop()


def _pruned(reader: OutboxReader, newest: str) -> Any:
    async def check() -> bool:
        return await outbox_lots(reader) == [newest]

    return check
