"""The outbox carries the durables' and the material lots' histories too, for the event feed:
a column ``subject`` says whose event a row is (``lot``, ``durable`` or ``material``), and
``lot_id`` holds that subject's id. Every row written before is a lot's, which the column's
default says.

Why one outbox and not one per subject: the relay reads one table in ``seq`` order, so an
integrator sees a material lot loaded before the track-in that used it, in the order they were
committed, and one id sequence tells any gap; a second table would need a second reader and an
order across the two.

Down: the durables' and materials' rows are deleted before the column goes (the relay of that
revision would take them for lots' events); what was not yet published of them is not.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "outbox",
        sa.Column("subject", sa.String(12), nullable=False, server_default="lot"),
    )


def downgrade() -> None:
    op.execute("DELETE FROM outbox WHERE subject <> 'lot'")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("subject")
