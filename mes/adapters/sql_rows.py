"""The lot tables' columns as the SQL store's statements select and write them
(:mod:`mes.adapters.sql_statements`); rows to domain values: :mod:`mes.adapters.rows`."""

from __future__ import annotations

from mes.adapters.tables import carriers, jobs, lot_history, lots, site_rejects

LOT_COLUMNS = (*lots.c, carriers.c.id.label("carrier_id"))
LOT_WITH_CARRIERS = lots.outerjoin(carriers, carriers.c.lot_id == lots.c.id)
LOT_KEYS = [c.name for c in lots.c]
HEAD_COLUMNS = (
    "id",
    "version",
    "flow",
    "state",
    "priority",
    "created_at",
    "path",
    "params",
    "pending_rework",
    "running",
    "flow_version",
)
HISTORY_KEYS = [c.name for c in lot_history.c if c.name != "seq"]
OUTBOX_KEYS = ["lot_id", "kind", "payload", "created_at"]
CARRIER_KEYS = [c.name for c in carriers.c]
REJECT_KEYS = [c.name for c in site_rejects.c if c.name != "id"]
JOB_KEYS = [c.name for c in jobs.c]
