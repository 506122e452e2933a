"""Retention on a real server (docs/protocol.md §19): old messages disappear within the
promised time while senders keep sending, their texts leave the SQLite files, and with
two workers on PostgreSQL exactly one of them purges."""

from __future__ import annotations

import asyncio
import re
import secrets
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from quartchat.protocol import format_ts, now_ms

from ..conftest import RedisServer
from ..support import Chat, Conn, Server, quartchat_env, run_cli, sqlite_url, until

pytestmark = pytest.mark.asyncio

DAY_MS = 86_400_000
OLD_MESSAGES = 600
SENDERS = 5


def old_history(room: str, secret: str) -> list[dict[str, Any]]:
    """OLD_MESSAGES messages of three days ago, the secret in one, and an edit of it."""
    start = now_ms() - 3 * DAY_MS
    rows: list[dict[str, Any]] = [
        {
            "room": room,
            "user_id": "u-old",
            "text": secret if i == 100 else f"old message {i}",
            "ts_ms": start + i,
            "ts": format_ts(start + i),
            "kind": "chat",
            "target": None,
        }
        for i in range(OLD_MESSAGES)
    ]
    return rows


async def seed(database_url: str, room: str, secret: str) -> None:
    """A user, a room and its old history, written straight into a migrated database."""
    engine = create_async_engine(database_url)
    rows = old_history(room, secret)
    async with engine.begin() as connection:
        await connection.execute(
            text("INSERT INTO users (id, name, name_key, created_ms) VALUES ('u-old', 'old', 'old', 0)")
        )
        await connection.execute(
            text("INSERT INTO rooms (name, message_count, last_id) VALUES (:room, :count, 0)"),
            {"room": room, "count": len(rows)},
        )
        await connection.execute(
            text(
                "INSERT INTO messages (room, user_id, text, ts_ms, ts, kind, target) "
                "VALUES (:room, :user_id, :text, :ts_ms, :ts, :kind, :target)"
            ),
            rows,
        )
        first = await connection.scalar(text("SELECT min(id) FROM messages WHERE text = :secret"), {"secret": secret})
        await connection.execute(
            text(
                "INSERT INTO messages (room, user_id, text, ts_ms, ts, kind, target) "
                "VALUES (:room, 'u-old', :text, :ts_ms, :ts, 'edit', :target)"
            ),
            {"room": room, "text": secret + " (edited)", "ts_ms": now_ms(), "ts": format_ts(now_ms()), "target": first},
        )
        await connection.execute(
            text("UPDATE rooms SET last_id = (SELECT max(id) FROM messages) WHERE name = :room"), {"room": room}
        )
    await engine.dispose()


def leaks(path: Path, *texts: str) -> list[str]:
    """Which of the SQLite files (and rows of the search index's data) hold a needle of
    one of the texts: its first 30 bytes, and the tails of its first trigrams (see
    tests/test_erasure.py)."""
    needles = [n for t in texts for n in (t.encode()[:30], t[1:3].encode(), t[2:4].encode())]
    found = [
        f"{file.name}: {needle!r}"
        for file in path.parent.glob(path.name + "*")
        if file.suffix != ".secret"
        for needle in needles
        if needle in file.read_bytes()
    ]
    with sqlite3.connect(path) as connection:
        blocks = connection.execute("SELECT block FROM messages_fts_data").fetchall()
    return found + [f"messages_fts_data: {n!r}" for (b,) in blocks for n in needles if b and n in b]


async def keep_sending(conn: Conn, sent: list[str], stop: asyncio.Event) -> None:
    """Send, wait for the message to come back (the others' arrive in between), again."""
    while not stop.is_set():
        value = f"new {secrets.token_hex(4)}"
        await conn.send_json({"type": "chat", "data": value, "client_id": value})
        while (await conn.expect("chat")).get("client_id") != value:
            pass
        sent.append(value)


