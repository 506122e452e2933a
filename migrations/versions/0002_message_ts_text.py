"""messages.ts: the time as text, beside ts_ms

Exports write every message's time as docs/protocol.md §5 formats it; keeping that text means
SQLite's export need not format a million dates (strftime was a third of its cost).
Existing rows are filled in by the database itself, in one UPDATE.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Both render protocol.format_ts exactly: milliseconds, three digits, and a Z.
FILL = {
    "sqlite": "UPDATE messages SET ts = strftime('%Y-%m-%dT%H:%M:%fZ', ts_ms / 1000.0, 'unixepoch')",
    "postgresql": (
        "UPDATE messages SET ts = to_char("
        "timestamp 'epoch' + ts_ms * interval '1 millisecond', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
    ),
}


def upgrade() -> None:
    op.add_column("messages", sa.Column("ts", sa.String(length=32), server_default="", nullable=False))
    op.execute(FILL[op.get_context().dialect.name])


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("ts")
