"""Track-in interlocks: engineering's qualification of each tool for each step.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tool_qualifications",
        sa.Column("tool_id", sa.String(32), nullable=False),
        sa.Column("step", sa.String(32), nullable=False),
        sa.Column("qualified", sa.Boolean(), nullable=False),
        sa.Column("by", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["tool_id"], ["tools.id"], name="fk_tool_qualifications_tool_id_tools"
        ),
        sa.PrimaryKeyConstraint("tool_id", "step", name="pk_tool_qualifications"),
    )
    op.create_index("ix_tool_qualifications_step", "tool_qualifications", ["step"])


def downgrade() -> None:
    op.drop_index("ix_tool_qualifications_step", table_name="tool_qualifications")
    op.drop_table("tool_qualifications")
