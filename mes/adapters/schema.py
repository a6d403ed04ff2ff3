"""The schema revision this code needs, checked cheaply on every start.

``SCHEMA_REVISION`` (kept in :mod:`mes.adapters.location`, which imports no SQLAlchemy) must
name the head of the Alembic revisions in ``mes/migrations`` (a test keeps them equal). Checking it is one query, without loading Alembic: the CLI does it on
every command.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from mes.adapters.database import READONLY
from mes.adapters.location import SCHEMA_REVISION as SCHEMA_REVISION


class SchemaMismatch(RuntimeError):
    """The database's schema revision is not the one this code was written for."""


@dataclass(frozen=True, slots=True)
class SchemaStatus:
    current: str | None
    head: str = SCHEMA_REVISION

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision recorded in the database, None when it has no pkgline schema."""
    # A read: on SQLite a plain BEGIN, which a writer holding the lock does not hold up (every
    # command and start checks this first; under BEGIN IMMEDIATE a long write elsewhere made
    # even `line status` wait for it, then fail).
    async with engine.connect() as plain:
        conn = await plain.execution_options(**{READONLY: True})
        exists = await conn.run_sync(lambda sync: sync.dialect.has_table(sync, "alembic_version"))
        if not exists:
            return None
        try:
            row = (await conn.execute(text("SELECT version_num FROM alembic_version"))).first()
        except DBAPIError:
            return None
        return None if row is None else str(row[0])


async def schema_status(engine: AsyncEngine) -> SchemaStatus:
    return SchemaStatus(await current_revision(engine))


async def require_current_schema(engine: AsyncEngine) -> None:
    """Refuse to work on a database whose schema is not this code's."""
    status = await schema_status(engine)
    if not status.up_to_date:
        found = "no pkgline schema" if status.current is None else f"revision {status.current}"
        owner = (
            " (on PostgreSQL as the tables' owner: --as-role pkgline_owner, docs/operations.md)"
            if engine.dialect.name == "postgresql"
            else ""
        )
        raise SchemaMismatch(
            f"the database has {found}, this pkgline needs revision {status.head}: "
            f"run 'pkgline db upgrade'{owner}"
        )
