"""A person's declaration that a tool is out of production (``tools.down``: SEMI E10
``scheduled_down`` for planned maintenance, ``non_scheduled`` for a tool not scheduled for
production), who made it, when and why, and the state the tool reports meanwhile
(``tools.reported_e10``).

Why: planned maintenance declared in pkgline was counted as standby (only a tool whose own
mode said MAINTENANCE was scheduled down), and nothing recorded non-scheduled time, so
availability and utilization were wrong and a track-in was not refused.

Up: no tool is declared down.

Down: a declared tool returns to the state it reports (the revision before knows no
declaration); its E10 history keeps the declared time. Then the columns go.

Revision ID: 0030
Revises: 0029
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0030"
down_revision = "0029"
branch_labels = None
depends_on = None

COLUMNS = ("down", "down_reason", "down_by", "down_at", "reported_e10")


def upgrade() -> None:
    op.add_column("tools", sa.Column("down", sa.String(20)))
    op.add_column("tools", sa.Column("down_reason", sa.Text()))
    op.add_column("tools", sa.Column("down_by", sa.String(64)))
    op.add_column("tools", sa.Column("down_at", sa.DateTime(timezone=True)))
    op.add_column("tools", sa.Column("reported_e10", sa.String(20)))


def downgrade() -> None:
    op.execute(
        "UPDATE tools SET e10 = reported_e10 WHERE down IS NOT NULL AND reported_e10 IS NOT NULL"
    )
    # Dropped in place (SQLite 3.35+), as revision 0026 drops its columns.
    for column in reversed(COLUMNS):
        op.drop_column("tools", column)
