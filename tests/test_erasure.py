"""Delete means gone (quartchat/erasure.py): after a delete, a deleted text and its edits'
texts are in no raw SQL read, and on SQLite, once the scrub has run, in no byte of the
database file, its WAL, its -shm file or the search index's shadow tables."""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select, text

from quartchat.database import Database
from quartchat.erasure import Scrubber, erase_texts, scrub_sqlite
from quartchat.models import Message
from quartchat.protocol import format_ts, now_ms
from quartchat.writes import Draft

from . import postgres_database
from .support import ALICE, need_service, unique, until
from .test_writer import Committed, new_writer
from .test_writes import _in_a_thread

ROOM_SIZE = 400


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/erase.db"
        return
    name = unique("qc_erase_")
    if _in_a_thread(postgres_database.main("create", name)) != 0:
        need_service(False, "PostgreSQL on 127.0.0.1:5432")
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        _in_a_thread(postgres_database.main("drop", name))


def markers() -> tuple[str, str, str]:
    """A chat text, its edit's text and a long edit (past one page: overflow pages), each
    unique. CJK characters found in no other text: every trigram of the search index that
    holds them starts with a character of its own, so its last two characters are in the
    index's bytes whole (FTS5 shares only the leading bytes of neighbouring terms)."""
    tag = secrets.token_hex(6)
    return (
        f"龘靐齉 original {tag}",
        f"麤爩驫 edited {tag}",
        f"鱻灥厵 long edit {tag} " + "齾龖 secret ballast " * 300,
    )


def needles(texts: tuple[str, ...]) -> list[bytes]:
    """Byte strings that give each text away: the text itself (its first 60 bytes) and
    the last two characters of its first trigrams, as the search index stores them."""
    found = []
    for value in texts:
        found.append(value.encode()[:60])
        found.extend(value[i + 1 : i + 3].encode() for i in range(2))
    return found


def leaks(path: Path, texts: tuple[str, ...]) -> list[str]:
    """Which files, and which search index rows, still hold one of the texts' needles."""
    found = []
    for suffix in ("", "-wal", "-shm"):
        file = Path(f"{path}{suffix}")
        if file.exists():
            content = file.read_bytes()
            found += [f"{file.name}: {n.decode()!r}" for n in needles(texts) if n in content]
    with sqlite3.connect(path) as connection:
        for (block,) in connection.execute("SELECT block FROM messages_fts_data"):
            found += [f"messages_fts_data: {n.decode()!r}" for n in needles(texts) if block and n in block]
    return found


