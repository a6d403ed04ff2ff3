"""The line's lot history as a list (``lot history --tool/--user``, ``GET /history``):
indexes on lot_history (tool, seq) and ("user", seq), so that one tool's or one person's
entries, newest first, are read along an index, not by scanning the history of every lot
(a plant's years).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_lot_history_tool", "lot_history", ["tool", "seq"])
    op.create_index("ix_lot_history_user", "lot_history", ["user", "seq"])


def downgrade() -> None:
    op.drop_index("ix_lot_history_user", table_name="lot_history")
    op.drop_index("ix_lot_history_tool", table_name="lot_history")
