"""The lot tracker's tables (SQLAlchemy Core). The schema itself is created and changed only
by Alembic revisions (``mes/migrations``); this module must match the latest revision, which
a test checks on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    ColumnElement,
    DateTime,
    Dialect,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator

from mes.adapters.sql_expressions import LotStep, LotTool

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware (SQLite keeps none)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Json: Any = JSON().with_variant(JSONB(), "postgresql")
Seq: Any = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements INTEGER only

lots = Table(
    "lots",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("flow", String(64), nullable=False),
    Column("flow_version", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("priority", Integer, nullable=False),
    Column("params", Json, nullable=False),
    Column("site_rows", Integer, nullable=False),
    Column("site_cols", Integer, nullable=False),
    Column("total_sites", Integer, nullable=False),
    Column("good_sites", Integer, nullable=False),
    Column("units", Integer),
    Column("path", Json, nullable=False),
    Column("recorded", Json, nullable=False),
    Column("running", Json),
    Column("hold", Json),
    Column("rework_counts", Json, nullable=False),
    Column("pending_rework", String(32)),
    Column("parent_id", String(32), ForeignKey("lots.id")),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("history_head", String(64), nullable=False),
    Index("ix_lots_state_priority", "state", "priority", "created_at"),
    Index("ix_lots_parent_id", "parent_id"),
    Index("ix_lots_priority", "priority", "created_at", "id"),
    Index("ix_lots_flow", "flow", "priority", "created_at"),
    Index("ix_lots_updated_at", "updated_at"),
)


lot_counts = Table(
    "lot_counts",
    metadata,
    Column("flow", String(64), primary_key=True),
    Column("state", String(16), primary_key=True),
    Column("n", BigInteger, nullable=False),
)
"""How many lots of each flow are in each final state (COMPLETED, SCRAPPED, MERGED), kept by
triggers on ``lots`` in the transaction that finishes, inserts or deletes a lot (revision
0021). A count of lots is that of the few in progress, read from ``lots``, plus these: the
same at 100,000 finished lots as at 100. Nothing in the code writes it."""

LOT_TOOL: ColumnElement[str] = LotTool(lots.c.running)
"""``lot list --tool``'s column, in SQL exactly as ix_lots_tool has it (revision 0019)."""
LOT_STEP: ColumnElement[str] = LotStep(lots.c.running, lots.c.path)
"""``lot list --step``'s column, in SQL exactly as ix_lots_step has it (revision 0019)."""


def tool_of_lot(column: ColumnElement[Any] = LOT_TOOL) -> ColumnElement[Any]:
    """``column`` of the lot whose id is bound as ``lot_id`` (the tool it runs on, or its
    step: LOT_STEP), as a scalar subquery: what a read by the tool a lot runs on compares
    with, the lot's record read in the same statement."""
    return select(column).where(lots.c.id == bindparam("lot_id")).scalar_subquery()


Index(
    "ix_lots_tool",
    LOT_TOOL,
    lots.c.priority,
    lots.c.created_at,
    lots.c.id,
    # the lots on a tool only: a few dozen, not every lot finished (a query's `tool = ?`
    # implies it, on both databases)
    postgresql_where=LOT_TOOL.is_not(None),
    sqlite_where=LOT_TOOL.is_not(None),
)
Index("ix_lots_step", LOT_STEP, lots.c.priority, lots.c.created_at, lots.c.id)
Index(
    "ux_lots_by_hand_tool",
    LOT_TOOL,
    unique=True,
    # one lot tracked in by hand on a tool (revision 0025): two operators' track-ins on one
    # free tool at once could both pass the tool_busy interlock on PostgreSQL. ``by_hand``
    # is written only when true (mes.adapters.rows); the controller's own track-ins are not
    # in it (it tracks a tool's next lot in while the last one's results are recorded)
    postgresql_where=text("(running ->> 'by_hand') = 'true'"),
    sqlite_where=text("json_extract(running, '$.by_hand') = 1"),
)

carriers = Table(
    "carriers",
    metadata,
    Column("id", String(48), primary_key=True),
    Column("lot_id", String(32), ForeignKey("lots.id"), nullable=False),
    Column("position", Integer, nullable=False),
    Column("rows", Integer, nullable=False),
    Column("cols", Integer, nullable=False),
    Index("ix_carriers_lot_id", "lot_id", "position"),
)

