"""One durable of a kind mounted on a tool, and one material lot of a kind loaded on it, kept
by the database: unique indexes on (tool_id, kind) of the mounted durables and of the loaded
material lots (partial: where tool_id is set).

Why: ``durable mount`` and ``material load`` refuse a second of a kind on a tool, but they
read what the tool has and then write, each in its own transaction. On PostgreSQL two such
commands at once (two technicians mounting two capillaries on WB-1) each read a tool with
none and both wrote: the tool had two capillaries, and each job counted on both. SQLite
takes its write lock before the read (BEGIN IMMEDIATE) and could not race. With the index,
the second write waits for the first and is refused (the command says so, nothing written).

Up refuses a database where a tool has two of a kind already (written by such a race),
naming them and what to do, and changes nothing.

Down: the two indexes go.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None

_ON_A_TOOL = "tool_id IS NOT NULL"
INDEXES = (
    ("ux_durables_tool_kind", "durables", "mounted", "durable unmount"),
    ("ux_materials_tool_kind", "materials", "loaded", "material unload"),
)


def upgrade() -> None:
    conn = op.get_bind()
    for _, table, done, undo in INDEXES:
        twice = conn.execute(
            sa.text(
                f"SELECT tool_id, kind, COUNT(*) AS n FROM {table} WHERE {_ON_A_TOOL} "
                "GROUP BY tool_id, kind HAVING COUNT(*) > 1 ORDER BY tool_id, kind"
            )
        ).all()
        if twice:
            found = "; ".join(f"{n} {kind} {done} on {tool}" for tool, kind, n in twice)
            raise RuntimeError(
                f"revision 0024 keeps one of a kind {done} on a tool, and this database has "
                f"more: {found}. Expected one: take the others off (pkgline {undo} ID, with "
                "a pkgline of the version before this one), then run pkgline db upgrade again"
            )
    for name, table, _, _ in INDEXES:
        op.create_index(
            name,
            table,
            ["tool_id", "kind"],
            unique=True,
            sqlite_where=sa.text(_ON_A_TOOL),
            postgresql_where=sa.text(_ON_A_TOOL),
        )


def downgrade() -> None:
    for name, table, _, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
