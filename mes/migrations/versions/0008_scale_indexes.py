"""Plant scale: indexes for the lot lists' pages and filters, so that a list, a page after
a cursor and a count cost the same at 100,000 lots as at 100 (bench/lists.py).

- lots (priority, created_at, id): every lot, most urgent first, from a cursor on
- lots (flow, priority, created_at): one flow's lots in the same order
- lots (updated_at): lots moved within a time window
- lot_history (at): history within a time window

Dispatch and ``line status`` read lots by state through ix_lots_state_priority (revision
0001), which completed lots do not slow down.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

INDEXES = (
    ("ix_lots_priority", "lots", ["priority", "created_at", "id"]),
    ("ix_lots_flow", "lots", ["flow", "priority", "created_at"]),
    ("ix_lots_updated_at", "lots", ["updated_at"]),
    ("ix_lot_history_at", "lot_history", ["at"]),
)


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
