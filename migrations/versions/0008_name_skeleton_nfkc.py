"""users.name_skeleton again, now of the NFKC-folded name (quartchat/accounts.py)

ICU's skeleton leaves most fullwidth letters as they are, so an account named
`alice` in fullwidth letters (made before sign-up folded names with NFKC, or imported) did not look
like `alice`. Every skeleton is computed again with the server's function; downgrade
leaves them (the old server reads them the same way).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from quartchat.accounts import name_skeleton

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

users = sa.table("users", sa.column("id", sa.String), sa.column("name", sa.String), sa.column("name_skeleton"))


def upgrade() -> None:
    connection = op.get_bind()
    rows = connection.execute(sa.select(users.c.id, users.c.name, users.c.name_skeleton)).all()
    changed = [
        {"user_id": row.id, "skeleton": name_skeleton(row.name)}
        for row in rows
        if name_skeleton(row.name) != row.name_skeleton
    ]
    if changed:
        connection.execute(
            users.update().where(users.c.id == sa.bindparam("user_id")).values(name_skeleton=sa.bindparam("skeleton")),
            changed,
        )


def downgrade() -> None:
    pass
