"""A tool's jobs in a time window (the station's tool page, ``LotService.tool_jobs``): an
index on jobs (tool_id, started_at), so that reading the newest jobs of a tool in a window
reads those rows, not every job the tool ever ran.

Revision ID: 0016
Revises: 0009
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_jobs_tool_started", "jobs", ["tool_id", "started_at"])


def downgrade() -> None:
    op.drop_index("ix_jobs_tool_started", table_name="jobs")
