"""The counts of finished lots that the database keeps (``lot_counts``, revision 0021) agree
with ``count(*)`` of the lots whatever wrote them: the service finishing, scrapping, splitting
and merging lots, and SQL by hand inserting, changing and deleting finished lots. A lot list's
count, which adds them to the lots in progress, is the number of lots its filters select; the
relay's line status counts the same way."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text

from flows import FlowLibrary
from mes.adapters.database import create_engine
from mes.adapters.migrate import _config, downgrade, upgrade
from mes.adapters.outbox import OutboxStore
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.domain import commands as cmd
from mes.domain.model import FINAL_STATES, LotState
from mes.ports import LotQuery
from mes.service import LotService
from tests.mes.conftest import Clock

DATABASES = ["sqlite_url", pytest.param("postgres_url", marks=pytest.mark.postgres)]
USER = "op1"


@pytest.fixture(params=DATABASES)
async def factory(request: pytest.FixtureRequest) -> AsyncIterator[SqlUnitOfWorkFactory]:
    engine = create_engine(request.getfixturevalue(request.param))
    try:
        await upgrade(engine)
        yield SqlUnitOfWorkFactory(engine)
    finally:
        await engine.dispose()


async def _kept_and_counted(
    factory: SqlUnitOfWorkFactory,
) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], int]]:
    async with factory.engine.connect() as conn:
        kept = await conn.execute(text("SELECT flow, state, n FROM lot_counts WHERE n <> 0"))
        counted = await conn.execute(
            text(
                "SELECT flow, state, count(*) FROM lots"
                " WHERE state IN ('COMPLETED', 'SCRAPPED', 'MERGED') GROUP BY flow, state"
            )
        )
        return (
            {(f, s): int(n) for f, s, n in kept.all()},
            {(f, s): int(n) for f, s, n in counted.all()},
        )


async def _totals_agree(service: LotService, factory: SqlUnitOfWorkFactory) -> None:
    """Every list filtered by state and flow at most says as many lots as ``count(*)``."""
    kept, counted = await _kept_and_counted(factory)
    assert kept == counted
    async with factory.engine.connect() as conn:
        rows = (await conn.execute(text("SELECT flow, state FROM lots"))).all()
    flows = [*sorted({flow for flow, _ in rows}), "fo-metal"]  # the last: no lot of it
    for flow in [None, *flows]:
        for states in [(), *((s,) for s in LotState), (LotState.WAITING, LotState.COMPLETED)]:
            expected = sum(1 for f, s in rows if flow in (None, f) and (not states or s in states))
            page = await service.page(LotQuery(states=states, flow=flow, limit=2))
            assert page.total == expected, (flow, states)
            assert page.more == (expected > 2)
    async with OutboxStore(factory.engine).session() as relay:
        by_state = await relay.lots_by_state()
    assert by_state == {
        s.value: n for s in LotState if (n := sum(1 for _, state in rows if state == s.value))
    }


async def _run(service: LotService, lot_id: str, steps: list[str]) -> None:
    for step in steps:
        await service.track_in(cmd.TrackIn(lot_id, step, USER))
        await service.track_out(cmd.TrackOut(lot_id, USER))


async def test_the_finished_lots_counts_follow_the_service(
    factory: SqlUnitOfWorkFactory, library: FlowLibrary
) -> None:
    service = LotService(factory, library, Clock())
    for lot_id, flow in (("A", "fc-heatsink-muf"), ("B", "stiffener-bga"), ("C", "stiffener-bga")):
        await service.start(cmd.StartLot(lot_id, flow, USER, carriers=2))
    await _totals_agree(service, factory)  # nothing finished: an empty table
    await service.track_in(
        cmd.TrackIn("A", "SUBSTRATE_LOAD", USER, values={"carrier_type": "leadframe"})
    )
    await service.track_out(cmd.TrackOut("A", USER))
    await _run(service, "A", ["FLIP_CHIP_BOND", "HEAT_SINK_ATTACH", "MOLD"])
    assert (await service.complete(cmd.CompleteLot("A", USER))).lot.state is LotState.COMPLETED
    await service.scrap(cmd.ScrapLot("B", USER, "dropped"))
    child = (await service.get("C")).carriers[1]
    await service.split(cmd.SplitLot("C", "C1", (child,), USER))
    await _totals_agree(service, factory)
    await service.merge(cmd.MergeLots("C1", "C", USER))
    assert (await service.get("C1")).state is LotState.MERGED
    await _totals_agree(service, factory)
    assert (await _kept_and_counted(factory))[0] == {
        ("fc-heatsink-muf", "COMPLETED"): 1,
        ("stiffener-bga", "SCRAPPED"): 1,
        ("stiffener-bga", "MERGED"): 1,
    }


async def test_the_counts_follow_lots_written_by_hand_in_sql(
    factory: SqlUnitOfWorkFactory, library: FlowLibrary
) -> None:
    """What the plant-size seeding or an engineer's correction writes in SQL is counted too:
    finished lots inserted, a finished lot's state or flow changed, finished lots deleted."""
    service = LotService(factory, library, Clock())
    await service.start(cmd.StartLot("L", "stiffener-bga", USER))
    copy = (
        "INSERT INTO lots SELECT :id, :flow, flow_version, :state, priority, params, site_rows,"
        " site_cols, total_sites, good_sites, units, path, recorded, NULL, NULL, rework_counts,"
        " NULL, NULL, created_at, updated_at, created_by, version, history_head"
        " FROM lots WHERE id = 'L'"
    )
    async with factory.engine.begin() as conn:
        for i in range(30):
            state = (LotState.COMPLETED, LotState.SCRAPPED, LotState.WAITING)[i % 3]
            flow = ("stiffener-bga", "fo-organic")[i % 2]
            await conn.execute(text(copy), {"id": f"D{i}", "flow": flow, "state": state.value})
    await _totals_agree(service, factory)
    async with factory.engine.begin() as conn:
        await conn.execute(text("UPDATE lots SET state = 'WAITING' WHERE id = 'D0'"))
        await conn.execute(text("UPDATE lots SET state = 'COMPLETED' WHERE id = 'D2'"))
        await conn.execute(text("UPDATE lots SET flow = 'fo-organic' WHERE id = 'D3'"))
        await conn.execute(text("UPDATE lots SET priority = 9 WHERE id = 'D4'"))  # no change
        await conn.execute(text("DELETE FROM lots WHERE id IN ('D1', 'D5', 'D8')"))
    await _totals_agree(service, factory)
    async with factory.engine.begin() as conn:
        await conn.execute(text("DELETE FROM lots WHERE id LIKE 'D%'"))
    kept, counted = await _kept_and_counted(factory)
    assert kept == counted == {}


