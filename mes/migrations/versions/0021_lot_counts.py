"""How many lots are finished, kept as lots finish: a table ``lot_counts`` (flow, state, n) of
the lots in each final state (COMPLETED, SCRAPPED, MERGED), and triggers on ``lots`` that keep
it in the transaction of each insert, update and delete of a lot.

Why: a plant's lots are nearly all finished, and ``lot list`` says how many lots its filters
select. Counted in ``lots``, an unfiltered list or one flow's read as many rows as the plant
ever made: ``bench/lists.py`` timed ``lot list`` at 100,000 lots at 2.3 times its time at
1,000 on SQLite and 4.8 times on PostgreSQL. With this table, such a count is that of the few
lots in progress (along ix_lots_state_priority) plus a sum over a few rows per flow, whatever
the plant's age (1.0 and 1.3 times); the relay's line status counts the same way.

Why triggers, not the store: anything that writes ``lots`` (the store, the plant-size
seeding in SQL, an engineer's correction by hand) keeps the counts with it, and a count that
one writer forgot would be wrong silently; the lot list's tests compare them with
``count(*)``. The triggers fire only when a lot enters or leaves a final state (their WHEN),
so a move (WAITING to RUNNING and back) costs nothing more. A lot finishes once: the row of
its flow and final state is locked by one writer at a time only then. (``lots`` cannot be
truncated: its history, which the truncate would have to take along, refuses it.)

Down: the triggers and the table go; the counts are read from ``lots`` again.

A ``batch_alter_table("lots")`` on SQLite copies the table and drops its triggers: a future
revision doing that must create them again (as the expression indexes of revision 0019).

The triggers' SQL is written out here, as it is now, so that this revision stays what it
was whatever the code becomes.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

FINAL = "('COMPLETED', 'SCRAPPED', 'MERGED')"

_SQLITE_TRIGGERS = (
    f"""CREATE TRIGGER lot_counts_insert AFTER INSERT ON lots
    WHEN NEW.state IN {FINAL}
    BEGIN
        INSERT INTO lot_counts (flow, state, n) VALUES (NEW.flow, NEW.state, 1)
        ON CONFLICT (flow, state) DO UPDATE SET n = n + 1;
    END""",
    f"""CREATE TRIGGER lot_counts_update AFTER UPDATE OF state, flow ON lots
    WHEN (OLD.state IS NOT NEW.state OR OLD.flow IS NOT NEW.flow)
        AND (OLD.state IN {FINAL} OR NEW.state IN {FINAL})
    BEGIN
        UPDATE lot_counts SET n = n - 1
        WHERE flow = OLD.flow AND state = OLD.state AND OLD.state IN {FINAL};
        INSERT INTO lot_counts (flow, state, n) SELECT NEW.flow, NEW.state, 1
        WHERE NEW.state IN {FINAL}
        ON CONFLICT (flow, state) DO UPDATE SET n = n + 1;
    END""",
    f"""CREATE TRIGGER lot_counts_delete AFTER DELETE ON lots
    WHEN OLD.state IN {FINAL}
    BEGIN
        UPDATE lot_counts SET n = n - 1 WHERE flow = OLD.flow AND state = OLD.state;
    END""",
)

_POSTGRES_FUNCTION = f"""CREATE OR REPLACE FUNCTION pkgline_lot_counts() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        IF OLD.state IN {FINAL} THEN
            UPDATE lot_counts SET n = n - 1 WHERE flow = OLD.flow AND state = OLD.state;
        END IF;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        IF NEW.state IN {FINAL} THEN
            INSERT INTO lot_counts (flow, state, n) VALUES (NEW.flow, NEW.state, 1)
            ON CONFLICT (flow, state) DO UPDATE SET n = lot_counts.n + 1;
        END IF;
    END IF;
    RETURN NULL;
END $$"""

_POSTGRES_TRIGGERS = (
    f"""CREATE TRIGGER lot_counts_insert AFTER INSERT ON lots FOR EACH ROW
    WHEN (NEW.state IN {FINAL}) EXECUTE FUNCTION pkgline_lot_counts()""",
    f"""CREATE TRIGGER lot_counts_update AFTER UPDATE OF state, flow ON lots FOR EACH ROW
    WHEN ((OLD.state, OLD.flow) IS DISTINCT FROM (NEW.state, NEW.flow)
        AND (OLD.state IN {FINAL} OR NEW.state IN {FINAL}))
    EXECUTE FUNCTION pkgline_lot_counts()""",
    f"""CREATE TRIGGER lot_counts_delete AFTER DELETE ON lots FOR EACH ROW
    WHEN (OLD.state IN {FINAL}) EXECUTE FUNCTION pkgline_lot_counts()""",
)

_TRIGGERS = ("lot_counts_insert", "lot_counts_update", "lot_counts_delete")


def upgrade() -> None:
    op.create_table(
        "lot_counts",
        sa.Column("flow", sa.String(64), primary_key=True),
        sa.Column("state", sa.String(16), primary_key=True),
        sa.Column("n", sa.BigInteger, nullable=False),
    )
    op.execute(
        "INSERT INTO lot_counts (flow, state, n) SELECT flow, state, count(*) FROM lots"
        f" WHERE state IN {FINAL} GROUP BY flow, state"
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_POSTGRES_FUNCTION)
        for trigger in _POSTGRES_TRIGGERS:
            op.execute(trigger)
    else:
        for trigger in _SQLITE_TRIGGERS:
            op.execute(trigger)


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for trigger in _TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {trigger}" + (" ON lots" if postgres else ""))
    if postgres:
        op.execute("DROP FUNCTION IF EXISTS pkgline_lot_counts()")
    op.drop_table("lot_counts")
