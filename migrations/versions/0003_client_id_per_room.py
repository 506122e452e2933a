"""client_id unique per user and room, not per user

A retried client_id is matched within its room only (docs/protocol.md): the same
client_id in another room is a new message there. The unique index gains the room.
Existing rows were unique per user, so they are unique per user and room as well.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("uq_messages_user_id_client_id", table_name="messages")
    op.create_index("uq_messages_user_id_room_client_id", "messages", ["user_id", "room", "client_id"], unique=True)


def downgrade() -> None:
    # Fails (IntegrityError) if a user has since reused a client_id in two rooms: the
    # older schema cannot hold both messages.
    op.drop_index("uq_messages_user_id_room_client_id", table_name="messages")
    op.create_index("uq_messages_user_id_client_id", "messages", ["user_id", "client_id"], unique=True)
