"""The write path: one writer per process commits chat messages in groups.

Under no load a message is committed alone, at once; while a commit is running the
next messages queue up and go into the following transaction together (group commit),
so the cost of a commit is shared and the tail latency stays flat. Under load (the last
batch held several messages and more were waiting when it was committed) the writer
lingers a moment (1 ms) before taking the next batch, so that batches, and the fan-outs
after them, are fewer and larger. Each committed message is handed to `on_commit` in id
order before its sender hears of it.

The writer runs its transactions on an event loop of its own, in its own thread, with
an engine of its own. A transaction is a dozen driver round trips (aiosqlite runs each
statement, fetch and close in its thread and wakes the caller's loop for the next); on
the server's loop, busy with thousands of sends, each wake-up waited for the rest of a
loop pass, and a batch that takes a millisecond alone took 10-25 ms under load. The
server's loop hands messages over and gets committed batches back, one wake-up each way.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .database import Database
from .metrics import Metrics
from .models import Message, Room
from .protocol import StoredMessage, UserRef, format_ts, now_ms
from .store import Store

log = logging.getLogger(__name__)

MAX_BATCH_BYTES = 1 << 20


class Unavailable(Exception):
    """The message could not be stored; nothing was broadcast; it may be retried."""


class SessionEnded(Exception):
    """The sender's session had ended (or expired) when the message came to be stored:
    it was not stored, and it must not be retried on that session."""


@dataclass(frozen=True, slots=True)
class Draft:
    room: str
    user: UserRef
    text: str
    client_id: str | None = None
    # Stored only if this session is live when its transaction runs (None: no check).
    session_id: str | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    message: StoredMessage
    fresh: bool  # False: the same user and client_id were stored before


OnCommit = Callable[[Sequence[StoredMessage]], Awaitable[None]]
_Pending = tuple[Draft, "asyncio.Future[Outcome]"]
# A batch as the writer's thread hands it back: its futures, and its outcomes (None: it failed).
_Done = tuple[list["asyncio.Future[Outcome]"], "list[Outcome | SessionEnded] | None", float]


def _new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class MessageWriter:
    def __init__(
        self, database: Database, store: Store, on_commit: OnCommit, batch_size: int = 256, linger: float = 0.001
    ) -> None:
        self.database = database
        self.store = store
        self.on_commit = on_commit
        self.batch_size = batch_size
        self.linger = linger  # seconds: see _run
        self.committed = 0
        self.batches = 0
        self.failing = False  # the last batch could not be stored
        self.metrics: Metrics | None = None
        # Filled on the server's loop, emptied on the writer's (deque appends and pops
        # are atomic). `_signalled`: a wake-up is on its way, no need for another.
        self._pending: deque[_Pending] = deque()
        self._signalled = False
        self._closing = False
        self._last_ts = 0
        self._loop: asyncio.AbstractEventLoop | None = None  # the writer's own
        self._server_loop: asyncio.AbstractEventLoop | None = None
        self._has_work = asyncio.Event()  # waited on by the writer's loop only
        self._done: asyncio.Queue[_Done | None] | None = None  # on the server's loop, in commit order
        self._hand_off: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        self._engine: AsyncEngine | None = None
        # Held from one batch to the next (no pool checkout each time); dropped after a
        # failure, so that the next batch starts on a new one.
        self._connection: AsyncConnection | None = None

    def start(self) -> None:
        self._server_loop = asyncio.get_running_loop()
        self._done = asyncio.Queue()
        self._hand_off = self._server_loop.create_task(self._hand_off_forever(), name="message-writer-hand-off")
        self._loop = _new_event_loop()
        self._thread = threading.Thread(target=self._thread_main, name="message-writer", daemon=True)
        self._thread.start()

    def submit(self, draft: Draft) -> asyncio.Future[Outcome]:
        """Queue a message; the future holds it once committed, or raises Unavailable."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        if self._closing or self._loop is None:
            future.set_exception(Unavailable("the server is shutting down"))
            return future
        self._pending.append((draft, future))
        if not self._signalled:
            self._signalled = True
            self._loop.call_soon_threadsafe(self._has_work.set)
        return future

    async def store_one(self, draft: Draft) -> Outcome:
        return await self.submit(draft)

    async def probe(self) -> None:
        """Write and commit one unchanged row with the writer's own engine: raises
        while writes cannot be stored.

        Taking the lock alone is not enough: on a full disk the lock is free but a
        commit fails, so the probe rewrites a room's counter to the value it has."""
        if self._loop is None:
            raise Unavailable("the writer is not running")
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._probe(), self._loop))
        self.failing = False

    async def close(self) -> None:
        """Commit everything already taken, then stop."""
        if self._closing:
            return
        self._closing = True
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._has_work.set)
        if self._hand_off is not None:
            await self._hand_off

    # The writer's thread ------------------------------------------------------

    def _thread_main(self) -> None:
        assert self._loop is not None and self._server_loop is not None and self._done is not None
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._run())
        except BaseException:
            log.exception("the message writer stopped")
        finally:
            # Whatever is still queued was not stored: its senders hear so, and may retry.
            self._closing = True
            failed = [future for _, future in self._pending]
            self._pending.clear()
            if failed:
                self._post((failed, None, 0.0))
            self._post(None)
            self._loop.close()

    def _post(self, done: _Done | None) -> None:
        """Hand a committed (or failed) batch to the server's loop; None: the end."""
        assert self._server_loop is not None and self._done is not None
        self._server_loop.call_soon_threadsafe(self._done.put_nowait, done)

    async def _run(self) -> None:
        self._engine = self.database.open_writer()
        try:
            while True:
                self._signalled = False  # before looking: a message added after this wakes us again
                under_load = False
                while self._pending:
                    if under_load and len(self._pending) < self.batch_size and self.linger and not self._closing:
                        # Under load (the last batch held several messages and more
                        # were waiting when it was committed) linger before taking the
                        # next batch: what the server's loop reads meanwhile shares this
                        # commit, and the fan-out that follows it (one frame a
                        # connection). A message that finds the writer idle is committed
                        # at once, even one that arrives after a batch was committed and
                        # before this thread looks again (its sender may have heard of
                        # that batch already).
                        await asyncio.sleep(self.linger)
                    drafts: list[Draft] = []
                    futures: list[asyncio.Future[Outcome]] = []
                    size = 0
                    while self._pending and len(drafts) < self.batch_size and size < MAX_BATCH_BYTES:
                        draft, future = self._pending.popleft()
                        drafts.append(draft)
                        futures.append(future)
                        size += len(draft.text)
                    started = time.perf_counter()
                    outcomes = await self._commit(drafts)
                    # Looked at before the hand-off: what arrives after it finds us idle.
                    under_load = len(drafts) > 1 and bool(self._pending)
                    self._post((futures, outcomes, time.perf_counter() - started))
                if self._closing:
                    if not self._pending:  # nothing can be added once closing is set
                        return
                    continue
                await self._has_work.wait()
                self._has_work.clear()
        finally:
            await self._drop_connection()
            await self._engine.dispose()

    async def _commit(self, drafts: list[Draft]) -> list[Outcome | SessionEnded] | None:
        try:
            return await self._store(drafts)
        except IntegrityError:
            # Another process stored the same client_id between our lookup and insert:
            # the second try finds it.
            try:
                return await self._store(drafts)
            except Exception:
                log.exception("storing a batch of %d messages failed", len(drafts))
        except Exception:
            log.exception("storing a batch of %d messages failed", len(drafts))
        await self._drop_connection()
        return None

    async def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                await connection.close()
            except Exception as exc:  # a connection to a database that went away
                log.warning("closing the writer's connection failed: %s", exc)

    async def _probe(self) -> None:
        assert self._engine is not None
        async with self._engine.begin() as connection:
            first = select(func.min(Room.name)).scalar_subquery()
            await connection.execute(update(Room).where(Room.name == first).values(last_id=Room.last_id))

    # The server's loop --------------------------------------------------------

    async def _hand_off_forever(self) -> None:
        """Committed batches, in commit order: to the fan-out, then to their senders."""
        assert self._done is not None
        while (done := await self._done.get()) is not None:
            futures, outcomes, seconds = done
            self.failing = outcomes is None
            if outcomes is None:
                for future in futures:
                    if not future.done():
                        future.set_exception(Unavailable("the database could not store the message"))
                continue
            self.batches += 1
            fresh = [o.message for o in outcomes if isinstance(o, Outcome) and o.fresh]
            self.committed += len(fresh)
            if self.metrics is not None:
                self.metrics.commit_seconds.observe(seconds)
                self.metrics.messages_stored.inc(len(fresh))
            if fresh:
                try:
                    await self.on_commit(fresh)
                except Exception:
                    log.exception("fan-out of %d committed messages failed", len(fresh))
            for future, outcome in zip(futures, outcomes, strict=True):
                if future.done():
                    continue
                if isinstance(outcome, SessionEnded):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)

    async def _store(self, drafts: list[Draft]) -> list[Outcome | SessionEnded]:
        assert self._engine is not None
        if self._connection is None:
            self._connection = await self._engine.connect()
        # The whole transaction in one greenlet: awaiting each statement on the
        # AsyncConnection spawned a greenlet and ran SQLAlchemy's async wrappers a
        # statement; inside run_sync only the driver calls cross to the event loop.
        return await self._connection.run_sync(self._transaction, drafts)

    def _transaction(self, connection: Connection, drafts: list[Draft]) -> list[Outcome | SessionEnded]:
        with connection.begin():
            # Taking the rooms first makes the transaction's first statement a write: on
            # SQLite that is where it begins (IMMEDIATE), so the lookups below are inside it.
            last_ids = self._take_rooms(connection, sorted({d.room for d in drafts}))
            ended = self._ended_sessions(connection, drafts)
            keys = [(d.user.id, d.room, d.client_id) for d in drafts if d.client_id is not None]
            earlier = self.store.by_client_ids(connection, keys) if keys else {}
            first_in_batch: dict[tuple[str, str, str], int] = {}
            new_indexes: list[int] = []
            for index, draft in enumerate(drafts):
                if draft.session_id in ended:
                    continue
                key = (draft.user.id, draft.room, draft.client_id) if draft.client_id is not None else None
                if key is None or (key not in earlier and key not in first_in_batch):
                    new_indexes.append(index)
                    if key is not None:
                        first_in_batch[key] = index
            stored = self._insert(connection, [drafts[i] for i in new_indexes], last_ids)
            if ended:  # a room taken above for refused messages alone is no room yet
                unused = {d.room for d in drafts} - {d.room for d in drafts if d.session_id not in ended}
                connection.execute(delete(Room).where(Room.name.in_(sorted(unused)), Room.message_count == 0))
        by_index = dict(zip(new_indexes, stored, strict=True))
        outcomes: list[Outcome | SessionEnded] = []
        for index, draft in enumerate(drafts):
            if draft.session_id in ended:
                outcomes.append(SessionEnded("the session ended: sign in again"))
                continue
            if index in by_index:
                outcomes.append(Outcome(by_index[index], fresh=True))
                continue
            key = (draft.user.id, draft.room, draft.client_id or "")
            previous = earlier.get(key) or by_index[first_in_batch[key]]
            outcomes.append(Outcome(previous, fresh=False))
        return outcomes

    def _ended_sessions(self, connection: Connection, drafts: list[Draft]) -> set[str | None]:
        """The batch's sessions that ended (signed out anywhere, expired) before it:
        their messages are not stored, however long the news takes to reach the socket."""
        sessions = {d.session_id for d in drafts if d.session_id is not None}
        if not sessions:
            return set()
        return set(sessions - self.store.live_sessions_in(connection, sessions))

    def _take_rooms(self, connection: Connection, rooms: list[str]) -> dict[str, int]:
        """Each room's row, made if missing, and taken (in name order, so two writers
        cannot deadlock) until commit: on PostgreSQL no other transaction can then take
        an id in these rooms and commit before us, so ids in a room grow in commit
        order (SQLite's single writer holds the whole database already). The rows give
        each room's last id so far: its next message's predecessor."""
        taken: Any
        if connection.dialect.name == "sqlite":
            taken = connection.exec_driver_sql(_sqlite_take_rooms(len(rooms)), tuple(rooms))
        else:
            taken = connection.execute(_STATEMENTS[True].take_rooms, [{"name": room} for room in rooms])
        return {name: int(last_id) for name, last_id in taken}

    def _insert(self, connection: Connection, drafts: list[Draft], last_ids: dict[str, int]) -> list[StoredMessage]:
        """Three statements a batch however many rooms it touches, with _take_rooms."""
        if not drafts:
            return []
        # Ids grow with commits, and so must times, even if the clock steps back.
        ts_ms = self._last_ts = max(now_ms(), self._last_ts)
        ts = format_ts(ts_ms)
        per_room = Counter(d.room for d in drafts)
        rooms = sorted(per_room)
        if connection.dialect.name == "sqlite":
            ids = []
            for start in range(0, len(drafts), _SQLITE_ROWS_PER_INSERT):
                page = drafts[start : start + _SQLITE_ROWS_PER_INSERT]
                values = tuple(v for d in page for v in (d.room, d.user.id, d.text, ts_ms, ts, d.client_id))
                result = connection.exec_driver_sql(_sqlite_insert_messages(len(page)), values)
                ids.extend(sorted(int(message_id) for (message_id,) in result))
        else:
            result = connection.execute(
                _STATEMENTS[True].insert_messages,
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
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql(_SQLITE_UPDATE_ROOMS, [(per_room[room], last_ids[room], room) for room in rooms])
        else:
            connection.execute(
                _STATEMENTS[True].update_rooms,
                [{"room": room, "added": per_room[room], "last": last_ids[room]} for room in rooms],
            )
        return stored


@dataclass(frozen=True)
class _Statements:
    """The write path's statements, built once: building and keying a statement for
    SQLAlchemy's compiled cache costs more than running it."""

    take_rooms: Any
    insert_messages: Any
    update_rooms: Any
    ordered: bool  # insert_messages returns ids in the drafts' order


def _statements(dialect: Any, ordered: bool) -> _Statements:
    # Upserting with an update that changes nothing returns the row as it was, and on
    # PostgreSQL locks it, like SELECT … FOR UPDATE.
    take = dialect.insert(Room).values(name=bindparam("name"), message_count=0, last_id=0)
    take = take.on_conflict_do_update(index_elements=[Room.name], set_={"last_id": Room.last_id})
    return _Statements(
        take_rooms=take.returning(Room.name, Room.last_id),
        # SQLAlchemy cannot make SQLite promise the order of RETURNING rows, so with
        # sort_by_parameter_order it would insert one row per statement (25 messages:
        # 50 driver round trips). Under SQLite's write lock one INSERT numbers its rows
        # in order, each above the last: the sorted ids are the drafts' ids.
        insert_messages=insert(Message).returning(Message.id, sort_by_parameter_order=ordered),
        update_rooms=update(Room)
        .where(Room.name == bindparam("room"))
        .values(message_count=Room.message_count + bindparam("added"), last_id=bindparam("last")),
        ordered=ordered,
    )


_STATEMENTS = {False: _statements(sqlite, ordered=False), True: _statements(postgresql, ordered=True)}


# On SQLite the three statements are SQL text run as is (exec_driver_sql): one
# multi-row statement each, without SQLAlchemy rendering the batch's VALUES, binding
# and processing parameters, and building result rows for every execution — half the
# writer's CPU in a batch. The text says what the Core statements above say
# (tests/test_writer.py checks every stored column and the rooms' counters).
_SQLITE_ROWS_PER_INSERT = 1000  # 6,000 parameters: far below SQLite's 32,766


@functools.lru_cache(maxsize=64)
def _sqlite_take_rooms(count: int) -> str:
    values = ", ".join(["(?, 0, 0)"] * count)
    return (
        f"INSERT INTO rooms (name, message_count, last_id) VALUES {values} "
        "ON CONFLICT (name) DO UPDATE SET last_id = rooms.last_id RETURNING name, last_id"
    )


@functools.lru_cache(maxsize=300)
def _sqlite_insert_messages(count: int) -> str:
    values = ", ".join(["(?, ?, ?, ?, ?, ?)"] * count)
    return f"INSERT INTO messages (room, user_id, text, ts_ms, ts, client_id) VALUES {values} RETURNING id"


_SQLITE_UPDATE_ROOMS = "UPDATE rooms SET message_count = message_count + ?, last_id = ? WHERE name = ?"
