"""Equipment: the tools each line controller owns, their SEMI E10 state changes, and the
controllers' heartbeats.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "tools",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("line", sa.String(32), nullable=False),
        sa.Column("equipment_class", sa.String(16), nullable=False),
        sa.Column("address", sa.String(128), nullable=False),
        sa.Column("steps", JSON, nullable=False),
        sa.Column("dispatch", sa.String(8), nullable=False),
        sa.Column("dispatch_reason", sa.Text(), nullable=True),
        sa.Column("dispatch_by", sa.String(64), nullable=True),
        sa.Column("dispatch_at", _ts(), nullable=True),
        sa.Column("connected", sa.Boolean(), nullable=False),
        sa.Column("e10", sa.String(20), nullable=False),
        sa.Column("e10_since", _ts(), nullable=False),
        sa.Column("process_state", sa.String(12), nullable=True),
        sa.Column("mode", sa.String(12), nullable=True),
        sa.Column("alarm", JSON, nullable=True),
        sa.Column("job_id", sa.String(32), nullable=True),
        sa.Column("lot_id", sa.String(32), nullable=True),
        sa.Column("sites_done", sa.Integer(), nullable=False),
        sa.Column("sites_total", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tools"),
    )
    op.create_index("ix_tools_line", "tools", ["line"])
    op.create_table(
        "tool_states",
        sa.Column("seq", SEQ, autoincrement=True, nullable=False),
        sa.Column("tool_id", sa.String(32), nullable=False),
        sa.Column("at", _ts(), nullable=False),
        sa.Column("e10", sa.String(20), nullable=False),
        sa.Column("process_state", sa.String(12), nullable=True),
        sa.Column("connected", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["tool_id"], ["tools.id"], name="fk_tool_states_tool_id_tools"),
        sa.PrimaryKeyConstraint("seq", name="pk_tool_states"),
    )
    op.create_index("ix_tool_states_tool_id", "tool_states", ["tool_id", "at"])
    op.create_table(
        "controllers",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("host", sa.String(128), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", _ts(), nullable=False),
        sa.Column("heartbeat_at", _ts(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("tools", JSON, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_controllers"),
    )


def downgrade() -> None:
    op.drop_table("controllers")
    op.drop_index("ix_tool_states_tool_id", table_name="tool_states")
    op.drop_table("tool_states")
    op.drop_index("ix_tools_line", table_name="tools")
    op.drop_table("tools")
