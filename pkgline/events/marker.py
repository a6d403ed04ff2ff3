"""Batches sent by the relay, marked published once the broker acknowledged them, in the order
sent, off the relay's path: the relay sends a batch and goes on to read and send the next
while the broker answers, and the marks are written on a connection of their own (on SQLite
a write waits for the one writer, the controller's moves, and the next events need not).

A batch is marked only after every message of it, and every batch sent before it, was
acknowledged: a batch whose acknowledgement fails ends :meth:`Marker.run` with
:class:`PublishFailed`, and nothing of it or after it is marked (it is sent again, with the
same ids, in the next session: at least once).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from mes.adapters.outbox import RelaySession


@dataclass(frozen=True, slots=True)
class Sent:
    """One batch on its way: the outbox ids, the publishes to wait for (each resolves at its
    PUBACK), how many of the ids went to the dead-letter topic."""

    ids: Sequence[int]
    acks: Sequence[asyncio.Future[None]]
    dead: int = 0


Acknowledged = Callable[[Sent], None]


class Marker:
    """Waits for each batch's acknowledgements, in the order sent, and marks the batches
    acknowledged published (those acknowledged together, in one transaction). Until marked,
    their ids are :attr:`in_flight`, which the relay's reads skip; at most ``limit`` of them
    (the relay waits for :meth:`room`). ``acknowledged`` is told each batch acknowledged,
    before its mark; :attr:`marked` counts the ids marked."""

    def __init__(
        self,
        db: RelaySession,
        clock: Callable[[], datetime],
        *,
        limit: int,
        acknowledged: Acknowledged = lambda _: None,
    ):
        self.in_flight: set[int] = set()
        self.marked = 0
        self._db = db
        self._clock = clock
        self._limit = limit
        self._acknowledged = acknowledged
        self._sent: deque[Sent] = deque()
        self._wake = asyncio.Event()
        self._marked = asyncio.Event()

    def add(
        self, ids: Sequence[int], acks: Sequence[asyncio.Future[None]] = (), dead: int = 0
    ) -> None:
        self._sent.append(Sent(ids, acks, dead))
        self.in_flight.update(ids)
        self._wake.set()

    async def room(self, task: asyncio.Task[None]) -> None:
        """Fewer than ``limit`` ids in flight (or the marking task failed: raised)."""
        while len(self.in_flight) >= self._limit:
            await self._next_mark(task)

    async def flush(self, task: asyncio.Task[None]) -> None:
        """Every id added is acknowledged and marked (or the marking task failed: raised)."""
        while self.in_flight:
            await self._next_mark(task)

    async def _next_mark(self, task: asyncio.Task[None]) -> None:
        self._marked.clear()
        waiter = asyncio.ensure_future(self._marked.wait())
        try:
            await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if task.done():
            task.result()
            raise RuntimeError("the relay's marking task ended")  # pragma: no cover

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._sent:
                # The oldest batch, awaited; then every batch after it acknowledged already.
                # (A batch leaves the queue once acknowledged: close() gives up the others.)
                ready = [await self._acked()]
                while self._sent and all(ack.done() for ack in self._sent[0].acks):
                    ready.append(await self._acked())
                ids = [i for sent in ready for i in sent.ids]
                await self._db.mark_published(ids, self._clock())
                self.marked += len(ids)
                self.in_flight.difference_update(ids)
                self._marked.set()

    async def _acked(self) -> Sent:
        """The oldest batch, once acknowledged (raises PublishFailed: nothing of it or after
        it is marked)."""
        sent = self._sent[0]
        for ack in sent.acks:
            await ack
        self._sent.popleft()
        self._acknowledged(sent)
        return sent

    async def close(self) -> None:
        """The publishes still waiting for their acknowledgement are given up (the session
        is over: they are sent again in the next)."""
        waiting = [ack for sent in self._sent for ack in sent.acks]
        self._sent.clear()
        for ack in waiting:
            ack.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*waiting, return_exceptions=True)
