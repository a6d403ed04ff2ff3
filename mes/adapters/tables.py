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
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator

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
    Index("ix_lots_state_priority", "state", "priority", "created_at"),
    Index("ix_lots_parent_id", "parent_id"),
    Index("ix_lots_priority", "priority", "created_at", "id"),
    Index("ix_lots_flow", "flow", "priority", "created_at"),
    Index("ix_lots_updated_at", "updated_at"),
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
    Index("ix_lot_history_lot_id", "lot_id", "seq"),
    Index("ix_lot_history_at", "at"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("lot_id", String(32), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("payload", Json, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("published_at", UtcDateTime),
    Index("ix_outbox_unpublished", "published_at", "seq"),
)

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
)