async def test_old_messages_go_within_the_interval_while_senders_keep_sending(tmp_path: Path) -> None:
    room, secret = "history", f"龘靐齉 retention secret {secrets.token_hex(4)}"
    url = sqlite_url(tmp_path / "chat.db")
    migrated = await asyncio.to_thread(run_cli, quartchat_env(url), tmp_path, "db", "upgrade")
    assert migrated.returncode == 0, migrated.stderr
    await seed(url, room, secret)
    server = Server(tmp_path, url, rate_limit="100000/1", retention_days="1", retention_interval_seconds="3")
    server.start()
    chat = Chat(server)
    try:
        senders = [await chat.open(await chat.user(), room) for _ in range(SENDERS)]
        sent: list[str] = []
        stop = asyncio.Event()
        sending = [asyncio.create_task(keep_sending(conn, sent, stop)) for conn in senders]
        reader = await chat.user()

        async def only_new_left() -> bool:
            found = await chat.all_messages(reader, room)
            return bool(found) and all(m["data"].startswith("new ") for m in found)

        # A pass every 3 s, the first 3 s after start-up: it deletes them while the
        # senders send.
        await until(only_new_left, "the old messages purged", timeout=15)
        stop.set()
        await asyncio.gather(*sending)

        found = await chat.all_messages(reader, room)
        assert sorted(m["data"] for m in found) == sorted(sent), "a new message was lost"
        assert len(sent) > 50
        rooms = (await reader.http.get("/api/rooms")).json()["rooms"]
        assert [r["messages"] for r in rooms if r["name"] == room] == [len(sent)]

        await until(lambda: not leaks(tmp_path / "chat.db", secret), "the purged texts gone from the files", timeout=45)
    finally:
        await chat.aclose()
        server.stop()


async def test_with_two_workers_on_postgresql_one_purges(
    tmp_path: Path, postgres_url: str, redis_server: RedisServer
) -> None:
    room = "history"
    migrated = await asyncio.to_thread(run_cli, quartchat_env(postgres_url), tmp_path, "db", "upgrade")
    assert migrated.returncode == 0, migrated.stderr
    await seed(postgres_url, room, "a secret")
    server = Server(
        tmp_path,
        postgres_url,
        broker_url=redis_server.url,
        retention_days="1",
        retention_interval_seconds="1",
    )
    await server.start_workers(2)
    engine = create_async_engine(postgres_url)
    try:

        async def room_empty() -> bool:
            async with engine.connect() as connection:
                left = await connection.scalar(text("SELECT count(*) FROM messages WHERE room = :r"), {"r": room})
            return left == 0

        await until(room_empty, "the old messages purged", timeout=30)
        await asyncio.sleep(3)  # three more passes: the other worker must not take the lease meanwhile
        purges = re.findall(r"\[(\d+)\] quartchat\.retention: deleted (\d+)", server.log())
        assert len({pid for pid, _ in purges}) == 1, server.log()
        assert sum(int(count) for _, count in purges) == OLD_MESSAGES + 1
        async with engine.connect() as connection:
            holders = (await connection.execute(text("SELECT holder FROM leases"))).scalars().all()
            count = await connection.scalar(text("SELECT message_count FROM rooms WHERE name = :r"), {"r": room})
        assert len(holders) == 1 and count == 0
    finally:
        await engine.dispose()
        server.stop()


async def test_a_delete_frame_erases_the_text_from_every_sqlite_file_within_seconds(tmp_path: Path) -> None:
    """Through the real frames: a room of hundreds of messages, one edited twice, then
    deleted; within seconds no byte of chat.db, -wal or -shm holds any of its texts."""
    server = Server(tmp_path, rate_limit="100000/1").start()
    chat = Chat(server)
    tag = secrets.token_hex(4)
    texts = (f"龘靐齉 the first text {tag}", f"麤爩驫 an edit {tag}", f"鱻灥厵 a long edit {tag} " + "齾龖 " * 1200)
    try:
        author = await chat.open(await chat.user(), "erase")
        for i in range(300):
            data = texts[0] if i == 150 else f"message {i}"
            await author.send_json({"type": "chat", "data": data, "client_id": f"m{i}"})
        target = next(m for m in await author.chats(300, timeout=30) if m["data"] == texts[0])["id"]
        for edit in texts[1:]:
            await author.send_json({"type": "edit", "id": target, "data": edit})
            await author.expect("edit")
        assert leaks(tmp_path / "chat.db", *texts), "the needles must find the texts before the delete"
        await author.send_json({"type": "delete", "id": target})
        await author.expect("delete")

        await until(lambda: not leaks(tmp_path / "chat.db", *texts), "the texts gone from every file", timeout=20)
        assert "quartchat.erasure: erasure scrub" in server.log()
    finally:
        await chat.aclose()
        server.stop()
