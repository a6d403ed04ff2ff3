"""Revision 0027, a material lot's quarantine, on SQLite and PostgreSQL: up keeps every
material lot there is not quarantined; down refuses, naming them and changing nothing, while
a material lot is quarantined (the revision before would use it again), and goes down and
up again once none is."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from mes.adapters.database import create_engine
from mes.adapters.migrate import downgrade, upgrade
from mes.adapters.schema import schema_status
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.materials import MaterialService
from mes.reasons import ReasonService
from tests.mes.test_migrations import DATABASES, _diff

AT = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
COLUMNS = {"quarantine_code", "quarantine_reason", "quarantined_by", "quarantined_at"}


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
        factory = SqlUnitOfWorkFactory(engine)
        materials = MaterialService(factory, lambda: AT)
        assert (await materials.show("W-1")).material.quarantine is None
        await ReasonService(factory, lambda: AT).add("RECALL", "hold", "Material recall", "qa1")
        await materials.quarantine("W-1", "RECALL", "kinks", "qa1")

        with pytest.raises(RuntimeError) as refused:
            await downgrade(engine, "0026")
        assert (
            "revision 0026 knows no quarantine, and this database has quarantined material "
            "lots: W-1."
        ) in str(refused.value)
        assert "nothing was changed" in str(refused.value)
        assert (await schema_status(engine)).current == "0027"
        assert (await materials.show("W-1")).material.quarantine is not None

        await materials.release("W-1", "supplier cleared it", "qa1")  # what the message asks
        await downgrade(engine, "0026")
        async with engine.connect() as conn:
            assert COLUMNS.isdisjoint(await conn.run_sync(_columns, "materials"))
        await upgrade(engine)
        async with engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
        assert (await materials.show("W-1")).material.quarantine is None
    finally:
        await engine.dispose()
