"""The security log by user (``user events --user``, ``GET /security/events?user=``): indexes
on security_events (actor, seq) and (subject, seq), so that one user's page, newest first,
reads that user's rows along the index, not the whole log (every login and refusal of a
plant's years).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_security_events_actor", "security_events", ["actor", "seq"])
    op.create_index("ix_security_events_subject", "security_events", ["subject", "seq"])


def downgrade() -> None:
    op.drop_index("ix_security_events_subject", table_name="security_events")
    op.drop_index("ix_security_events_actor", table_name="security_events")
