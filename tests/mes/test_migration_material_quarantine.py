"""Revision 0027, a material lot's quarantine, on SQLite and PostgreSQL: up keeps every
material lot there is not quarantined; down refuses, naming them and changing nothing, while
a material lot is quarantined (the revision before would use it again), and goes down and
up again once none is."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from mes.adapters.database import create_engine
from mes.adapters.migrate import downgrade, upgrade
from mes.adapters.schema import schema_status
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.materials import MaterialService
from tests.mes.test_migrations import DATABASES, _diff

AT = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
COLUMNS = {"quarantine_code", "quarantine_reason", "quarantined_by", "quarantined_at"}


async def _quarantined(conn: AsyncConnection) -> list[bool]:
    """Which material lots are quarantined (as revision 0027 says: a time, or null)."""
    rows = await conn.execute(text("SELECT quarantined_at FROM materials ORDER BY id"))
    return [r[0] is not None for r in rows]


def _columns(conn: Connection, table: str) -> set[str]:
    return {str(c["name"]) for c in inspect(conn).get_columns(table)}


@pytest.mark.parametrize("database", DATABASES)
async def test_the_quarantine_goes_down_only_when_no_material_lot_is_quarantined(
    request: pytest.FixtureRequest, database: str
) -> None:
    engine = create_engine(request.getfixturevalue(database))
    try:
        await upgrade(engine, "0026")
        async with engine.connect() as conn:  # a material lot as revision 0026 kept it
            await conn.execute(
                text(
                    "INSERT INTO materials (id, kind, expires_at, added_by, added_at, "
                    "thaw_minutes) VALUES ('W-1', 'wire', :expires, 'qa1', :at, 0)"
                ),
                {"expires": AT + timedelta(days=90), "at": AT},
            )
            await conn.commit()
        await upgrade(engine, "0027")
        async with engine.connect() as conn:  # quarantined as revision 0027 keeps it
            assert await _quarantined(conn) == [False]
            await conn.execute(
                text(
                    "UPDATE materials SET quarantine_code = 'RECALL', quarantine_reason = "
                    "'kinks', quarantined_by = 'qa1', quarantined_at = :at"
                ),
                {"at": AT},
            )
            await conn.commit()

        with pytest.raises(RuntimeError) as refused:
            await downgrade(engine, "0026")
        assert (
            "revision 0026 knows no quarantine, and this database has quarantined material "
            "lots: W-1."
        ) in str(refused.value)
        assert "nothing was changed" in str(refused.value)
        assert (await schema_status(engine)).current == "0027"
        async with engine.connect() as conn:
            assert await _quarantined(conn) == [True]
            # released (what the message asks), as revision 0027 did
            await conn.execute(
                text(
                    "UPDATE materials SET quarantine_code = NULL, quarantine_reason = NULL, "
                    "quarantined_by = NULL, quarantined_at = NULL"
                )
            )
            await conn.commit()
        await downgrade(engine, "0026")
        async with engine.connect() as conn:
            assert COLUMNS.isdisjoint(await conn.run_sync(_columns, "materials"))
        await upgrade(engine)
        async with engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
        materials = MaterialService(SqlUnitOfWorkFactory(engine), lambda: AT)
        assert (await materials.show("W-1")).material.quarantine is None
    finally:
        await engine.dispose()
