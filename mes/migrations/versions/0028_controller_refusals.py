"""A line controller's refused track-ins in its record (``controllers.refusals``): for each
waiting lot an interlock kept off a tool, the tool, the step, which check refused it, its
message (what was expected) and since when, written with the heartbeat.

Why: the controller's refusals were only in its log; an operator looking at ``line status``
or the station's line page saw a lot waiting and not why. The heartbeat writes the record
every 5 s anyway, so a refusal repeated at every dispatch pass costs no write of its own.

Up: every record has none (a running controller writes its own at its next heartbeat).

Down: the column goes; what it held is the controllers' current state, written again by the
next heartbeat of the revision that knows it, so nothing that was recorded for good is lost.

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.add_column(
        "controllers",
        sa.Column("refusals", JSON, nullable=False, server_default=sa.text("'[]'")),
    )


def downgrade() -> None:
    # Dropped in place (SQLite 3.35+), as revision 0026 drops its columns.
    op.drop_column("controllers", "refusals")
