"""Alembic environment: migrations always run on a connection handed over by pkgline
(:mod:`mes.adapters.migrate`), inside its transaction and, on PostgreSQL, its advisory lock."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from mes.adapters.tables import metadata

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("run migrations with 'pkgline db upgrade' (mes.adapters.migrate)")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    # SQLite's DDL is transactional on pkgline's engines (BEGIN IMMEDIATE, mes.adapters.database):
    # every revision of one upgrade or downgrade in the one transaction, as on PostgreSQL, so
    # that a revision refusing to go down leaves the database where it was (Alembic would
    # otherwise commit each revision of SQLite on its own)
    transactional_ddl=True,
)
with context.begin_transaction():
    context.run_migrations()
