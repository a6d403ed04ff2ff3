"""Durables with life counters (capillaries, saw blades, mold chases, stencils, nozzles),
the tool each is mounted on, and each one's history (which lots it served).

Revision ID: 0012
Revises: 0014
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0014"
branch_labels = None
depends_on = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "durables",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("life", sa.BigInteger(), nullable=False),
        sa.Column("warn_permille", sa.Integer(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("added_by", sa.String(64), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tool_id", sa.String(32), nullable=True),
        sa.Column("mounted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["tool_id"], ["tools.id"], name="fk_durables_tool_id_tools"),
        sa.PrimaryKeyConstraint("id", name="pk_durables"),
    )
    op.create_index("ix_durables_tool_id", "durables", ["tool_id"])
    op.create_table(
        "durable_events",
        sa.Column("seq", SEQ, autoincrement=True, nullable=False),
        sa.Column("durable_id", sa.String(32), nullable=False),
        sa.Column("event", sa.String(12), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("by", sa.String(64), nullable=False),
        sa.Column("count_after", sa.BigInteger(), nullable=False),
        sa.Column("tool_id", sa.String(32), nullable=True),
        sa.Column("lot_id", sa.String(32), nullable=True),
        sa.Column("step", sa.String(32), nullable=True),
        sa.Column("job_id", sa.String(32), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["durable_id"], ["durables.id"], name="fk_durable_events_durable_id_durables"
        ),
        sa.PrimaryKeyConstraint("seq", name="pk_durable_events"),
    )
    op.create_index("ix_durable_events_durable_id", "durable_events", ["durable_id", "seq"])
    op.create_index("ix_durable_events_lot_id", "durable_events", ["lot_id"])


def downgrade() -> None:
    op.drop_index("ix_durable_events_lot_id", table_name="durable_events")
    op.drop_index("ix_durable_events_durable_id", table_name="durable_events")
    op.drop_table("durable_events")
    op.drop_index("ix_durables_tool_id", table_name="durables")
    op.drop_table("durables")
