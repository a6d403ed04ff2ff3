"""bench/seed.py: a database filled with lots of every flow, finished and in progress, whose
histories, carriers and jobs the lot tracker reads as its own: their hash chain verifies, the
tools they name are registered, and seeding again adds lots."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from flows import FlowLibrary, load_library
from mes.adapters.audit import verify_history
from mes.adapters.database import create_engine
from mes.adapters.migrate import upgrade
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.adapters.tables import jobs, lot_history, lots, outbox
from mes.domain import commands as cmd
from mes.domain.equipment import ToolRegistration
from mes.domain.errors import ToolOwnedElsewhere
from mes.domain.model import JobStatus, LotState, Operation
from mes.equipment import EquipmentService
from mes.service import LotService
from tests.bench.conftest import bench_module
from tests.cli.test_lot_cli import pkgline

seed = bench_module("seed")
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest) -> str:
    """A database of the test's own, SQLite and PostgreSQL (skipped where there is none)."""
    found: str = request.getfixturevalue(
        "sqlite_url" if request.param == "sqlite" else "postgres_url"
    )
    return found


@pytest.fixture
async def engine(url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(url)
    await upgrade(engine)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def library() -> FlowLibrary:
    return load_library()


async def test_seeded_lots_are_every_flow_finished_and_in_progress_and_readable(
    engine: AsyncEngine, library: FlowLibrary
) -> None:
    written = await seed.seed(engine, 120, active=30, library=library, now=NOW, batch_size=50)
    service = LotService(SqlUnitOfWorkFactory(engine), library)
    found = await service.find(limit=1000)
    assert len(found) == written["lots"] == 120
    assert {lot.flow for lot in found} == set(library.flows)
    states = Counter(lot.state for lot in found)
    assert states[LotState.COMPLETED] + states[LotState.SCRAPPED] == 90
    assert states[LotState.WAITING] + states[LotState.RUNNING] + states[LotState.HOLD] == 30
    assert states[LotState.WAITING] and states[LotState.RUNNING] and states[LotState.HOLD]
    for lot in found:
        report = await service.report(lot.id)
        assert report.history[0].operation is Operation.START
        assert all(e.lot_id == lot.id for e in report.history)
        assert [p.step for p in report.path] == list(lot.path)
        assert lot.created_at < lot.updated_at <= NOW
        if lot.state is LotState.COMPLETED:
            assert report.history[-1].state_after is LotState.COMPLETED
        if lot.state is LotState.RUNNING:
            assert lot.running is not None and lot.running.tool
            open_jobs = await service.jobs_of_step(lot)
            assert [j.status for j in open_jobs] == [JobStatus.STARTED]
            assert open_jobs[0].tool_id == lot.running.tool
        if lot.state is LotState.HOLD:
            assert lot.hold is not None and report.history[-1].operation is Operation.HOLD
        if lot.state is LotState.WAITING:
            assert service.next_in_order(lot)
    async with engine.connect() as conn:
        history = (await conn.execute(select(func.count()).select_from(lot_history))).scalar_one()
        job_count = (await conn.execute(select(func.count()).select_from(jobs))).scalar_one()
        published = (await conn.execute(select(func.count()).select_from(outbox))).scalar_one()
    assert (history, job_count) == (written["lot_history"], written["jobs"])
    assert history > 120 * 20  # whole flows' worth of moves, not a start each
    assert published == 0  # the past: nothing for a relay to send


async def test_a_seeded_waiting_lot_moves_on_through_the_service(
    engine: AsyncEngine, library: FlowLibrary
) -> None:
    await seed.seed(engine, 40, active=40, library=library, now=NOW, prefix="P")
    service = LotService(SqlUnitOfWorkFactory(engine), library)
    waiting = await service.find(states=[LotState.WAITING])
    lot = waiting[0]
    step = service.next_in_order(lot)[0]
    moved = await service.track_in(cmd.TrackIn(lot.id, step, "tester"))  # off the tools
    assert moved.lot.state is LotState.RUNNING
    assert moved.lot.version == lot.version + 1


async def test_seeding_twice_with_another_prefix_adds_lots(
    engine: AsyncEngine, library: FlowLibrary
) -> None:
    await seed.seed(engine, 10, active=2, library=library, now=NOW, prefix="A")
    await seed.seed(engine, 10, active=2, library=library, now=NOW, prefix="B")
    service = LotService(SqlUnitOfWorkFactory(engine), library)
    ids = [lot.id for lot in await service.find()]
    assert len(ids) == len(set(ids)) == 20


def test_finished_lots_span_the_days_asked_and_the_active_ones_the_last_day(
    library: FlowLibrary,
) -> None:
    cut = seed.Cut(LotState.COMPLETED, {}, (), (), (), timedelta(hours=5), None, ())
    walks = [seed.Walk(name, (cut,), (cut,), (cut,), (cut,), cut) for name in library.flows]
    planned = list(seed.plan_lots(walks, 100, 0, 30.0, NOW, "X"))
    starts = [datetime(2000, 1, 1, tzinfo=UTC) + shift for _, _, shift, _ in planned]
    assert starts == sorted(starts)
    assert NOW - timedelta(days=33) <= starts[0] and starts[-1] <= NOW
    assert len({lot_id for _, lot_id, _, _ in planned}) == 100


async def test_a_negative_count_is_refused_before_anything_is_written(
    engine: AsyncEngine,
) -> None:
    with pytest.raises(ValueError, match="0 or more"):
        await seed.seed(engine, -1)
    async with engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(lot_history))).scalar() == 0


