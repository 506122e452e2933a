"""Retention (quartchat/retention.py): what a pass deletes and keeps, a room's own limit
against the server's default, the lease that makes one process the purger, and
`quartchat room retention`."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select, text, update

from quartchat.database import Database
from quartchat.models import Lease, Message, Room
from quartchat.protocol import format_ts, now_ms
from quartchat.retention import BATCH, DAY_MS, LEASE_NAME, Retention, room_limits, set_room_retention
from quartchat.writes import Draft

from . import postgres_database
from .support import ALICE, need_service, quartchat_env, run_cli, sqlite_url, unique
from .test_writer import Committed, new_writer
from .test_writes import _in_a_thread


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/keep.db"
        return
    name = unique("qc_retention_")
    if _in_a_thread(postgres_database.main("create", name)) != 0:
        need_service(False, "PostgreSQL on 127.0.0.1:5432")
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        _in_a_thread(postgres_database.main("drop", name))


async def write(database: Database, room: str, count: int, days_ago: float = 0) -> list[int]:
    """`count` messages through the real writer, dated `days_ago` days back."""
    writer = new_writer(database, Committed())
    writer.start()
    outcomes = await asyncio.gather(*(writer.submit(Draft(room, ALICE, f"{room} text {i}")) for i in range(count)))
    await writer.close()
    ids = [o.message.id for o in outcomes]
    if days_ago:
        async with database.writer.begin() as connection:
            await connection.execute(
                update(Message).where(Message.id.in_(ids)).values(ts_ms=Message.ts_ms - int(days_ago * DAY_MS))
            )
    return ids


async def add_event(database: Database, room: str, kind: str, target: int, days_ago: float = 0) -> int:
    ts_ms = now_ms() - int(days_ago * DAY_MS)
    async with database.writer.begin() as connection:
        result = await connection.execute(
            insert(Message)
            .values(room=room, user_id=ALICE.id, text="an edit" if kind == "edit" else "", ts_ms=ts_ms)
            .values(ts=format_ts(ts_ms), kind=kind, target=target)
            .returning(Message.id)
        )
        return int(result.scalar_one())


async def stored(database: Database, room: str) -> list[int]:
    async with database.reader.connect() as connection:
        return list(
            (await connection.execute(select(Message.id).where(Message.room == room).order_by(Message.id))).scalars()
        )


async def room_row(database: Database, room: str) -> tuple[int, int]:
    async with database.reader.connect() as connection:
        row = (await connection.execute(select(Room.message_count, Room.last_id).where(Room.name == room))).one()
        return int(row.message_count), int(row.last_id)


def retention(database: Database, holder: str = "p1", default_days: int = 1) -> Retention:
    return Retention(database, holder, default_days, interval=60, pause=0)


async def test_a_pass_deletes_the_old_messages_and_their_events_and_nothing_else(database: Database) -> None:
    old = await write(database, "busy", 2 * BATCH + 150, days_ago=3)  # several batches
    new = await write(database, "busy", 200)
    edit_of_old = await add_event(database, "busy", "edit", old[10])  # today, of an old message: goes with it
    delete_of_old = await add_event(database, "busy", "delete", old[20], days_ago=2)
    edit_of_new = await add_event(database, "busy", "edit", new[5])
    count_before, last_id_before = await room_row(database, "busy")

    deleted = await retention(database).run_once()

    assert deleted == len(old) + 2
    assert await stored(database, "busy") == [*new, edit_of_new]
    assert edit_of_old not in await stored(database, "busy") and delete_of_old not in await stored(database, "busy")
    # The count follows the chat messages; the last id stays, so no id is ever reused.
    assert await room_row(database, "busy") == (count_before - len(old), last_id_before)
    assert await retention(database).run_once() == 0  # nothing more is old
    if database.is_sqlite:
        async with database.reader.connect() as connection:
            found = await connection.scalar(
                text("SELECT count(*) FROM messages_fts WHERE messages_fts MATCH '\"busy text\"'")
            )
            assert found == len(new)
            await connection.execute(text("INSERT INTO messages_fts (messages_fts) VALUES ('integrity-check')"))


@pytest.mark.parametrize("edited_days_ago", [3, 0])
async def test_ids_are_never_given_again_when_every_message_expires(database: Database, edited_days_ago: int) -> None:
    """A server idle past its limit loses every message; the next one still takes a new id
    (SQLite keeps the newest row, erased), so a client resuming with `after` misses nothing.
    The newest row may be an old message's edit made today, purged with its message."""
    old = await write(database, "idle", 2 * BATCH, days_ago=3)
    await add_event(database, "idle", "edit", old[10], days_ago=edited_days_ago)
    newest = (await stored(database, "idle"))[-1]

    await retention(database).run_once()
    assert await retention(database).run_once() == 0  # the erased row is not purged again and again

    async with database.reader.connect() as connection:
        left = (await connection.execute(select(Message.id, Message.text, Message.mentions))).all()
    assert [tuple(row) for row in left] in ([], [(newest, "", None)])
    [after] = await write(database, "idle", 1)
    assert after > newest
    await retention(database).run_once()  # newer rows exist: the kept row goes
    assert await stored(database, "idle") == [after]


