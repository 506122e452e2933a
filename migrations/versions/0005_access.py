"""Who may read what: roles, disabled users, room kinds, memberships, bot tokens

Existing deployments start sensibly (docs/protocol.md §11): the oldest account becomes
the admin, every existing room is public, and whoever has posted in a room is a member
of it (so it is in their sidebar). Bot tokens start empty.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMN (a constant default): no table copy, which SQLite's foreign keys
    # to users and rooms would refuse.
    op.add_column("users", sa.Column("role", sa.String(length=16), server_default="member", nullable=False))
    op.add_column("users", sa.Column("disabled", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column("rooms", sa.Column("kind", sa.String(length=8), server_default="public", nullable=False))
    op.add_column("rooms", sa.Column("created_ms", sa.BigInteger(), server_default="0", nullable=False))
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("rooms", sa.Text(), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_api_tokens_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
    )
    op.create_index(op.f("ix_api_tokens_user_id"), "api_tokens", ["user_id"])
    op.create_table(
        "memberships",
        sa.Column("room", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("role", sa.String(length=8), server_default="member", nullable=False),
        sa.Column("joined_ms", sa.BigInteger(), nullable=False),
        sa.Column("last_read_id", sa.BigInteger(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(["room"], ["rooms.name"], name=op.f("fk_memberships_room_rooms"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_memberships_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("room", "user_id", name=op.f("pk_memberships")),
    )
    op.create_index("ix_memberships_user_id", "memberships", ["user_id"])
    # The oldest account is the admin; whoever posted in a room is a member of it.
    op.execute("UPDATE users SET role = 'admin' WHERE id = (SELECT id FROM users ORDER BY created_ms, id LIMIT 1)")
    op.execute(
        "INSERT INTO memberships (room, user_id, role, joined_ms, last_read_id) "
        "SELECT room, user_id, 'member', MIN(ts_ms), 0 FROM messages GROUP BY room, user_id"
    )


def downgrade() -> None:
    op.drop_index("ix_memberships_user_id", table_name="memberships")
    op.drop_table("memberships")
    op.drop_index(op.f("ix_api_tokens_user_id"), table_name="api_tokens")
    op.drop_table("api_tokens")
    # SQLite 3.35+ drops a column in place.
    op.drop_column("rooms", "created_ms")
    op.drop_column("rooms", "kind")
    op.drop_column("users", "disabled")
    op.drop_column("users", "role")
