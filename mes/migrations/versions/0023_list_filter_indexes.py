"""Indexes for the list filters that had none: lot_history (operation, seq) and (step, seq)
for ``lot history --operation/--step`` (``GET /history``), security_events (kind, seq) for
``user events --kind`` (``GET /security/events``), and jobs (lot_id, tool_id, started_at) for
``tool jobs --lot`` (``GET /tools/{tool}/jobs?lot=``).

Why: found by an outsider's probe on a PostgreSQL database seeded with 100,000 lots
(bench/seed.py: 8 million history entries, 2.6 million jobs), with EXPLAIN. Revision 0018
gave the history's tool and user filters their indexes, and docs/cli.md said every filter
of the history list went along one, but the operation and step filters had none: their
page and their count were a sequential scan of the whole history (``lot history --operation
hold``: 90 ms at 1,000 lots, 3.2 s at 100,000). The security log's kind filter was the same
scan of the log. ``tool jobs --lot`` read every job of the tool and kept the lot's (15 ms at
1,000 lots, 0.68 s at 100,000: 265,000 jobs on one die bonder). With these, a page reads its
rows along the index and a count counts the rows that match only.

Down: the four indexes go.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_lot_history_operation", "lot_history", ["operation", "seq"])
    op.create_index("ix_lot_history_step", "lot_history", ["step", "seq"])
    op.create_index("ix_security_events_kind", "security_events", ["kind", "seq"])
    op.create_index("ix_jobs_lot_id", "jobs", ["lot_id", "tool_id", "started_at"])


def downgrade() -> None:
    op.drop_index("ix_jobs_lot_id", table_name="jobs")
    op.drop_index("ix_security_events_kind", table_name="security_events")
    op.drop_index("ix_lot_history_step", table_name="lot_history")
    op.drop_index("ix_lot_history_operation", table_name="lot_history")