async def test_a_rooms_own_limit_wins_over_the_default_and_zero_keeps_it_forever(database: Database) -> None:
    kept: dict[str, list[int]] = {}
    for room in ("follows-default", "two-days", "forever"):  # the newest row, never purged, last
        three_days = await write(database, room, 60, days_ago=3)
        a_day_and_a_half = await write(database, room, 60, days_ago=1.5)
        kept[room] = [*three_days, *a_day_and_a_half]
    assert await set_room_retention(database, "forever", 0)
    assert await set_room_retention(database, "two-days", 2)
    assert not await set_room_retention(database, "no-such-room", 2)

    # No default: only the room with a limit of its own loses its 3-day-old messages.
    await retention(database, default_days=0).run_once()
    assert await stored(database, "follows-default") == kept["follows-default"]
    assert await stored(database, "forever") == kept["forever"]
    assert await stored(database, "two-days") == kept["two-days"][60:]

    # A default of one day: the room without its own limit follows it; 0 still keeps all.
    await retention(database, default_days=1).run_once()
    assert await stored(database, "follows-default") == []
    assert await stored(database, "forever") == kept["forever"]
    assert await stored(database, "two-days") == kept["two-days"][60:]

    # `default` again: the room follows the server's default from the next pass.
    assert await set_room_retention(database, "two-days", None)
    assert [limit.room for limit in await room_limits(database, 1)] == ["follows-default", "two-days"]
    await retention(database, default_days=1).run_once()
    assert await stored(database, "two-days") == []
    assert await stored(database, "forever") == kept["forever"]


async def test_one_process_holds_the_lease_and_only_it_purges(database: Database) -> None:
    await write(database, "leased", 300, days_ago=3)
    await write(database, "today", 1)
    first, second = retention(database, "p1"), retention(database, "p2")

    results = await asyncio.gather(first.run_once(), second.run_once())

    assert sorted(results, key=lambda r: r is None) == [300, None]
    holder, other = (first, second) if results[0] is not None else (second, first)
    # 100 concurrent attempts: the holder renews every time, the other never takes it.
    attempts = await asyncio.gather(*(p.take_lease() for _ in range(50) for p in (holder, other)))
    assert attempts == [True, False] * 50
    assert await other.run_once() is None

    await holder.release()  # a clean shutdown: the other takes over at its next pass
    assert await other.run_once() == 0
    assert await holder.run_once() is None
    async with database.writer.begin() as connection:  # the holder died: its lease runs out
        await connection.execute(update(Lease).where(Lease.name == LEASE_NAME).values(expires_ms=now_ms() - 1))
    assert await holder.run_once() == 0
    async with database.reader.connect() as connection:
        assert await connection.scalar(select(Lease.holder)) == holder.holder
        assert await connection.scalar(select(func.count()).select_from(Lease)) == 1


# quartchat room retention ------------------------------------------------------------


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_the_command_sets_a_rooms_limit_and_refuses_bad_input_in_one_line(
    database: Database, tmp_path: Path
) -> None:
    await write(database, "team", 3)
    env = quartchat_env(sqlite_url(tmp_path / "keep.db"))

    def retention_days() -> int | None:
        with sqlite3.connect(tmp_path / "keep.db") as connection:
            (days,) = connection.execute("SELECT retention_days FROM rooms WHERE name = 'team'").fetchone()
            return days  # type: ignore[no-any-return]

    def command(*args: str) -> tuple[int, str, str]:
        done = run_cli(env, tmp_path, "room", "retention", *args)
        return done.returncode, done.stdout, done.stderr

    code, out, _ = await asyncio.to_thread(command, "team", "30")
    assert (code, retention_days()) == (0, 30) and "30 days" in out
    code, out, _ = await asyncio.to_thread(command, "team", "0")
    assert (code, retention_days()) == (0, 0) and "forever" in out
    code, out, _ = await asyncio.to_thread(command, "team", "default")
    assert (code, retention_days()) == (0, None) and "default" in out

    for room, days, says in [
        ("nobody-here", "30", "no room 'nobody-here'"),
        ("Team", "30", "is not a room name"),
        ("te\x07am", "30", "is not a room name"),
        ("x" * 10_000, "30", "is not a room name"),
        ("team", "-1", "DAYS: expected a whole number from 0 to 36500"),
        ("team", "36501", "DAYS: expected a whole number from 0 to 36500"),
        ("team", "1.5", "DAYS"),
        ("team", "9" * 5000, "DAYS"),
        ("team", "forever", "DAYS"),
    ]:
        code, out, err = await asyncio.to_thread(command, room, days)
        assert code == 2 and out == "", (room[:20], days[:20], err)
        assert err.startswith("quartchat: ") and says in err and err.count("\n") == 1, err
        assert retention_days() is None  # a refusal changes nothing
