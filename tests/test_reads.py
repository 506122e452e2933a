"""Read positions and unread counts in the database (quartchat/writes.py
`move_read_positions`, quartchat/store.py `unread_query`), on SQLite and PostgreSQL:
positions move only forward and never past a room's end, and counting stays an index
range scan of bounded length in a room of a million messages."""

from __future__ import annotations

import time

from sqlalchemy import insert, text, true

from quartchat import models
from quartchat.database import Database
from quartchat.models import Membership, Room
from quartchat.protocol import UserRef
from quartchat.store import UNREAD_MAX, Store, unread_query
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
