"""bench/mes_moves.py and its floors (bench/moves_floor.py): the floors write what pkgline's
moves write (a lot moved version by version, a chained history row and an outbox row per
transaction), PostgreSQL's through the very statement pkgline sends; the ratios pair runs as
they ran."""

from __future__ import annotations

import itertools
import json

import pytest
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect

from mes.adapters.database import create_engine
from mes.adapters.driver import CompiledStatement
from mes.adapters.migrate import upgrade
from mes.adapters.sql_statements import move_in_one_statement
from mes.adapters.tables import lot_history, lots, outbox, spc_charts, spc_points
from mes.domain.spc import all_violations
from tests.bench.conftest import bench_module

moves = bench_module("mes_moves")
floors = bench_module("moves_floor")


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest) -> str:
    name = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    value: str = request.getfixturevalue(name)
    return value


async def test_a_floor_moves_its_lots_as_pkgline_does(url: str) -> None:
    engine = create_engine(url)
    try:
        await upgrade(engine)
        # 2 writers, 5 moves each, 3 moves a lot: each writer starts 2 lots
        result = await floors.run_floor(floors.make_floor(url, 3), 2, 10)
        assert result.moves == 10
        async with engine.connect() as conn:
            found = (
                await conn.execute(select(lots.c.id, lots.c.version, lots.c.history_head))
            ).all()
            history = (await conn.execute(select(lot_history).order_by(lot_history.c.seq))).all()
            events = (await conn.execute(select(outbox).order_by(outbox.c.seq))).all()
            assert (await conn.execute(select(func.count()).select_from(outbox))).scalar() == len(
                history
            )
    finally:
        await engine.dispose()
    # the warm-up moves each writer's connection twice on a lot of its own; then each writer
    # makes 5 moves, 3 on a lot and 2 on the next
    assert len(history) == 2 * (2 * 2 + 10)
    by_lot: dict[str, list[object]] = {}
    for row in history:
        by_lot.setdefault(row.lot_id, []).append(row)
    assert len(found) == 6
    for lot in found:
        entries = by_lot[lot.id]
        assert lot.version == 1 + len(entries)
        assert lot.history_head == entries[-1].hash
        assert entries[0].prev_hash == "0" * 64
        for before, after in itertools.pairwise(entries):
            assert after.prev_hash == before.hash  # chained
    assert sorted(len(e) for e in by_lot.values()) == [4, 4, 4, 4, 6, 6]
    # Each history entry has its event. Matched by the entry's seq in the payload, not by
    # position: two writers draw from the history's and the outbox's sequences in their own
    # orders (on PostgreSQL one can take history 1 and outbox 2 while the other takes history
    # 2 and outbox 1).
    kinds: dict[int, str] = {}
    per_lot: dict[str, list[int]] = {}
    for event in events:
        payload = event.payload if isinstance(event.payload, dict) else json.loads(event.payload)
        kinds[payload["seq"]] = event.kind
        per_lot.setdefault(event.lot_id, []).append(payload["seq"])
    for seqs in per_lot.values():  # a lot's events in the outbox's order are its history's
        assert seqs == sorted(seqs)
    assert sorted(kinds) == [row.seq for row in history]
    for row in history:
        assert kinds[row.seq] == (
            "LotTrackedIn" if row.operation == "track_in" else "LotTrackedOut"
        )


async def test_pkgline_s_side_moves_its_lots_with_the_interlocks_and_spc_on(url: str) -> None:
    """The run that the floor is held against: each writer's tools, durables, material lots
    and SPC charts (every Nelson rule) set up as the bench does, then moves through the
    service, every one counted, every measured value a point on its tool's chart, no lot
    held by a rule."""
    result = await moves.run_pkgline(url, 2, 40)
    assert result.moves == 40
    assert len(result.latencies) == 40
    assert all(t > 0 for t in result.latencies)
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            charts = (await conn.execute(select(spc_charts.c.tool_id, spc_charts.c.nelson))).all()
            points = (await conn.execute(select(spc_points.c.tool_id))).all()
            held = (await conn.execute(select(lots.c.id).where(lots.c.state == "HELD"))).all()
    finally:
        await engine.dispose()
    assert {c.tool_id[:3] for c in charts} == {"B0-", "B1-"}  # each writer's own tools
    assert all(c.nelson for c in charts)  # every rule on
    assert len(points) > 20  # the first 40 moves of a lot cross several charted steps
    assert held == []


def test_the_measured_pattern_breaks_no_nelson_rule() -> None:
    xs = [z for _ in range(40) for z in moves.PATTERN]
    assert all_violations(xs, 0.0, 1.0, range(1, 9)) == []


def test_the_postgres_floor_sends_pkgline_s_own_statement() -> None:
    sql, names, fixed = floors.one_statement(move_in_one_statement())
    ours = CompiledStatement.compile(move_in_one_statement(), asyncpg_dialect.dialect())
    assert sql == ours.sql
    assert names == [name for name, _, _ in ours.params]
    assert fixed == {name: default for name, _, default in ours.params if name in fixed}
    assert set(fixed) == {"payload_1", "param_1"}


def test_ratios_pair_the_runs_in_the_order_they_ran() -> None:
    runs = moves.Runs("x")
    for ours, floor in ((10.0, 20.0), (30.0, 20.0), (5.0, 10.0)):
        runs.pkgline.append(moves.Result(int(ours), 1.0, []))
        runs.floor.append(moves.Result(int(floor), 1.0, []))
    assert runs.ratios() == [0.5, 1.5, 0.5]
