"""The relay's side of the outbox (mes/adapters/outbox.py) on SQLite and PostgreSQL: pending
events in id order skipping those being marked, marks, the backlog, pruning (published events
only, never the highest id, so that an id is never given again), and one leader per
database."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from mes.adapters.database import create_engine
from mes.adapters.errors import DatabaseUnavailable
from mes.adapters.outbox import OutboxReader, OutboxStore
from mes.service import utc_now
from tests.conftest import _admin
from tests.controller.conftest import FLOWS, Stack, start_lots


async def test_pruning_deletes_only_events_published_before_the_cutoff_and_keeps_the_highest(
    stack: Stack,
) -> None:
    await start_lots(stack.lots, FLOWS[:5])
    engine = create_engine(stack.url)
    try:
        store = OutboxStore(engine)
        async with store.session() as db:
            assert [e.id for e in await db.pending(10)] == [1, 2, 3, 4, 5]
            assert [e.id for e in await db.pending(2, skip={1, 3})] == [2, 4]
            await db.mark_published([1, 2, 5], utc_now() - timedelta(days=8))
            backlog = await db.backlog()
            assert backlog.events == 2 and backlog.last_published_id == 5
            assert await db.prune(utc_now() - timedelta(days=7)) == 2  # 1 and 2; 5 is the highest
            left = [e.id for e in await OutboxReader(engine).events()]
            assert left == [3, 4, 5]
        await start_lots(stack.lots, FLOWS[5:6])
        assert [e.id for e in await OutboxReader(engine).events()][-1] == 6  # never 5 again
    finally:
        await engine.dispose()


async def test_one_relay_leads_per_database_until_its_session_ends(stack: Stack) -> None:
    engine = create_engine(stack.url)
    try:
        store = OutboxStore(engine)
        async with store.session() as first:
            assert await first.try_lead()
            async with store.session() as second:
                # On SQLite one controller owns the file: every session leads.
                assert await second.try_lead() is stack.url.startswith("sqlite")
        async with store.session() as third:
            assert await third.try_lead()
    finally:
        await engine.dispose()


async def test_pending_events_carry_their_payloads_as_stored_even_what_only_json_reads(
    stack: Stack,
) -> None:
    """The relay's read parses payloads itself (orjson on SQLite): the same values as the
    other reads, and a payload that only the standard library reads (NaN, as json.dumps
    writes it) is read too, not lost."""
    from sqlalchemy import text

    await start_lots(stack.lots, FLOWS[:2])
    engine = create_engine(stack.url)
    try:
        if engine.dialect.name == "sqlite":
            async with engine.begin() as conn:
                await conn.execute(
                    text("UPDATE outbox SET payload = :p WHERE seq = 2"),
                    {"p": '{"at": "x", "value": NaN, "text": "\\u00e9t\\u00e9"}'},
                )
        read = {e.id: e.payload for e in await OutboxReader(engine).events()}
        async with OutboxStore(engine).session() as db:
            pending = {e.id: e.payload for e in await db.pending(10)}
        assert pending[1] == read[1] and isinstance(pending[1], dict)
        if engine.dialect.name == "sqlite":
            value = pending[2]["value"]
            assert value != value  # NaN
            assert pending[2]["text"] == "été"
        else:
            assert pending[2] == read[2]
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_listening_on_a_connection_the_server_ended_is_the_database_unavailable(
    postgres_url: str,
) -> None:
    """The relay's LISTEN on a pooled connection that PostgreSQL ended meanwhile (an outage,
    pg_terminate_backend): the database unavailable, which the relay waits out, not the
    driver's own error (logged as a bug, with its traceback, at every retry); and the dead
    connection is not given back to the pool, so that the next session listens."""
    engine = create_engine(postgres_url, pool_size=1)
    try:
        store = OutboxStore(engine)
        async with store.session() as db:
            await db.listen(lambda: None)  # a connection in the pool, and the channel works
        name = postgres_url.rsplit("/", 1)[1]
        await asyncio.to_thread(
            _admin,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{name}' AND pid <> pg_backend_pid()",
        )
        with pytest.raises(DatabaseUnavailable, match="connection is closed"):
            async with store.session() as db:
                await db.listen(lambda: None)
        async with store.session() as db:
            await db.listen(lambda: None)
            assert await db.try_lead()
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_a_relay_session_the_database_failed_gives_none_of_its_connections_back(
    postgres_url: str,
) -> None:
    """The relay's session holds two connections (reads and marks). Found by the probe: after
    an outage ended, each new session met one more connection PostgreSQL had ended, left in
    the pool by the session before (only the one that failed was dropped), while the relay's
    backoff grew: the feed stayed down 25 s after the database was back, 139 events waiting.
    Now a session that ends with the database unavailable drops both."""
    engine = create_engine(postgres_url, pool_size=2)
    try:
        store = OutboxStore(engine)
        async with store.session() as db, store.session() as marks:
            await db.listen(lambda: None)
            await marks.try_lead()  # both connections used, then back in the pool
        name = postgres_url.rsplit("/", 1)[1]
        await asyncio.to_thread(
            _admin,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{name}' AND pid <> pg_backend_pid()",
        )
        with pytest.raises(DatabaseUnavailable):
            async with store.session() as db, store.session() as marks:
                await db.listen(lambda: None)
        async with store.session() as db, store.session() as marks:  # the next attempt
            await db.listen(lambda: None)
            assert await db.try_lead()
            assert await marks.try_lead() is False  # another session: db holds the lock
    finally:
        await engine.dispose()
