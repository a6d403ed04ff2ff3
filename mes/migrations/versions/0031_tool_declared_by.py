"""Who last declared a tool down or brought it up, and how they were known, why and when
(``tools.declared_user``, ``declared_by``, ``declared_auth``, ``declared_reason``,
``declared_at``), kept once the tool is up.

Why: the tool-state on the event feed said the tool was ``scheduled_down`` but not who
declared it nor why, and a bring-up left nothing of who did it (``down_by`` and
``down_reason`` are the declaration in force, emptied on ``tool up``); a lot event says who
acted and how they were known (``by``, ``auth``), a tool's declaration now does too.

Up: the columns, empty (a tool declared down before keeps its ``down_by``, ``down_reason``
and ``down_at``, which the feed gives with ``by`` and ``auth`` null). Down: the columns go;
the security log keeps every declaration (``tool_down``).

Revision ID: 0031
Revises: 0030
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0031"
down_revision = "0030"
branch_labels = None
depends_on = None

COLUMNS = ("declared_user", "declared_by", "declared_auth", "declared_reason", "declared_at")


def upgrade() -> None:
    op.add_column("tools", sa.Column("declared_user", sa.String(64)))
    op.add_column("tools", sa.Column("declared_by", sa.String(64)))
    op.add_column("tools", sa.Column("declared_auth", sa.String(16)))
    op.add_column("tools", sa.Column("declared_reason", sa.Text()))
    op.add_column("tools", sa.Column("declared_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    # Dropped in place (SQLite 3.35+), as revision 0030 drops its columns.
    for column in reversed(COLUMNS):
        op.drop_column("tools", column)
