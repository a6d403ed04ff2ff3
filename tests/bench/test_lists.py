"""bench/lists.py's dispatch pass: the line controller's own dispatcher over the seeded tools
that no lot runs on starts lots on them (the figure is of a pass that works), and the reset
between two timed passes puts those lots back where they waited, so that each pass does the
same work."""

from __future__ import annotations

from datetime import UTC, datetime

from mes.adapters.database import create_engine
from mes.adapters.migrate import upgrade
from mes.domain.model import LotState
from pkgline.bootstrap import open_services, seed_flow_versions
from tests.bench.conftest import bench_module

lists = bench_module("lists")
seed = bench_module("seed")


async def test_the_dispatch_pass_starts_lots_on_the_idle_seeded_tools_and_the_reset_undoes_it(
    sqlite_url: str,
) -> None:
    engine = create_engine(sqlite_url)
    try:
        await upgrade(engine)
        await seed_flow_versions(engine)
        await seed.seed(engine, 120, active=120, now=datetime(2026, 6, 1, tzinfo=UTC))
    finally:
        await engine.dispose()
    async with open_services(sqlite_url) as services:
        lots = services.lots
        before = {h.id: (h.state, h.path) for h in await lots.heads([LotState.WAITING])}
        busy = {h.tool for h in await lots.heads([LotState.RUNNING])}
        dispatch = await lists.DispatchPass.of(lots)
        assert dispatch.tools, "idle seeded tools"
        assert not busy & set(dispatch.tools), "a tool a lot runs on is not offered"

        await dispatch.run()
        running = {
            h.id: h for h in await lots.heads([LotState.RUNNING]) if h.tool in dispatch.tools
        }
        assert running, "the pass started lots"
        assert dispatch.started == [len(running)]
        for lot_id, head in running.items():
            assert dispatch.tools[head.tool].current_lot == lot_id
            assert before[lot_id][0] is LotState.WAITING

        await dispatch.reset()
        after = {h.id: (h.state, h.path) for h in await lots.heads([LotState.WAITING])}
        assert after == before, "the reset put every started lot back where it waited"
        assert all(t.is_idle() for t in dispatch.tools.values())

        await dispatch.run()  # the same work again
        assert dispatch.started == [len(running)] * 2
        await dispatch.reset()
