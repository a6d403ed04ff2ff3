"""A history nobody can rewrite unseen: the database refuses to change or delete history
entries, and an attacker who gets past that (drops the trigger, as anyone holding the file
could) is found by the hash chain, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from flows import FlowLibrary
from mes.adapters.audit import guard_names, verify_history
from mes.adapters.database import create_engine
from mes.adapters.memory import MemoryUnitOfWorkFactory
from mes.adapters.migrate import downgrade, upgrade
from mes.adapters.rows import entry_from_row
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.adapters.tables import lot_history
from mes.domain import audit
from mes.domain import commands as cmd
from mes.domain.audit import ChainCheck, Finding
from mes.domain.errors import ConcurrentUpdate, OperationNotAllowed
from mes.domain.model import HistoryEntry, LotState, Operation
from mes.service import LotService
from tests.mes.conftest import Clock

DATABASES = ["sqlite_url", pytest.param("postgres_url", marks=pytest.mark.postgres)]


@pytest.fixture(params=DATABASES)
async def engine(request: pytest.FixtureRequest) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(request.getfixturevalue(request.param))
    try:
        await upgrade(engine)
        yield engine
    finally:
        await engine.dispose()


async def _line(service: LotService) -> None:
    """Three lots, moved, held, split: history on several lots and the chain over lots."""
    for lot_id in ("A", "B"):
        await service.start(cmd.StartLot(lot_id, "fo-organic", "op1", carriers=2))
    await service.track_in(cmd.TrackIn("A", "SUBSTRATE_PREP", "op1"))
    await service.track_out(cmd.TrackOut("A", "op1"))
    await service.hold(cmd.HoldLot("B", "qa1", "looks wrong"))
    await service.split(cmd.SplitLot("A", "A.1", ("A-02",), "op1"))
    await service.track_in(cmd.TrackIn("A", "DIE_ATTACH", "op1"))


async def _raw(engine: AsyncEngine, *statements: str) -> None:
    async with engine.begin() as conn:
        for statement in statements:
            await conn.execute(text(statement))


async def _rows(engine: AsyncEngine, query: str) -> list[Any]:
    async with engine.connect() as conn:
        return list(await conn.execute(text(query)))


async def _drop_guards(engine: AsyncEngine) -> None:
    """What an attacker with the file (or the database owner's password) does first."""
    if engine.dialect.name == "postgresql":
        names = guard_names("lot_history", "postgresql")
        await _raw(engine, *(f"DROP TRIGGER {n} ON lot_history" for n in names))
    else:
        await _raw(engine, *(f"DROP TRIGGER {n}" for n in guard_names("lot_history", "sqlite")))


@pytest.fixture
async def written(engine: AsyncEngine, library: FlowLibrary, clock: Clock) -> AsyncEngine:
    await _line(LotService(SqlUnitOfWorkFactory(engine), library, clock))
    return engine


async def _seqs(engine: AsyncEngine, lot_id: str) -> list[int]:
    rows = await _rows(
        engine, f"SELECT seq FROM lot_history WHERE lot_id = '{lot_id}' ORDER BY seq"
    )
    return [r[0] for r in rows]


async def test_an_untouched_history_verifies_with_every_entry_counted(written: AsyncEngine) -> None:
    found = await verify_history(written, batch=3)  # small batches: the walk goes on across them
    count = (await _rows(written, "SELECT count(*) FROM lot_history"))[0][0]
    assert found.ok, found.problem
    assert found.entries == count == 8
    assert found.lots == 3


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE lot_history SET reason = 'nothing happened'",
        "DELETE FROM lot_history WHERE lot_id = 'B'",
        "DELETE FROM lot_history",
    ],
)
async def test_the_database_refuses_to_change_or_delete_history_entries(
    written: AsyncEngine, statement: str
) -> None:
    before = await _rows(written, "SELECT * FROM lot_history ORDER BY seq")
    with pytest.raises(DBAPIError, match="append-only"):
        await _raw(written, statement)
    assert await _rows(written, "SELECT * FROM lot_history ORDER BY seq") == before


