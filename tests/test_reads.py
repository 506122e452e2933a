"""Read positions and unread counts in the database (quartchat/writes.py
`move_read_positions`, quartchat/store.py `unread_query`), on SQLite and PostgreSQL:
positions move only forward and never past a room's end, and counting stays an index
range scan of bounded length in a room of a million messages."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import insert, text, true

from quartchat import models
from quartchat.database import Database
from quartchat.models import Membership, Room
from quartchat.protocol import UserRef
from quartchat.rooms_api import RoomLists
from quartchat.store import (
    UNREAD_BUDGET,
    UNREAD_MAX,
    UNREAD_SCAN,
    UNREAD_SCAN_FLOOR,
    RoomSummary,
    Store,
    unread_query,
    unread_scan,
)
from quartchat.writes import create_writes

from .support import ALICE, add_user
from .test_writes import database_url  # noqa: F401  # both databases

BOB = UserRef("u-bob", "bob")
# LIKE's `_` matches any character: an id with one must not count another's mentions.
UNDERSCORE = UserRef("u_x", "underscore")
LOOKALIKE = UserRef("uAx", "lookalike")


async def _room(database: Database, name: str, members: list[UserRef], last_id: int = 0) -> None:
    async with database.writer.begin() as connection:
        await connection.execute(insert(Room).values(name=name, message_count=0, last_id=last_id, created_ms=0))
        await connection.execute(insert(Membership), [{"room": name, "user_id": u.id, "joined_ms": 0} for u in members])


async def test_positions_move_forward_only_up_to_the_rooms_end_and_only_for_members(database: Database) -> None:
    await add_user(database, BOB)
    await _room(database, "r", [ALICE], last_id=50)
    await _room(database, "s", [ALICE, BOB], last_id=9)
    writes = create_writes(database)
    moved = await writes.move_read_positions([(ALICE.id, "r", 10), (ALICE.id, "s", 1000), (BOB.id, "r", 5)])
    assert sorted(moved) == [(ALICE.id, "r", 10), (ALICE.id, "s", 9)], "clamped; bob is no member of r"
    assert await writes.move_read_positions([(ALICE.id, "r", 7), (ALICE.id, "s", 9)]) == [], "never back"
    assert await writes.move_read_positions([(ALICE.id, "r", 11)]) == [(ALICE.id, "r", 11)]
    store = Store(database)
    assert (await store.last_read_id("r", ALICE.id), await store.last_read_id("r", BOB.id)) == (11, 0)
    many = [(ALICE.id, "r", i) for i in range(12, 12 + 700)]  # past one statement's 300
    assert len(await writes.move_read_positions(many[-1:])) == 1


async def test_mentions_are_counted_by_exact_id(database: Database) -> None:
    for user in (BOB, UNDERSCORE, LOOKALIKE):
        await add_user(database, user)
    await _room(database, "r", [BOB, UNDERSCORE, LOOKALIKE])
    rows = [
        {"room": "r", "user_id": BOB.id, "text": "x", "ts_ms": 0, "mentions": mentions}
        for mentions in ('["uAx"]', '["uAx", "u-bob"]', '["u_x"]', None)
    ]
    async with database.writer.begin() as connection:
        await connection.execute(insert(models.Message), rows)
        counts = {
            user.id: tuple((await connection.execute(unread_query("r", user.id, 0))).one())
            for user in (UNDERSCORE, LOOKALIKE, BOB)
        }
    assert counts == {UNDERSCORE.id: (4, 1), LOOKALIKE.id: (4, 2), BOB.id: (0, 0)}


async def test_counting_a_million_unread_is_a_bounded_index_range_scan(database: Database) -> None:
    await add_user(database, BOB)
    await _room(database, "small", [ALICE])
    await _room(database, "big", [ALICE])
    sqlite = database.is_sqlite
    started = time.perf_counter()
    async with database.writer.begin() as connection:
        if sqlite:  # the search index is not what this test is about: a million rows load in seconds
            await connection.execute(text("DROP TRIGGER messages_fts_insert"))
            await connection.execute(
                text(
                    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000) "
                    "INSERT INTO messages (room, user_id, text, ts_ms, kind, deleted) "
                    "SELECT 'big', CASE WHEN i % 3 = 0 THEN 'u-alice' ELSE 'u-bob' END, 'm', i, 'chat', 0 FROM n"
                )
            )
        else:
            await connection.execute(
                text(
                    "INSERT INTO messages (room, user_id, text, ts_ms, kind, deleted) "
                    "SELECT 'big', CASE WHEN i % 3 = 0 THEN 'u-alice' ELSE 'u-bob' END, 'm', i, 'chat', false "
                    "FROM generate_series(1, 1000000) AS i"
                )
            )
        await connection.execute(
            text("INSERT INTO messages (room, user_id, text, ts_ms) VALUES ('small', 'u-bob', 'x', 0)")
        )
        await connection.execute(text("UPDATE rooms SET last_id = (SELECT max(id) FROM messages) WHERE name = 'big'"))
        if not sqlite:
            await connection.execute(text("ANALYZE messages"))
    loaded = time.perf_counter() - started

    async with database.reader.connect() as connection:
        plans, seconds, counts = {}, {}, {}
        for room in ("big", "small"):
            query = unread_query(room, ALICE.id, 0)
            statement = str(query.compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True}))
            explain = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN "
            plans[room] = "\n".join(str(row[-1]) for row in await connection.exec_driver_sql(explain + statement))
            started = time.perf_counter()
            counts[room] = tuple((await connection.execute(query)).one())
            seconds[room] = time.perf_counter() - started
    for room, plan in plans.items():
        if sqlite:
            assert "USING INDEX ix_messages_room_id (room=? AND id>?)" in plan, plan
        else:
            # The newest 5,000 of the room: by (room, id) for a small room; PostgreSQL may
            # walk the primary key backwards for a room that holds nearly every row.
            assert "Limit" in plan and "Index Scan Backward" in plan, plan
            assert room == "big" or "ix_messages_room_id" in plan, plan
        assert seconds[room] < 0.5, f"{seconds[room]:.3f} s to count {room} (loaded in {loaded:.1f} s)"
    assert counts["big"][0] >= UNREAD_MAX and counts["small"] == (1, 0)
    summaries = {s.name: s for s in await Store(database).rooms_of(ALICE.id, true())}
    assert (summaries["big"].unread, summaries["big"].mentions) == (UNREAD_MAX, 0)
    assert list(summaries) == ["big", "small"], "the latest activity first"


def test_the_rows_counted_per_room_shrink_with_a_users_rooms_down_to_a_floor() -> None:
    assert [unread_scan(n) for n in (0, 1, 10)] == [UNREAD_SCAN] * 3
    assert unread_scan(11) == UNREAD_BUDGET // 11 < UNREAD_SCAN
    assert unread_scan(200) == 250 and unread_scan(10**6) == UNREAD_SCAN_FLOOR
    assert all(n * unread_scan(n) <= UNREAD_BUDGET for n in range(1, UNREAD_BUDGET // UNREAD_SCAN_FLOOR + 1))


async def test_a_user_in_many_busy_rooms_is_counted_within_one_budget(database: Database) -> None:
    """Attack finding 5: 200 rooms of 300 unread each are 60,000 rows; each room is
    counted among its newest 250 (UNREAD_BUDGET / 200 rooms), so a busy room's count
    stops short of the truth, never past it, a quiet room's is exact, and the per-user
    stream's first load (stream_counts) gives exactly the same numbers as GET /api/rooms."""
    await add_user(database, BOB)
    busy = [f"busy-{i:03}" for i in range(199)]
    for room in [*busy, "quiet"]:
        await _room(database, room, [ALICE])
    rows = [
        {"room": room, "user_id": BOB.id, "text": "x", "ts_ms": 0, "mentions": '["u-alice"]' if n == 0 else None}
        for room in busy
        for n in range(300)
    ]
    rows += [{"room": "quiet", "user_id": BOB.id, "text": "x", "ts_ms": 0, "mentions": '["u-alice"]'}] * 3
    async with database.writer.begin() as connection:
        await connection.execute(insert(models.Message), rows)
        await connection.execute(
            text("UPDATE rooms SET last_id = (SELECT max(id) FROM messages m WHERE m.room = name)")
        )
    store = Store(database)
    scan = unread_scan(200)
    listed = {s.name: (s.unread, s.mentions) for s in await store.rooms_of(ALICE.id, true())}
    streamed = {c.room: (c.unread, c.mentions) for c in await store.stream_counts([ALICE.id, BOB.id])}
    assert listed == streamed
    assert listed["quiet"] == (3, 3), "fewer new rows than the scan: exact"
    assert {listed[room] for room in busy} == {(scan, 0)}, "the newest 250 of 300; the oldest mentioned alice"
    assert 200 * scan <= UNREAD_BUDGET


