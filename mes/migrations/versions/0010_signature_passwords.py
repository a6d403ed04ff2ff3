"""Electronic signatures: who set each user's password.

``users.password_set_by`` names who chose the current password: the user themselves
(``pkgline user passwd --own``) or the admin who set it. Only a password a person set
themselves signs (nobody signs for anybody else: an admin who reset a password knows it).
Passwords set before this revision have NULL: their users change them once before signing.

The ``signatures`` table itself is revision 0005's (append-only, each row linked to the
history entry it signs by that entry's hash); nothing changes there.

Revision ID: 0010
Revises: 0011
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("password_set_by", sa.String(64), nullable=True))


def downgrade() -> None:
    # Dropped in place (SQLite 3.35+), as revision 0004 drops its columns: a batch rebuild
    # of users would trip the api_keys foreign key.
    op.drop_column("users", "password_set_by")
