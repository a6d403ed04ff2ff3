"""Jobs: one carrier of a lot's step on a tool, recorded before the tool forgets it.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("job_id", sa.String(32), nullable=False),
        sa.Column("lot_id", sa.String(32), nullable=False),
        sa.Column("tool_id", sa.String(32), nullable=False),
        sa.Column("step", sa.String(32), nullable=False),
        sa.Column("path_index", sa.Integer(), nullable=False),
        sa.Column("carrier_id", sa.String(48), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("measured", JSON, nullable=False),
        sa.Column("rejects", JSON, nullable=False),
        sa.Column("tool_data", JSON, nullable=False),
        sa.ForeignKeyConstraint(["lot_id"], ["lots.id"], name="fk_jobs_lot_id_lots"),
        sa.ForeignKeyConstraint(
            ["carrier_id"], ["carriers.id"], name="fk_jobs_carrier_id_carriers"
        ),
        sa.PrimaryKeyConstraint("job_id", name="pk_jobs"),
    )
    op.create_index("ix_jobs_carrier_id", "jobs", ["carrier_id", "path_index"])
    op.create_index("ix_jobs_tool_id", "jobs", ["tool_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_jobs_tool_id", table_name="jobs")
    op.drop_index("ix_jobs_carrier_id", table_name="jobs")
    op.drop_table("jobs")
