"""The security log becomes tamper-evident as the lot history is: a hash chain.

Every security event gets ``prev_hash`` and ``hash`` (mes.domain.security_chain,
docs/security.md), and ``audit_heads`` a row ``security`` with the newest event's hash. The
events that exist are chained here, in ``seq`` order, so that ``pkgline audit verify`` passes
on an upgraded database: from this revision on, the log says what it was at the upgrade.

Why: the log was append-only by its triggers alone, so whoever could drop them (the file's
owner on SQLite, the tables' owner on PostgreSQL) could delete a refusal of authority or a
failed login and leave no trace. Now a deleted, edited or forged event is found by ``audit
verify``, and a rewrite of the log's tail by an anchor kept elsewhere.

The append-only guards are dropped for the chaining (it updates the rows) and made again, as
revision 0005 made them. The columns are added NOT NULL in place with a placeholder that the
chaining replaces (SQLite cannot make a column NOT NULL later without rebuilding the table);
PostgreSQL drops the default after.

Down: the guards go for the columns' drop and come back; the chain's head goes.

Self-contained on purpose: the hashing below is a frozen copy of format 1 of
mes.domain.security_chain.canonical (a test checks that an upgraded database verifies).

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-06
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

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

GENESIS = "0" * 64
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TABLE = "security_events"
COLUMNS = ("prev_hash", "hash")

_events = sa.table(
    TABLE,
    sa.column("seq", sa.BigInteger()),
    sa.column("at", sa.DateTime(timezone=True)),
    sa.column("kind", sa.String()),
    sa.column("actor", sa.String()),
    sa.column("method", sa.String()),
    sa.column("subject", sa.String()),
    sa.column("action", sa.String()),
    sa.column("lot_id", sa.String()),
    sa.column("detail", JSON),
    sa.column("prev_hash", sa.String()),
    sa.column("hash", sa.String()),
)
_heads = sa.table("audit_heads", sa.column("chain", sa.String()), sa.column("head", sa.String()))


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
        "at": at.isoformat(timespec="microseconds"),
        "kind": row["kind"],
        "actor": row["actor"],
        "method": row["method"] or None,
        "subject": row["subject"],
        "action": row["action"],
        "lot": row["lot_id"],
        "detail": _normal(row["detail"]),
    }
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _chain_existing(conn: sa.Connection) -> str:
    """Chain the events there are, in seq order; returns the newest one's hash."""
    head = GENESIS
    last = 0
    while True:
        rows = (
            conn.execute(
                sa.select(_events).where(_events.c.seq > last).order_by(_events.c.seq).limit(2000)
            )
            .mappings()
            .all()
        )
        if not rows:
            return head
        updates = []
        for row in rows:
            digest = _hash(row, head)
            updates.append({"b_seq": row["seq"], "prev_hash": head, "hash": digest})
            head = digest
        conn.execute(
            _events.update()
            .where(_events.c.seq == sa.bindparam("b_seq"))
            .values(prev_hash=sa.bindparam("prev_hash"), hash=sa.bindparam("hash")),
            updates,
        )
        last = rows[-1]["seq"]


def _create_guards() -> None:
    """As revision 0005 made them: UPDATE and DELETE refused (and TRUNCATE, on PostgreSQL)."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"CREATE TRIGGER {TABLE}_append_only BEFORE UPDATE OR DELETE ON {TABLE} "
            "FOR EACH ROW EXECUTE FUNCTION pkgline_append_only()"
        )
        op.execute(
            f"CREATE TRIGGER {TABLE}_no_truncate BEFORE TRUNCATE ON {TABLE} "
            "FOR EACH STATEMENT EXECUTE FUNCTION pkgline_append_only()"
        )
        return
    for action in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER {TABLE}_no_{action.lower()} BEFORE {action} ON {TABLE} "
            f"BEGIN SELECT RAISE(ABORT, '{TABLE} is append-only: {action} refused'); END"
        )


def _drop_guards() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_append_only ON {TABLE}")
        op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_no_truncate ON {TABLE}")
        return
    for action in ("update", "delete"):
        op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_no_{action}")


def upgrade() -> None:
    conn = op.get_bind()
    _drop_guards()
    for column in COLUMNS:
        op.add_column(TABLE, sa.Column(column, sa.String(64), nullable=False, server_default=""))
    head = _chain_existing(conn)
    op.bulk_insert(_heads, [{"chain": "security", "head": head}])
    if conn.dialect.name == "postgresql":
        for column in COLUMNS:
            op.alter_column(TABLE, column, server_default=None)
    _create_guards()


def downgrade() -> None:
    _drop_guards()
    # Dropped in place (SQLite 3.35+), as revision 0004 drops its columns.
    for column in reversed(COLUMNS):
        op.drop_column(TABLE, column)
    op.execute("DELETE FROM audit_heads WHERE chain = 'security'")
    _create_guards()
