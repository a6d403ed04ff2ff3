"""Identity: users and their roles, API keys for systems, security events, signatures.

``security_events`` and ``signatures`` are append-only like the lot history (SQLite
triggers; on PostgreSQL a trigger calling ``pkgline_append_only()``, created here too if it is
not there yet, so that this revision stands on its own). The line controller gets its system
identity, ``controller``, with the role of the same name and no password.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
GUARDED = ("security_events", "signatures")


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _create_guards(table: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION pkgline_append_only()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION pkgline_append_only()"
        )
        return
    for action in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {action} refused'); END"
        )


def upgrade() -> None:
    users = op.create_table(
        "users",
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("full_name", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("roles", JSON, nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=True),
        sa.Column("failed_attempts", sa.Integer(), nullable=False),
        sa.Column("locked_until", _ts(), nullable=True),
        sa.Column("password_changed_at", _ts(), nullable=True),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("username", name="pk_users"),
    )
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("revoked_at", _ts(), nullable=True),
        sa.Column("revoked_by", sa.String(64), nullable=True),
        sa.ForeignKeyConstraint(
            ["username"], ["users.username"], name="fk_api_keys_username_users"
        ),
        sa.PrimaryKeyConstraint("key_id", name="pk_api_keys"),
    )
    op.create_index("ix_api_keys_username", "api_keys", ["username"])
    op.create_table(
        "security_events",
        sa.Column("seq", SEQ, autoincrement=True, nullable=False),
        sa.Column("at", _ts(), nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("method", sa.String(16), nullable=True),
        sa.Column("subject", sa.String(64), nullable=True),
        sa.Column("action", sa.String(24), nullable=True),
        sa.Column("lot_id", sa.String(32), nullable=True),
        sa.Column("detail", JSON, nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_security_events"),
    )
    op.create_index("ix_security_events_at", "security_events", ["at"])
    op.create_table(
        "signatures",
        sa.Column("seq", SEQ, autoincrement=True, nullable=False),
        sa.Column("entry_hash", sa.String(64), nullable=False),
        sa.Column("lot_id", sa.String(32), nullable=False),
        sa.Column("signer", sa.String(64), nullable=False),
        sa.Column("printed_name", sa.Text(), nullable=False),
        sa.Column("meaning", sa.Text(), nullable=False),
        sa.Column("at", _ts(), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_signatures"),
    )
    op.create_index("ix_signatures_entry_hash", "signatures", ["entry_hash"])
    now = datetime.now(UTC)
    op.bulk_insert(
        users,
        [
            {
                "username": "controller",
                "full_name": "Line controller (system)",
                "kind": "system",
                "roles": ["controller"],
                "disabled": False,
                "password_hash": None,
                "failed_attempts": 0,
                "locked_until": None,
                "password_changed_at": None,
                "created_at": now,
                "created_by": "pkgline db upgrade",
                "updated_at": now,
            }
        ],
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE OR REPLACE FUNCTION pkgline_append_only() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION '% is append-only: % refused', "
            "TG_TABLE_NAME, TG_OP USING ERRCODE = 'insufficient_privilege'; END $$"
        )
    for table in GUARDED:
        _create_guards(table)


def downgrade() -> None:
    # Dropping a table drops its triggers; pkgline_append_only() stays for revision 0004.
    op.drop_index("ix_signatures_entry_hash", table_name="signatures")
    op.drop_table("signatures")
    op.drop_index("ix_security_events_at", table_name="security_events")
    op.drop_table("security_events")
    op.drop_index("ix_api_keys_username", table_name="api_keys")
    op.drop_table("api_keys")
    op.drop_table("users")
