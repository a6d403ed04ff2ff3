"""A material lot's quarantine (a recall, mes.domain.material_quarantine): the hold reason
code quality gave, its text, who quarantined it and when (``materials.quarantine_code``,
``quarantine_reason``, ``quarantined_by``, ``quarantined_at``; all null: not quarantined).

Why: a quality engineer who found a bad lot of mold compound could ask which product lots
got it (``material where-used``) but not stop it: it could still be loaded and used.

Up: every material lot there is stays not quarantined.

Down refuses a database with a quarantined material lot, naming them and changing nothing:
the revision before would load and use them again, as if quality had released them. The
choice (stay on this revision, or release them: ``pkgline material release``) is the
database owner's. Then the columns go.

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None

_COLUMNS = ("quarantine_code", "quarantine_reason", "quarantined_by", "quarantined_at")


def upgrade() -> None:
    op.add_column("materials", sa.Column("quarantine_code", sa.String(16), nullable=True))
    op.add_column("materials", sa.Column("quarantine_reason", sa.Text(), nullable=True))
    op.add_column("materials", sa.Column("quarantined_by", sa.String(64), nullable=True))
    op.add_column(
        "materials", sa.Column("quarantined_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    conn = op.get_bind()
    found = conn.execute(
        sa.text("SELECT id FROM materials WHERE quarantined_at IS NOT NULL ORDER BY id")
    ).all()
    if found:
        names = ", ".join(str(row[0]) for row in found)
        raise RuntimeError(
            "revision 0026 knows no quarantine, and this database has quarantined material "
            f"lots: {names}. Expected none: stay on revision 0027, or release them (pkgline "
            "material release ID --reason ...), then downgrade again; nothing was changed"
        )
    # Dropped in place (SQLite 3.35+), as revision 0004 drops its columns.
    for column in reversed(_COLUMNS):
        op.drop_column("materials", column)
