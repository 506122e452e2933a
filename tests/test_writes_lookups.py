"""The message writer's per-batch lookups (quartchat/writes.py): the members-only check
of private rooms and DMs and the client_id lookup. Each is one statement of a fixed
shape that looks each key up by its index, however many messages are stored
(docs/performance.md, Access checks), and each stays right past one statement's keys."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, insert

from quartchat.database import Database
from quartchat.models import Membership, Room, User
from quartchat.protocol import UserRef
from quartchat.writes import (
    Draft,
    NotMember,
    Outcome,
    PostgresWrites,
    _sqlite_by_client_ids,
    _sqlite_members,
    create_writes,
)

from .test_writes import database_url  # noqa: F401  (both databases)

USERS = [UserRef(f"u-{i:03}", f"user{i:03}") for i in range(60)]


async def _rooms_and_members(database: Database) -> None:
    """Two private rooms whose members are the even users, and a public room."""
    async with database.writer.begin() as connection:
        await connection.execute(
            insert(User),
            [{"id": u.id, "name": u.name, "name_key": u.name, "password_hash": None, "created_ms": 0} for u in USERS],
        )
        await connection.execute(
            insert(Room),
            [
                {"name": name, "kind": kind, "message_count": 0, "last_id": 0, "created_ms": 1}
                for name, kind in (("p1", "private"), ("p2", "private"), ("open", "public"))
            ],
        )
        await connection.execute(
            insert(Membership),
            [
                {"room": room, "user_id": u.id, "role": "member", "joined_ms": 0}
                for room in ("p1", "p2")
                for u in USERS[::2]
            ],
        )


async def test_a_large_batch_checks_every_member_and_finds_every_retry(database: Database) -> None:
    """1,200 messages in one batch (more keys than one lookup statement takes): members
    stored, outsiders refused, and sent again, every stored one found by its client_id."""
    await _rooms_and_members(database)
    drafts = [Draft(("p1", "p2", "open")[i % 3], USERS[i % len(USERS)], f"m{i}", f"c{i}") for i in range(1200)]
    outsider = {i for i, d in enumerate(drafts) if d.room != "open" and int(d.user.id[2:]) % 2}
    writes = create_writes(database)
    await writes.open()
    try:
        first = await writes.commit_batch(drafts)
        again = await writes.commit_batch(drafts)
    finally:
        await writes.close()
    for outcomes in (first, again):
        assert {i for i, o in enumerate(outcomes) if isinstance(o, NotMember)} == outsider
    stored = [o for o in first if isinstance(o, Outcome)]
    assert len(stored) == 1200 - len(outsider) == 800 and all(o.fresh for o in stored)
    retried = [o for o in again if isinstance(o, Outcome)]
    assert not any(o.fresh for o in retried)
    assert [o.message for o in retried] == [o.message for o in stored], "each retry finds its own message"
    assert [(o.message.room, o.message.text) for o in stored] == [
        (d.room, d.text) for i, d in enumerate(drafts) if i not in outsider
    ]


def test_sqlite_looks_each_key_up_instead_of_scanning(tmp_path: Path) -> None:
    """SQLite ran `(a, b) IN (VALUES …)` as a scan of the whole index (every membership,
    every message ever stored, for each batch). The writer's statements search by key."""
    from quartchat import migrate

    path = tmp_path / "plan.db"
    migrate.upgrade(f"sqlite+aiosqlite:///{path}")
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO users (id, name, name_key, created_ms) VALUES ('u', 'u', 'u', 0)")
        db.execute("INSERT INTO rooms (name, message_count, last_id) VALUES ('r', 0, 0)")
        db.executemany(
            "INSERT INTO messages (room, user_id, text, ts_ms, client_id) VALUES ('r', 'u', 'x', 0, ?)",
            [(str(i),) for i in range(20_000)],
        )
        db.execute("ANALYZE")
        plans = {
            "memberships": db.execute(f"EXPLAIN QUERY PLAN {_sqlite_members(3)}", ("r", "u") * 3).fetchall(),
            "messages": db.execute(f"EXPLAIN QUERY PLAN {_sqlite_by_client_ids(3)}", ("u", "r", "1") * 3).fetchall(),
        }
    for table, plan in plans.items():
        details = [row[3] for row in plan]
        assert any(d.startswith("SEARCH m USING") for d in details), (table, details)
        assert not any(d.startswith("SCAN m") for d in details), (table, details)


# PostgreSQL's alone: SQLite's text is made once per size (lru_cache), its plan checked above.
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_postgres_members_check_is_one_statement_text_for_every_batch(database: Database) -> None:
    """Batches of 1, 7 and 40 messages in private rooms: the same SQL text each time
    (one compiled statement, one prepared statement), FOR SHARE, one per batch."""
    await _rooms_and_members(database)
    writes = create_writes(database)
    assert isinstance(writes, PostgresWrites)
    await writes.open()
    statements: list[str] = []
    assert writes._engine is not None

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "memberships" in statement:
            statements.append(statement)

    event.listen(writes._engine.sync_engine, "before_cursor_execute", seen)
    try:
        for size in (1, 7, 40):
            outcomes = await writes.commit_batch(
                [Draft("p1" if i % 2 else "p2", USERS[2 * (i % 30)], f"s{size}-{i}") for i in range(size)]
            )
            assert all(isinstance(o, Outcome) for o in outcomes)
        public = await writes.commit_batch([Draft("open", USERS[1], "public: no check")])
        assert isinstance(public[0], Outcome)
    finally:
        await writes.close()
    assert len(statements) == 3 and len(set(statements)) == 1, statements
    assert "FOR SHARE" in statements[0]
