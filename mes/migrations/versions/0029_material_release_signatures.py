"""A material lot's release from quarantine, electronically signed: the material lot's
version (``materials.version``, how many events its history has; every change bumps it), the
version each event made it (``material_events.version``), what a signed release records of
its signatures (``material_events.signatures``, a JSON list of manifests), and the
signatures themselves (``material_signatures``, append-only, each linked to the event it
signs by the material lot and that version).

Why: the release of a quarantine lets suspect material back into product, a quality
decision as a hold's release is, which is signed (21 CFR Part 11); a material lot had no
version to bind a signature to, so a signed release could have been replayed.

Up: a material lot's version is the number of events of its history, each event's the
number up to it; no event is signed.

Down refuses a database with a signed release, changing nothing: the revision before keeps
no signature, and a Part 11 record is not dropped by a schema change (stay on this
revision). Then the table and the columns go.

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")
SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column(
        "materials",
        sa.Column("version", sa.Integer(), nullable=False, server_default=sa.text("1")),
    )
    op.add_column("material_events", sa.Column("version", sa.Integer(), nullable=True))
    op.add_column("material_events", sa.Column("signatures", JSON, nullable=True))
    op.execute(
        "UPDATE material_events SET version = (SELECT count(*) FROM material_events AS e "
        "WHERE e.material_id = material_events.material_id AND e.seq <= material_events.seq)"
    )
    op.execute(
        "UPDATE materials SET version = (SELECT count(*) FROM material_events AS e "
        "WHERE e.material_id = materials.id) WHERE EXISTS (SELECT 1 FROM material_events AS e "
        "WHERE e.material_id = materials.id)"
    )
    op.create_table(
        "material_signatures",
        sa.Column("seq", SEQ, autoincrement=True, nullable=False),
        sa.Column("material_id", sa.String(32), nullable=False),
        sa.Column("material_version", sa.Integer(), nullable=False),
        sa.Column("signer", sa.String(64), nullable=False),
        sa.Column("printed_name", sa.Text(), nullable=False),
        sa.Column("meaning", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.ForeignKeyConstraint(
            ["material_id"], ["materials.id"], name="fk_material_signatures_material_id_materials"
        ),
        sa.PrimaryKeyConstraint("seq", name="pk_material_signatures"),
    )
    op.create_index(
        "ix_material_signatures_material",
        "material_signatures",
        ["material_id", "material_version"],
    )
    if op.get_bind().dialect.name == "postgresql":
        # pkgline_append_only() is revision 0004's: signatures are never changed or removed.
        op.execute(
            "CREATE TRIGGER material_signatures_append_only BEFORE UPDATE OR DELETE ON "
            "material_signatures FOR EACH ROW EXECUTE FUNCTION pkgline_append_only()"
        )
        op.execute(
            "CREATE TRIGGER material_signatures_no_truncate BEFORE TRUNCATE ON "
            "material_signatures FOR EACH STATEMENT EXECUTE FUNCTION pkgline_append_only()"
        )
    else:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER material_signatures_no_{action.lower()} BEFORE {action} ON "
                f"material_signatures BEGIN SELECT RAISE(ABORT, 'material_signatures is "
                f"append-only: {action} refused'); END"
            )


def downgrade() -> None:
    conn = op.get_bind()
    found = conn.execute(
        sa.text("SELECT DISTINCT material_id FROM material_signatures ORDER BY material_id")
    ).all()
    if found:
        names = ", ".join(str(row[0]) for row in found)
        raise RuntimeError(
            "revision 0028 keeps no signature, and this database has signed releases of "
            f"material lots from quarantine: {names}. A signature is a record kept for good: "
            "stay on revision 0029; nothing was changed"
        )
    op.drop_index("ix_material_signatures_material", table_name="material_signatures")
    op.drop_table("material_signatures")  # its triggers with it
    # Dropped in place (SQLite 3.35+), as revision 0027 drops its columns.
    op.drop_column("material_events", "signatures")
    op.drop_column("material_events", "version")
    op.drop_column("materials", "version")
