"""The per-user stream's counts against a real SQLite database: a load that races the
messages still arriving counts each once; a removal stops the room; a lost stretch of
the broker reads everything again."""

from __future__ import annotations

import json
from collections.abc import Collection

from sqlalchemy import insert, update

from quartchat import models
from quartchat.connection import Connection
from quartchat.database import Database
from quartchat.protocol import DELETE, EDIT, StoredMessage, UserRef
from quartchat.store import UNREAD_MAX, RoomCounts, Store
from quartchat.user_stream import AUTHORS_MAX, UserStream

from .support import ALICE, add_user, until

BOB = UserRef("u-bob", "bob")


class StoreThatRaces(Store):
    """A real store; while its counts are read, `during` runs (messages committed and
    delivered in the middle of the load)."""

    during: list[StoredMessage] = []
    stream: UserStream | None = None

    async def stream_counts(self, user_ids: Collection[str]) -> list[RoomCounts]:
        rows = await super().stream_counts(user_ids)
        assert self.stream is not None
        for message in self.during:  # committed after the snapshot, delivered before the rows came
            await commit(self.database, message)
        self.stream.deliver(self.during)
        self.during = []
        return rows


async def commit(database: Database, message: StoredMessage) -> None:
    async with database.writer.begin() as connection:
        await connection.execute(
            insert(models.Message).values(
                id=message.id,
                room=message.room,
                user_id=message.user.id,
                text=message.text,
                ts_ms=0,
                mentions=json.dumps(list(message.mentions)) if message.mentions else None,
                kind=message.kind,
                target=message.target,
            )
        )


async def setting(database: Database) -> None:
    await add_user(database, BOB)
    async with database.writer.begin() as connection:
        await connection.execute(insert(models.Room).values(name="r", message_count=0, last_id=0, kind="public"))
        await connection.execute(insert(models.Membership).values(room="r", user_id=BOB.id, joined_ms=0))


async def test_a_load_racing_the_messages_counts_each_one_once(database: Database) -> None:
    await setting(database)
    store = StoreThatRaces(database)
    stream = store.stream = UserStream(store)
    before = StoredMessage(1, "r", ALICE, "before the load", 0)
    await commit(database, before)
    during = [StoredMessage(2, "r", ALICE, "hi @bob", 0, mentions=(BOB.id,)), StoredMessage(3, "r", BOB, "mine", 0)]
    store.during = during
    stream.start()
    try:
        connection = Connection(BOB, "elsewhere", "127.0.0.1", batch=False, capacity=100)
        stream.opened(connection)
        stream.deliver([before])  # delivered after the load started: the snapshot holds it
        await until(lambda: "r" in stream.followers[BOB.id].rooms, "the load")
        tally = stream.followers[BOB.id].rooms["r"]
        assert (tally.last_id, tally.unread, tally.mentions) == (3, 2, 1)
        after = StoredMessage(4, "r", ALICE, "after", 0)
        await commit(database, after)
        stream.deliver([after])
        assert (tally.last_id, tally.unread, tally.mentions) == (4, 3, 1)
        frames = await until(lambda: [json.loads(f) for f in connection.queue if isinstance(f, str)], "frames")
        assert {"type": "notify", "room": "r", "message": during[0].to_dict()} in frames

        stream.removed("r", [BOB.id])
        stream.deliver([StoredMessage(5, "r", ALICE, "after the removal @bob", 0, mentions=(BOB.id,))])
        assert "r" not in stream.followers[BOB.id].rooms and "r" not in stream.watchers
        assert not [f for f in connection.queue if isinstance(f, str) and '"id":5' in f]

        stream.resync()  # the database still says member: the room is back, counted there
        await until(lambda: "r" in stream.followers[BOB.id].rooms, "the reload")
        assert stream.followers[BOB.id].rooms["r"].unread == 3  # 5 was never committed
        stream.closed(connection)
        assert not stream.followers and not stream.watchers
    finally:
        await stream.stop()


def activity(connection: Connection) -> list[dict[str, object]]:
    frames = [json.loads(item) for item in connection.queue if isinstance(item, str)]
    return [frame for frame in frames if frame["type"] == "activity"]


async def delete(database: Database, stream: UserStream, event_id: int, by: UserRef, target: int) -> None:
    """A delete event committed (its target emptied, as the writer does) and delivered."""
    event = StoredMessage(event_id, "r", by, "", 0, kind=DELETE, target=target)
    await commit(database, event)
    async with database.writer.begin() as connection:
        await connection.execute(update(models.Message).where(models.Message.id == target).values(deleted=True))
    stream.deliver([event])


