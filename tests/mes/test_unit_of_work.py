"""A unit of work that ends on an exception ends on that exception: a rollback that fails on
the way out (after a cancellation during COMMIT there is no transaction left) does not replace
it, and the connection is not used again."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import pytest

from mes.adapters.database import create_engine
from mes.adapters.driver import AiosqliteSession, DatabaseUnavailable
from mes.adapters.migrate import upgrade
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.ports import get_lot


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
            assert await uow.run(get_lot("NO-SUCH-LOT")) is None
            await uow.commit()
    finally:
        await engine.dispose()


async def test_a_unit_of_work_left_while_its_first_statement_waits_leaves_no_transaction_open(
    sqlite_url: str,
) -> None:
    """BEGIN goes to SQLite with the first statement. A caller cancelled while that call
    still waits on the connection's thread must not leave SQLite's write lock taken on a
    pooled connection: every other writer would then wait for it in vain."""
    engine = create_engine(sqlite_url)
    try:
        await upgrade(engine)
        factory = SqlUnitOfWorkFactory(engine)
        async with factory() as uow:
            session = uow._session
            assert isinstance(session, AiosqliteSession)
            busy = asyncio.ensure_future(session._conn._execute(time.sleep, 0.3))
            first = asyncio.create_task(uow.run(get_lot("L1")))  # BEGIN IMMEDIATE, after `busy`
            await asyncio.sleep(0.05)
            first.cancel()
            with pytest.raises(asyncio.CancelledError):
                await first
        await busy
        other = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), timeout=0.5)
        try:
            other.execute("BEGIN IMMEDIATE")  # "database is locked" if one was left open
            other.execute("ROLLBACK")
        finally:
            other.close()
    finally:
        await engine.dispose()
