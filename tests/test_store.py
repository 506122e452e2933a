"""Store's reads on a real SQLite database: history pages both ways, resuming, rooms,
and sessions that expire (their purge is a write: test_writes.py). The rows come in as
an operator's import would bring them."""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.dialects.postgresql import dialect as postgresql_dialect
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect

from quartchat import migrate
from quartchat.database import create_database
from quartchat.protocol import RESUME_LIMIT, now_ms
from quartchat.settings import Settings
from quartchat.store import AnySelect, Store, before_query, newest_query
from quartchat.transfer import import_records, read_export

from .support import sqlite_url

LOBBY_IDS = list(range(1, 12))  # 11 messages in the lobby, 2 in "dev"
LIFETIME_MS = 60_000


def exported(message_id: int, room: str) -> str:
    return json.dumps(
        {
            "id": message_id,
            "type": "chat",
            "room": room,
            "user": {"id": "u1", "name": "alice"},
            "data": f"message {message_id}",
            "ts": "2026-12-04T10:00:00.000Z",
        }
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    path = tmp_path / "store.db"
    await asyncio.to_thread(migrate.upgrade, sqlite_url(path))
    lines = [exported(i, "lobby") for i in LOBBY_IDS] + [exported(20, "dev"), exported(21, "dev")]
    database = create_database(Settings(database_url=sqlite_url(path), secret_key="s" * 32))
    await import_records(database.writer, read_export(io.StringIO("\n".join(lines)), "store.ndjson"))
    with sqlite3.connect(path) as connection:  # one live session, one past its lifetime
        connection.executemany(
            "INSERT INTO sessions (id, user_id, created_ms) VALUES (?, 'u1', ?)",
            [("live", now_ms()), ("old", now_ms() - LIFETIME_MS - 1000)],
        )
    connection.close()
    try:
        yield Store(database, LIFETIME_MS)
    finally:
        await database.dispose()


async def test_the_newest_page_is_oldest_first_and_says_whether_older_ones_exist(store: Store) -> None:
    page = await store.newest("lobby", 4)
    assert [m.id for m in page.messages] == LOBBY_IDS[-4:] and page.has_more
    everything = await store.newest("lobby", 50)
    assert [m.id for m in everything.messages] == LOBBY_IDS and not everything.has_more
    assert (await store.newest("empty", 5)).messages == []


async def test_pages_before_and_after_an_id_stay_in_their_room(store: Store) -> None:
    older = await store.before("lobby", 5, 3)
    assert [m.id for m in older.messages] == [2, 3, 4] and older.has_more
    newer = await store.after("lobby", 8, 10)
    assert [m.id for m in newer.messages] == [9, 10, 11] and not newer.has_more
    assert [m.id for m in (await store.after("dev", 0, 10)).messages] == [20, 21]


async def test_resume_sends_what_was_missed_or_resets_to_the_newest(store: Store) -> None:
    assert len(LOBBY_IDS) < RESUME_LIMIT, "what follows resumes within the limit"
    missed = await store.resume("lobby", 9, history_limit=3)
    assert [m.id for m in missed.messages] == [10, 11] and not missed.reset
    beyond = await store.resume("lobby", 99, history_limit=3)
    assert [m.id for m in beyond.messages] == LOBBY_IDS[-3:] and beyond.reset


async def test_rooms_are_summed_up_by_name(store: Store) -> None:
    summaries = {s.name: (s.messages, s.last_id) for s in await store.rooms()}
    assert summaries == {"dev": (2, 21), "lobby": (11, 11)}
    assert await store.room_last_id("lobby") == 11 and await store.room_last_id("none") == 0


async def test_a_session_past_its_lifetime_signs_nobody_in(store: Store) -> None:
    live = await store.session("live", "u1")
    assert live is not None and live.user.name == "alice"
    assert await store.session("live", "someone-else") is None
    assert await store.session("old", "u1") is None
    assert await store.live_sessions({"live", "old", "never"}) == {"live"}


# Reading the newest page of a room full of edits stays a range scan ----------------------

BIG_ROOM_ROWS = 1_000_000
EDIT_EVERY = 10  # 100,000 edit events among the million rows


def _plan(connection: sqlite3.Connection, query: AnySelect) -> list[str]:
    sql = str(query.compile(dialect=sqlite_dialect(), compile_kwargs={"literal_binds": True}))
    return [row[3] for row in connection.execute("EXPLAIN QUERY PLAN " + sql)]


async def test_the_newest_page_of_a_million_rows_with_100000_edits_is_a_range_scan_on_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "big.db"
    await asyncio.to_thread(migrate.upgrade, sqlite_url(path))
    with sqlite3.connect(path) as connection:
        # The search index is no part of this read: its trigger would only slow the build.
        connection.execute("DROP TRIGGER messages_fts_insert")
        connection.execute(
            "INSERT INTO users (id, name, name_key, created_ms, role, disabled) "
            "VALUES ('u1', 'alice', 'alice', 0, 'member', 0)"
        )
        connection.execute("INSERT INTO rooms (name, message_count, last_id) VALUES ('big', 0, 0), ('small', 0, 0)")
        # Every tenth row is an edit of the chat message before it; a small room around it.
        connection.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
            "INSERT INTO messages (id, room, user_id, text, ts_ms, ts, kind, target) "
            "SELECT i, CASE WHEN i % 1000 = 7 THEN 'small' ELSE 'big' END, 'u1', 'text ' || i, i, '', "
            "CASE WHEN i % ? = 0 THEN 'edit' ELSE 'chat' END, CASE WHEN i % ? = 0 THEN i - 1 END FROM n",
            (BIG_ROOM_ROWS, EDIT_EVERY, EDIT_EVERY),
        )
        assert connection.execute("SELECT count(*) FROM messages WHERE kind = 'edit'").fetchone()[0] == 100_000
        for query in (newest_query("big", 50), before_query("big", 500_000, 50)):
            plan = _plan(connection, query)
            assert any("messages USING INDEX ix_messages_room_id (room=?" in step for step in plan), plan
            assert not any("TEMP B-TREE" in step or step.startswith("SCAN messages") for step in plan), plan
    connection.close()
    database = create_database(Settings(database_url=sqlite_url(path), secret_key="s" * 32))
    try:
        page = await Store(database).newest("big", 50)
    finally:
        await database.dispose()
    assert len(page.messages) == 50 and all(m.kind == "chat" for m in page.messages)
    assert page.messages[-1].id == BIG_ROOM_ROWS - 1  # the last row is an edit
    assert page.has_more


