"""Retention (docs/protocol.md §19): messages older than their room's limit are deleted
for good, with their edit and delete events, by one task across every process and host.

A room's limit is its own `rooms.retention_days` when set (`quartchat room retention`;
0 there keeps that room forever), else QUARTCHAT_RETENTION_DAYS (0: forever). Every
`interval` seconds the process holding the lease named "retention" (the `leases`
table: one conditional upsert takes or renews it) walks each room with a limit from
its oldest message, in id order, and deletes in small transactions
(`BATCH` rows each, then a rest as long as twice the batch took): the chat keeps
flowing. Within a room ids follow commit times, so the old messages are the first
ones; the walk stops at the first message younger than the limit. Each batch, in one
transaction: the room's row (`message_count` down by the chat messages deleted,
`last_id` unchanged, so ids are never reused), the events whose target is in the
batch, the batch's rows — the search index's triggers take their texts out. After a
purge the process's `Scrubber` erases what the files still hold (quartchat/erasure.py).
Clients are not told: what they show stays until they reload.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from dataclasses import dataclass

from sqlalchemy import Insert, bindparam, case, delete, func, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from .database import Database
from .erasure import Scrubber
from .models import Lease, Message, Room
from .protocol import now_ms

log = logging.getLogger(__name__)

LEASE_NAME = "retention"
BATCH = 100  # rows a transaction: ~20 ms of the write lock here, so a sender waits little
DAY_MS = 86_400_000


@dataclass(frozen=True)
class RoomLimit:
    room: str
    days: int


async def room_limits(database: Database, default_days: int) -> list[RoomLimit]:
    """The rooms whose messages expire, with their limits."""
    async with database.reader.connect() as connection:
        rows = (await connection.execute(select(Room.name, Room.retention_days).order_by(Room.name))).all()
    limits = [RoomLimit(name, default_days if days is None else days) for name, days in rows]
    return [limit for limit in limits if limit.days > 0]


async def set_room_retention(database: Database, room: str, days: int | None) -> bool:
    """A room's own limit (None: the server's default again); False if there is no such room."""
    async with database.writer.begin() as connection:
        result = await connection.execute(update(Room).where(Room.name == room).values(retention_days=days))
        return bool(result.rowcount)


class Retention:
    """The retention task of one process; `holder` names the process to the others."""

    def __init__(
        self,
        database: Database,
        holder: str,
        default_days: int,
        interval: float,
        scrubber: Scrubber | None = None,
        pause: float = 2.0,
    ) -> None:
        self.database = database
        self.holder = holder
        self.default_days = default_days
        self.interval = interval
        self.scrubber = scrubber
        self.pause = pause
        self.lease_ms = int(3 * interval * 1000)
        self.purged = 0  # messages and events this process deleted, for tests and metrics
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._purge_now_and_then(), name="retention")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            try:  # another process takes over at its next pass, not 3 intervals later
                await self.release()
            except Exception as exc:
                log.warning("releasing the retention lease failed: %s", exc)

    async def take_lease(self) -> bool:
        """Take the lease, or renew it: whether this process holds it now."""
        now = now_ms()
        upsert: Insert
        if self.database.is_sqlite:
            upsert = sqlite.insert(Lease).values(name=LEASE_NAME, holder=self.holder, expires_ms=now + self.lease_ms)
            upsert = upsert.on_conflict_do_update(
                index_elements=[Lease.name],
                set_={"holder": upsert.excluded.holder, "expires_ms": upsert.excluded.expires_ms},
                where=or_(Lease.holder == self.holder, Lease.expires_ms < now),
            )
        else:
            pg = postgresql.insert(Lease).values(name=LEASE_NAME, holder=self.holder, expires_ms=now + self.lease_ms)
            upsert = pg.on_conflict_do_update(
                index_elements=[Lease.name],
                set_={"holder": pg.excluded.holder, "expires_ms": pg.excluded.expires_ms},
                where=or_(Lease.holder == self.holder, Lease.expires_ms < now),
            )
        async with self.database.writer.begin() as connection:
            return bool((await connection.execute(upsert)).rowcount)

    async def release(self) -> None:
        async with self.database.writer.begin() as connection:
            await connection.execute(delete(Lease).where(Lease.name == LEASE_NAME, Lease.holder == self.holder))

    async def run_once(self) -> int | None:
        """One pass: the rows deleted, or None when another process holds the lease."""
        if not await self.take_lease():
            return None
        renewed = time.monotonic()
        total = 0
        for limit in await room_limits(self.database, self.default_days):
            cutoff_ms = now_ms() - limit.days * DAY_MS
            while True:
                started = time.monotonic()
                async with self.database.writer.begin() as connection:
                    deleted, more = await purge_batch(connection, limit.room, cutoff_ms)
                total += deleted
                self.purged += deleted
                if not more:
                    break
                await asyncio.sleep(self.pause * (time.monotonic() - started))
                if time.monotonic() - renewed > self.interval:  # a long purge keeps its lease
                    if not await self.take_lease():
                        log.warning("the retention lease went to another process mid-purge")
                        return total
                    renewed = time.monotonic()
        if self.database.is_sqlite:
            async with self.database.writer.begin() as connection:
                total += (await connection.execute(DELETE_LEFT_BEHIND)).rowcount
        if total:
            log.info("deleted %d messages and events", total)
            if self.scrubber is not None:
                self.scrubber.request()
        return total

    async def _purge_now_and_then(self) -> None:
        failing = False
        while True:
            # The first pass one interval after start-up: a restart storm purges nothing.
            await asyncio.sleep(self.interval)
            try:
                await self.run_once()
            except Exception as exc:  # the database away or busy: next pass
                if not failing:
                    log.warning("retention pass failed: %s", exc)
                failing = True
            else:
                failing = False


async def purge_batch(connection: AsyncConnection, room: str, cutoff_ms: int) -> tuple[int, bool]:
    """Delete up to BATCH of the room's oldest rows older than `cutoff_ms`, and the
    events of the chat messages among them: (rows deleted, whether more may be old)."""
    first_rows = select(Message.id, Message.kind, Message.ts_ms).where(Message.room == room)
    oldest = (await connection.execute(first_rows.order_by(Message.id).limit(BATCH))).all()
    expired = list(itertools.takewhile(lambda row: row.ts_ms < cutoff_ms, oldest))
    if not expired:
        return 0, False
    ids = [row.id for row in expired]
    chat_ids = [row.id for row in expired if row.kind == "chat"]
    kept = -1  # no row
    if connection.dialect.name == "sqlite":
        # SQLite gives a new row the highest id + 1: were the table's newest row deleted
        # (a whole server idle past its limit), ids would be given again, and a client
        # resuming `after=N` would never see the new messages. That one row stays,
        # erased as a deleted message is; PostgreSQL's sequence never goes back.
        kept = await connection.scalar(select(func.max(Message.id))) or -1
    # The room's row first, as the writer takes it: the same lock order on PostgreSQL.
    counted = len(chat_ids) - (kept in chat_ids)
    await connection.execute(update(Room).where(Room.name == room).values(message_count=Room.message_count - counted))
    events = 0
    if chat_ids:
        events_of = delete(Message).where(Message.target.in_(chat_ids), Message.room == room, Message.id != kept)
        events = (await connection.execute(events_of)).rowcount
    rows = (await connection.execute(delete(Message).where(Message.id.in_(ids), Message.id != kept))).rowcount
    if kept != -1:
        await connection.execute(ERASE_KEPT, {"kept_id": kept, "ids": ids, "chat_ids": chat_ids})
    return rows + events, len(expired) == len(oldest) == BATCH


# An event kept as SQLite's newest row (purge_batch) whose message went: once newer rows
# exist it keeps no id from being given again, and goes. Read through the index on target.
DELETE_LEFT_BEHIND = text(
    "DELETE FROM messages WHERE id IN (SELECT e.id FROM messages AS e INDEXED BY ix_messages_target "
    "WHERE e.target IS NOT NULL AND e.id < (SELECT max(id) FROM messages) "
    "AND NOT EXISTS (SELECT 1 FROM messages AS t WHERE t.id = e.target))"
)

# The newest row kept on SQLite, when it is one of the batch's or an event of one of its
# chat messages: no text, no mentions; a chat message shows as deleted.
ERASE_KEPT = (
    update(Message)
    .where(
        Message.id == bindparam("kept_id"),
        or_(
            Message.id.in_(bindparam("ids", expanding=True)),
            Message.target.in_(bindparam("chat_ids", expanding=True)),
        ),
        or_(Message.text != "", Message.mentions.is_not(None)),
    )
    .values(text="", mentions=None, deleted=case((Message.kind == "chat", True), else_=Message.deleted))
)
