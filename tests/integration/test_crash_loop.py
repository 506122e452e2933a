"""Crash loop: rounds of concurrent senders, the server SIGKILLed at a random moment,
restarted. After all rounds every message any client saw is stored, none twice, every
view was in id order, and retries with their client_id created nothing new.

The senders edit and delete their own messages meanwhile (docs/protocol.md §17): every
edit or delete any client saw is stored, each chat message's state is that of its
newest stored events, and no deleted text is left in any row of the database.

CI runs QUARTCHAT_CRASH_ROUNDS (default 3) rounds; the full run is
`QUARTCHAT_CRASH_ROUNDS=20 python -m pytest tests/integration/test_crash_loop.py`.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from ..conftest import StartServer
from ..support import Chat, Conn, User, need_service, unique

REPOSITORY = Path(__file__).resolve().parents[2]

ROUNDS = int(os.environ.get("QUARTCHAT_CRASH_ROUNDS", "3"))


async def chat_until_killed(
    conn: Conn, tag: str, sent: list[str], seen: list[dict[str, Any]], events: list[str]
) -> None:
    async def send() -> None:
        i = len(sent)
        while True:
            client_id = f"{tag}-{i}"
            sent.append(client_id)
            await conn.send_json({"type": "chat", "data": f"{tag} {i}", "client_id": client_id})
            mine = [m["id"] for m in seen if m["type"] == "chat" and m.get("client_id", "").startswith(f"{tag}-")]
            if mine and random.random() < 0.3:  # an edit, or now and then a delete, of one of its own
                kind = "delete" if random.random() < 0.25 else "edit"
                event_id = f"{tag}-{kind[0]}{i}"
                events.append(event_id)
                frame = {"type": kind, "id": random.choice(mine), "client_id": event_id}
                await conn.send_json(frame if kind == "delete" else frame | {"data": f"{tag} edit {i}"})
            i += 1
            await asyncio.sleep(random.uniform(0.001, 0.005))

    sending = asyncio.create_task(send())
    try:
        while True:
            frame = await conn.recv(timeout=30)
            if frame["type"] in ("chat", "edit", "delete"):
                seen.append(frame)
    except ConnectionClosed:
        pass
    finally:
        sending.cancel()
        await asyncio.gather(sending, return_exceptions=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None (a SQLite file of the test's own) or a scratch PostgreSQL database."""
    if request.param == "sqlite":
        yield None
        return
    name = unique("qc_crash_")
    created = subprocess.run(
        [sys.executable, "-m", "tests.postgres_database", "create", name],
        capture_output=True,
        text=True,
        cwd=REPOSITORY,
    )
    need_service(created.returncode == 0, "PostgreSQL on 127.0.0.1:5432")
    yield created.stdout.strip()
    subprocess.run([sys.executable, "-m", "tests.postgres_database", "drop", name], capture_output=True, cwd=REPOSITORY)


