"""Lot lists at plant size: pages in a stable order after a cursor, filters applied by the
store, how many lots match and whether more follow; on every store. On PostgreSQL, with
100,000 finished lots, the hot queries (lists, counts, dispatch's heads, a lot's history)
are answered through indexes, never a scan of the lots or of the history; on SQLite, the
lists by tool and by step too."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from flows import FlowLibrary
from mes.adapters.database import DatabaseTimeouts, create_engine
from mes.adapters.driver import CompiledStatement
from mes.adapters.migrate import upgrade
from mes.adapters.outbox import LOTS_BY_STATE
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.adapters.sql_history import history_page_statements
from mes.adapters.sql_statements import page_statements
from mes.domain import commands as cmd
from mes.domain.equipment import DispatchMode, ToolRegistration, ToolSnapshot
from mes.domain.errors import InvalidInput, UnknownLot
from mes.domain.model import LotState
from mes.domain.paging import COUNTED_UP_TO
from mes.equipment import EquipmentService
from mes.ports import HistoryQuery, LotQuery
from mes.service import LotService
from tests.mes.conftest import Clock


async def _start(service: LotService, n: int, flow: str = "stiffener-bga") -> list[str]:
    ids = []
    for i in range(n):
        lot_id = f"L{i:03d}"
        await service.start(cmd.StartLot(lot_id, flow, "op", priority=1 + i % 3 * 4))
        ids.append(lot_id)
    return ids


async def _move(service: LotService, lot_id: str) -> None:
    lot = await service.get(lot_id)
    step = service.next_in_order(lot)[0]
    await service.track_in(cmd.TrackIn(lot_id, step, "op"))  # off the line's tools
    await service.track_out(cmd.TrackOut(lot_id, "op"))


async def test_pages_after_a_cursor_show_every_lot_once_while_lots_move(
    service: LotService,
) -> None:
    ids = await _start(service, 23)
    seen: list[str] = []
    query = LotQuery(limit=4)
    moves = iter(ids[::2])
    while True:
        page = await service.page(query)
        seen.extend(lot.id for lot in page.lots)
        assert page.total == 23
        for _ in range(2):  # lots move between pages: on the pages seen and those to come
            lot_id = next(moves, None)
            if lot_id is not None:
                await _move(service, lot_id)
        if not page.more:
            break
        query = LotQuery(limit=4, after=page.lots[-1].id)
    assert sorted(seen) == sorted(ids) and len(seen) == len(set(seen))
    everything = await service.page(LotQuery(limit=100))
    assert [lot.id for lot in everything.lots] == seen  # most urgent first, then by age
    assert [lot.priority for lot in everything.lots] == sorted(
        lot.priority for lot in everything.lots
    )


async def test_a_page_says_how_many_lots_match_and_whether_more_follow(
    service: LotService,
) -> None:
    await _start(service, 5)
    first = await service.page(LotQuery(limit=3))
    assert (len(first.lots), first.total, first.more) == (3, 5, True)
    last = await service.page(LotQuery(limit=3, after=first.lots[-1].id))
    assert (len(last.lots), last.total, last.more) == (2, 5, False)
    exact = await service.page(LotQuery(limit=5))
    assert (len(exact.lots), exact.more) == (5, False)
    empty = await service.page(LotQuery(states=(LotState.HOLD,)))
    assert (empty.lots, empty.total, empty.more) == ([], 0, False)


async def test_filters_select_by_state_flow_step_tool_priority_and_time_moved(
    service: LotService, equipment: EquipmentService, clock: Clock
) -> None:
    await equipment.register(
        "line-1", [ToolRegistration("T9", "die_bonder", "modbus 127.0.0.1:5020", ("DIE_ATTACH",))]
    )
    await _start(service, 6)
    await service.start(cmd.StartLot("F1", "fo-organic", "op", priority=2))
    since = clock.now + timedelta(seconds=1)
    await _move(service, "L000")
    await _move(service, "L000")
    await _move(service, "L001")
    step = "DIE_ATTACH"
    await service.track_in(cmd.TrackIn("L001", step, "op", tool="T9", dispatched=True))
    await service.hold(cmd.HoldLot("L002", "op", "inspection"))

    async def ids(**filters: object) -> list[str]:
        page = await service.page(LotQuery(**filters))  # type: ignore[arg-type]
        assert page.total == len(page.lots)
        return sorted(lot.id for lot in page.lots)

    assert await ids(states=(LotState.RUNNING,)) == ["L001"]
    assert await ids(states=(LotState.RUNNING, LotState.HOLD)) == ["L001", "L002"]
    assert await ids(flow="fo-organic") == ["F1"]
    assert await ids(tool="T9") == ["L001"]
    assert await ids(step=step) == ["L000", "L001"]  # the one ran it, the other runs it
    assert await ids(priority=5) == ["L001", "L004"]
    assert await ids(moved_since=since) == ["L000", "L001", "L002"]
    assert await ids(moved_before=since) == ["F1", "L003", "L004", "L005"]
    assert await ids(states=(LotState.WAITING,), priority=1, flow="stiffener-bga") == [
        "L000",
        "L003",
    ]


async def test_the_heads_of_the_lots_running_on_some_tools_only(
    service: LotService, equipment: EquipmentService
) -> None:
    """What ``tool list`` reads of the lots (the page's tools' lots tracked in, by hand or
    not): the lots running on those tools, read by the store; none for no tools."""
    tools = [
        ToolRegistration(t, "die_bonder", f"modbus 127.0.0.1:50{i}", ("DIE_ATTACH",))
        for i, t in enumerate(("T1", "T2", "T3"))
    ]
    await equipment.register("line-1", tools)
    up = ToolSnapshot(connected=True, e10="standby", process_state="IDLE", mode="PRODUCTION")
    await equipment.report("T1", up)
    await equipment.set_dispatch("T1", DispatchMode.MANUAL, "tech", "by hand")
    await _start(service, 4)
    for lot_id, tool, dispatched in (("L000", "T1", False), ("L001", "T2", True)):
        await _move(service, lot_id)
        track_in = cmd.TrackIn(lot_id, "DIE_ATTACH", "op", tool=tool, dispatched=dispatched)
        await service.track_in(track_in)
    running = [LotState.RUNNING]
    found = await service.heads(running, tools=["T1", "T3"])
    assert [(h.id, h.tool, h.by_hand) for h in found] == [("L000", "T1", True)]
    both = await service.heads(running, tools=["T1", "T2"])
    assert sorted((h.id, h.tool, h.by_hand) for h in both) == [
        ("L000", "T1", True),
        ("L001", "T2", False),
    ]
    three = await service.heads(running, tools=["T3", "T2", "T1"])  # bound as four
    assert sorted(h.id for h in three) == ["L000", "L001"]
    assert await service.heads(running, tools=[]) == []
    assert len(await service.heads(running)) == 2


async def test_a_cursor_naming_no_lot_and_an_empty_page_are_refused(service: LotService) -> None:
    await _start(service, 2)
    with pytest.raises(UnknownLot, match="no lot NOPE to list the lots after"):
        await service.page(LotQuery(after="NOPE"))
    with pytest.raises(InvalidInput, match="1 lot or more"):
        await service.page(LotQuery(limit=0))
    with pytest.raises(InvalidInput, match="nope"):
        await service.page(LotQuery(flow="nope"))
    at = datetime.now(UTC)
    with pytest.raises(InvalidInput, match="not after its end"):  # was an empty page
        await service.page(LotQuery(moved_since=at, moved_before=at - timedelta(seconds=1)))


# -- the plan of the hot queries on a large table (PostgreSQL) ---------------------------------

FINISHED = 100_000


@pytest.fixture
async def plant(postgres_url: str, library: FlowLibrary) -> AsyncIterator[LotService]:
    """PostgreSQL with 100,000 completed lots of 5 history entries each, made by SQL in
    the database (generate_series: seconds, not the seeding tool's minutes), a few lots in
    progress through the service, and statistics gathered."""
    # Seeding 600,000 rows takes seconds on a quiet machine and may take minutes on a loaded
    # one: past the 15 s default statement timeout, which this test is not about.
    engine = create_engine(postgres_url, timeouts=DatabaseTimeouts(statement_s=300.0))
    await upgrade(engine)
    service = LotService(SqlUnitOfWorkFactory(engine), library)
    await _start(service, 12)
    for lot_id in ("L000", "L001"):
        await _move(service, lot_id)
    async with engine.begin() as conn:
        # the finished lots' count (lot_counts, kept by a row trigger) made once: 100,000
        # updates of one row in one transaction take minutes (each new version of the row
        # goes through every dead one before it); the lines finish one lot at a time
        await conn.execute(text("ALTER TABLE lots DISABLE TRIGGER lot_counts_insert"))
        await conn.execute(
            text(
                "INSERT INTO lots SELECT 'D' || n, flow, flow_version, 'COMPLETED', 1 + n % 9,"
                " params, site_rows, site_cols, total_sites, good_sites, units, path, recorded,"
                " NULL, NULL, rework_counts, NULL, NULL,"
                " created_at - n * interval '1 minute', updated_at - n * interval '1 minute',"
                " created_by, version, history_head"
                " FROM lots, generate_series(1, :n) AS n WHERE id = 'L000'"
            ),
            {"n": FINISHED},
        )
        await conn.execute(text("ALTER TABLE lots ENABLE TRIGGER lot_counts_insert"))
        await conn.execute(
            text(
                "INSERT INTO lot_counts (flow, state, n) SELECT flow, state, count(*) FROM lots"
                " WHERE id LIKE 'D%' GROUP BY flow, state ON CONFLICT (flow, state)"
                " DO UPDATE SET n = lot_counts.n + excluded.n"
            )
        )
        await conn.execute(
            text(
                'INSERT INTO lot_history (lot_id, at, "user", operation, state_before,'
                " state_after, step, tool, reason, data, prev_hash, hash)"
                " SELECT 'D' || n, now() - n * interval '1 minute', 'op' || n % 500, 'track_out',"
                " 'RUNNING', 'WAITING', 'S', 'T' || n % 200, NULL, '{}'::jsonb,"
                " md5(n || '-' || k), md5(k || '-' || n)"
                " FROM generate_series(1, :n) AS n, generate_series(1, 5) AS k"
            ),
            {"n": FINISHED},
        )
        await conn.execute(text("ANALYZE"))
    try:
        yield service
    finally:
        await engine.dispose()


async def _plan(service: LotService, compiled: CompiledStatement, values: dict[str, Any]) -> str:
    factory = service._uow  # the plan is the store's business: asked of its engine
    assert isinstance(factory, SqlUnitOfWorkFactory)
    async with factory.engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        arguments = compiled.arguments(values)
        if factory.engine.dialect.name == "sqlite":  # (id, parent, notused, detail) rows
            cursor = await raw.execute("EXPLAIN QUERY PLAN " + compiled.sql, arguments)
            return "\n".join(r[3] for r in await cursor.fetchall())
        rows = await raw.fetch("EXPLAIN " + compiled.sql, *arguments)
    return "\n".join(r[0] for r in rows)


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(600)  # 600,000 rows written first, on a shared machine
async def test_lists_counts_heads_and_history_use_indexes_at_100000_lots(
    plant: LotService,
) -> None:
    factory = plant._uow
    assert isinstance(factory, SqlUnitOfWorkFactory)
    dialect = factory.engine.dialect
    statements = factory.statements
    lately = datetime.now(UTC) - timedelta(hours=1)
    first_step = (await plant.get("L000")).path[0]  # where the 100,000 finished lots stopped
    finished = await plant.page(LotQuery(states=(LotState.COMPLETED,), limit=1))
    assert finished.total == FINISHED and finished.more  # the count the fixture made at once
    assert finished.total_exact  # lot_counts' tally: exact and cheap, however many
    # counts of 100,000 lots and 500,000 entries stop at their bound: "more than 10,000"
    at_step = await plant.page(LotQuery(step=first_step, limit=1))
    whole = await plant.history_page(HistoryQuery(limit=1))
    for page in (at_step, whole):
        assert (page.total, page.total_exact, page.more) == (COUNTED_UP_TO, False, True)
    plans: dict[str, str] = {}
    for name, query in {
        "first page": LotQuery(limit=50),
        "a page after": LotQuery(limit=50, after="D500"),
        "working set": LotQuery(states=(LotState.WAITING, LotState.RUNNING, LotState.HOLD)),
        "one flow": LotQuery(flow="stiffener-bga", limit=50),
        "moved lately": LotQuery(moved_since=lately, limit=50),
        "one tool": LotQuery(tool="T9", limit=50),
        "one tool after": LotQuery(tool="T9", limit=50, after="L001"),
        "one step": LotQuery(step="DIE_ATTACH", limit=50),
        "one step after": LotQuery(step="DIE_ATTACH", limit=50, after="L001"),
        "the finished lots' step": LotQuery(step=first_step, limit=50),
    }.items():
        page, count, values = page_statements(query, dialect)
        values.update(page_limit=51, k_priority=5, k_created_at=lately, k_id="D500")
        plans[f"{name}: page"] = await _plan(plant, page, values)
        if query.after is None and query.step != first_step:
            # a count of few lots among many (the working set, the last hour, one tool's, one
            # step's), or of every lot or a flow's: the lots in progress plus the finished
            # ones as lot_counts keeps them (revision 0021). The finished lots' step's (every
            # lot matches) reads the first COUNTED_UP_TO + 1 lots it meets, a scan cut short.
            plans[f"{name}: count"] = await _plan(plant, count, values)
    plans["heads"] = await _plan(plant, statements.heads(2), {"s0": "WAITING", "s1": "RUNNING"})
    async with factory.engine.connect() as conn:  # the relay's line status, by state
        by_state = LOTS_BY_STATE.compile(dialect=dialect, compile_kwargs={"literal_binds": True})
        rows = await conn.execute(text(f"EXPLAIN {by_state}"))
        plans["lots by state"] = "\n".join(r[0] for r in rows)
    plans["history"] = await _plan(plant, statements.history, {"lot_id": "D7"})
    for name, history_query in {
        "history list": HistoryQuery(limit=50),
        "history list after": HistoryQuery(limit=50, after=1000),
        "one lot's history list": HistoryQuery(lot_id="D7", limit=50),
        "one tool's history list": HistoryQuery(tool="T7", limit=50),
        "one user's history list": HistoryQuery(user="op3", limit=50),
        "history of the last hour": HistoryQuery(since=lately, limit=50),
        "one operation's history list": HistoryQuery(operation="hold", limit=50),
        "one step's history list": HistoryQuery(step="DIE_ATTACH", limit=50),
    }.items():
        page, count, values = history_page_statements(history_query, dialect)
        plans[name] = await _plan(plant, page, {**values, "page_limit": 51})
        q = history_query
        if q.lot_id or q.since or q.operation or q.step:
            plans[f"{name}: count"] = await _plan(plant, count, values)
    # one tool's or person's entries: along their index, not the whole history read backwards;
    # the lots on one tool or at one step: along theirs (revision 0019), not every lot's JSON
    for name, index in (
        ("one tool's history list", "ix_lot_history_tool"),
        ("one user's history list", "ix_lot_history_user"),
        # and one operation's or step's, with their counts (revision 0023)
        ("one operation's history list", "ix_lot_history_operation"),
        ("one operation's history list: count", "ix_lot_history_operation"),
        ("one step's history list", "ix_lot_history_step"),
        ("one step's history list: count", "ix_lot_history_step"),
        ("one tool: page", "ix_lots_tool"),
        ("one tool: count", "ix_lots_tool"),
        ("one tool after: page", "ix_lots_tool"),
        ("one step: page", "ix_lots_step"),
        ("one step: count", "ix_lots_step"),
        ("one step after: page", "ix_lots_step"),
    ):
        assert index in plans[name], f"{name}:\n{plans[name]}"
    for name, plan in plans.items():
        assert "Seq Scan on lots" not in plan, f"{name}:\n{plan}"
        assert "Seq Scan on lot_history" not in plan, f"{name}:\n{plan}"


@pytest.mark.timeout(120)
async def test_lists_by_tool_and_step_and_the_working_set_use_indexes_on_sqlite(
    sqlite_url: str, library: FlowLibrary
) -> None:
    """On SQLite too, ``lot list --tool`` and ``--step`` and their counts search ix_lots_tool
    and ix_lots_step (revision 0019) among 5,000 finished lots, with the planner's statistics
    and without (pkgline gathers none; bench/seed.py does): never a scan of the lots. So do
    the reads of the lots in progress (dispatch's heads, ``line status``, the lots running
    for the tool interlock, ``lot list --state WAITING``) and a lot's children (``lot
    show``): after ANALYZE, which tells the planner only the average lots per state and per
    parent, they scanned every lot along the priority index until told the filter is rare
    (``mes.adapters.sql_expressions.rare``). The count of every lot, or of a flow's, adds the
    finished ones as ``lot_counts`` keeps them (revision 0021) to the lots in progress."""
    engine = create_engine(sqlite_url)
    try:
        await upgrade(engine)
        factory = SqlUnitOfWorkFactory(engine)
        service = LotService(factory, library)
        await EquipmentService(factory).register(
            "line-1",
            [ToolRegistration("T9", "die_bonder", "modbus 127.0.0.1:5020", ("DIE_ATTACH",))],
        )
        await _start(service, 12)
        for lot_id in ("L000", "L001", "L002", "L003"):
            await _move(service, lot_id)
        await _move(service, "L002")
        await service.track_in(cmd.TrackIn("L001", "DIE_ATTACH", "op", tool="T9", dispatched=True))
        finished = json.dumps(list(library.flows["stiffener-bga"].steps))  # ending at DICE
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < :n)"
                    " INSERT INTO lots SELECT 'D' || n, flow, flow_version, 'COMPLETED', 1 + n % 9,"
                    " params, site_rows, site_cols, total_sites, good_sites, units, :path,"
                    " recorded, NULL, NULL, rework_counts, NULL, NULL, created_at, updated_at,"
                    " created_by, version, history_head FROM lots, s WHERE id = 'L000'"
                ),
                {"n": 5_000, "path": finished},
            )
        queries = {
            "one tool": LotQuery(tool="T9", limit=50),
            "one tool after": LotQuery(tool="T9", limit=50, after="L001"),
            "one step": LotQuery(step="DIE_ATTACH", limit=50),
            "one step after": LotQuery(step="DIE_ATTACH", limit=50, after="L001"),
            "the finished lots' step": LotQuery(step="DICE", limit=50),
        }
        assert (await service.page(queries["one tool"])).total == 1
        assert (await service.page(queries["one step"])).total == 2
        plans: dict[str, str] = {}
        for statistics in ("without statistics", "after ANALYZE"):
            if statistics == "after ANALYZE":
                async with engine.begin() as conn:
                    await conn.execute(text("ANALYZE"))
            for name, query in queries.items():
                page, count, values = page_statements(query, engine.dialect)
                values.update(
                    page_limit=51, k_priority=5, k_created_at=datetime.now(UTC), k_id="L1"
                )
                index = "ix_lots_tool" if query.tool else "ix_lots_step"
                parts = [("page", page), ("count", count)]
                if query.step == "DICE":  # its count is of 5,000 rows whatever the plan
                    parts = parts[:1]
                for part, statement in parts:
                    key = f"{name}: {part} ({statistics})"
                    plan = plans[key] = await _plan(service, statement, values)
                    assert f"USING INDEX {index} " in plan, f"{key}:\n{plan}"
            statements = factory.statements
            working = {"s0": "WAITING", "s1": "RUNNING", "s2": "HOLD"}
            for name, statement, values in (
                ("dispatch's heads", statements.heads(2), working),
                ("line status's lots", statements.find(3, False), working),
                ("the lots running", statements.interlocks.running, {}),
                ("a lot's children", statements.children, {"lot_id": "L001"}),
                # tool list's lots tracked in (by hand) on a page's tools: the running ones
                (
                    "the lots running on some tools",
                    statements.heads(1, 2),
                    {"s0": "RUNNING", "t0": "T9", "t1": "T7"},
                ),
            ):
                key = f"{name} ({statistics})"
                plan = plans[key] = await _plan(service, statement, values)
                index = "ix_lots_parent_id" if "children" in name else "ix_lots_state_priority"
                if "some tools" in name and "ix_lots_tool" in plan:
                    index = "ix_lots_tool"  # either: a few rows, not every lot
                assert f"INDEX {index} " in plan, f"{key}:\n{plan}"
            waiting = LotQuery(states=(LotState.WAITING,), limit=50)
            page, count, values = page_statements(waiting, engine.dialect)
            values.update(page_limit=51)
            for part, statement in (("page", page), ("count", count)):
                key = f"lot list --state WAITING: {part} ({statistics})"
                plan = plans[key] = await _plan(service, statement, values)
                assert "INDEX ix_lots_state_priority " in plan, f"{key}:\n{plan}"
            # every lot, or a flow's: the lots in progress and the finished lots' counts
            for name, query in (("lot list", LotQuery()), ("one flow", LotQuery(flow="x"))):
                _, count, values = page_statements(query, engine.dialect)
                key = f"{name}: count ({statistics})"
                plan = plans[key] = await _plan(service, count, {**values, "f_flow": "x"})
                assert "INDEX ix_lots_state_priority " in plan, f"{key}:\n{plan}"
                assert "lot_counts" in plan, f"{key}:\n{plan}"
        assert (await service.page(LotQuery())).total == 5_012
        for name, plan in plans.items():
            # "SCAN lots" reads every lot, and so does "SCAN lots USING INDEX ..."
            assert not [line for line in plan.splitlines() if line.startswith("SCAN lots")], (
                f"{name}:\n{plan}"
            )
    finally:
        await engine.dispose()
