"""One lot tracked in by hand on a tool, kept by the database: a unique index on the tool a
lot runs on (``running.tool`` in the lot's JSON, the expression of ix_lots_tool), partial:
the lots an operator tracked in on a tool (``running.by_hand``).

Why: an operator's track-in on a tool in manual is refused while another lot runs on it
(the ``tool_busy`` interlock), but the check reads the lots on the tool and then writes the
lot, in a transaction that locks only that lot. On PostgreSQL two operators' track-ins of
two lots on one free tool at once each read it free and both wrote: two lots ran on the
tool. SQLite takes its write lock before the read (BEGIN IMMEDIATE) and could not race. With
the index, the second write waits for the first and is refused (the command says so,
nothing written).

Why by hand only: the line controller tracks a tool's next lot in while the last one's
results are recorded (docs/interlocks.md), so for a moment two of its lots run on one tool;
it is the one writer of its tools' lots and needs no index to take turns. ``by_hand`` is
written only when true (``mes.adapters.rows``).

Up refuses a database where two lots are tracked in by hand on one tool already (written by
such a race), naming them and what to do, and changes nothing.

Down: the index goes.

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None

TOOL = {  # as revision 0019 wrote it
    "postgresql": "(running ->> 'tool')",
    "sqlite": "json_extract(running, '$.tool')",
}
BY_HAND = {
    "postgresql": "(running ->> 'by_hand') = 'true'",
    "sqlite": "json_extract(running, '$.by_hand') = 1",
}


def upgrade() -> None:
    conn = op.get_bind()
    tool, by_hand = TOOL[conn.dialect.name], BY_HAND[conn.dialect.name]
    twice = conn.execute(
        sa.text(
            f"SELECT {tool} AS tool, id FROM lots WHERE {by_hand} AND {tool} IN ("
            f"SELECT {tool} FROM lots WHERE {by_hand} "
            f"GROUP BY {tool} HAVING COUNT(*) > 1) ORDER BY 1, 2"
        )
    ).all()
    if twice:
        by_tool: dict[str, list[str]] = {}
        for tool_id, lot_id in twice:
            by_tool.setdefault(tool_id, []).append(lot_id)
        found = "; ".join(f"{t} runs lots {', '.join(ids)}" for t, ids in by_tool.items())
        raise RuntimeError(
            "revision 0025 keeps one lot tracked in by hand on a tool, and this database has "
            f"more: {found}. Expected one: abort the others' steps (pkgline lot abort LOT "
            "--reason ..., with a pkgline of the version before this one), then run pkgline "
            "db upgrade again"
        )
    op.create_index(
        "ux_lots_by_hand_tool",
        "lots",
        [sa.text(tool)],
        unique=True,
        postgresql_where=sa.text(by_hand),
        sqlite_where=sa.text(by_hand),
    )


def downgrade() -> None:
    op.drop_index("ux_lots_by_hand_tool", table_name="lots")
