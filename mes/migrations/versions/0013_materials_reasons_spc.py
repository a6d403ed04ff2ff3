"""Consumable material lots with their clocks (expiry, thaw, floor life), the tool each is
loaded on, their history, and which material lots went into which product lot; quality's
hold and scrap reason codes; SPC charts per (step, measured value, tool) and their points.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
AT = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "materials",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("expires_at", AT, nullable=False),
        sa.Column("added_by", sa.String(64), nullable=False),
        sa.Column("added_at", AT, nullable=False),
        sa.Column("thaw_minutes", sa.Integer(), nullable=False),
        sa.Column("floor_life_minutes", sa.Integer(), nullable=True),
        sa.Column("thawed_at", AT, nullable=True),
        sa.Column("tool_id", sa.String(32), nullable=True),
        sa.Column("loaded_at", AT, nullable=True),
        sa.Column("part_number", sa.String(64), nullable=True),
        sa.ForeignKeyConstraint(["tool_id"], ["tools.id"], name="fk_materials_tool_id_tools"),
        sa.PrimaryKeyConstraint("id", name="pk_materials"),
    )
    op.create_index("ix_materials_tool_id", "materials", ["tool_id"])
    op.create_table(
        "material_events",
        sa.Column("seq", SEQ, autoincrement=True, nullable=False),
        sa.Column("material_id", sa.String(32), nullable=False),
        sa.Column("event", sa.String(12), nullable=False),
        sa.Column("at", AT, nullable=False),
        sa.Column("by", sa.String(64), nullable=False),
        sa.Column("tool_id", sa.String(32), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["material_id"], ["materials.id"], name="fk_material_events_material_id_materials"
        ),
        sa.PrimaryKeyConstraint("seq", name="pk_material_events"),
    )
    op.create_index("ix_material_events_material_id", "material_events", ["material_id", "seq"])
    op.create_table(
        "material_uses",
        sa.Column("seq", SEQ, autoincrement=True, nullable=False),
        sa.Column("material_id", sa.String(32), nullable=False),
        sa.Column("lot_id", sa.String(32), nullable=False),
        sa.Column("step", sa.String(32), nullable=False),
        sa.Column("tool_id", sa.String(32), nullable=False),
        sa.Column("at", AT, nullable=False),
        sa.ForeignKeyConstraint(
            ["material_id"], ["materials.id"], name="fk_material_uses_material_id_materials"
        ),
        sa.ForeignKeyConstraint(["lot_id"], ["lots.id"], name="fk_material_uses_lot_id_lots"),
        sa.PrimaryKeyConstraint("seq", name="pk_material_uses"),
    )
    op.create_index("ix_material_uses_material_id", "material_uses", ["material_id"])
    op.create_index("ix_material_uses_lot_id", "material_uses", ["lot_id"])
    op.create_table(
        "reason_codes",
        sa.Column("code", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("release_roles", JSON, nullable=False),
        sa.Column("added_by", sa.String(64), nullable=False),
        sa.Column("added_at", AT, nullable=False),
        sa.Column("retired_by", sa.String(64), nullable=True),
        sa.Column("retired_at", AT, nullable=True),
        sa.Column("retired_reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("code", name="pk_reason_codes"),
    )

    op.create_table(
        "spc_charts",
        sa.Column("step", sa.String(32), nullable=False),
        sa.Column("value", sa.String(64), nullable=False),
        sa.Column("tool_id", sa.String(32), nullable=False),
        sa.Column("baseline_n", sa.Integer(), nullable=False),
        sa.Column("nelson", sa.Boolean(), nullable=False),
        sa.Column("inhibit", sa.Boolean(), nullable=False),
        sa.Column("set_by", sa.String(64), nullable=False),
        sa.Column("set_at", AT, nullable=False),
        sa.Column("limits", JSON, nullable=True),
        sa.ForeignKeyConstraint(["tool_id"], ["tools.id"], name="fk_spc_charts_tool_id_tools"),
        sa.PrimaryKeyConstraint("step", "value", "tool_id", name="pk_spc_charts"),
    )
    op.create_index("ix_spc_charts_tool_id", "spc_charts", ["tool_id", "step"])
    op.create_table(
        "spc_points",
        sa.Column("seq", SEQ, autoincrement=True, nullable=False),
        sa.Column("step", sa.String(32), nullable=False),
        sa.Column("value", sa.String(64), nullable=False),
        sa.Column("tool_id", sa.String(32), nullable=False),
        sa.Column("lot_id", sa.String(32), nullable=False),
        sa.Column("at", AT, nullable=False),
        sa.Column("x", JSON, nullable=False),
        sa.Column("rules", JSON, nullable=False),
        sa.ForeignKeyConstraint(["lot_id"], ["lots.id"], name="fk_spc_points_lot_id_lots"),
        sa.PrimaryKeyConstraint("seq", name="pk_spc_points"),
    )
    op.create_index("ix_spc_points_chart", "spc_points", ["step", "value", "tool_id", "seq"])


def downgrade() -> None:
    op.drop_index("ix_spc_points_chart", table_name="spc_points")
    op.drop_table("spc_points")
    op.drop_index("ix_spc_charts_tool_id", table_name="spc_charts")
    op.drop_table("spc_charts")
    op.drop_table("reason_codes")
    op.drop_index("ix_material_uses_lot_id", table_name="material_uses")
    op.drop_index("ix_material_uses_material_id", table_name="material_uses")
    op.drop_table("material_uses")
    op.drop_index("ix_material_events_material_id", table_name="material_events")
    op.drop_table("material_events")
    op.drop_index("ix_materials_tool_id", table_name="materials")
    op.drop_table("materials")