async def write_room(database: Database, room: str, secret: str) -> list[int]:
    """ROOM_SIZE messages through the real writer, the secret in the middle one."""
    writer = new_writer(database, Committed())
    writer.start()
    texts = [secret if i == ROOM_SIZE // 2 else f"message {i} in {room}, nothing to hide" for i in range(ROOM_SIZE)]
    outcomes = [await writer.submit(Draft(room, ALICE, t)) for t in texts[:10]]
    outcomes += await asyncio.gather(*(writer.submit(Draft(room, ALICE, t)) for t in texts[10:]))
    await writer.close()
    return [o.message.id for o in outcomes]


async def edit_and_delete(database: Database, room: str, target: int, edits: tuple[str, ...]) -> None:
    """What the message writer does for edit frames and then a delete frame: events in the
    room's sequence, the chat row's text the newest edit's; the delete erases them all."""
    ts_ms = now_ms()
    event = {"room": room, "user_id": ALICE.id, "ts_ms": ts_ms, "ts": format_ts(ts_ms), "target": target}
    async with database.writer.begin() as connection:
        for edit in edits:
            await connection.execute(insert(Message).values(kind="edit", text=edit, **event))
            await connection.execute(Message.__table__.update().where(Message.id == target).values(text=edit))
    async with database.writer.begin() as connection:
        await connection.execute(insert(Message).values(kind="delete", text="", **event))
        await connection.run_sync(erase_texts, [target])


async def test_after_a_delete_no_sql_read_finds_the_text_or_its_edits(database: Database) -> None:
    secret, edit, long_edit = markers()
    ids = await write_room(database, "erase", secret)
    target = ids[ROOM_SIZE // 2]
    await edit_and_delete(database, "erase", target, (edit, long_edit))

    async with database.reader.connect() as connection:
        for value in (secret, edit, long_edit):
            hits = await connection.scalar(select(func.count()).where(Message.text.contains(value[:20])))
            assert hits == 0, f"{value[:20]!r} is still in messages"
        row = (await connection.execute(select(Message.text, Message.deleted).where(Message.id == target))).one()
        assert tuple(row) == ("", True)
        events = (await connection.execute(select(Message.kind, Message.text).where(Message.target == target))).all()
        assert sorted(tuple(e) for e in events) == [("delete", ""), ("edit", ""), ("edit", "")]
        others = await connection.scalar(select(func.count()).where(Message.room == "erase", Message.text != ""))
        assert others == ROOM_SIZE - 1
        if database.is_sqlite:
            found = await connection.scalar(
                text("SELECT count(*) FROM messages_fts WHERE messages_fts MATCH :q"), {"q": f'"{secret[:3]}"'}
            )
            assert found == 0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_after_the_scrub_no_byte_of_the_sqlite_files_holds_the_text(database: Database, tmp_path: Path) -> None:
    path = tmp_path / "erase.db"
    secret, edit, long_edit = markers()
    ids = await write_room(database, "erase", secret)
    target = ids[ROOM_SIZE // 2]
    async with database.writer.begin() as connection:  # more segments in the index, as a day of chat makes
        for i in range(5):
            await connection.execute(
                insert(Message).values(room="erase", user_id=ALICE.id, text=f"later {i}", ts_ms=now_ms())
            )
    assert leaks(path, (secret,)), "the test's needles must find the text before the delete"

    await edit_and_delete(database, "erase", target, (edit, long_edit))
    await database.dispose()  # the server's readers come and go; the scrub waits for none
    done = await asyncio.to_thread(scrub_sqlite, path)

    assert done.wal_truncated
    assert leaks(path, (secret, edit, long_edit)) == []
    with sqlite3.connect(path) as connection:  # the index still finds everything else
        (found,) = connection.execute(
            "SELECT count(*) FROM messages_fts WHERE messages_fts MATCH '\"nothing to hide\"'"
        ).fetchone()
        assert found == ROOM_SIZE - 1
        connection.execute("INSERT INTO messages_fts (messages_fts) VALUES ('integrity-check')")  # raises if broken


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_the_scrubber_scrubs_after_a_request_while_the_chat_goes_on(database: Database, tmp_path: Path) -> None:
    """A process's Scrubber: a request (the writer's, after a delete commits) is followed
    by a scrub within seconds, while messages keep being committed."""
    path = tmp_path / "erase.db"
    secret, edit, _ = markers()
    ids = await write_room(database, "erase", secret)
    scrubber = Scrubber(path, delay=0.2, min_gap=0.5)
    scrubber.start()
    writer = new_writer(database, Committed())
    writer.start()
    try:
        await edit_and_delete(database, "erase", ids[ROOM_SIZE // 2], (edit,))
        scrubber.request()
        sent = 0
        while scrubber.scrubs == 0:
            await writer.submit(Draft("erase", ALICE, f"still chatting {sent}"))
            sent += 1
            assert sent < 20_000, "no scrub while the chat went on"
        await writer.close()
        assert leaks(path, (secret, edit)) == []
    finally:
        await scrubber.stop()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_the_scrubber_finds_a_delete_nobody_told_it_of(database: Database, tmp_path: Path) -> None:
    """A delete committed by another process or the command line: its event is found."""
    path = tmp_path / "erase.db"
    secret, edit, _ = markers()
    ids = await write_room(database, "erase", secret)
    scrubber = Scrubber(path, delay=0.1, min_gap=0.1, check_interval=0.2)
    scrubber.start()
    try:
        await until(lambda: scrubber.scrubs == 0 and scrubber.checks > 0, "a first look for deletes")
        await edit_and_delete(database, "erase", ids[ROOM_SIZE // 2], (edit,))  # no request()
        await until(lambda: scrubber.scrubs > 0, "a scrub after the delete")
        assert leaks(path, (secret, edit)) == []
    finally:
        await scrubber.stop()
