"""The server's sessions: a password login gives an expiring token, stored hashed (SHA-256
of its random secret) so that it can be ended (logout) and expires on the server's word.

Revision ID: 0009
Revises: 0011
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0011"
branch_labels = None
depends_on = None


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "api_sessions",
        sa.Column("session_id", sa.String(16), nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("expires_at", _ts(), nullable=False),
        sa.Column("revoked_at", _ts(), nullable=True),
        sa.ForeignKeyConstraint(
            ["username"], ["users.username"], name="fk_api_sessions_username_users"
        ),
        sa.PrimaryKeyConstraint("session_id", name="pk_api_sessions"),
    )
    op.create_index("ix_api_sessions_username", "api_sessions", ["username"])


def downgrade() -> None:
    op.drop_index("ix_api_sessions_username", table_name="api_sessions")
    op.drop_table("api_sessions")