async def test_crash_loop_loses_nothing_seen_and_duplicates_nothing(
    start_server: StartServer, tmp_path: Path, database_url: str | None
) -> None:
    server = start_server(database_url=database_url, rate_limit="100000/1")
    room = unique("crash-")
    chat = Chat(server)
    users: list[User] = [await chat.user() for _ in range(4)]
    await chat.aclose()
    sent: dict[str, list[str]] = {f"s{i}": [] for i in range(len(users))}
    events_sent: dict[str, list[str]] = {tag: [] for tag in sent}
    views: list[list[dict[str, Any]]] = []
    for round_number in range(ROUNDS):
        if round_number:
            server.start()
        chat = Chat(server)
        conns = [await chat.open(chat.again(user), room) for user in users]
        round_views: list[list[dict[str, Any]]] = [[] for _ in conns]
        tasks = [
            asyncio.create_task(chat_until_killed(conn, tag, sent[tag], view, events_sent[tag]))
            for conn, tag, view in zip(conns, sent, round_views, strict=True)
        ]
        await asyncio.sleep(random.uniform(0.3, 1.5))
        server.stop(signal.SIGKILL)
        await asyncio.gather(*tasks)
        await chat.aclose()
        views.extend(round_views)

    server.start()
    chat = Chat(server)
    try:
        reader = chat.again(users[0])
        stored = {m["id"]: m for m in await chat.all_messages(reader, room)}
        seen_total = 0
        for view in views:
            ids = [m["id"] for m in view]
            assert ids == sorted(ids), "a client saw messages out of id order"
            for message in view:
                assert as_seen(stored.get(message["id"])) == as_seen(message), "a client saw a row that is not stored"
            seen_total += len(view)
        assert seen_total > 0
        client_ids = [m["client_id"] for m in stored.values()]
        assert len(client_ids) == len(set(client_ids)), "a message was stored twice"
        seen_events = sum(m["type"] != "chat" for view in views for m in view)
        deleted = check_current_state(list(stored.values()))
        await check_no_deleted_text(server.database_url, room, deleted)
        # Every sender retries everything it ever sent: nothing new for what was stored.
        before = len(stored)
        for user, (tag, ids_sent) in zip(users, sent.items(), strict=True):
            conn = await chat.open(chat.again(user), room)
            for client_id in ids_sent:
                await conn.send_json(
                    {"type": "chat", "data": f"{tag} {client_id.split('-')[1]}", "client_id": client_id}
                )
            got = 0
            while got < len(ids_sent):
                frame = await conn.recv(timeout=30)
                got += frame["type"] == "chat" and frame.get("client_id", "").startswith(f"{tag}-")
        final = await chat.all_messages(reader, room)
        chats = [m for m in final if m["type"] == "chat"]
        assert len(chats) == sum(len(ids) for ids in sent.values()), "each client_id stored exactly once"
        assert len({m["client_id"] for m in final}) == len(final)
        assert len(final) >= before
        print(
            f"crash loop: {ROUNDS} rounds, {seen_total} deliveries seen, {before} stored before the retries, "
            f"{sum(len(i) for i in sent.values())} client_ids sent, {len(chats)} stored after them, "
            f"{sum(len(e) for e in events_sent.values())} edits and deletes sent, {seen_events} seen, "
            f"{len(deleted)} messages deleted, 0 lost, 0 duplicated"
        )
    finally:
        await chat.aclose()


def as_seen(row: dict[str, Any] | None) -> dict[str, Any] | None:
    """A row as it was delivered: a chat message's state may have changed since (its
    `after` form is current), an edit's text is erased by a later delete."""
    if row is None:
        return None
    return {k: v for k, v in row.items() if k not in ("data", "edited", "deleted")}


def check_current_state(rows: list[dict[str, Any]]) -> set[int]:
    """Each chat message is as its newest stored events say; the ids of the deleted ones."""
    chats = {m["id"]: m for m in rows if m["type"] == "chat"}
    newest_edit: dict[int, dict[str, Any]] = {}
    deleted: set[int] = set()
    for row in rows:  # oldest first
        if row["type"] == "edit":
            assert row["target"] not in deleted, "an edit was stored after its message's delete"
            newest_edit[row["target"]] = row
        elif row["type"] == "delete":
            assert row["target"] not in deleted, "a message was deleted twice"
            deleted.add(row["target"])
        if row["type"] != "chat":
            assert row["user"] == chats[row["target"]]["user"], "an event by someone other than the author"
    for message_id, message in chats.items():
        edit = newest_edit.get(message_id)
        if message_id in deleted:
            assert (message["data"], message["deleted"]) == ("", True)
            assert edit is None or edit["data"] == "", "a deleted message's edit kept its text"
        elif edit is not None:
            assert (message["data"], message["edited"]) == (edit["data"], edit["ts"])
        else:
            assert "edited" not in message and "deleted" not in message
    return deleted


async def check_no_deleted_text(database_url: str, room: str, deleted: set[int]) -> None:
    """Read every row of the room straight from the database: a deleted message and its
    edits hold no text."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                text("SELECT id, target, text FROM messages WHERE room = :room"), {"room": room}
            )
            for row in rows:
                if row.id in deleted or (row.target in deleted):
                    assert row.text == "", f"row {row.id} still holds a deleted text: {row.text!r}"
    finally:
        await engine.dispose()