def cli_json(url: str, *args: str) -> Any:
    """``pkgline ARGS --json`` on the database at ``url`` (a subprocess, as a user runs it)."""
    result = pkgline(url, *args, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


async def test_a_seeded_database_passes_audit_verify_before_and_after_the_store_writes(
    url: str, engine: AsyncEngine, library: FlowLibrary
) -> None:
    """The seeded lots' entries are chained as the store chains them, after the lots already
    there and before the ones started later: ``pkgline audit verify`` checks every entry,
    each lot's head and the chain over lots, and finds nothing."""
    service = LotService(SqlUnitOfWorkFactory(engine), library)
    await service.start(cmd.StartLot("REAL-1", "fo-organic", "tester"))
    written = await seed.seed(engine, 45, active=30, library=library, now=NOW, batch_size=20)
    before = cli_json(url, "audit", "verify")
    assert before["ok"] is True, before
    assert (before["lots"], before["entries"]) == (46, written["lot_history"] + 1)

    await service.start(cmd.StartLot("REAL-2", "fo-organic", "tester"))  # on the chain over lots
    held = (await service.find(states=[LotState.HOLD]))[0]  # a seeded lot's own chain goes on
    await service.release(cmd.ReleaseLot(held.id, "tester", "checked"))
    after = cli_json(url, "audit", "verify")
    assert after["ok"] is True, after
    assert after["lots"] == 47


async def test_a_lot_started_while_a_batch_is_hashed_comes_before_it_on_the_chain(
    engine: AsyncEngine, library: FlowLibrary, tmp_path: Path
) -> None:
    """A batch is chained outside its write's transaction (no lock held while hashing); a
    lot the store starts meanwhile moves the head of the chain over lots on, and the batch
    is chained again after it when written: the history still verifies."""
    walks = [await seed.walk_flow(library, "fo-organic", tmp_path)]
    batch = seed.Batch(engine.dialect)
    for planned in seed.plan_lots(walks, 6, 2, 10.0, NOW, "C"):
        batch.add(*planned)
    await batch.prepare(engine)
    service = LotService(SqlUnitOfWorkFactory(engine), library)
    await service.start(cmd.StartLot("REAL-1", "fo-organic", "tester"))
    assert (await batch.write(engine))["lots"] == 6
    verified = await verify_history(engine)
    assert verified.ok, verified.problem
    assert verified.lots == 7


async def test_seeding_again_with_the_same_prefix_adds_lots_numbered_on(
    engine: AsyncEngine, library: FlowLibrary
) -> None:
    """A second run on the same database, default prefix, numbers its lots after the highest
    ``S-<n>`` there (other lots whose id starts alike do not count), and the whole history
    still verifies."""
    service = LotService(SqlUnitOfWorkFactory(engine), library)
    await service.start(cmd.StartLot("S-X9", "fo-organic", "tester"))
    await seed.seed(engine, 12, active=3, library=library, now=NOW)
    await seed.seed(engine, 12, active=3, library=library, now=NOW)
    async with engine.connect() as conn:
        ids = set((await conn.execute(select(lots.c.id))).scalars())
    assert ids == {"S-X9"} | {f"S-{n:06d}" for n in range(1, 25)}
    verified = await verify_history(engine)
    assert verified.ok, verified.problem
    assert verified.lots == 25


async def test_the_tools_seeded_lots_name_are_registered_with_their_steps_class(
    url: str, engine: AsyncEngine, library: FlowLibrary
) -> None:
    """``pkgline tool list`` on a seeded database lists every tool a seeded history, job or
    running lot names, registered by the seed's line, of the class of the steps it ran and
    qualified for them."""
    await seed.seed(engine, 60, active=40, library=library, now=NOW)
    await seed.seed(engine, 5, active=5, library=library, now=NOW)  # registered again: kept
    listed = {t["id"]: t for t in cli_json(url, "tool", "list")}
    assert listed
    assert {t["line"] for t in listed.values()} == {seed.LINE}
    async with engine.connect() as conn:
        ran: set[tuple[str | None, str | None]] = set()
        for query in (
            select(lot_history.c.tool, lot_history.c.step),
            select(jobs.c.tool_id, jobs.c.step),
        ):
            ran.update((tool, step) for tool, step in await conn.execute(query))
        running = [r["tool"] for r in (await conn.execute(select(lots.c.running))).scalars() if r]
    named = {tool for tool, _ in ran if tool is not None}
    assert named and running and set(running) <= named
    assert named <= set(listed)
    for tool, step in ran:
        if tool is not None and step is not None:
            assert listed[tool]["class"] == library.step_codes[step].equipment_class
            assert step in listed[tool]["steps"]


async def test_a_seed_tool_owned_by_another_line_is_refused_before_any_lot_is_written(
    engine: AsyncEngine, library: FlowLibrary
) -> None:
    """A database whose line controller already owns a tool of the seed's name: the
    equipment service's refusal, and no lot written."""
    taken = seed.seed_tools(library)[0]
    await EquipmentService(SqlUnitOfWorkFactory(engine)).register(
        "line-a", [ToolRegistration(taken.id, taken.equipment_class, "10.0.0.9", taken.steps)]
    )
    with pytest.raises(ToolOwnedElsewhere, match=taken.id):
        await seed.seed(engine, 5, library=library, now=NOW)
    async with engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(lots))).scalar() == 0


async def test_a_library_is_walked_once_a_process_and_another_library_again(
    library: FlowLibrary,
) -> None:
    """Seeding again in one process (a bench at several sizes) takes the walks made the first
    time: they depend on the flows alone. Another library is walked for itself."""
    first = await seed.walk_flows(library)
    assert [w.flow for w in first] == sorted(library.flows)
    assert await seed.walk_flows(library) is first
    other = load_library()
    assert await seed.walk_flows(other) is not first
