"""bench/seed.py: a database filled with lots of every flow, finished and in progress, whose
histories, carriers and jobs the lot tracker reads as its own."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from flows import FlowLibrary, load_library
from mes.adapters.database import create_engine
from mes.adapters.migrate import upgrade
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.adapters.tables import jobs, lot_history, outbox
from mes.domain import commands as cmd
from mes.domain.model import JobStatus, LotState, Operation
from mes.service import LotService
from tests.bench.conftest import bench_module

seed = bench_module("seed")
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
async def engine(request: pytest.FixtureRequest) -> AsyncIterator[AsyncEngine]:
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")
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
        history = (await conn.execute(select(func.count()).select_from(lot_history))).scalar()
        job_count = (await conn.execute(select(func.count()).select_from(jobs))).scalar()
        published = (await conn.execute(select(func.count()).select_from(outbox))).scalar()
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
    cut = seed.Cut(LotState.COMPLETED, {}, (), (), (), timedelta(hours=5))
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