async def test_one_users_concurrent_room_lists_share_one_count() -> None:
    """Ten calls at once cost two counts, not ten: the running one, and the next one
    that every call arriving meanwhile shares (read after each began). A caller that
    goes away cancels nothing; another user counts on its own; a failure reaches all."""
    lists = RoomLists()
    counted: list[str] = []
    gate = asyncio.Event()

    async def count(user: str) -> list[RoomSummary]:
        counted.append(user)
        number = len(counted)
        await gate.wait()
        if user == "broken":
            raise RuntimeError("the database went away")
        return [RoomSummary(f"{user}-{number}", 0, 0)]

    def get(user: str) -> asyncio.Task[list[RoomSummary]]:
        return asyncio.ensure_future(lists.get((1, user, None), lambda: count(user)))

    first = get("alice")
    await asyncio.sleep(0.01)
    assert counted == ["alice"]
    later = [get("alice") for _ in range(9)]
    other, broken = get("bob"), [get("broken"), get("broken")]
    await asyncio.sleep(0.01)
    later[0].cancel()
    gate.set()
    assert [s.name for s in await first] == ["alice-1"]
    assert {tuple(s.name for s in await task) for task in later[1:]} == {("alice-4",)}
    assert [s.name for s in await other] == ["bob-2"]
    for task in broken:
        with pytest.raises(RuntimeError):
            await task
    assert sorted(counted) == ["alice", "alice", "bob", "broken"] and lists.busy() == 0
