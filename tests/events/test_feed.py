"""The event feed end to end: a simulated line's lots run by the line controller, the relay
publishing the outbox to a real Mosquitto, and a subscriber that must see every outbox event
(after dropping duplicates by id), in each lot's order, as many as the lots' history, and
every payload valid against its JSON Schema."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
import structlog
from sqlalchemy import func, select

from mes.adapters.audit import verify_history
from mes.adapters.database import create_engine
from mes.adapters.outbox import OutboxReader, OutboxStore
from mes.adapters.tables import lot_history
from mes.domain.equipment import ToolRecord
from mes.domain.model import LotState
from pkgline.events.relay import Relay
from tests.controller.conftest import (
    FLOWS,
    Stack,
    all_in,
    line_config,
    lots_in,
    running_controller,
    simulated,
    start_lots,
    wait_until,
)
from tests.events.conftest import (
    Mosquitto,
    Subscriber,
    all_outbox_ids,
    attempts,
    check_feed,
    check_schema,
    drained,
    events_config,
    running,
    stopped,
    subscribed,
)

pytestmark = pytest.mark.slow


def schema_kind(topic: str) -> str:
    if topic.endswith("/events"):
        if "/durables/" in topic:
            return "durable-event"
        if "/materials/" in topic:
            return "material-event"
        return "lot-event"
    if "/durables/" in topic:
        return "durable-state"
    if "/materials/" in topic:
        return "material-state"
    if "/lots/" in topic:
        return "lot-state"
    if "/tools/" in topic:
        return "tool-state"
    if topic.endswith("/line/status"):
        return "line-status"
    if "/controllers/" in topic:
        return "controller-status"
    if topic.endswith("/audit/heads"):
        return "audit-heads"
    assert topic.endswith("/dead-letter"), topic
    return "dead-letter"


def check_schemas(sub: Subscriber) -> set[str]:
    """Every message valid against its kind's schema; the kinds seen."""
    seen = set()
    for message in sub.messages:
        kind = schema_kind(message.topic)
        check_schema(message.payload, kind)
        seen.add(kind)
    return seen


async def history_count(url: str, ids: Sequence[str]) -> int:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            query = select(func.count()).where(lot_history.c.lot_id.in_(list(ids)))
            return int((await conn.execute(query)).scalar_one())
    finally:
        await engine.dispose()


async def test_every_event_of_a_lines_lots_reaches_a_subscriber_once_by_id_in_each_lots_order(
    stack: Stack, broker: Mosquitto
) -> None:
    config = line_config(name="feed-line")
    events = events_config(broker.port)
    engine = create_engine(stack.url)

    async def tools() -> list[ToolRecord]:
        return await stack.equipment.tools(config.name)

    relay = Relay(events, OutboxStore(engine), controller=config.name, tools=tools)
    reader = OutboxReader(engine)
    try:
        async with simulated(config), subscribed(events, relay.topics) as sub:
            async with running(relay), running_controller(config, stack):
                ids = await start_lots(stack.lots, FLOWS[:4])

                async def done() -> bool:
                    return all_in(await lots_in(stack.lots, ids), LotState.COMPLETED)

                await wait_until(done, timeout_s=90, what="every lot completed")
                await wait_until(drained(reader), timeout_s=30, what="the outbox published")
                outbox = await all_outbox_ids(reader)
                await wait_until(
                    lambda: len({e["id"] for e in sub.events()}) >= len(outbox),
                    timeout_s=30,
                    what="the subscriber got every event",
                )
            await wait_until(stopped(sub, config.name), timeout_s=10, what="offline, stopped")
        check_feed(sub, outbox)
        assert len(outbox) == await history_count(stack.url, ids)
        kinds = check_schemas(sub)
        assert {"lot-event", "lot-state", "tool-state", "line-status", "controller-status"} <= kinds
        # the heads published are anchors the history and the security log still have
        assert "audit-heads" in kinds
        published = [m.payload for m in sub.of("/audit/heads")]
        anchors = {p[k] for p in published for k in ("lots_head", "security_head")}
        verified = await verify_history(engine, anchors=sorted(anchors))
        assert verified.ok, verified.problem
        births = [m.payload["status"] for m in sub.of(f"/controllers/{config.name}/status")]
        assert births[0] == "online" and births[-1] == "offline"
        final = {
            m.topic: m.payload
            for m in sub.messages
            if "/lots/" in m.topic and m.topic.endswith("/state")
        }
        assert {p["lot"]: p["state"] for p in final.values()} == dict.fromkeys(ids, "COMPLETED")
    finally:
        await engine.dispose()


