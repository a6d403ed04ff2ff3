"""The marker marks a batch published only once it and every batch sent before it were
acknowledged, whatever the order the acknowledgements come in; a failed acknowledgement ends
it with nothing of that batch or after it marked; what it was still waiting for is given up
when the session closes."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

import pytest

from mes.adapters.outbox import RelaySession
from mes.service import utc_now
from pkgline.events.marker import Marker, Sent
from pkgline.events.publisher import PublishFailed


class Marks:
    """Stands in for the relay's second connection: keeps what is marked."""

    def __init__(self) -> None:
        self.marked: list[list[int]] = []

    async def mark_published(self, ids: Sequence[int], at: datetime) -> None:
        self.marked.append(list(ids))


def acks(n: int) -> list[asyncio.Future[None]]:
    loop = asyncio.get_running_loop()
    return [loop.create_future() for _ in range(n)]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_batch_acknowledged_before_the_one_sent_earlier_waits_for_it() -> None:
    marks = Marks()
    told: list[Sent] = []
    marker = Marker(cast(RelaySession, marks), utc_now, limit=100, acknowledged=told.append)
    task = asyncio.create_task(marker.run())
    try:
        first, second = acks(2), acks(1)
        marker.add([1, 2], first)
        marker.add([3], second)
        second[0].set_result(None)
        first[0].set_result(None)
        await settle()
        assert marks.marked == [] and marker.in_flight == {1, 2, 3}
        first[1].set_result(None)
        await marker.flush(task)
        assert marks.marked == [[1, 2, 3]]  # both at once, in order
        assert [list(sent.ids) for sent in told] == [[1, 2], [3]]
        assert marker.in_flight == set()
    finally:
        task.cancel()
        await marker.close()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_failed_acknowledgement_marks_nothing_of_its_batch_or_after_it() -> None:
    marks = Marks()
    marker = Marker(cast(RelaySession, marks), utc_now, limit=100)
    task = asyncio.create_task(marker.run())
    first, second, third = acks(1), acks(2), acks(1)
    marker.add([1], first)
    marker.add([2, 3], second)
    marker.add([4], third)
    first[0].set_result(None)
    third[0].set_result(None)
    second[0].set_exception(PublishFailed("t: connection lost"))
    with pytest.raises(PublishFailed, match="connection lost"):
        await marker.flush(task)
    assert marks.marked == [[1]]
    assert marker.in_flight == {2, 3, 4}
    await marker.close()  # the ack still awaited is given up, its task's end retrieved
    assert second[1].cancelled()


async def test_room_waits_while_the_limit_of_ids_is_in_flight() -> None:
    marks = Marks()
    marker = Marker(cast(RelaySession, marks), utc_now, limit=2)
    task = asyncio.create_task(marker.run())
    try:
        pending = acks(1)
        marker.add([1, 2], pending)
        room: asyncio.Task[Any] = asyncio.create_task(marker.room(task))
        await settle()
        assert not room.done()
        pending[0].set_result(None)
        await asyncio.wait_for(room, 5)
        assert marks.marked == [[1, 2]]
    finally:
        task.cancel()
        await marker.close()
        await asyncio.gather(task, return_exceptions=True)
