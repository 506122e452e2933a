"""The per-user stream's counts against a real SQLite database: a load that races the
messages still arriving counts each once; a removal stops the room; a lost stretch of
the broker reads everything again."""

from __future__ import annotations

import json
from collections.abc import Collection

from sqlalchemy import insert

from quartchat import models
from quartchat.connection import Connection
from quartchat.database import Database
from quartchat.protocol import StoredMessage, UserRef
from quartchat.store import RoomCounts, Store
from quartchat.user_stream import UserStream

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