async def test_the_newest_page_is_an_index_scan_on_postgresql(postgres_url: str) -> None:
    """A room as rooms are (1,500 rows, a tenth of them edits, among 150,000 in 100
    rooms, their messages interleaved): after ANALYZE the planner itself picks the
    backward scan of ix_messages_room_id, with no sort. (With the room a twenty-fifth of
    the table the planner would sometimes rather walk the primary key backwards,
    filtering on the room: 3 runs in 4 on one machine; at a hundredth it never does.)"""
    import asyncpg

    await asyncio.to_thread(migrate.upgrade, postgres_url)
    connection = await asyncpg.connect(postgres_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        await connection.execute(
            "INSERT INTO users (id, name, name_key, created_ms) VALUES ('u1', 'alice', 'alice', 0);"
            "INSERT INTO rooms (name, message_count, last_id) "
            "SELECT CASE WHEN r = 0 THEN 'big' ELSE 'room-' || r END, 0, 0 FROM generate_series(0, 99) AS r;"
            "INSERT INTO messages (room, user_id, text, ts_ms, ts, kind, target) "
            "SELECT CASE WHEN i % 100 = 0 THEN 'big' ELSE 'room-' || (i % 100) END, 'u1', 'text ' || i, i, '', "
            "CASE WHEN i % 1000 = 0 THEN 'edit' ELSE 'chat' END, CASE WHEN i % 1000 = 0 THEN i - 100 END "
            "FROM generate_series(1, 150000) AS i;"
            "ANALYZE messages; ANALYZE users;"
        )
        for query in (newest_query("big", 50), before_query("big", 75_000, 50)):
            sql = str(query.compile(dialect=postgresql_dialect(), compile_kwargs={"literal_binds": True}))
            plan = "\n".join(row[0] for row in await connection.fetch("EXPLAIN " + sql))
            assert "Index Scan Backward using ix_messages_room_id on messages" in plan, plan
            assert "Sort" not in plan and "Seq Scan on messages" not in plan, plan
    finally:
        await connection.close()
