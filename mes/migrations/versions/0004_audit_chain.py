"""The lot history becomes tamper-evident: a hash chain and append-only guards.

Every history entry gets ``prev_hash`` and ``hash`` (mes.domain.audit, docs/security.md), and
``by`` and ``auth`` (the principal who acted and how it was known; unknown before), each
lot the hash of its newest entry (``history_head``), and ``audit_heads`` the head of the chain
over lots. Entries that exist already are chained here, in ``seq`` order, so that ``pkgline
audit verify`` passes on an upgraded database: from this revision on, the record says what it
was at the upgrade. The database then refuses UPDATE and DELETE on ``lot_history`` (SQLite
triggers; on PostgreSQL a trigger, which also refuses TRUNCATE).

Self-contained on purpose: the hashing below is a frozen copy of format 1 of
mes.domain.audit.canonical (a test checks that an upgraded database verifies). A later
revision that rebuilds ``lot_history`` (SQLite batch mode copies a table and drops the old one,
and its triggers with it) must create the guards again (``create_guards``).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

GENESIS = "0" * 64
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
GUARDED = ("lot_history",)

_history = sa.table(
    "lot_history",
    sa.column("seq", sa.BigInteger()),
    sa.column("lot_id", sa.String()),
    sa.column("at", sa.DateTime(timezone=True)),
    sa.column("user", sa.String()),
    sa.column("operation", sa.String()),
    sa.column("state_before", sa.String()),
    sa.column("state_after", sa.String()),
    sa.column("step", sa.String()),
    sa.column("tool", sa.String()),
    sa.column("reason", sa.Text()),
    sa.column("data", JSON),
    sa.column("prev_hash", sa.String()),
    sa.column("hash", sa.String()),
)
_lots = sa.table("lots", sa.column("id", sa.String()), sa.column("history_head", sa.String()))


def _normal(value: Any) -> Any:
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {str(k): _normal(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normal(v) for v in value]
    return value


def _hash(row: sa.RowMapping, prev: str) -> str:
    at: datetime = row["at"]
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    content = {
        "v": 1,
        "prev": prev,
        "lot": row["lot_id"],
        "at": at.isoformat(timespec="microseconds"),
        "user": row["user"],
        "operation": row["operation"],
        "state_before": row["state_before"],
        "state_after": row["state_after"],
        "step": row["step"],
        "tool": row["tool"],
        "reason": row["reason"],
        "data": _normal(row["data"]),
        "by": None,
        "auth": None,
    }
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _chain_existing(conn: sa.Connection) -> str:
    """Chain the entries there are, in seq order; returns the head of the chain over lots."""
    lots_head = GENESIS
    heads: dict[str, str] = {}
    last = 0
    while True:
        rows = (
            conn.execute(
                sa.select(_history)
                .where(_history.c.seq > last)
                .order_by(_history.c.seq)
                .limit(2000)
            )
            .mappings()
            .all()
        )
        if not rows:
            break
        updates = []
        for row in rows:
            prev = heads.get(row["lot_id"], lots_head)
            digest = _hash(row, prev)
            if row["lot_id"] not in heads:
                lots_head = digest
            heads[row["lot_id"]] = digest
            updates.append({"b_seq": row["seq"], "prev_hash": prev, "hash": digest})
        conn.execute(
            _history.update()
            .where(_history.c.seq == sa.bindparam("b_seq"))
            .values(prev_hash=sa.bindparam("prev_hash"), hash=sa.bindparam("hash")),
            updates,
        )
        last = rows[-1]["seq"]
    if heads:
        conn.execute(
            _lots.update()
            .where(_lots.c.id == sa.bindparam("b_id"))
            .values(history_head=sa.bindparam("head")),
            [{"b_id": lot_id, "head": head} for lot_id, head in heads.items()],
        )
    return lots_head


def create_guards(table: str) -> None:
    """Make ``table`` append-only: UPDATE and DELETE (and TRUNCATE) are refused."""
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


def drop_guards(table: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        return
    for action in ("update", "delete"):
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{action}")


def upgrade() -> None:
    conn = op.get_bind()
    # NOT NULL from the start, with a placeholder that the chaining below replaces: SQLite
    # can add such a column in place, but could not make a column NOT NULL later without
    # rebuilding ``lots``, which its foreign keys forbid. PostgreSQL drops the default after.
    added = (("lot_history", "prev_hash"), ("lot_history", "hash"), ("lots", "history_head"))
    for table, column in added:
        op.add_column(table, sa.Column(column, sa.String(64), nullable=False, server_default=""))
    # Who acted as the service knew it (the principal), and how: unknown before.
    op.add_column("lot_history", sa.Column("by", sa.String(64), nullable=True))
    op.add_column("lot_history", sa.Column("auth", sa.String(16), nullable=True))
    audit_heads = op.create_table(
        "audit_heads",
        sa.Column("chain", sa.String(16), nullable=False),
        sa.Column("head", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("chain", name="pk_audit_heads"),
    )
    lots_head = _chain_existing(conn)
    op.bulk_insert(audit_heads, [{"chain": "lots", "head": lots_head}])
    if conn.dialect.name == "postgresql":
        for table, column in added:
            op.alter_column(table, column, server_default=None)
        op.execute(
            "CREATE OR REPLACE FUNCTION pkgline_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP "
            "USING ERRCODE = 'insufficient_privilege'; END $$"
        )
    for table in GUARDED:
        create_guards(table)


def downgrade() -> None:
    for table in GUARDED:
        drop_guards(table)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS pkgline_append_only()")
    op.drop_table("audit_heads")
    # Dropped in place (SQLite 3.35+): rebuilding ``lots`` in batch mode would trip its
    # foreign keys.
    op.drop_column("lots", "history_head")
    op.drop_column("lot_history", "hash")
    op.drop_column("lot_history", "prev_hash")
    op.drop_column("lot_history", "auth")
    op.drop_column("lot_history", "by")
