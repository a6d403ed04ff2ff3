"""Revision 0031, who last declared a tool down or brought it up (``tools.declared_user``,
``declared_by``, ``declared_auth``, ``declared_reason``, ``declared_at``), on SQLite and
PostgreSQL: up, a tool down and up fill them with the principal that acted; down, the
columns go and the declaration in force stays; up again matches the tables, the tool still
declared, its ``declared_*`` empty (``by`` and ``auth`` null on the feed)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from mes.adapters.database import create_engine
from mes.adapters.migrate import downgrade, upgrade
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.domain.authority import AuthMethod, Principal, Role
from mes.domain.equipment import ToolRegistration, ToolSnapshot
from mes.equipment import EquipmentService
from tests.mes.test_migrations import DATABASES, _diff

AT = datetime(2026, 12, 7, 4, 0, tzinfo=UTC)
BONDER = ToolRegistration("DB-1", "die_bonder", "modbus 127.0.0.1:5020", ("DIE_ATTACH",))
UP = ToolSnapshot(connected=True, e10="standby", process_state="IDLE", mode="PRODUCTION")
TECH = Principal("tech1", frozenset({Role.TECHNICIAN}), AuthMethod.SESSION)
COLUMNS = {"declared_user", "declared_by", "declared_auth", "declared_reason", "declared_at"}


def _columns(conn: Connection, table: str) -> set[str]:
    return {str(c["name"]) for c in inspect(conn).get_columns(table)}


@pytest.mark.parametrize("database", DATABASES)
async def test_tool_declared_by_goes_up_and_down(
    request: pytest.FixtureRequest, database: str
) -> None:
    engine = create_engine(request.getfixturevalue(database))
    try:
        await upgrade(engine, "0030")
        async with engine.connect() as conn:
            assert not COLUMNS & await conn.run_sync(_columns, "tools")
        await upgrade(engine)
        equipment = EquipmentService(SqlUnitOfWorkFactory(engine))
        await equipment.register("line-a", [BONDER])
        await equipment.report("DB-1", UP, AT)
        tech = equipment.acting_as(TECH)
        await tech.declare_down("DB-1", "scheduled_down", "tech1", "PM")
        down = await equipment.tool("DB-1")
        assert (down.declared_by, down.declared_auth, down.declared_reason) == (
            "tech1",
            "session",
            "PM",
        )
        await tech.bring_up("DB-1", "tech1", "PM done")
        up = await equipment.tool("DB-1")
        assert (up.down, up.declared_user, up.declared_by, up.declared_auth) == (
            None,
            "tech1",
            "tech1",
            "session",
        )
        assert up.declared_reason == "PM done" and up.declared_at is not None
        await tech.declare_down("DB-1", "non_scheduled", "tech1", "no orders")

        await downgrade(engine, "0030")
        async with engine.connect() as conn:
            assert not COLUMNS & await conn.run_sync(_columns, "tools")
            kept = await conn.execute(text("SELECT down, down_by, down_reason FROM tools"))
            assert kept.all() == [("non_scheduled", "tech1", "no orders")]
        await upgrade(engine)
        async with engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
        after = await equipment.tool("DB-1")
        assert (after.down, after.down_reason, after.declared_by) == (
            "non_scheduled",
            "no orders",
            None,
        )
    finally:
        await engine.dispose()
