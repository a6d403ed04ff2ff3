"""Versioned flows: published flow versions (immutable content, a state) and their approvals.

Revision ID: 0011
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0011"
down_revision = "0008"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "flow_versions",
        sa.Column("flow", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("files", JSON, nullable=False),
        sa.Column("author", sa.String(64), nullable=False),
        sa.Column("published_at", _ts(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("retired_at", _ts(), nullable=True),
        sa.Column("retired_by", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("flow", "version", name="pk_flow_versions"),
        sa.UniqueConstraint("flow", "content_hash", name="uq_flow_versions_content"),
    )
    op.create_table(
        "flow_approvals",
        sa.Column("seq", SEQ, autoincrement=True, nullable=False),
        sa.Column("flow", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("signer", sa.String(64), nullable=False),
        sa.Column("printed_name", sa.Text(), nullable=False),
        sa.Column("meaning", sa.Text(), nullable=False),
        sa.Column("at", _ts(), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.ForeignKeyConstraint(
            ["flow", "version"],
            ["flow_versions.flow", "flow_versions.version"],
            name="fk_flow_approvals_flow_flow_versions",
        ),
        sa.PrimaryKeyConstraint("seq", name="pk_flow_approvals"),
    )
    op.create_index("ix_flow_approvals_version", "flow_approvals", ["flow", "version"])
    if op.get_bind().dialect.name == "postgresql":
        # pkgline_append_only() is revision 0004's: approvals are never changed or removed.
        op.execute(
            "CREATE TRIGGER flow_approvals_append_only BEFORE UPDATE OR DELETE ON flow_approvals "
            "FOR EACH ROW EXECUTE FUNCTION pkgline_append_only()"
        )
    else:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER flow_approvals_no_{action.lower()} BEFORE {action} ON "
                f"flow_approvals BEGIN SELECT RAISE(ABORT, 'flow_approvals is append-only: "
                f"{action} refused'); END"
            )


def downgrade() -> None:
    op.drop_index("ix_flow_approvals_version", table_name="flow_approvals")
    op.drop_table("flow_approvals")
    op.drop_table("flow_versions")