@pytest.mark.postgres
async def test_postgres_refuses_to_truncate_the_history(
    postgres_url: str, library: FlowLibrary, clock: Clock
) -> None:
    engine = create_engine(postgres_url)
    try:
        await upgrade(engine)
        await _line(LotService(SqlUnitOfWorkFactory(engine), library, clock))
        with pytest.raises(DBAPIError, match="append-only"):
            await _raw(engine, "TRUNCATE lot_history CASCADE")
        assert (await verify_history(engine)).entries == 8
    finally:
        await engine.dispose()


async def test_an_entry_edited_behind_the_databases_back_is_found(written: AsyncEngine) -> None:
    held = (await _seqs(written, "B"))[-1]
    await _drop_guards(written)
    await _raw(written, f"UPDATE lot_history SET \"user\" = 'nobody' WHERE seq = {held}")
    found = await verify_history(written)
    assert found.problem is not None
    assert found.problem.finding is Finding.CONTENT_CHANGED
    assert (found.problem.seq, found.problem.lot_id) == (held, "B")
    assert f"history entry {held} (lot B, hold)" in found.problem.message


async def test_an_edit_with_its_hash_made_again_breaks_the_link_of_the_next_entry(
    written: AsyncEngine,
) -> None:
    _, first, second, *_ = await _seqs(written, "A")
    await _drop_guards(written)
    rows = await _rows(written, f"SELECT prev_hash FROM lot_history WHERE seq = {first}")
    async with written.connect() as conn:
        row = (
            (await conn.execute(lot_history.select().where(lot_history.c.seq == first)))
            .mappings()
            .one()
        )
    forged = entry_from_row({**row, "user": "someone else"})
    digest = audit.entry_hash(forged, rows[0][0])
    await _raw(
        written,
        f"UPDATE lot_history SET \"user\" = 'someone else', hash = '{digest}' WHERE seq = {first}",
    )
    found = await verify_history(written)
    assert found.problem is not None
    assert found.problem.finding is Finding.ENTRY_MISSING
    assert found.problem.seq == second


async def test_an_entry_deleted_from_the_middle_of_a_lots_history_is_found(
    written: AsyncEngine,
) -> None:
    seqs = await _seqs(written, "A")
    await _drop_guards(written)
    await _raw(written, f"DELETE FROM lot_history WHERE seq = {seqs[1]}")
    found = await verify_history(written)
    assert found.problem is not None
    assert found.problem.finding is Finding.ENTRY_MISSING
    assert (found.problem.seq, found.problem.lot_id) == (seqs[2], "A")
    assert "no longer in the history" in found.problem.message


async def test_the_newest_entry_of_a_lot_deleted_is_found(written: AsyncEngine) -> None:
    newest = (await _seqs(written, "A"))[-1]
    await _drop_guards(written)
    await _raw(written, f"DELETE FROM lot_history WHERE seq = {newest}")
    found = await verify_history(written)
    assert found.problem is not None
    assert found.problem.finding is Finding.HEAD_MISSING
    assert found.problem.lot_id == "A"


async def test_a_whole_lot_removed_is_found_by_the_chain_over_lots(written: AsyncEngine) -> None:
    """Lot B's history, carriers and record all gone: the next lot (A.1, split later)
    followed B's first entry."""
    await _drop_guards(written)
    await _raw(
        written,
        "DELETE FROM lot_history WHERE lot_id = 'B'",
        "DELETE FROM carriers WHERE lot_id = 'B'",
        "DELETE FROM lots WHERE id = 'B'",
    )
    found = await verify_history(written)
    assert found.problem is not None
    assert found.problem.finding is Finding.ENTRY_MISSING
    assert found.problem.lot_id == "A.1"
    assert "the previous lot's first entry" in found.problem.message


