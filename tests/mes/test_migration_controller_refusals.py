"""Revision 0028, a line controller's refused track-ins in its record, on SQLite and
PostgreSQL: up gives the records there are none, a heartbeat writes them and they read back
as written; down takes the column away and keeps the records; up again matches the tables."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from mes.adapters.database import create_engine
from mes.adapters.migrate import downgrade, upgrade
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.domain.equipment import ControllerRecord, TrackInRefusal
from mes.equipment import EquipmentService
from tests.mes.test_migrations import DATABASES, _diff

AT = datetime(2026, 12, 7, 4, 0, tzinfo=UTC)


def _columns(conn: Connection, table: str) -> set[str]:
    return {str(c["name"]) for c in inspect(conn).get_columns(table)}


@pytest.mark.parametrize("database", DATABASES)
async def test_controller_refusals_go_up_and_down(
    request: pytest.FixtureRequest, database: str
) -> None:
    engine = create_engine(request.getfixturevalue(database))
    try:
        await upgrade(engine, "0027")
        async with engine.connect() as conn:  # a record as revision 0027 kept it
            await conn.execute(
                text(
                    "INSERT INTO controllers (name, host, pid, started_at, heartbeat_at, "
                    "status, tools) VALUES ('line-a', 'h', 7, :at, :at, 'ok', '[\"DB-1\"]')"
                ),
                {"at": AT},
            )
            await conn.commit()
        await upgrade(engine)
        equipment = EquipmentService(SqlUnitOfWorkFactory(engine))
        [before] = await equipment.controllers()
        assert (before.name, before.tools, before.refusals) == ("line-a", ("DB-1",), ())

        refusal = TrackInRefusal(
            "DB-1", "L1", "DIE_ATTACH", "material", "DAF-1 is still frozen; expected ...", AT
        )
        record = ControllerRecord("line-a", "h", 7, AT, AT, "ok", ("DB-1",), (refusal,))
        await equipment.heartbeat(record)
        assert await equipment.controllers() == [record]

        await downgrade(engine, "0027")
        async with engine.connect() as conn:
            assert "refusals" not in await conn.run_sync(_columns, "controllers")
            names = (await conn.execute(text("SELECT name FROM controllers"))).scalars().all()
            assert names == ["line-a"]
        await upgrade(engine)
        async with engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
        [after] = await equipment.controllers()
        assert after.refusals == ()
    finally:
        await engine.dispose()
