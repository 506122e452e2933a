"""The write path: one writer task per process commits chat messages in groups.

Under no load a message is committed alone, at once; while a commit is running the
next messages queue up and go into the following transaction together (group commit),
so the cost of a commit is shared and the tail latency stays flat. Each committed
message is handed to `on_commit` in id order before its sender hears of it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from .database import Database
from .metrics import Metrics
from .models import Message, Room
from .protocol import StoredMessage, UserRef, format_ts, now_ms
from .store import Store

log = logging.getLogger(__name__)

MAX_BATCH_BYTES = 1 << 20


class Unavailable(Exception):
    """The message could not be stored; nothing was broadcast; it may be retried."""


@dataclass(frozen=True, slots=True)
class Draft:
    room: str
    user: UserRef
    text: str
    client_id: str | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    message: StoredMessage
    fresh: bool  # False: the same user and client_id were stored before


OnCommit = Callable[[Sequence[StoredMessage]], Awaitable[None]]
_Pending = tuple[Draft, "asyncio.Future[Outcome]"]


class MessageWriter:
    def __init__(self, database: Database, store: Store, on_commit: OnCommit, batch_size: int = 256) -> None:
        self.database = database
        self.store = store
        self.on_commit = on_commit
        self.batch_size = batch_size
        self.committed = 0
        self.batches = 0
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._last_ts = 0
        self.failing = False  # the last batch could not be stored
        self.metrics: Metrics | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="message-writer")

    def submit(self, draft: Draft) -> asyncio.Future[Outcome]:
        """Queue a message; the future holds it once committed, or raises Unavailable."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        if self._closing:
            future.set_exception(Unavailable("the server is shutting down"))
        else:
            self._queue.put_nowait((draft, future))
        return future

    async def store_one(self, draft: Draft) -> Outcome:
        return await self.submit(draft)

    async def probe(self) -> None:
        """Write and commit one unchanged row: raises while writes cannot be stored.

        Taking the lock alone is not enough: on a full disk the lock is free but a
        commit fails, so the probe rewrites a room's counter to the value it has."""
        async with self.database.writer.begin() as connection:
            first = select(func.min(Room.name)).scalar_subquery()
            await connection.execute(update(Room).where(Room.name == first).values(last_id=Room.last_id))
        self.failing = False

    async def close(self) -> None:
        """Commit everything already taken, then stop."""
        if self._closing:
            return
        self._closing = True
        self._queue.put_nowait(None)
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            if first is None:
                return
            batch = [first]
            size = len(first[0].text)
            stop = False
            while len(batch) < self.batch_size and size < MAX_BATCH_BYTES and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is None:
                    stop = True
                    break
                batch.append(item)
                size += len(item[0].text)
            await self._commit([draft for draft, _ in batch], [future for _, future in batch])
            if stop:
                return

    async def _commit(self, drafts: list[Draft], futures: list[asyncio.Future[Outcome]]) -> None:
        started = time.perf_counter()
        try:
            outcomes = await self._store(drafts)
        except IntegrityError:
            # Another process stored the same client_id between our lookup and insert:
            # the second try finds it.
            try:
                outcomes = await self._store(drafts)
            except Exception:
                log.exception("storing a batch of %d messages failed", len(drafts))
                outcomes = None
        except Exception:
            log.exception("storing a batch of %d messages failed", len(drafts))
            outcomes = None
        self.failing = outcomes is None
        if outcomes is None:
            for future in futures:
                if not future.done():
                    future.set_exception(Unavailable("the database could not store the message"))
            return
        self.batches += 1
        fresh = [o.message for o in outcomes if o.fresh]
        self.committed += len(fresh)
        if self.metrics is not None:
            self.metrics.commit_seconds.observe(time.perf_counter() - started)
            self.metrics.messages_stored.inc(len(fresh))
        if fresh:
            try:
                await self.on_commit(fresh)
            except Exception:
                log.exception("fan-out of %d committed messages failed", len(fresh))
        for future, outcome in zip(futures, outcomes, strict=True):
            if not future.done():
                future.set_result(outcome)

    async def _store(self, drafts: list[Draft]) -> list[Outcome]:
        async with self.database.writer.begin() as connection:
            keys = [(d.user.id, d.client_id) for d in drafts if d.client_id is not None]
            earlier = await self.store.by_client_ids(connection, keys) if keys else {}
            first_in_batch: dict[tuple[str, str], int] = {}
            new_indexes: list[int] = []
            for index, draft in enumerate(drafts):
                key = (draft.user.id, draft.client_id) if draft.client_id is not None else None
                if key is None or (key not in earlier and key not in first_in_batch):
                    new_indexes.append(index)
                    if key is not None:
                        first_in_batch[key] = index
            stored = await self._insert(connection, [drafts[i] for i in new_indexes])
        by_index = dict(zip(new_indexes, stored, strict=True))
        outcomes = []
        for index, draft in enumerate(drafts):
            if index in by_index:
                outcomes.append(Outcome(by_index[index], fresh=True))
                continue
            key = (draft.user.id, draft.client_id or "")
            previous = earlier.get(key) or by_index[first_in_batch[key]]
            outcomes.append(Outcome(previous, fresh=False))
        return outcomes

    async def _insert(self, connection: AsyncConnection, drafts: list[Draft]) -> list[StoredMessage]:
        if not drafts:
            return []
        # Ids grow with commits, and so must times, even if the clock steps back.
        ts_ms = self._last_ts = max(now_ms(), self._last_ts)
        ts = format_ts(ts_ms)
        per_room = Counter(d.room for d in drafts)
        rooms = sorted(per_room)
        dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
        # Four statements a batch, however many rooms it touches. First make sure each
        # room has its row, then take the rows (in name order, so two writers cannot
        # deadlock) and hold them until commit: on PostgreSQL no other transaction can
        # then take an id in these rooms and commit before us, so ids in a room grow in
        # commit order. (SQLite's single writer already holds the whole database.) The
        # rows also give each room's last id so far: each message's predecessor.
        await connection.execute(
            dialect.insert(Room).on_conflict_do_nothing(),
            [{"name": room, "message_count": 0, "last_id": 0} for room in rooms],
        )
        locked = select(Room.name, Room.last_id).where(Room.name.in_(rooms)).order_by(Room.name)
        if connection.dialect.name == "postgresql":
            locked = locked.with_for_update()
        last_ids = {row.name: int(row.last_id) for row in await connection.execute(locked)}
        result = await connection.execute(
            insert(Message).returning(Message.id, sort_by_parameter_order=True),
            [
                {
                    "room": d.room,
                    "user_id": d.user.id,
                    "text": d.text,
                    "ts_ms": ts_ms,
                    "ts": ts,
                    "client_id": d.client_id,
                }
                for d in drafts
            ],
        )
        ids = list(result.scalars().all())
        stored = []
        for draft, message_id in zip(drafts, ids, strict=True):
            stored.append(
                StoredMessage(
                    id=message_id,
                    room=draft.room,
                    user=draft.user,
                    text=draft.text,
                    ts_ms=ts_ms,
                    client_id=draft.client_id,
                    prev_id=last_ids[draft.room],
                )
            )
            last_ids[draft.room] = message_id
        await connection.execute(
            update(Room)
            .where(Room.name == bindparam("room"))
            .values(message_count=Room.message_count + bindparam("added"), last_id=bindparam("last")),
            [{"room": room, "added": per_room[room], "last": last_ids[room]} for room in rooms],
        )
        return stored
