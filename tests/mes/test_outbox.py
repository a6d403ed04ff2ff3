"""Every transaction appends its facts to the outbox in the same transaction: one outbox row
per history entry, in the same order, the payload carrying the entry and its sequence number,
so the plant's systems can be fed every move without loss. On both databases and both write
paths (PostgreSQL writes a simple move in one statement, and any other history entry with
its outbox row in one)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from flows import FlowLibrary
from mes.adapters.database import create_engine
from mes.adapters.migrate import upgrade
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.adapters.tables import lot_history, outbox
from mes.domain import commands as cmd
from mes.domain.errors import StepNotAllowed
from mes.service import LotService


@pytest.mark.parametrize(
    "database", ["sqlite_url", pytest.param("postgres_url", marks=pytest.mark.postgres)]
)
async def test_the_outbox_mirrors_history_one_event_per_entry_in_order(
    request: pytest.FixtureRequest, database: str, library: FlowLibrary
) -> None:
    engine = create_engine(request.getfixturevalue(database))
    try:
        await upgrade(engine)
        service = LotService(SqlUnitOfWorkFactory(engine), library)
        await service.start(cmd.StartLot("L1", "stiffener-bga", "op", carriers=2))
        await service.track_in(cmd.TrackIn("L1", "SUBSTRATE_LOAD", "op"))
        await service.track_out(
            cmd.TrackOut("L1", "op", rejects=(cmd.SiteRejectGiven("1", 1, 1, "SCRATCH"),))
        )
        await service.split(cmd.SplitLot("L1", "L1A", ("2",), "op"))
        await service.hold(cmd.HoldLot("L1A", "eng", "check"))
        with pytest.raises(StepNotAllowed):
            await service.track_in(cmd.TrackIn("L1", "MOLD", "op"))
        async with engine.connect() as conn:
            history = (await conn.execute(select(lot_history).order_by(lot_history.c.seq))).all()
            events = (await conn.execute(select(outbox).order_by(outbox.c.seq))).all()
        assert len(events) == len(history) == 6
        assert [e.kind for e in events] == [
            "LotStarted",
            "LotTrackedIn",
            "LotTrackedOut",
            "LotSplit",
            "LotSplitFrom",
            "LotHeld",
        ]
        for h, e in zip(history, events, strict=True):
            assert e.lot_id == h.lot_id
            assert e.payload["seq"] == h.seq
            assert e.payload["operation"] == h.operation
            assert e.payload["state_after"] == h.state_after
            assert e.published_at is None
        assert events[2].payload["data"]["rejects"] == ["L1-01:1:1:SCRATCH"]
    finally:
        await engine.dispose()
