"""SPC charts of three kinds: a chart says what its points are (``spc_charts.kind``: ``lot``,
one point per lot, as every chart before; ``carrier``, one point per carrier; ``subgroup``,
an X-bar / S chart of one point per lot, the mean of its carriers' values), and a point says
which carrier it is (``spc_points.carrier_id``) or how many carriers' values it stands for
and their spread (``n``, ``s``). mes.domain.spc says how each is computed.

Why: issue 17 asks for an individuals chart per carrier or a subgroup chart per lot; every
chart had one point per lot, the mean of its carriers, so the spread within a lot was never
watched and a chart's limits could not follow a lot's number of carriers.

Up: the charts there are stay charts of a lot (``kind`` 'lot'), their points those of one
value (``n`` 1, no carrier, no spread): nothing they show or check changes.

Down refuses a database with a carrier or subgroup chart, or points of one, naming the
charts and changing nothing: the revision before would read them as charts of one point per
lot, carriers' values and lots' means in one series. Their points would be lost to it, so
the choice (stay on this revision, or delete them) is the database owner's. Then the columns
go.

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.add_column(
        "spc_charts", sa.Column("kind", sa.String(16), nullable=False, server_default="lot")
    )
    op.add_column("spc_points", sa.Column("carrier_id", sa.String(32), nullable=True))
    op.add_column("spc_points", sa.Column("n", sa.Integer(), nullable=False, server_default="1"))
    op.add_column("spc_points", sa.Column("s", JSON, nullable=True))


def downgrade() -> None:
    conn = op.get_bind()
    charts = conn.execute(
        sa.text(
            "SELECT step, value, tool_id, kind FROM spc_charts WHERE kind <> 'lot' "
            "UNION SELECT DISTINCT step, value, tool_id, 'points of carriers or subgroups' "
            "FROM spc_points WHERE carrier_id IS NOT NULL OR n <> 1 "
            "ORDER BY step, value, tool_id"
        )
    ).all()
    if charts:
        found = "; ".join(
            f"{step} {value} on {tool} ({kind})" for step, value, tool, kind in charts
        )
        raise RuntimeError(
            "revision 0025 knows only charts of one point per lot, and this database has "
            f"others: {found}. Expected none: stay on revision 0026, or delete those charts' "
            "points of carriers and subgroups (spc_points where carrier_id is set or n is not "
            "1: they are lost) and set the charts again with --kind lot, then downgrade "
            "again; nothing was changed"
        )
    # Dropped in place (SQLite 3.35+), as revision 0004 drops its columns.
    for column in ("s", "n", "carrier_id"):
        op.drop_column("spc_points", column)
    op.drop_column("spc_charts", "kind")