async def test_a_hold_lifted_by_editing_the_lots_record_is_found(written: AsyncEngine) -> None:
    """Lot B held, then set WAITING in its record with no history entry (no guard to drop:
    the lots table is the working state): the controller would run it, and the history, whose
    newest entry of B is the hold, no longer says what the lot is."""
    await _raw(written, "UPDATE lots SET state = 'WAITING', hold = NULL WHERE id = 'B'")
    found = await verify_history(written)
    assert found.problem is not None
    assert found.problem.finding is Finding.STATE_CHANGED
    assert found.problem.lot_id == "B"
    assert found.problem.seq == (await _seqs(written, "B"))[-1]
    assert "B is WAITING in its record, but its history leaves it HOLD" in found.problem.message


async def test_a_dropped_guard_alone_is_reported(written: AsyncEngine) -> None:
    await _drop_guards(written)
    found = await verify_history(written)
    assert found.entries == 8
    assert found.problem is not None and found.problem.finding is Finding.GUARD_MISSING


async def test_an_upgraded_database_chains_the_history_it_had(
    sqlite_url: str, library: FlowLibrary, clock: Clock
) -> None:
    """Entries written before revision 0004 are chained by it; new ones follow on."""
    engine = create_engine(sqlite_url)
    try:
        await _upgrade_from_0003(engine, library, clock)
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_an_upgraded_postgres_database_chains_the_history_it_had(
    postgres_url: str, library: FlowLibrary, clock: Clock
) -> None:
    engine = create_engine(postgres_url)
    try:
        await _upgrade_from_0003(engine, library, clock)
    finally:
        await engine.dispose()


async def _upgrade_from_0003(engine: AsyncEngine, library: FlowLibrary, clock: Clock) -> None:
    await upgrade(engine, "0003")
    at = datetime(2026, 11, 30, 7, 0, 0, 123456, tzinfo=UTC)
    lot = {
        "flow": "fo-organic",
        "flow_version": library.get("fo-organic").version,
        "state": "HOLD",
        "priority": 5,
        "params": "{}",
        "site_rows": 4,
        "site_cols": 8,
        "total_sites": 32,
        "good_sites": 32,
        "path": "[]",
        "recorded": "{}",
        "hold": '{"reason": "old", "user": "qa", "since": "' + at.isoformat() + '", '
        '"source": "operator"}',
        "rework_counts": "{}",
        "created_by": "op",
        "version": 2,
    }
    async with engine.begin() as conn:
        for lot_id in ("OLD1", "OLD2"):
            await conn.execute(
                text(
                    "INSERT INTO lots (id, flow, flow_version, state, priority, params, "
                    "site_rows, site_cols, total_sites, good_sites, path, recorded, hold, "
                    "rework_counts, created_at, updated_at, created_by, version) VALUES (:id, "
                    ":flow, :flow_version, :state, :priority, :params, :site_rows, :site_cols, "
                    ":total_sites, :good_sites, :path, :recorded, :hold, :rework_counts, :at, "
                    ":at, :created_by, :version)"
                ),
                {"id": lot_id, "at": at, **lot},
            )
            await conn.execute(
                text(
                    "INSERT INTO carriers (id, lot_id, position, rows, cols) VALUES (:c, :l, 1, 4, 8)"
                ),
                {"c": f"{lot_id}-01", "l": lot_id},
            )
            for operation, before, after, data in (
                ("start", None, "WAITING", '{"flow": "fo-organic", "ratio": 2.0, "x": 0.1}'),
                ("hold", "WAITING", "HOLD", "{}"),
            ):
                await conn.execute(
                    text(
                        'INSERT INTO lot_history (lot_id, at, "user", operation, state_before, '
                        "state_after, reason, data) VALUES (:l, :at, 'op', :o, :b, :a, 'old', "
                        ":d)"
                    ),
                    {"l": lot_id, "at": at, "o": operation, "b": before, "a": after, "d": data},
                )
    await upgrade(engine)
    found = await verify_history(engine)
    assert found.ok, found.problem
    assert (found.entries, found.lots) == (4, 2)
    service = LotService(SqlUnitOfWorkFactory(engine), library, clock)
    await service.release(cmd.ReleaseLot("OLD2", "qa", "fine"))
    await service.start(cmd.StartLot("NEW", "fo-organic", "op"))
    found = await verify_history(engine)
    assert found.ok, found.problem
    assert (found.entries, found.lots) == (6, 3)


