"""Search: a substring index on the messages' text (docs/protocol.md §13)

SQLite: an FTS5 table with the trigram tokenizer over the messages (external content:
the text is stored once, in messages), kept in step by triggers in the same transaction
as every insert, update of the text and delete — the writer, an import, `db copy` and
any later edit, delete or retention purge alike. PostgreSQL: pg_trgm's GIN index on
lower(text). Both find any substring of 3+ characters, case-insensitively, in any script.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SQLITE_UP = [
    # content=messages: the index keeps no copy of the text; content_rowid: its rowid is the message id.
    "CREATE VIRTUAL TABLE messages_fts USING fts5(text, content='messages', content_rowid='id', tokenize='trigram')",
    "CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN "
    "INSERT INTO messages_fts (rowid, text) VALUES (new.id, new.text); END",
    # An external-content table must be told the old text to take it out of the index.
    "CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN "
    "INSERT INTO messages_fts (messages_fts, rowid, text) VALUES ('delete', old.id, old.text); END",
    "CREATE TRIGGER messages_fts_update AFTER UPDATE OF text ON messages BEGIN "
    "INSERT INTO messages_fts (messages_fts, rowid, text) VALUES ('delete', old.id, old.text); "
    "INSERT INTO messages_fts (rowid, text) VALUES (new.id, new.text); END",
    "INSERT INTO messages_fts (messages_fts) VALUES ('rebuild')",
]
SQLITE_DOWN = [
    "DROP TRIGGER messages_fts_update",
    "DROP TRIGGER messages_fts_delete",
    "DROP TRIGGER messages_fts_insert",
    "DROP TABLE messages_fts",
]
POSTGRES_UP = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX ix_messages_text_trgm ON messages USING gin (lower(text) gin_trgm_ops)",
]
# The extension stays: another database object may use it.
POSTGRES_DOWN = ["DROP INDEX ix_messages_text_trgm"]


def upgrade() -> None:
    for statement in SQLITE_UP if op.get_bind().dialect.name == "sqlite" else POSTGRES_UP:
        op.execute(statement)


def downgrade() -> None:
    for statement in SQLITE_DOWN if op.get_bind().dialect.name == "sqlite" else POSTGRES_DOWN:
        op.execute(statement)
