"""Revision 0030, a person's declaration that a tool is down (``tools.down``, who, when, why,
and ``reported_e10``), on SQLite and PostgreSQL: up, no tool is declared and one can be;
down, a declared tool returns to the state it reports and the columns go, its E10 history
kept; up again matches the tables."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from mes.adapters.database import create_engine
from mes.adapters.migrate import downgrade, upgrade
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.domain.equipment import ToolRegistration, ToolSnapshot
from mes.equipment import EquipmentService
from tests.mes.test_migrations import DATABASES, _diff

AT = datetime(2026, 12, 7, 4, 0, tzinfo=UTC)
BONDER = ToolRegistration("DB-1", "die_bonder", "modbus 127.0.0.1:5020", ("DIE_ATTACH",))
UP = ToolSnapshot(connected=True, e10="standby", process_state="IDLE", mode="PRODUCTION")


def _columns(conn: Connection, table: str) -> set[str]:
    return {str(c["name"]) for c in inspect(conn).get_columns(table)}


@pytest.mark.parametrize("database", DATABASES)
async def test_tool_down_goes_up_and_down(request: pytest.FixtureRequest, database: str) -> None:
    engine = create_engine(request.getfixturevalue(database))
    try:
        await upgrade(engine, "0029")
        await upgrade(engine)
        equipment = EquipmentService(SqlUnitOfWorkFactory(engine))
        await equipment.register("line-a", [BONDER])
        await equipment.report("DB-1", UP, AT)
        assert (await equipment.tool("DB-1")).down is None
        await equipment.declare_down("DB-1", "scheduled_down", "tech1", "PM")
        assert (await equipment.tool("DB-1")).snapshot.e10 == "scheduled_down"

        await downgrade(engine, "0029")
        async with engine.connect() as conn:
            columns = await conn.run_sync(_columns, "tools")
            assert not {"down", "down_reason", "down_by", "down_at", "reported_e10"} & columns
            e10 = (await conn.execute(text("SELECT e10 FROM tools"))).scalars().all()
            assert e10 == ["standby"]
            history = await conn.execute(text("SELECT e10 FROM tool_states ORDER BY at"))
            assert "scheduled_down" in history.scalars().all()
        await upgrade(engine)
        async with engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
        after = await equipment.tool("DB-1")
        assert after.down is None and after.snapshot.e10 == "standby"
    finally:
        await engine.dispose()
