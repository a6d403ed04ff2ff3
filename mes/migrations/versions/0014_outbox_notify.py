"""The outbox tells its relay when events are committed (PostgreSQL): a statement trigger on
``outbox`` calls ``pg_notify('pkgline_outbox', '')``, which PostgreSQL delivers at COMMIT (and
folds into one per transaction), so that the relay, which LISTENs on that channel, publishes
a move the moment it is committed by any process (another controller, the CLI, the API)
instead of finding it at its next poll. Its cost is taken at COMMIT, in the writer's
transaction; no row changes.

SQLite has no such thing: there the relay is woken by the unit of work of its own process
(mes.adapters.outbox.OutboxSignal) and polls for the writers of other processes.

Revision ID: 0014
Revises: 0010
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0010"
branch_labels = None
depends_on = None

CHANNEL = "pkgline_outbox"  # mes.adapters.outbox.OUTBOX_CHANNEL, as it was at this revision


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "CREATE OR REPLACE FUNCTION pkgline_outbox_notify() RETURNS trigger LANGUAGE plpgsql "
        f"AS $$ BEGIN PERFORM pg_notify('{CHANNEL}', ''); RETURN NULL; END $$"
    )
    op.execute(
        "CREATE TRIGGER outbox_notify AFTER INSERT ON outbox "
        "FOR EACH STATEMENT EXECUTE FUNCTION pkgline_outbox_notify()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS outbox_notify ON outbox")
    op.execute("DROP FUNCTION IF EXISTS pkgline_outbox_notify()")