async def test_the_memory_store_chains_its_history_as_the_databases_do(
    library: FlowLibrary, clock: Clock
) -> None:
    store = MemoryUnitOfWorkFactory()
    await _line(LotService(store, library, clock))
    check = ChainCheck()
    history = store.store.history
    assert all(check.add(e, e.prev_hash or "", e.hash or "") for e in history)
    heads = {lot.id: lot.history_head for lot in store.store.lots.values()}
    assert check.finish(heads, store.store.lots_head) is None
    assert check.entries == len(history) == 8


def _entry(lot_id: str, operation: Operation, **kw: Any) -> HistoryEntry:
    return HistoryEntry(
        lot_id=lot_id,
        operation=operation,
        user="op",
        at=datetime(2026, 12, 1, tzinfo=UTC),
        state_before=None,
        state_after=LotState.WAITING,
        **kw,
    )


def test_the_canonical_content_is_sorted_compact_json_with_utc_microseconds() -> None:
    entry = _entry("L", Operation.START, data={"b": 2.0, "a": [1.5, "x"]})
    text_ = audit.canonical(entry, audit.GENESIS).decode()
    assert text_.startswith(
        '{"at":"2026-12-01T00:00:00.000000+00:00","auth":null,"by":null,"data":{"a":[1.5,"x"],"b":2}'
    )
    assert f'"prev":"{audit.GENESIS}"' in text_


def test_a_float_and_the_integer_postgres_gives_back_for_it_hash_alike() -> None:
    assert audit.entry_hash(_entry("L", Operation.START, data={"v": 1e16}), "p") == (
        audit.entry_hash(_entry("L", Operation.START, data={"v": 10**16}), "p")
    )


def test_every_field_of_an_entry_is_covered_by_its_hash() -> None:
    base = _entry("L", Operation.HOLD, step="S", tool="T", reason="r", data={"k": 1})
    variants = [
        _entry("M", Operation.HOLD, step="S", tool="T", reason="r", data={"k": 1}),
        _entry("L", Operation.RELEASE, step="S", tool="T", reason="r", data={"k": 1}),
        _entry("L", Operation.HOLD, step="X", tool="T", reason="r", data={"k": 1}),
        _entry("L", Operation.HOLD, step="S", tool="X", reason="r", data={"k": 1}),
        _entry("L", Operation.HOLD, step="S", tool="T", reason="x", data={"k": 1}),
        _entry("L", Operation.HOLD, step="S", tool="T", reason="r", data={"k": 2}),
        _entry("L", Operation.HOLD, step="S", tool="T", reason="r", data={"k": 1}, by="x"),
        _entry("L", Operation.HOLD, step="S", tool="T", reason="r", data={"k": 1}, auth="x"),
    ]
    digests = {audit.entry_hash(e, "p") for e in [base, *variants]}
    assert len(digests) == 9
    assert audit.entry_hash(base, "p") != audit.entry_hash(base, "q")


@pytest.mark.parametrize(
    ("table", "row"),
    [
        (
            "security_events",
            "(at, kind, actor, detail, prev_hash, hash) VALUES ('2026-12-02 07:00:00+00:00', "
            f"'refused', 'eve', '{{}}', '{audit.GENESIS}', '{'e' * 64}')",
        ),
        (
            "signatures",
            "(entry_hash, lot_id, signer, printed_name, meaning, at, method) VALUES ('h', 'L1', "
            "'qa1', 'Q. A. One', 'approved release', '2026-12-02 07:00:00+00:00', 'password')",
        ),
    ],
)
async def test_security_events_and_signatures_are_append_only_too(
    engine: AsyncEngine, table: str, row: str
) -> None:
    await _raw(engine, f"INSERT INTO {table} {row}")
    for statement in (f"UPDATE {table} SET at = at", f"DELETE FROM {table}"):
        with pytest.raises(DBAPIError, match="append-only"):
            await _raw(engine, statement)
    assert (await _rows(engine, f"SELECT count(*) FROM {table}"))[0][0] == 1
    if engine.dialect.name == "postgresql":
        with pytest.raises(DBAPIError, match="append-only"):
            await _raw(engine, f"TRUNCATE {table}")
    found = await verify_history(engine)
    # slipped in by SQL, behind pkgline's back: a signature for no entry (esign), an event
    # whose hash is not its content's (the security log's chain)
    assert found.problem is not None
    if table == "signatures":
        assert found.problem.finding is Finding.SIGNATURE_UNLINKED
    else:
        assert found.problem.finding is Finding.CONTENT_CHANGED
        assert found.problem.log == "security"


