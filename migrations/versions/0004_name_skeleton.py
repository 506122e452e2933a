"""users.name_skeleton: Unicode TR39's skeleton of each name, to refuse look-alikes

A new account whose name looks like an existing one (`alice` spelt with a Cyrillic a
beside `alice`) is refused; the skeletons of existing names are filled in here, with
the same function the server uses (ICU's spoof checker). Not unique: existing accounts
may already look alike, and keep their names.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from quartchat.accounts import name_skeleton

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

users = sa.table("users", sa.column("id", sa.String), sa.column("name", sa.String), sa.column("name_skeleton"))


def upgrade() -> None:
    op.add_column("users", sa.Column("name_skeleton", sa.String(length=512), nullable=True))
    op.create_index(op.f("ix_users_name_skeleton"), "users", ["name_skeleton"])
    connection = op.get_bind()
    rows = connection.execute(sa.select(users.c.id, users.c.name)).all()
    if rows:
        connection.execute(
            users.update().where(users.c.id == sa.bindparam("user_id")).values(name_skeleton=sa.bindparam("skeleton")),
            [{"user_id": row.id, "skeleton": name_skeleton(row.name)} for row in rows],
        )


def downgrade() -> None:
    op.drop_index(op.f("ix_users_name_skeleton"), table_name="users")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("name_skeleton")