async def test_a_broker_stopped_mid_run_leaves_the_backlog_in_the_outbox_and_nothing_missing_after(
    stack: Stack, broker: Mosquitto
) -> None:
    config = line_config(name="feed-down", time_scale=0.02)
    events = events_config(broker.port)
    engine = create_engine(stack.url)
    relay = Relay(events, OutboxStore(engine), controller=config.name)
    reader = OutboxReader(engine)
    try:
        async with (
            simulated(config),
            subscribed(events, relay.topics) as sub,
            running(relay),
            running_controller(config, stack),
        ):
            ids = await start_lots(stack.lots, FLOWS[:3])
            await wait_until(lambda: len(sub.events()) >= 20, timeout_s=60, what="events flow")
            with structlog.testing.capture_logs() as logs:
                broker.stop()
                # The line goes on: its moves wait in the outbox. The outage lasts past the
                # relay's whole backoff (0.1 s doubling to 1 s here; 30 s in production, so a
                # minute's outage is two or three tries): three tries at the cap.
                await wait_until(
                    _backlog_at_least(reader, 20),
                    timeout_s=60,
                    what="a backlog while the broker is down",
                )
                await wait_until(
                    lambda: _tries_at_the_cap(logs, events.backoff_max_s) >= 3,
                    timeout_s=60,
                    what="three reconnects at the capped backoff",
                )
            assert not relay.status.connected
            assert "event feed down" in relay.status_line()
            broker.start()

            async def done() -> bool:
                return all_in(await lots_in(stack.lots, ids), LotState.COMPLETED)

            await wait_until(done, timeout_s=120, what="every lot completed")
            await wait_until(drained(reader), timeout_s=30, what="the backlog drained")
            outbox = await all_outbox_ids(reader)
            await wait_until(
                lambda: len({e["id"] for e in sub.events()}) >= len(outbox),
                timeout_s=30,
                what="the subscriber got every event",
            )
        check_feed(sub, outbox)
    finally:
        await engine.dispose()


def _tries_at_the_cap(logs: list[dict[str, Any]], cap_s: float) -> int:
    """Reconnects that failed and waited the capped backoff (less its jitter, up to 25 %)."""
    return sum(1 for e in attempts(logs) if e["retry_in_s"] >= 0.75 * cap_s)


def _backlog_at_least(reader: OutboxReader, n: int) -> Any:
    async def check() -> bool:
        return (await reader.backlog()).events >= n

    return check


async def test_a_broker_restart_is_met_with_the_backlog_first_in_id_order(
    stack: Stack, broker: Mosquitto
) -> None:
    """Events committed while the broker is down go out before anything newer, oldest first."""
    events = events_config(broker.port)
    engine = create_engine(stack.url)
    relay = Relay(events, OutboxStore(engine), controller="feed-order")
    reader = OutboxReader(engine)
    try:
        async with subscribed(events, relay.topics) as sub, running(relay):
            broker.stop()
            await wait_until(lambda: not relay.status.connected, timeout_s=20, what="relay sees it")
            ids = await start_lots(stack.lots, FLOWS[:5])
            broker.start()
            await wait_until(drained(reader), timeout_s=30, what="the backlog drained")
            outbox = await all_outbox_ids(reader)
            await wait_until(
                lambda: len({e["id"] for e in sub.events()}) >= len(outbox),
                timeout_s=30,
                what="the subscriber got every event",
            )
        received = [e["id"] for e in sub.events()]
        assert received == sorted(received)
        assert {subject for _, subject in outbox} == {f"lots/{lot}" for lot in ids}
        check_feed(sub, outbox)
    finally:
        await engine.dispose()


async def test_status_line_tells_the_backlog_and_the_last_event_published(
    stack: Stack, broker: Mosquitto
) -> None:
    events = events_config(broker.port)
    engine = create_engine(stack.url)
    relay = Relay(events, OutboxStore(engine), controller="feed-status")
    try:
        await start_lots(stack.lots, FLOWS[:2])
        async with running(relay):
            await wait_until(lambda: relay.status.published >= 2, timeout_s=20, what="published")
            await asyncio.sleep(0)
        assert relay.status.last_published_id is not None
        assert "event feed down" in relay.status_line()  # stopped: disconnected
    finally:
        await engine.dispose()


@pytest.mark.xdist_group("plant-broker")  # the demo tests feed the same broker
async def test_the_broker_on_the_standard_port_gets_every_event_of_lots_started(
    stack: Stack, plant_broker: int
) -> None:
    events = events_config(plant_broker)
    engine = create_engine(stack.url)
    relay = Relay(events, OutboxStore(engine), controller="feed-plant")
    reader = OutboxReader(engine)
    try:
        async with subscribed(events, relay.topics) as sub, running(relay):
            await start_lots(stack.lots, FLOWS[:3])
            await wait_until(drained(reader), timeout_s=30, what="the outbox published")
            outbox = await all_outbox_ids(reader)
            await wait_until(lambda: len(sub.events()) >= len(outbox), timeout_s=30)
        check_feed(sub, outbox)
        check_schemas(sub)
    finally:
        await engine.dispose()
