"""The relay's side of the outbox (mes/adapters/outbox.py) on SQLite and PostgreSQL: pending
events in id order skipping those being marked, marks, the backlog, pruning (published events
only, never the highest id, so that an id is never given again), and one leader per
database."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest
from sqlalchemy import text

from mes.adapters.database import DatabaseTimeouts, create_engine
from mes.adapters.errors import DatabaseUnavailable
from mes.adapters.migrate import upgrade
from mes.adapters.outbox import OutboxReader, OutboxStore
from mes.adapters.outbox_prune import FINISHED_LOTS, Finished
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.domain import commands as cmd
from mes.service import LotService, utc_now
from pkgline.bootstrap import flow_library
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


async def test_the_finished_lots_found_for_a_prune_are_those_whose_last_event_it_deletes(
    stack: Stack,
) -> None:
    """A scrapped lot and a merged one whose events are all older than the cutoff are found,
    oldest published first; a lot on hold or waiting with events as old is not, nor one
    scrapped after the cutoff. With a limit, the prune stops before the first lot left for
    the next one (its events published at the same moment as the lot found: ordered by id)."""
    scrapped, merged, held, _waiting, into, late = await start_lots(
        stack.lots, [FLOWS[0]] * 6
    )  # events 1 to 6
    await stack.lots.scrap(cmd.ScrapLot(scrapped, "op", "dropped"))  # 7
    await stack.lots.hold(cmd.HoldLot(held, "op", "check"))  # 8
    await stack.lots.merge(cmd.MergeLots(merged, into, "op"))  # 9 and 10
    await stack.lots.scrap(cmd.ScrapLot(late, "op", "dropped"))  # 11
    await start_lots(stack.lots, [FLOWS[1]])  # 12, the highest: never pruned
    engine = create_engine(stack.url)
    old, cutoff = utc_now() - timedelta(days=8), utc_now() - timedelta(days=7)
    try:
        async with OutboxStore(engine).session() as db:
            events = await db.pending(20)
            assert len(events) == 12
            await db.mark_published([e.id for e in events if e.id != 11], old)  # one moment
            await db.mark_published([11], utc_now())
            found = await db.finished(cutoff, 10)
            assert found == Finished([scrapped, merged], None)
            first = await db.finished(cutoff, 1)
            assert first.lots == [scrapped] and first.until is not None
            merged_event = next(e for e in events if e.lot_id == merged and e.id > 6)
            assert first.until[1] == merged_event.id
            assert await db.prune(cutoff, until=first.until) == merged_event.id - 1
            assert await db.finished(cutoff, 1) == Finished([merged], None)
            assert await db.prune(cutoff) == 2  # the merge's two events (9, 10)
            assert await db.finished(cutoff, 10) == Finished([], None)
            left = [e.id for e in await OutboxReader(engine).events()]
            assert left == [11, 12]
    finally:
        await engine.dispose()


async def test_a_finished_lot_with_two_last_events_is_found_once_and_pruned_to_its_last(
    stack: Stack,
) -> None:
    """Two events of one transaction (one time) end a lot: with a limit of one lot, the
    search reads two rows, both that lot's, and cannot tell whether the next finished lot's
    comes after; the prune stops after the second, and the next lot is found next time."""
    first, second = await start_lots(stack.lots, [FLOWS[0]] * 2)  # 1, 2
    await stack.lots.scrap(cmd.ScrapLot(first, "op", "dropped"))  # 3
    engine = create_engine(stack.url)
    try:
        async with engine.begin() as conn:  # 4: a second event at the scrap's time
            await conn.execute(
                text(
                    "INSERT INTO outbox (lot_id, kind, payload, created_at, subject)"
                    " SELECT lot_id, kind, payload, created_at, subject FROM outbox WHERE seq = 3"
                )
            )
        await stack.lots.scrap(cmd.ScrapLot(second, "op", "dropped"))  # 5
        await start_lots(stack.lots, [FLOWS[1]])  # 6, the highest
        cutoff = utc_now() - timedelta(days=7)
        async with OutboxStore(engine).session() as db:
            await db.mark_published(list(range(1, 7)), utc_now() - timedelta(days=8))
            found = await db.finished(cutoff, 1)
            assert found.lots == [first] and found.until is not None
            assert found.until[1] == 5  # up to 4 included
            assert await db.prune(cutoff, until=found.until) == 4
            assert await db.finished(cutoff, 1) == Finished([second], None)
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
        # asyncpg says one of these, as the server's end of the connection reached it before
        # the LISTEN, while it was being sent, or while its answer was awaited (each seen on
        # a loaded machine; the last on CI)
        closed = (
            "connection is closed|cannot switch to state .* another operation"
            "|connection was closed in the middle of operation"
        )
        with pytest.raises(DatabaseUnavailable, match=closed):
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


FINISHED_LOTS_SEEDED = 50_000


@pytest.mark.postgres
@pytest.mark.timeout(600)  # 250,000 rows written first, on a shared machine
async def test_the_finished_lots_of_a_prune_are_found_along_indexes_at_50000_lots(
    postgres_url: str,
) -> None:
    """PostgreSQL with 50,000 finished lots, their history and their events (a start and a
    scrap each, one lot finished a minute, published a second later), over 35 days: the
    prune's search for finished lots walks the outbox from its oldest published event and
    looks up each lot and its last history entry by their keys, never a scan of the lots,
    the history or the outbox, both a week after the last prune (the steady state: the last
    minute's events) and at the first prune after a long stop (most events older than the
    cutoff). And it stops at its limit."""
    engine = create_engine(postgres_url, timeouts=DatabaseTimeouts(statement_s=300.0))
    try:
        await upgrade(engine)
        (template,) = await start_lots(
            LotService(SqlUnitOfWorkFactory(engine), flow_library()), FLOWS[:1]
        )
        n = {"n": FINISHED_LOTS_SEEDED}
        async with engine.begin() as conn:
            await conn.execute(text("ALTER TABLE lots DISABLE TRIGGER lot_counts_insert"))
            await conn.execute(
                text(
                    "INSERT INTO lots SELECT 'D' || n, flow, flow_version, 'SCRAPPED', priority,"
                    " params, site_rows, site_cols, total_sites, good_sites, units, path,"
                    " recorded, NULL, NULL, rework_counts, NULL, NULL,"
                    " now() - n * interval '1 minute', now() - n * interval '1 minute',"
                    " created_by, version, history_head"
                    " FROM lots, generate_series(1, :n) AS n WHERE id = :template"
                ),
                {**n, "template": template},
            )
            await conn.execute(text("ALTER TABLE lots ENABLE TRIGGER lot_counts_insert"))
            for k, operation, state in ((0, "start", "WAITING"), (1, "scrap", "SCRAPPED")):
                at = f"now() - n * interval '1 minute' + {k} * interval '1 second'"
                await conn.execute(
                    text(
                        'INSERT INTO lot_history (lot_id, at, "user", operation, state_before,'
                        " state_after, step, tool, reason, data, prev_hash, hash)"
                        f" SELECT 'D' || n, {at}, 'op', '{operation}', NULL, '{state}', NULL,"
                        " NULL, NULL, '{}'::jsonb, md5(n || '-{k}'), md5('{k}-' || n)"
                        " FROM generate_series(1, :n) AS n"
                    ),
                    n,
                )
                await conn.execute(
                    text(
                        "INSERT INTO outbox (lot_id, kind, payload, created_at, published_at,"
                        " subject)"
                        f" SELECT 'D' || n, 'Lot', '{{}}'::jsonb, {at}, {at} + interval '1 second',"
                        " 'lot' FROM generate_series(1, :n) AS n ORDER BY n DESC"
                    ),
                    n,
                )
            await conn.execute(text("ANALYZE"))
        compiled = FINISHED_LOTS.compile(dialect=engine.dialect)
        plans: dict[str, str] = {}
        for name, age in (("steady", timedelta(days=7)), ("first after a stop", timedelta(days=1))):
            values = {"before": utc_now() - age, "limit": 1001}
            expanded = compiled.construct_expanded_state(values)
            # as planned for these values, and as the relay's connection may plan it after
            # five runs (a generic plan, for any values)
            arguments = expanded.positional_parameters
            async with engine.connect() as conn:
                raw = (await conn.get_raw_connection()).driver_connection
                rows = await raw.fetch("EXPLAIN " + expanded.statement, *arguments)
                plans[name] = "\n".join(r[0] for r in rows)
                # as the relay's connection may plan it after five runs: for any values
                await raw.execute(f"PREPARE finished AS {expanded.statement}")
                await raw.execute("SET plan_cache_mode = force_generic_plan")
                given = ", ".join(_literal(a) for a in arguments)
                rows = await raw.fetch(f"EXPLAIN EXECUTE finished({given})")
                await raw.execute("RESET plan_cache_mode; DEALLOCATE finished")
                plans[f"{name}, generic"] = "\n".join(r[0] for r in rows)
        for name, plan in plans.items():
            assert "ix_outbox_unpublished" in plan, f"{name}:\n{plan}"
            for table in ("lots", "lot_history", "outbox"):
                assert f"Seq Scan on {table}" not in plan, f"{name}:\n{plan}"
        async with OutboxStore(engine).session() as db:
            found = await db.finished(utc_now() - timedelta(days=1), 1000)
        assert len(found.lots) == 1000 and found.until is not None
        assert found.lots[0] == f"D{FINISHED_LOTS_SEEDED}"  # the oldest first
    finally:
        await engine.dispose()


def _literal(value: object) -> str:
    """A value of the statement's as SQL (EXECUTE takes no parameters of its own)."""
    if isinstance(value, int):
        return str(value)
    return f"'{value.isoformat() if isinstance(value, datetime) else value}'"
