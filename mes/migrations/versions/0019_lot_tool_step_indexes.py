"""``lot list --tool`` and ``--step`` along an index: lots (tool, priority, created_at, id)
of the lots on a tool (a partial index: the few running, not the many finished) and lots
(step, priority, created_at, id), where the tool is the running one (``running.tool``) and
the step the running one, else the last of the path (``Lot.step``).
Both live in the lots' JSON, so until now a list or count filtered by either read every lot,
the finished ones too. With the indexes, a page walks its tool's or step's lots in the list's
own order from the cursor on and stops at the limit, and a count reads only the lots that
match. The tool's index being partial also keeps SQLite's statistics (``ANALYZE``: rows per
value) about the lots on tools, not about the NULL tool of every finished lot, which would
make a search by tool look like a scan to its planner.

Why indexes on expressions rather than stored (or generated) columns: the tool and the step
are already in the row, written by every move, and an index on the expression is kept up to
date by the database with nothing else to change. Stored columns would have to be written by
each of the repository's statements that move a lot (and by anything else that writes lots,
such as the plant-size seeding in SQL), and a copy that one of them forgot would make the
list wrong, silently. Generated columns avoid that but add two columns that every read and
write of a lot's row would have to know of (the store reads and writes all the lots'
columns: ``mes.adapters.sql_rows``), and SQLite can add only virtual ones to a table. The cost
of an expression index is that a query uses it only if it has exactly the same expression:
the code builds the filters from ``mes.adapters.tables.LOT_TOOL`` and ``LOT_STEP``, which
compile to the SQL below, keys written as literals (tests/mes/test_lists.py checks the plans
on both databases). SQLAlchemy does not reflect SQLite's expression indexes: a future
``batch_alter_table("lots")`` (which copies the table) would drop them and must create them
again.

The expressions are written out here, as they are now, so that this revision stays what it
was whatever the code becomes.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

TOOL = {
    "postgresql": "(running ->> 'tool')",
    "sqlite": "json_extract(running, '$.tool')",
}
STEP = {
    "postgresql": "coalesce(running ->> 'step', path ->> -1)",
    "sqlite": "coalesce(json_extract(running, '$.step'), json_extract(path, '$[#-1]'))",
}
ORDER = ["priority", "created_at", "id"]  # the lot list's, as ix_lots_priority


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    tool, step = TOOL[dialect], STEP[dialect]
    # the lots on a tool only (a query's ``tool = ?`` implies it): not the finished ones
    on_a_tool = sa.text(f"{tool} IS NOT NULL")
    op.create_index(
        "ix_lots_tool",
        "lots",
        [sa.text(tool), *ORDER],
        postgresql_where=on_a_tool,
        sqlite_where=on_a_tool,
    )
    op.create_index("ix_lots_step", "lots", [sa.text(step), *ORDER])


def downgrade() -> None:
    op.drop_index("ix_lots_step", table_name="lots")
    op.drop_index("ix_lots_tool", table_name="lots")
