"""A unit of work that ends on an exception ends on that exception: a rollback that fails on
the way out (after a cancellation during COMMIT there is no transaction left) does not replace
it, and the connection is not used again."""

from __future__ import annotations

import asyncio

import pytest

from mes.adapters.database import create_engine
from mes.adapters.driver import AiosqliteSession, DatabaseUnavailable
from mes.adapters.migrate import upgrade
from mes.adapters.sql import SqlUnitOfWorkFactory


async def test_a_failing_rollback_does_not_replace_the_exception_the_unit_of_work_ends_on(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = create_engine(sqlite_url)
    try:
        await upgrade(engine)
        factory = SqlUnitOfWorkFactory(engine)

        async def failing_rollback(self: AiosqliteSession) -> None:
            raise DatabaseUnavailable("cannot rollback - no transaction is active")

        monkeypatch.setattr(AiosqliteSession, "rollback", failing_rollback)
        with pytest.raises(asyncio.CancelledError):
            async with factory():
                raise asyncio.CancelledError
        with pytest.raises(DatabaseUnavailable):  # nothing else to report: the rollback's
            async with factory():
                pass
        monkeypatch.undo()
        async with factory() as uow:  # the writers' turn was given back
            assert await uow.lots.get("NO-SUCH-LOT") is None
            await uow.commit()
    finally:
        await engine.dispose()