async def test_concurrent_writers_starting_and_moving_lots_leave_a_history_that_verifies(
    engine: AsyncEngine, library: FlowLibrary
) -> None:
    """Eight writers at once, each starting lots (the chain over lots: one at a time) and
    moving them (their own chains: side by side), some on the same lot (one wins)."""
    service = LotService(SqlUnitOfWorkFactory(engine), library)

    async def writer(n: int) -> None:
        for k in range(2):
            lot_id = f"W{n}-{k}"
            await service.start(cmd.StartLot(lot_id, "fo-organic", f"op{n}"))
            await service.track_in(cmd.TrackIn(lot_id, "SUBSTRATE_PREP", f"op{n}"))
            await service.track_out(cmd.TrackOut(lot_id, f"op{n}"))

    async def racer(n: int) -> None:
        for _ in range(3):  # all on one lot: the losers change nothing
            with contextlib.suppress(ConcurrentUpdate, OperationNotAllowed):
                await service.hold(cmd.HoldLot("W0-0", f"op{n}", "race"))
                await service.release(cmd.ReleaseLot("W0-0", f"op{n}"))

    # The race on W0-0 starts once its writer has moved it: a hold that came first would
    # (rightly) refuse the writer's own track-in, which is not what this test is about.
    await asyncio.gather(*(writer(n) for n in range(8)))
    await asyncio.gather(*(racer(n) for n in range(8)))
    found = await verify_history(engine)
    assert found.ok, found.problem
    assert found.lots == 16
    assert found.entries == (await _rows(engine, "SELECT count(*) FROM lot_history"))[0][0]


async def test_a_downgrade_keeps_the_history_and_an_upgrade_chains_it_again(
    written: AsyncEngine,
) -> None:
    await downgrade(written, "0003")
    assert (await _rows(written, "SELECT count(*) FROM lot_history"))[0][0] == 8
    await upgrade(written)
    found = await verify_history(written)
    assert found.ok, found.problem
    assert found.entries == 8


async def test_a_cut_hidden_by_rewritten_heads_is_found_only_by_an_anchor_kept_elsewhere(
    written: AsyncEngine,
) -> None:
    """The newest lot removed and the head of the chain over lots set back: consistent inside
    the database (the limit of any chain kept there), but not with a head written down before."""
    anchor = (await verify_history(written)).lots_head
    first_of_b = (await _rows(written, "SELECT hash FROM lot_history WHERE lot_id = 'B'"))[0][0]
    await _drop_guards(written)
    await _raw(
        written,
        "DELETE FROM lot_history WHERE lot_id = 'A.1'",
        "DELETE FROM carriers WHERE lot_id = 'A.1'",
        "DELETE FROM lots WHERE id = 'A.1'",
        f"UPDATE audit_heads SET head = '{first_of_b}' WHERE chain = 'lots'",
    )
    unanchored = await verify_history(written)
    assert unanchored.problem is not None  # the chain itself is consistent: only the guards
    assert unanchored.problem.finding is Finding.GUARD_MISSING
    found = await verify_history(written, anchors=[anchor])
    assert found.problem is not None
    assert found.problem.finding is Finding.ANCHOR_MISSING
    assert "or the anchor is not one this database's history ever had" in found.problem.message
