"""Alarm resets: an operator's request to reset a tool's alarm (who, why, when), which the
tool's line controller carries out, and what came of it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "tool_resets",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("tool_id", sa.String(32), nullable=False),
        sa.Column("line", sa.String(32), nullable=False),
        sa.Column("requested_by", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("requested_at", _ts(), nullable=False),
        sa.Column("expires_at", _ts(), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.Column("answered_at", _ts(), nullable=True),
        sa.Column("state_after", sa.String(12), nullable=True),
        sa.ForeignKeyConstraint(["tool_id"], ["tools.id"], name="fk_tool_resets_tool_id_tools"),
        sa.PrimaryKeyConstraint("id", name="pk_tool_resets"),
    )
    op.create_index("ix_tool_resets_line", "tool_resets", ["line", "status"])
    op.create_index("ix_tool_resets_tool_id", "tool_resets", ["tool_id", "requested_at"])


def downgrade() -> None:
    op.drop_index("ix_tool_resets_tool_id", table_name="tool_resets")
    op.drop_index("ix_tool_resets_line", table_name="tool_resets")
    op.drop_table("tool_resets")
