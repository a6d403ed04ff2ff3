"""The relay's order and retry logic against an in-memory publisher (no broker): events go
out in id order, each lot's state after its events; a publish that fails mid-batch marks
nothing of that batch, and the next session sends it again with the same ids; the controller's
birth comes first and its goodbye last."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from mes.adapters.database import create_engine
from mes.adapters.outbox import OutboxReader, OutboxStore
from pkgline.events.publisher import PublishFailed
from pkgline.events.relay import Relay
from tests.controller.conftest import FLOWS, Stack, start_lots, wait_until
from tests.events.conftest import events_config


@dataclass
class MemoryPublisher:
    """Keeps what is published; fails the ``fail_at``-th message (1-based), once."""

    sent: list[tuple[str, dict[str, object], bool]] = field(default_factory=list)
    fail_at: int | None = None
    calls: int = 0

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        self.calls += 1
        if self.calls == self.fail_at:
            raise PublishFailed(f"{topic}: connection lost (test)")
        await asyncio.sleep(0)
        self.sent.append((topic, json.loads(payload), retain))

    def event_ids(self) -> list[int]:
        return [int(p["id"]) for t, p, _ in self.sent if t.endswith("/events")]  # type: ignore[call-overload]


async def test_a_publish_failing_mid_batch_marks_nothing_of_it_and_the_next_session_resends_it(
    stack: Stack,
) -> None:
    await start_lots(stack.lots, FLOWS[:6])
    engine = create_engine(stack.url)
    relay = Relay(events_config(1), OutboxStore(engine), controller="logic")
    reader = OutboxReader(engine)
    try:
        first = MemoryPublisher(fail_at=4)  # birth, then events 1 and 2, then the 3rd fails
        try:
            await relay.publish_to(first)
        except PublishFailed:
            pass
        else:  # pragma: no cover
            raise AssertionError("the session should end with the failure")
        assert (await reader.backlog()).events == 6  # nothing of the failed batch is marked
        second = MemoryPublisher()
        session = asyncio.create_task(relay.publish_to(second))

        async def drained() -> bool:
            return (await reader.backlog()).events == 0

        await wait_until(drained, timeout_s=20, what="published")
        relay.request_stop()
        await asyncio.wait_for(session, 20)
        assert second.event_ids() == [1, 2, 3, 4, 5, 6]  # in id order, 1 and 2 again
        assert first.event_ids()[:2] == [1, 2]
        topics = [t for t, _, _ in second.sent]
        assert topics[0].endswith("/controllers/logic/status")
        assert second.sent[0][1]["status"] == "online"
        assert second.sent[-1][1]["status"] == "offline"
        for lot_event in (p for t, p, _ in second.sent if t.endswith("/events")):
            state_topic = f"{relay.topics.base}/lots/{lot_event['lot']}/state"
            assert topics.index(state_topic) > topics.index(
                relay.topics.lot_events(str(lot_event["lot"]))
            )
        assert all(retain for t, _, retain in second.sent if t.endswith("/state"))
        assert not any(retain for t, _, retain in second.sent if t.endswith("/events"))
    finally:
        await engine.dispose()


async def test_a_session_that_fails_leaves_no_publish_waiting(stack: Stack) -> None:
    """The publishes still waiting for their PUBACK when one before them fails are given up
    when the session ends: none is left running (or its failure unseen) behind it."""
    await start_lots(stack.lots, FLOWS[:6])
    engine = create_engine(stack.url)
    relay = Relay(events_config(1), OutboxStore(engine), controller="logic")
    publisher = StalledPublisher()
    try:
        try:
            await asyncio.wait_for(relay.publish_to(publisher), 30)
        except PublishFailed:
            pass
        else:  # pragma: no cover
            raise AssertionError("the session should end with the failure")
        assert len(publisher.tasks) == 12  # 6 events, 6 lot states
        assert all(task.done() for task in publisher.tasks)
        assert sum(task.cancelled() for task in publisher.tasks) == 9  # given up
    finally:
        await engine.dispose()


@dataclass
class StalledPublisher(MemoryPublisher):
    """A batch's first two messages are acknowledged, the third fails, the others never are
    (until cancelled). Keeps the task of each batch message; other messages go through."""

    tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        if "/lots/" not in topic:
            return
        task = asyncio.current_task()
        assert task is not None
        self.tasks.append(task)
        if len(self.tasks) == 3:
            raise PublishFailed(f"{topic}: connection lost (test)")
        if len(self.tasks) > 3:
            await asyncio.Event().wait()  # no PUBACK comes
