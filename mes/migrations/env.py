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
)
with context.begin_transaction():
    context.run_migrations()
