"""Revision 0029, a material lot's version and the signatures of its release from quarantine,
on SQLite and PostgreSQL: up gives each material lot the number of events of its history as
its version (and each event the number up to it); down goes while no release is signed, and
refuses, naming the material lots and changing nothing, once one is (a signature is kept for
good)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from mes.adapters.database import create_engine
from mes.adapters.migrate import downgrade, head_revision, upgrade
from mes.adapters.schema import schema_status
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.domain.authority import AuthMethod, Principal, Role
from mes.materials import MaterialService
from tests.mes.signers import Signers, signed
from tests.mes.test_migrations import DATABASES, _diff

AT = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
QUALITY = Principal("qa1", frozenset({Role.QUALITY}), AuthMethod.SESSION)


def _names(conn: Connection) -> tuple[set[str], set[str], set[str]]:
    found = inspect(conn)
    return (
        {str(c["name"]) for c in found.get_columns("materials")},
        {str(c["name"]) for c in found.get_columns("material_events")},
        set(found.get_table_names()),
    )


async def _rows(engine: AsyncEngine, query: str) -> list[tuple[object, ...]]:
    async with engine.connect() as conn:
        return [tuple(r) for r in await conn.execute(text(query))]


@pytest.mark.parametrize("database", DATABASES)
async def test_material_versions_go_up_and_down_until_a_release_is_signed(
    request: pytest.FixtureRequest, database: str
) -> None:
    engine = create_engine(request.getfixturevalue(database))
    try:
        await upgrade(engine, "0028")
        async with engine.connect() as conn:  # a quarantined wire spool, as 0028 kept it
            values = {"expires": AT + timedelta(days=90), "at": AT}
            await conn.execute(
                text(
                    "INSERT INTO materials (id, kind, expires_at, added_by, added_at, "
                    "thaw_minutes, quarantine_code, quarantine_reason, quarantined_by, "
                    "quarantined_at) VALUES ('W-1', 'wire', :expires, 'qa1', :at, 0, 'RECALL', "
                    "'kinks', 'qa1', :at), ('W-2', 'wire', :expires, 'qa1', :at, 0, NULL, "
                    "NULL, NULL, NULL)"
                ),
                values,
            )
            await conn.execute(
                text(
                    "INSERT INTO material_events (material_id, event, at, by) VALUES "
                    "('W-1', 'added', :at, 'qa1'), ('W-2', 'added', :at, 'qa1'), "
                    "('W-1', 'quarantined', :at, 'qa1')"
                ),
                values,
            )
            await conn.commit()
        await upgrade(engine, "0029")
        assert await _rows(engine, "SELECT id, version FROM materials ORDER BY id") == [
            ("W-1", 2),
            ("W-2", 1),
        ]
        assert await _rows(
            engine, "SELECT material_id, version FROM material_events ORDER BY seq"
        ) == [("W-1", 1), ("W-2", 1), ("W-1", 2)]

        await downgrade(engine, "0028")  # nothing signed yet: down, and up again
        async with engine.connect() as conn:
            materials, events, tables = await conn.run_sync(_names)
        assert "version" not in materials and {"version", "signatures"}.isdisjoint(events)
        assert "material_signatures" not in tables
        await upgrade(engine)
        async with engine.connect() as conn:
            assert await conn.run_sync(_diff) == []

        service = MaterialService(
            SqlUnitOfWorkFactory(engine), lambda: AT, principal=QUALITY, verifier=Signers([QUALITY])
        )
        seen = (await service.show("W-1")).material
        assert seen.version == 2
        await service.release("W-1", "supplier cleared it", "qa1", signatures=signed(QUALITY, seen))
        with pytest.raises(RuntimeError) as refused:
            await downgrade(engine, "0028")
        assert (
            "revision 0028 keeps no signature, and this database has signed releases of "
            "material lots from quarantine: W-1."
        ) in str(refused.value)
        assert "nothing was changed" in str(refused.value)
        assert (await schema_status(engine)).current == head_revision()  # all of it, undone
        assert await _rows(engine, "SELECT material_id, signer FROM material_signatures") == [
            ("W-1", "qa1")
        ]
    finally:
        await engine.dispose()
