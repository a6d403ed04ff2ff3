"""Two commands on one record at once, in their worst interleaving: both read it before
either writes (tests of durables and material lots on SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.ports import UnitOfWork, Work

T = TypeVar("T")


def _answered(request: object) -> Work[Any]:
    answer = yield request  # type: ignore[misc]
    return answer


def resumed(work: Work[T], answer: object) -> Work[T]:
    """``work`` after its first request, answered with ``answer``."""
    try:
        while True:
            answer = yield work.send(answer)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


class ReadFirstThen:
    """A store whose writes read their first request (the record, and what is asked with
    it) in a transaction of their own, then await ``meanwhile`` (another command, run to its
    end), then go on as if they had read before it: a read before the other's commit, a
    write after it."""

    def __init__(self, inner: SqlUnitOfWorkFactory, meanwhile: Callable[[], Awaitable[object]]):
        self._inner = inner
        self._meanwhile = meanwhile

    def __call__(self, *, readonly: bool = False) -> UnitOfWork:
        return self._inner(readonly=readonly)

    async def write(self, work: Work[T]) -> T:
        first = next(work)
        async with self._inner() as uow:
            answer = await uow.run(_answered(first), commit=True)
        await self._meanwhile()
        async with self._inner() as uow:
            return await uow.run(resumed(work, answer), commit=True)


class BothReadFirst(ReadFirstThen):
    """A store whose writes read their first request (the durable) in a transaction of their
    own, then wait until every writer has read it: the worst interleaving of two commands."""

    def __init__(self, inner: SqlUnitOfWorkFactory, barrier: asyncio.Barrier):
        super().__init__(inner, lambda: asyncio.wait_for(barrier.wait(), timeout=10))
