"""The models and the migrations agree; history queries are index range scans."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, create_engine, inspect, text, true
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import create_async_engine

from quartchat import migrate
from quartchat.models import Base, Message
from quartchat.protocol import format_ts
from quartchat.search import in_the_models, parse, search_query
from quartchat.store import message_select


@pytest.fixture
def migrated(tmp_path: Path) -> str:
    migrate.upgrade(f"sqlite+aiosqlite:///{tmp_path}/m.db")
    return f"sqlite:///{tmp_path}/m.db"


def test_autogenerate_finds_nothing_between_models_and_migrations(migrated: str) -> None:
    with create_engine(migrated).connect() as connection:
        differences = compare_metadata(
            MigrationContext.configure(connection, opts={"include_name": in_the_models}), Base.metadata
        )
    assert differences == []


def test_downgrade_to_base_and_upgrade_again(tmp_path: Path, migrated: str) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/m.db"
    assert migrate.current(url).endswith("(head)")
    migrate.downgrade(url, "base")
    assert inspect(create_engine(migrated)).get_table_names() == ["alembic_version"]
    migrate.upgrade(url)
    assert {"users", "sessions", "rooms", "messages"} <= set(inspect(create_engine(migrated)).get_table_names())


def test_the_name_skeleton_migration_fills_in_existing_accounts(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/s.db"
    migrate.upgrade(url, "0003")
    names = {"u-1": "alice", "u-2": "Barn", "u-3": "\u5f20\u4f1f"}
    with create_engine(f"sqlite:///{tmp_path}/s.db").begin() as connection:
        for user_id, name in names.items():
            connection.execute(
                text("INSERT INTO users (id, name, name_key, created_ms) VALUES (:id, :name, :key, 0)"),
                {"id": user_id, "name": name, "key": name.casefold()},
            )
    migrate.upgrade(url)
    with create_engine(f"sqlite:///{tmp_path}/s.db").connect() as connection:
        skeletons = dict(connection.execute(text("SELECT id, name_skeleton FROM users")).all())
    assert skeletons == {"u-1": "alice", "u-2": "barn", "u-3": "\u5f20\u4f1f"}


# Edges of the formatting: whole seconds, .999, before 1970, a leap day, far ahead.
TIMES_MS = [0, 999, 1_790_000_000_000, 1_790_000_000_999, -1_500, 951_782_400_123, 253_402_300_799_999]


def _fill_at_0001(connection: Connection) -> None:
    connection.execute(text("INSERT INTO rooms VALUES ('r', :n, :n)"), {"n": len(TIMES_MS)})
    connection.execute(text("INSERT INTO users VALUES ('u', 'U', 'u', NULL, 0)"))
    for number, ts_ms in enumerate(TIMES_MS, start=1):
        connection.execute(
            text("INSERT INTO messages (id, room, user_id, text, ts_ms) VALUES (:id, 'r', 'u', 'x', :ts)"),
            {"id": number, "ts": ts_ms},
        )


def _stored_times(connection: Connection) -> list[tuple[int, str]]:
    return [(row.ts_ms, row.ts) for row in connection.execute(text("SELECT ts_ms, ts FROM messages ORDER BY id"))]


def test_migration_0002_writes_every_old_time_as_the_protocol_does(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/old.db"
    migrate.upgrade(url, "0001")
    engine = create_engine(f"sqlite:///{tmp_path}/old.db")
    with engine.begin() as connection:
        _fill_at_0001(connection)
    migrate.upgrade(url)
    with engine.connect() as connection:
        assert _stored_times(connection) == [(ms, format_ts(ms)) for ms in TIMES_MS]


async def upgrade_postgresql(
    url: str, revision: str, fill: Callable[[Connection], None], then: Callable[[Connection], Any]
) -> Any:
    """Migrate to `revision`, `fill` the database, migrate to the newest, `then` look."""
    await asyncio.to_thread(migrate.upgrade, url, revision)
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(fill)
        await asyncio.to_thread(migrate.upgrade, url)
        async with engine.begin() as connection:
            return await connection.run_sync(then)
    finally:
        await engine.dispose()


async def test_migration_0002_on_postgresql(postgres_url: str) -> None:
    stored = await upgrade_postgresql(postgres_url, "0001", _fill_at_0001, _stored_times)
    assert stored == [(ms, format_ts(ms)) for ms in TIMES_MS]


_INSERT_MESSAGE = text(
    "INSERT INTO messages (id, room, user_id, text, ts_ms, ts, client_id) VALUES (:id, :room, 'u', 'x', 0, '', 'k')"
)


def _fill_at_0002(connection: Connection) -> None:
    connection.execute(text("INSERT INTO rooms VALUES ('r', 1, 1)"))
    connection.execute(text("INSERT INTO users VALUES ('u', 'U', 'u', NULL, 0)"))
    connection.execute(_INSERT_MESSAGE, {"id": 1, "room": "r"})


def _client_id_in_two_rooms(connection: Connection) -> None:
    """At 0003 the same user's client_id 'k' goes into a second room; not twice into one."""
    connection.execute(text("INSERT INTO rooms (name, message_count, last_id) VALUES ('s', 0, 0)"))
    connection.execute(_INSERT_MESSAGE, {"id": 2, "room": "s"})
    with pytest.raises(IntegrityError), connection.begin_nested():
        connection.execute(_INSERT_MESSAGE, {"id": 3, "room": "r"})