async def test_a_deleted_unread_message_lowers_the_counts_without_reading_them_again(database: Database) -> None:
    await setting(database)
    old = StoredMessage(1, "r", ALICE, "from before the stream @bob", 0, mentions=(BOB.id,))
    await commit(database, old)
    store = Store(database)
    stream = UserStream(store)
    stream.start()
    try:
        connection = Connection(BOB, "elsewhere", "127.0.0.1", batch=False, capacity=100)
        stream.opened(connection)
        await until(lambda: "r" in stream.followers[BOB.id].rooms, "the load")
        tally = stream.followers[BOB.id].rooms["r"]
        assert (tally.unread, tally.mentions) == (1, 1)
        said = [
            StoredMessage(2, "r", ALICE, "hi", 0),
            StoredMessage(3, "r", ALICE, "hi @bob", 0, mentions=(BOB.id,)),
            StoredMessage(4, "r", BOB, "mine", 0),
            StoredMessage(5, "r", ALICE, "plain", 0),
        ]
        for message in said:
            await commit(database, message)
        stream.deliver(said)
        assert (tally.unread, tally.mentions) == (4, 2)
        loads = stream.loads

        # An edit takes the mention away (as the database now counts it), then a delete.
        edit = StoredMessage(6, "r", ALICE, "hi", 0, kind=EDIT, target=3)
        await commit(database, edit)
        async with database.writer.begin() as writing:
            await writing.execute(update(models.Message).where(models.Message.id == 3).values(mentions=None))
        stream.deliver([edit])
        assert (tally.last_id, tally.unread, tally.mentions) == (6, 4, 1)
        await delete(database, stream, 7, ALICE, 3)
        assert (tally.last_id, tally.unread, tally.mentions) == (7, 3, 1)
        await delete(database, stream, 8, BOB, 4)  # one's own: never counted
        assert (tally.unread, tally.mentions) == (3, 1)
        await delete(database, stream, 9, ALICE, 2)
        assert (tally.last_id, tally.unread, tally.mentions) == (9, 2, 1)
        assert stream.loads == loads, "a delete of a known message reads nothing"
        frames = await until(lambda: [f for f in activity(connection) if f["unread"] < 3], "the lowered activity")
        assert frames[-1] == {"type": "activity", "room": "r", "last_id": 9, "unread": 2, "mentions": 1}

        # A message from before the stream's memory: its delete reads the counts again.
        await delete(database, stream, 10, ALICE, 1)
        await until(lambda: stream.loads > loads and tally is not stream.followers[BOB.id].rooms["r"], "the reload")
        again = stream.followers[BOB.id].rooms["r"]
        assert (again.unread, again.mentions) == (1, 0)  # (its last_id: rooms.last_id, not kept here)
        # The database agrees with what the stream counted by itself.
        assert [(c.unread, c.mentions) for c in await store.stream_counts([BOB.id])] == [(1, 0)]
    finally:
        await stream.stop()


async def test_the_stream_remembers_the_authors_of_the_latest_messages_alone(database: Database) -> None:
    await setting(database)
    stream = UserStream(Store(database))
    stream.start()
    try:
        stream.opened(Connection(BOB, "elsewhere", "127.0.0.1", batch=False, capacity=100))
        await until(lambda: "r" in stream.followers[BOB.id].rooms, "the load")
        stream.deliver([StoredMessage(i, "r", ALICE, "x", 0) for i in range(1, AUTHORS_MAX + 101)])
        assert len(stream.authors) == AUTHORS_MAX and min(stream.authors) == 101
        elsewhere = range(AUTHORS_MAX + 101, AUTHORS_MAX + 201)
        stream.deliver([StoredMessage(i, "unwatched", ALICE, "x", 0) for i in elsewhere])
        assert max(stream.authors) == AUTHORS_MAX + 100, "no room watched here: nothing kept"
    finally:
        await stream.stop()


async def test_at_the_cap_a_delete_reads_again_only_once_nothing_is_known_past_it(database: Database) -> None:
    await setting(database)
    stream = UserStream(Store(database))
    stream.start()
    try:
        stream.opened(Connection(BOB, "elsewhere", "127.0.0.1", batch=False, capacity=100))
        await until(lambda: "r" in stream.followers[BOB.id].rooms, "the load")
        tally = stream.followers[BOB.id].rooms["r"]
        stream.deliver([StoredMessage(i, "r", ALICE, "x", 0) for i in range(1, UNREAD_MAX + 3)])
        assert (tally.unread, tally.beyond) == (UNREAD_MAX, 2)
        loads = stream.loads
        stream.deliver([StoredMessage(UNREAD_MAX + 3 + i, "r", ALICE, "", 0, kind=DELETE, target=i) for i in (1, 2)])
        assert (tally.unread, tally.beyond, stream.loads) == (UNREAD_MAX, 0, loads)
        stream.deliver([StoredMessage(UNREAD_MAX + 5, "r", ALICE, "", 0, kind=DELETE, target=3)])
        await until(lambda: stream.loads > loads, "the count read again: it may be under the cap now")
    finally:
        await stream.stop()