@pytest.mark.parametrize("database", DATABASES)
async def test_the_counts_revision_counts_the_lots_already_finished_and_goes_down(
    request: pytest.FixtureRequest, library: FlowLibrary, database: str
) -> None:
    """Revision 0021, up over a database that has finished lots, counts them; down, the
    table and its triggers go and lots are written as before."""
    engine = create_engine(request.getfixturevalue(database))
    try:
        await upgrade(engine)
        service = LotService(SqlUnitOfWorkFactory(engine), library, Clock())
        for lot_id in ("A", "B", "C"):
            await service.start(cmd.StartLot(lot_id, "stiffener-bga", USER))
        await service.scrap(cmd.ScrapLot("A", USER, "dropped"))
        await downgrade(engine, "0020")
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE lots SET state = 'SCRAPPED' WHERE id = 'B'"))
        await upgrade(engine)
        factory = SqlUnitOfWorkFactory(engine)
        kept, counted = await _kept_and_counted(factory)
        assert kept == counted == {("stiffener-bga", "SCRAPPED"): 2}
        await _totals_agree(LotService(factory, library, Clock()), factory)
    finally:
        await engine.dispose()


def test_the_final_states_are_the_ones_the_triggers_count() -> None:
    # the revision's SQL names them as literals: a new final state needs a new revision
    revision = ScriptDirectory.from_config(_config()).get_revision("0021")
    assert revision is not None
    named = {s.strip(" '") for s in revision.module.FINAL.strip("()").split(",")}
    assert named == {s.value for s in FINAL_STATES}