site_rejects = Table(
    "site_rejects",
    metadata,
    Column("id", Seq, primary_key=True, autoincrement=True),
    Column("carrier_id", String(48), ForeignKey("carriers.id"), nullable=False),
    Column("row", Integer, nullable=False),
    Column("col", Integer, nullable=False),
    Column("code", String(24), nullable=False),
    Column("step", String(32), nullable=False),
    Column("path_index", Integer, nullable=False),
    UniqueConstraint("carrier_id", "row", "col", name="uq_site_rejects_site"),
)

lot_history = Table(
    "lot_history",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("lot_id", String(32), ForeignKey("lots.id"), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("user", String(64), nullable=False),
    Column("operation", String(16), nullable=False),
    Column("state_before", String(16)),
    Column("state_after", String(16), nullable=False),
    Column("step", String(32)),
    Column("tool", String(32)),
    Column("reason", Text),
    Column("data", Json, nullable=False),
    Column("by", String(64)),
    Column("auth", String(16)),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index("ix_lot_history_lot_id", "lot_id", "seq"),
    Index("ix_lot_history_at", "at"),
    Index("ix_lot_history_tool", "tool", "seq"),
    Index("ix_lot_history_user", "user", "seq"),
    Index("ix_lot_history_operation", "operation", "seq"),
    Index("ix_lot_history_step", "step", "seq"),
)
"""Append-only: the database refuses UPDATE and DELETE (triggers, revision 0004)."""

audit_heads = Table(
    "audit_heads",
    metadata,
    Column("chain", String(16), primary_key=True),
    Column("head", String(64), nullable=False),
)
"""The head of the chain over lots (row ``lots``): the hash of the newest lot's first
history entry (:mod:`mes.domain.audit`). New lots take their turn on it (FOR UPDATE). And the
head of the security log's chain (row ``security``, revision 0022): the newest event's hash."""

LOTS_CHAIN = "lots"
SECURITY_CHAIN = "security"

outbox = Table(
    "outbox",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("lot_id", String(32), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("payload", Json, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("published_at", UtcDateTime),
    Column("subject", String(12), nullable=False, server_default="lot"),
    Index("ix_outbox_unpublished", "published_at", "seq"),
)
"""The events for the feed, each written in the transaction of what it tells: a lot's history
entry (``subject`` ``lot``), or an event of a durable's or a material lot's history
(``durable``, ``material``, revision 0020); ``lot_id`` is that subject's id."""

jobs = Table(
    "jobs",
    metadata,
    Column("job_id", String(32), primary_key=True),
    Column("lot_id", String(32), ForeignKey("lots.id"), nullable=False),
    Column("tool_id", String(32), nullable=False),
    Column("step", String(32), nullable=False),
    Column("path_index", Integer, nullable=False),
    Column("carrier_id", String(48), ForeignKey("carriers.id"), nullable=False),
    Column("status", String(12), nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("recorded_at", UtcDateTime),
    Column("measured", Json, nullable=False),
    Column("rejects", Json, nullable=False),
    Column("tool_data", Json, nullable=False),
    Index("ix_jobs_carrier_id", "carrier_id", "path_index"),
    Index("ix_jobs_tool_id", "tool_id", "status"),
    Index("ix_jobs_tool_started", "tool_id", "started_at"),
    Index("ix_jobs_lot_id", "lot_id", "tool_id", "started_at"),
)

tools = Table(
    "tools",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("line", String(32), nullable=False),
    Column("equipment_class", String(16), nullable=False),
    Column("address", String(128), nullable=False),
    Column("steps", Json, nullable=False),
    Column("dispatch", String(8), nullable=False),
    Column("dispatch_reason", Text),
    Column("dispatch_by", String(64)),
    Column("dispatch_at", UtcDateTime),
    Column("connected", Boolean, nullable=False),
    Column("e10", String(20), nullable=False),
    Column("e10_since", UtcDateTime, nullable=False),
    Column("process_state", String(12)),
    Column("mode", String(12)),
    Column("alarm", Json),
    Column("job_id", String(32)),
    Column("lot_id", String(32)),
    Column("sites_done", Integer, nullable=False),
    Column("sites_total", Integer, nullable=False),
    Column("reason", Text),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("down", String(20)),
    Column("down_reason", Text),
    Column("down_by", String(64)),
    Column("down_at", UtcDateTime),
    Column("reported_e10", String(20)),
    Column("declared_user", String(64)),
    Column("declared_by", String(64)),
    Column("declared_auth", String(16)),
    Column("declared_reason", Text),
    Column("declared_at", UtcDateTime),
    Index("ix_tools_line", "line"),
)

tool_states = Table(
    "tool_states",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("tool_id", String(32), ForeignKey("tools.id"), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("e10", String(20), nullable=False),
    Column("process_state", String(12)),
    Column("connected", Boolean, nullable=False),
    Column("reason", Text),
    Index("ix_tool_states_tool_id", "tool_id", "at"),
)

tool_qualifications = Table(
    "tool_qualifications",
    metadata,
    Column("tool_id", String(32), ForeignKey("tools.id"), primary_key=True),
    Column("step", String(32), primary_key=True),
    Column("qualified", Boolean, nullable=False),
    Column("by", String(64), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("reason", Text),
    Index("ix_tool_qualifications_step", "step"),
)
"""Engineering's qualification of each tool for each step (mes.domain.interlocks)."""

controllers = Table(
    "controllers",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("host", String(128), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("heartbeat_at", UtcDateTime, nullable=False),
    Column("status", Text, nullable=False),
    Column("tools", Json, nullable=False),
    Column("refusals", Json, nullable=False),
)
"""Each line controller's record, written at every heartbeat: ``refusals`` its refused
track-ins of waiting lots (mes.domain.equipment.TrackInRefusal), a JSON list."""

tool_resets = Table(
    "tool_resets",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("tool_id", String(32), ForeignKey("tools.id"), nullable=False),
    Column("line", String(32), nullable=False),
    Column("requested_by", String(64), nullable=False),
    Column("reason", Text, nullable=False),
    Column("requested_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("status", String(12), nullable=False),
    Column("outcome", Text),
    Column("answered_at", UtcDateTime),
    Column("state_after", String(12)),
    Index("ix_tool_resets_line", "line", "status"),
    Index("ix_tool_resets_tool_id", "tool_id", "requested_at"),
)

# -- identity (revision 0005): users, API keys, security events, signatures -----------------

users = Table(
    "users",
    metadata,
    Column("username", String(64), primary_key=True),
    Column("full_name", Text, nullable=False),
    Column("kind", String(8), nullable=False),
    Column("roles", Json, nullable=False),
    Column("disabled", Boolean, nullable=False),
    Column("password_hash", Text),
    Column("failed_attempts", Integer, nullable=False),
    Column("locked_until", UtcDateTime),
    Column("password_changed_at", UtcDateTime),
    Column("password_set_by", String(64)),
    Column("created_at", UtcDateTime, nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)
"""People and systems (``kind``); roles as a JSON list; argon2id password hashes and who set
each (revision 0010: only a password its user set themselves signs)."""

api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(16), primary_key=True),
    Column("username", String(64), ForeignKey("users.username"), nullable=False),
    Column("key_hash", String(64), nullable=False),
    Column("label", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("revoked_at", UtcDateTime),
    Column("revoked_by", String(64)),
    Index("ix_api_keys_username", "username"),
)
"""Keys issued to systems: the public id, and SHA-256 of the secret part (never the secret)."""

api_sessions = Table(
    "api_sessions",
    metadata,
    Column("session_id", String(16), primary_key=True),
    Column("username", String(64), ForeignKey("users.username"), nullable=False),
    Column("token_hash", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime),
    Index("ix_api_sessions_username", "username"),
)
"""The server's sessions (a password login): the public id, SHA-256 of the secret part (never
the token), until when it holds, and when it was ended (logout) if it was (revision 0009)."""

security_events = Table(
    "security_events",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime, nullable=False),
    Column("kind", String(24), nullable=False),
    Column("actor", String(64), nullable=False),
    Column("method", String(16)),
    Column("subject", String(64)),
    Column("action", String(24)),
    Column("lot_id", String(32)),
    Column("detail", Json, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index("ix_security_events_at", "at"),
    Index("ix_security_events_actor", "actor", "seq"),
    Index("ix_security_events_subject", "subject", "seq"),
    Index("ix_security_events_kind", "kind", "seq"),
)
"""Append-only: logins, lockouts, refusals of authority, changes to users, engineering changes
(:mod:`mes.engineering`); chained, each event with the hash it follows and its own
(:mod:`mes.domain.security_chain`, revision 0022), the newest's in ``audit_heads`` (row
``security``)."""

signatures = Table(
    "signatures",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("entry_hash", String(64), nullable=False),
    Column("lot_id", String(32), nullable=False),
    Column("signer", String(64), nullable=False),
    Column("printed_name", Text, nullable=False),
    Column("meaning", Text, nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("method", String(16), nullable=False),
    Index("ix_signatures_entry_hash", "entry_hash"),
)
"""Append-only: electronic signatures, each linked to the history entry it signs (its hash)."""

durables = Table(
    "durables",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("life", BigInteger, nullable=False),
    Column("warn_permille", Integer, nullable=False),
    Column("count", BigInteger, nullable=False),
    Column("added_by", String(64), nullable=False),
    Column("added_at", UtcDateTime, nullable=False),
    Column("tool_id", String(32), ForeignKey("tools.id")),
    Column("mounted_at", UtcDateTime),
    Column("description", Text),
    Index("ix_durables_tool_id", "tool_id"),
    Index(
        "ux_durables_tool_kind",
        "tool_id",
        "kind",
        unique=True,
        sqlite_where=text("tool_id IS NOT NULL"),
        postgresql_where=text("tool_id IS NOT NULL"),
    ),
)
"""Durables with life counters, and the tool each is mounted on (mes.domain.durables): one
of a kind on a tool (revision 0024)."""

durable_events = Table(
    "durable_events",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("durable_id", String(32), ForeignKey("durables.id"), nullable=False),
    Column("event", String(12), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("by", String(64), nullable=False),
    Column("count_after", BigInteger, nullable=False),
    Column("tool_id", String(32)),
    Column("lot_id", String(32)),
    Column("step", String(32)),
    Column("job_id", String(32)),
    Column("amount", BigInteger, nullable=False),
    Column("reason", Text),
    Index("ix_durable_events_durable_id", "durable_id", "seq"),
    Index("ix_durable_events_lot_id", "lot_id"),
)
"""A durable's history: added, mounted, unmounted, used by a lot's job, renewed."""

materials = Table(
    "materials",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("added_by", String(64), nullable=False),
    Column("added_at", UtcDateTime, nullable=False),
    Column("thaw_minutes", Integer, nullable=False),
    Column("floor_life_minutes", Integer),
    Column("thawed_at", UtcDateTime),
    Column("tool_id", String(32), ForeignKey("tools.id")),
    Column("loaded_at", UtcDateTime),
    Column("part_number", String(64)),
    Column("quarantine_code", String(16)),
    Column("quarantine_reason", Text),
    Column("quarantined_by", String(64)),
    Column("quarantined_at", UtcDateTime),
    Column("version", Integer, nullable=False, server_default=text("1")),
    Index("ix_materials_tool_id", "tool_id"),
    Index(
        "ux_materials_tool_kind",
        "tool_id",
        "kind",
        unique=True,
        sqlite_where=text("tool_id IS NOT NULL"),
        postgresql_where=text("tool_id IS NOT NULL"),
    ),
)
"""Consumable material lots, their clocks, and the tool each is loaded on
(mes.domain.materials): one of a kind on a tool (revision 0024); a quarantine, its hold
reason code, text, who and when (revision 0027, mes.domain.material_quarantine); its
version, the number of events of its history, which a signed release names (revision
0029)."""

material_events = Table(
    "material_events",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("material_id", String(32), ForeignKey("materials.id"), nullable=False),
    Column("event", String(12), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("by", String(64), nullable=False),
    Column("tool_id", String(32)),
    Column("reason", Text),
    Column("version", Integer),
    Column("signatures", Json),
    Index("ix_material_events_material_id", "material_id", "seq"),
)
"""A material lot's history: added, thawed, loaded, unloaded, quarantined, released; the
version each event made the material lot, and what a signed release records of its
signatures (revision 0029; a list of manifests, null for an event not signed)."""

material_signatures = Table(
    "material_signatures",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("material_id", String(32), ForeignKey("materials.id"), nullable=False),
    Column("material_version", Integer, nullable=False),
    Column("signer", String(64), nullable=False),
    Column("printed_name", Text, nullable=False),
    Column("meaning", Text, nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("method", String(16), nullable=False),
    Index("ix_material_signatures_material", "material_id", "material_version"),
)
"""Append-only: the electronic signatures of material lots' releases from quarantine, each
linked to the event it signs by the material lot and the version that event made it
(revision 0029)."""

material_uses = Table(
    "material_uses",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("material_id", String(32), ForeignKey("materials.id"), nullable=False),
    Column("lot_id", String(32), ForeignKey("lots.id"), nullable=False),
    Column("step", String(32), nullable=False),
    Column("tool_id", String(32), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Index("ix_material_uses_material_id", "material_id"),
    Index("ix_material_uses_lot_id", "lot_id"),
)
"""Which material lots went into which product lot, at which step (genealogy, recalls)."""

reason_codes = Table(
    "reason_codes",
    metadata,
    Column("code", String(16), primary_key=True),
    Column("kind", String(8), nullable=False),
    Column("text", Text, nullable=False),
    Column("release_roles", Json, nullable=False),
    Column("added_by", String(64), nullable=False),
    Column("added_at", UtcDateTime, nullable=False),
    Column("retired_by", String(64)),
    Column("retired_at", UtcDateTime),
    Column("retired_reason", Text),
)
"""Quality's hold and scrap reason codes (mes.domain.reasons)."""

spc_charts = Table(
    "spc_charts",
    metadata,
    Column("step", String(32), primary_key=True),
    Column("value", String(64), primary_key=True),
    Column("tool_id", String(32), ForeignKey("tools.id"), primary_key=True),
    Column("baseline_n", Integer, nullable=False),
    Column("nelson", Boolean, nullable=False),
    Column("inhibit", Boolean, nullable=False),
    Column("set_by", String(64), nullable=False),
    Column("set_at", UtcDateTime, nullable=False),
    Column("limits", Json),
    Column("kind", String(16), nullable=False, server_default="lot"),
    Index("ix_spc_charts_tool_id", "tool_id", "step"),
)
"""Engineering's SPC charts per (step, measured value, tool): rules, baseline, limits
(``{"center", "sigma", "source"}``, JSON: exact floats on both dialects), and what a point
is (``kind``: lot, carrier or subgroup, mes.domain.spc.ChartKind)."""

spc_points = Table(
    "spc_points",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("step", String(32), nullable=False),
    Column("value", String(64), nullable=False),
    Column("tool_id", String(32), nullable=False),
    Column("lot_id", String(32), ForeignKey("lots.id"), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("x", Json, nullable=False),
    Column("rules", Json, nullable=False),
    Column("carrier_id", String(32)),
    Column("n", Integer, nullable=False, server_default="1"),
    Column("s", Json),
    Index("ix_spc_points_chart", "step", "value", "tool_id", "seq"),
)
"""The points of a charted (step, value, tool), each with the rules it broke: one per lot at
each track-out of the step (a lot passing it twice has two), or per carrier (``carrier_id``)
on a carrier chart; a subgroup chart's is the mean of ``n`` carriers' values, with their
standard deviation ``s``."""

flow_versions = Table(
    "flow_versions",
    metadata,
    Column("flow", String(64), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("content_hash", String(64), nullable=False),
    Column("files", Json, nullable=False),
    Column("author", String(64), nullable=False),
    Column("published_at", UtcDateTime, nullable=False),
    Column("note", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("retired_at", UtcDateTime),
    Column("retired_by", String(64)),
    UniqueConstraint("flow", "content_hash", name="uq_flow_versions_content"),
)
"""Published flow versions (mes.domain.flowversions): the files' text, never changed; only
the state moves (draft -> approved -> retired)."""

flow_approvals = Table(
    "flow_approvals",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("flow", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("signer", String(64), nullable=False),
    Column("printed_name", Text, nullable=False),
    Column("meaning", Text, nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("method", String(16), nullable=False),
    ForeignKeyConstraint(["flow", "version"], ["flow_versions.flow", "flow_versions.version"]),
    Index("ix_flow_approvals_version", "flow", "version"),
)
"""Append-only: the approvals of flow versions, each linked to the content it approves."""
