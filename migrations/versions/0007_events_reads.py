"""Edit and delete events, mentions, retention (docs/protocol.md §12 and §14)

Edits and deletes are rows of `messages` too, so that they take ids in the room's
sequence: `kind` is "chat", "edit" or "delete", and an event's `target` is the chat
message it is about. A chat row holds the message's current state: its newest text,
`edited_ms` once edited, `deleted` (and an empty text) once deleted. `mentions` is the
JSON list of the user ids a chat or edit text mentions (None: nobody).

Reading the newest chat messages of a room stays a range scan of ix_messages_room_id
(the events are a minority of it); finding a message's events is a scan of the partial
index on `target`, which chat rows (target NULL) never enter, so a chat insert pays
nothing for it. Only chat rows enter the SQLite search index (the triggers of 0006 get
a WHEN). `rooms.retention_days` is a room's own limit (None: the server's default) and
`leases` holds the lease of a task that must run once across processes and hosts.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SQLITE_TRIGGERS_DROP = [
    "DROP TRIGGER messages_fts_insert",
    "DROP TRIGGER messages_fts_delete",
    "DROP TRIGGER messages_fts_update",
]
# The triggers of 0006, for chat rows only: an event's text is never found by search.
SQLITE_TRIGGERS_CHAT_ONLY = [
    "CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages WHEN new.kind = 'chat' BEGIN "
    "INSERT INTO messages_fts (rowid, text) VALUES (new.id, new.text); END",
    "CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages WHEN old.kind = 'chat' BEGIN "
    "INSERT INTO messages_fts (messages_fts, rowid, text) VALUES ('delete', old.id, old.text); END",
    "CREATE TRIGGER messages_fts_update AFTER UPDATE OF text ON messages WHEN old.kind = 'chat' BEGIN "
    "INSERT INTO messages_fts (messages_fts, rowid, text) VALUES ('delete', old.id, old.text); "
    "INSERT INTO messages_fts (rowid, text) VALUES (new.id, new.text); END",
]
SQLITE_TRIGGERS_0006 = [
    "CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN "
    "INSERT INTO messages_fts (rowid, text) VALUES (new.id, new.text); END",
    "CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN "
    "INSERT INTO messages_fts (messages_fts, rowid, text) VALUES ('delete', old.id, old.text); END",
    "CREATE TRIGGER messages_fts_update AFTER UPDATE OF text ON messages BEGIN "
    "INSERT INTO messages_fts (messages_fts, rowid, text) VALUES ('delete', old.id, old.text); "
    "INSERT INTO messages_fts (rowid, text) VALUES (new.id, new.text); END",
]


def upgrade() -> None:
    # Plain ADD COLUMN with constant defaults: no table copy, instant on a million rows.
    op.add_column("messages", sa.Column("kind", sa.String(length=8), server_default="chat", nullable=False))
    op.add_column("messages", sa.Column("target", sa.BigInteger(), nullable=True))
    op.add_column("messages", sa.Column("edited_ms", sa.BigInteger(), nullable=True))
    op.add_column("messages", sa.Column("deleted", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column("messages", sa.Column("mentions", sa.Text(), nullable=True))
    op.create_index(
        "ix_messages_target",
        "messages",
        ["target"],
        sqlite_where=sa.text("target IS NOT NULL"),
        postgresql_where=sa.text("target IS NOT NULL"),
    )
    op.add_column("rooms", sa.Column("retention_days", sa.Integer(), nullable=True))
    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=64), nullable=False),
        sa.Column("expires_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leases")),
    )
    if op.get_bind().dialect.name == "sqlite":
        for statement in SQLITE_TRIGGERS_DROP + SQLITE_TRIGGERS_CHAT_ONLY:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for statement in SQLITE_TRIGGERS_DROP + SQLITE_TRIGGERS_0006:
            op.execute(statement)
    op.drop_table("leases")
    op.drop_column("rooms", "retention_days")
    op.drop_index("ix_messages_target", table_name="messages")
    for column in ("mentions", "deleted", "edited_ms", "target", "kind"):
        op.drop_column("messages", column)