def test_migration_0003_scopes_client_ids_per_user_and_room(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/old.db")
    migrate.upgrade(f"sqlite+aiosqlite:///{tmp_path}/old.db", "0002")
    with engine.begin() as connection:
        _fill_at_0002(connection)
    migrate.upgrade(f"sqlite+aiosqlite:///{tmp_path}/old.db")
    with engine.begin() as connection:
        _client_id_in_two_rooms(connection)


async def test_migration_0003_on_postgresql(postgres_url: str) -> None:
    await upgrade_postgresql(postgres_url, "0002", _fill_at_0002, _client_id_in_two_rooms)


def _fill_at_0004(connection: Connection) -> None:
    """Three accounts (the oldest is not the first by id), two rooms, messages by two of them."""
    for user_id, created_ms in (("u-a", 300), ("u-b", 100), ("u-c", 200)):
        connection.execute(
            text("INSERT INTO users (id, name, name_key, created_ms) VALUES (:id, :id, :id, :ms)"),
            {"id": user_id, "ms": created_ms},
        )
    connection.execute(text("INSERT INTO rooms (name, message_count, last_id) VALUES ('lobby', 3, 3), ('dev', 1, 4)"))
    for message_id, room, user_id, ts_ms in (
        (1, "lobby", "u-a", 10),
        (2, "lobby", "u-a", 20),
        (3, "lobby", "u-c", 30),
        (4, "dev", "u-a", 40),
    ):
        connection.execute(
            text("INSERT INTO messages (id, room, user_id, text, ts_ms, ts) VALUES (:id, :room, :user, 'x', :ts, '')"),
            {"id": message_id, "room": room, "user": user_id, "ts": ts_ms},
        )


def _access_after_0005(connection: Connection) -> dict[str, Any]:
    return {
        "roles": dict(connection.execute(text("SELECT id, role FROM users ORDER BY id")).all()),
        "disabled": {bool(d) for (d,) in connection.execute(text("SELECT disabled FROM users"))},
        "kinds": dict(connection.execute(text("SELECT name, kind FROM rooms ORDER BY name")).all()),
        "members": connection.execute(
            text("SELECT room, user_id, role, joined_ms, last_read_id FROM memberships ORDER BY room, user_id")
        ).all(),
    }


ACCESS_AFTER_0005 = {
    "roles": {"u-a": "member", "u-b": "admin", "u-c": "member"},  # the oldest account is the admin
    "disabled": {False},
    "kinds": {"dev": "public", "lobby": "public"},  # every existing room is public
    "members": [  # whoever posted in a room is its member, since its first message there
        ("dev", "u-a", "member", 40, 0),
        ("lobby", "u-a", "member", 10, 0),
        ("lobby", "u-c", "member", 30, 0),
    ],
}


def test_migration_0005_starts_existing_deployments_sensibly(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/old.db")
    migrate.upgrade(f"sqlite+aiosqlite:///{tmp_path}/old.db", "0004")
    with engine.begin() as connection:
        _fill_at_0004(connection)
    migrate.upgrade(f"sqlite+aiosqlite:///{tmp_path}/old.db")
    with engine.connect() as connection:
        found = _access_after_0005(connection)
    assert {**found, "members": [tuple(r) for r in found["members"]]} == ACCESS_AFTER_0005


async def test_migration_0005_on_postgresql(postgres_url: str) -> None:
    found = await upgrade_postgresql(postgres_url, "0004", _fill_at_0004, _access_after_0005)
    assert {**found, "members": [tuple(r) for r in found["members"]]} == ACCESS_AFTER_0005


def test_the_database_runs_in_wal_mode(migrated: str) -> None:
    with create_engine(migrated).connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"


@pytest.mark.parametrize(
    "query",
    [
        message_select().where(Message.room == "r").order_by(Message.id.desc()).limit(51),
        message_select().where(Message.room == "r", Message.id > 5).order_by(Message.id).limit(1001),
        message_select().where(Message.room == "r", Message.id < 5).order_by(Message.id.desc()).limit(51),
    ],
    ids=["newest", "after", "before"],
)
def test_history_reads_are_index_range_scans(migrated: str, query: object) -> None:
    engine = create_engine(migrated)
    compiled = query.compile(engine, compile_kwargs={"literal_binds": True})  # type: ignore[attr-defined]
    with engine.connect() as connection:
        plan = " | ".join(row[-1] for row in connection.execute(text(f"EXPLAIN QUERY PLAN {compiled}")))
    assert "SEARCH messages USING" in plan and "ix_messages_room_id" in plan, plan
    assert "SCAN messages" not in plan and "TEMP B-TREE" not in plan, plan


def _fill_texts_at_0005(connection: Connection) -> None:
    """A history written before the search index existed."""
    connection.execute(text("INSERT INTO users (id, name, name_key, created_ms) VALUES ('u', 'u', 'u', 0)"))
    connection.execute(text("INSERT INTO rooms (name, message_count, last_id) VALUES ('lobby', 3, 3)"))
    for message_id, body in ((1, "Hello old world"), (2, "大家你好啊"), (3, "nothing to see")):
        connection.execute(
            text("INSERT INTO messages (id, room, user_id, text, ts_ms, ts) VALUES (:id, 'lobby', 'u', :t, 0, '')"),
            {"id": message_id, "t": body},
        )


def _found_after_0006(connection: Connection) -> dict[str, list[int]]:
    """What the search finds in that history once migrated (quartchat/search.py's own SQL)."""
    found = {}
    for q in ("old world", "大家你好", "你好", "see hello"):
        query = search_query(parse(q), lambda _room: true(), sqlite=connection.dialect.name == "sqlite", limit=10)
        found[q] = [row.id for row in connection.execute(query)]
    return found


FOUND_AFTER_0006 = {"old world": [1], "大家你好": [2], "你好": [2], "see hello": []}


def test_migration_0006_indexes_the_history_already_there(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/old.db"
    engine = create_engine(f"sqlite:///{tmp_path}/old.db")
    migrate.upgrade(url, "0005")
    with engine.begin() as connection:
        _fill_texts_at_0005(connection)
    migrate.upgrade(url)
    with engine.begin() as connection:
        assert _found_after_0006(connection) == FOUND_AFTER_0006
        # FTS5 raises SQLITE_CORRUPT_VTAB here if the index and the table disagree.
        connection.execute(text("INSERT INTO messages_fts (messages_fts) VALUES ('integrity-check')"))
    migrate.downgrade(url, "0005")
    names = set(inspect(engine).get_table_names())
    assert "messages_fts" not in names and "messages" in names


async def test_migration_0006_on_postgresql(postgres_url: str) -> None:
    found = await upgrade_postgresql(postgres_url, "0005", _fill_texts_at_0005, _found_after_0006)
    assert found == FOUND_AFTER_0006
    engine = create_async_engine(postgres_url)
    try:
        async with engine.connect() as connection:
            index = await connection.scalar(
                text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_messages_text_trgm'")
            )
        assert index is not None and "gin (lower(text) gin_trgm_ops)" in index
        await asyncio.to_thread(migrate.downgrade, postgres_url, "0005")
        async with engine.connect() as connection:
            gone = await connection.scalar(
                text("SELECT count(*) FROM pg_indexes WHERE indexname = 'ix_messages_text_trgm'")
            )
        assert gone == 0
    finally:
        await engine.dispose()


def _state_after_0007(connection: Connection) -> dict[str, Any]:
    """The history of 0005 as 0007 leaves it: chat rows, nothing edited or deleted."""
    rows = connection.execute(
        text("SELECT id, kind, target, edited_ms, deleted, mentions FROM messages ORDER BY id")
    ).all()
    return {"rows": [tuple(row) for row in rows], "found": _found_after_0006(connection)}


STATE_AFTER_0007 = {
    "rows": [
        (1, "chat", None, None, False, None),
        (2, "chat", None, None, False, None),
        (3, "chat", None, None, False, None),
    ],
    "found": FOUND_AFTER_0006,
}


def _normalized(state: dict[str, Any]) -> dict[str, Any]:
    # SQLite gives a boolean column back as 0 or 1 through text().
    rows = [
        (i, kind, target, edited, bool(deleted), mentions)
        for i, kind, target, edited, deleted, mentions in state["rows"]
    ]
    return {**state, "rows": rows}


def test_migration_0007_keeps_the_history_as_chat_and_indexes_only_chat_rows(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/old.db"
    engine = create_engine(f"sqlite:///{tmp_path}/old.db")
    migrate.upgrade(url, "0005")
    with engine.begin() as connection:
        _fill_texts_at_0005(connection)
    migrate.upgrade(url)
    with engine.begin() as connection:
        assert _normalized(_state_after_0007(connection)) == STATE_AFTER_0007
        # An edit event's text never enters the search index; the chat row's new text does.
        connection.execute(
            text(
                "INSERT INTO messages (id, room, user_id, text, ts_ms, ts, kind, target) "
                "VALUES (4, 'lobby', 'u', 'brand new words', 0, '', 'edit', 1)"
            )
        )
        connection.execute(text("UPDATE messages SET text = 'brand new words', edited_ms = 1 WHERE id = 1"))
        indexed = connection.execute(
            text("SELECT rowid FROM messages_fts WHERE messages_fts MATCH '\"new words\"' ORDER BY rowid")
        ).scalars()
        assert list(indexed) == [1]
        connection.execute(text("INSERT INTO messages_fts (messages_fts) VALUES ('integrity-check')"))
    migrate.downgrade(url, "0006")
    with engine.connect() as connection:
        columns = {column["name"] for column in inspect(connection).get_columns("messages")}
    assert "kind" not in columns and "leases" not in inspect(engine).get_table_names()


async def test_migration_0007_on_postgresql(postgres_url: str) -> None:
    state = await upgrade_postgresql(postgres_url, "0005", _fill_texts_at_0005, _state_after_0007)
    assert _normalized(state) == STATE_AFTER_0007
    await asyncio.to_thread(migrate.downgrade, postgres_url, "0006")
    await asyncio.to_thread(migrate.upgrade, postgres_url)
