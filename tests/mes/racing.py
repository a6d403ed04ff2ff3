"""Two commands on one record at once, in their worst interleaving: both read it before
either writes (tests of durables and material lots on SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
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


class BothReadFirst:
    """A store whose writes read their first request (the durable) in a transaction of their
    own, then wait until every writer has read it: the worst interleaving of two commands."""

    def __init__(self, inner: SqlUnitOfWorkFactory, barrier: asyncio.Barrier):
        self._inner = inner
        self._barrier = barrier

    def __call__(self, *, readonly: bool = False) -> UnitOfWork:
        return self._inner(readonly=readonly)

    async def write(self, work: Work[T]) -> T:
        first = next(work)
        async with self._inner() as uow:
            answer = await uow.run(_answered(first), commit=True)
        await asyncio.wait_for(self._barrier.wait(), timeout=10)
        async with self._inner() as uow:
            return await uow.run(resumed(work, answer), commit=True)
