"""Lots, carriers, rejected sites, lot history and the outbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "lots",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("flow", sa.String(64), nullable=False),
        sa.Column("flow_version", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("params", JSON, nullable=False),
        sa.Column("site_rows", sa.Integer(), nullable=False),
        sa.Column("site_cols", sa.Integer(), nullable=False),
        sa.Column("total_sites", sa.Integer(), nullable=False),
        sa.Column("good_sites", sa.Integer(), nullable=False),
        sa.Column("units", sa.Integer(), nullable=True),
        sa.Column("path", JSON, nullable=False),
        sa.Column("recorded", JSON, nullable=False),
        sa.Column("running", JSON, nullable=True),
        sa.Column("hold", JSON, nullable=True),
        sa.Column("rework_counts", JSON, nullable=False),
        sa.Column("pending_rework", sa.String(32), nullable=True),
        sa.Column("parent_id", sa.String(32), nullable=True),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["parent_id"], ["lots.id"], name="fk_lots_parent_id_lots"),
        sa.PrimaryKeyConstraint("id", name="pk_lots"),
    )
    op.create_index("ix_lots_state_priority", "lots", ["state", "priority", "created_at"])
    op.create_index("ix_lots_parent_id", "lots", ["parent_id"])

    op.create_table(
        "carriers",
        sa.Column("id", sa.String(48), nullable=False),
        sa.Column("lot_id", sa.String(32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("cols", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["lot_id"], ["lots.id"], name="fk_carriers_lot_id_lots"),
        sa.PrimaryKeyConstraint("id", name="pk_carriers"),
    )
    op.create_index("ix_carriers_lot_id", "carriers", ["lot_id", "position"])

    op.create_table(
        "site_rejects",
        sa.Column("id", SEQ, autoincrement=True, nullable=False),
        sa.Column("carrier_id", sa.String(48), nullable=False),
        sa.Column("row", sa.Integer(), nullable=False),
        sa.Column("col", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(24), nullable=False),
        sa.Column("step", sa.String(32), nullable=False),
        sa.Column("path_index", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["carrier_id"], ["carriers.id"], name="fk_site_rejects_carrier_id_carriers"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_site_rejects"),
        sa.UniqueConstraint("carrier_id", "row", "col", name="uq_site_rejects_site"),
    )

    op.create_table(
        "lot_history",
        sa.Column("seq", SEQ, autoincrement=True, nullable=False),
        sa.Column("lot_id", sa.String(32), nullable=False),
        sa.Column("at", _ts(), nullable=False),
        sa.Column("user", sa.String(64), nullable=False),
        sa.Column("operation", sa.String(16), nullable=False),
        sa.Column("state_before", sa.String(16), nullable=True),
        sa.Column("state_after", sa.String(16), nullable=False),
        sa.Column("step", sa.String(32), nullable=True),
        sa.Column("tool", sa.String(32), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("data", JSON, nullable=False),
        sa.ForeignKeyConstraint(["lot_id"], ["lots.id"], name="fk_lot_history_lot_id_lots"),
        sa.PrimaryKeyConstraint("seq", name="pk_lot_history"),
    )
    op.create_index("ix_lot_history_lot_id", "lot_history", ["lot_id", "seq"])

    op.create_table(
        "outbox",
        sa.Column("seq", SEQ, autoincrement=True, nullable=False),
        sa.Column("lot_id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("published_at", _ts(), nullable=True),
        sa.PrimaryKeyConstraint("seq", name="pk_outbox"),
    )
    op.create_index("ix_outbox_unpublished", "outbox", ["published_at", "seq"])


def downgrade() -> None:
    op.drop_index("ix_outbox_unpublished", table_name="outbox")
    op.drop_table("outbox")
    op.drop_index("ix_lot_history_lot_id", table_name="lot_history")
    op.drop_table("lot_history")
    op.drop_table("site_rejects")
    op.drop_index("ix_carriers_lot_id", table_name="carriers")
    op.drop_table("carriers")
    op.drop_index("ix_lots_parent_id", table_name="lots")
    op.drop_index("ix_lots_state_priority", table_name="lots")
    op.drop_table("lots")
