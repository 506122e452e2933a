"""Read positions (docs/protocol.md §18), coalesced: a `read` frame only notes the
position in memory; every FLUSH_SECONDS the positions noted meanwhile are stored in one
transaction on the message writer's thread (quartchat/writes.py `move_read_positions`,
between two batches of messages), and those that moved go to the
hub, which tells every other connection of each user, here and in the other processes.

So a client that reports a read for every message it is shown costs the database at
most one row a user and room per flush, and the broker one event per flush, however
many frames it sends; a frame costs a dict lookup, like a ping.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from .connection import Connection

log = logging.getLogger(__name__)

FLUSH_SECONDS = 0.25

Key = tuple[str, str]  # (user id, room)
Move = tuple[str, str, int]  # (user id, room, message id)
OnMoved = Callable[[Sequence[Move], dict[Key, Connection]], None]
# Stores positions and gives back those that moved (quartchat/writes.py move_read_positions,
# run on the message writer's thread).
Store = Callable[[list[Move]], Awaitable[list[Move]]]


class ReadPositions:
    def __init__(self, store: Store, on_moved: OnMoved, interval: float = FLUSH_SECONDS) -> None:
        self.store = store
        self.on_moved = on_moved  # the hub's reads_moved: (user id, room, position), senders
        self.interval = interval
        self.flushes = 0
        self._pending: dict[Key, int] = {}
        self._senders: dict[Key, Connection] = {}  # the connection that sent each pending position
        self._users: set[str] = set()  # the users of the pending positions
        self._due = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._flush_forever(), name="read-positions")

    async def stop(self) -> None:
        """Store what is noted, then stop."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.flush()

    def note(self, connection: Connection, message_id: int) -> None:
        """The user of `connection` has read its room up to `message_id`."""
        key = (connection.user.id, connection.room)
        if message_id <= self._pending.get(key, 0):
            return
        self._pending[key] = message_id
        self._senders[key] = connection
        self._users.add(key[0])
        self._due.set()

    def is_pending(self, user_id: str) -> bool:
        """Whether a position of this user waits for the next flush."""
        return user_id in self._users

    async def flush(self) -> None:
        """Store the positions noted so far now, and announce those that moved."""
        async with self._lock:
            if not self._pending:
                return
            pending, senders = self._pending, self._senders
            self._pending, self._senders, self._users = {}, {}, set()
            try:
                moved = await self.store([(u, r, i) for (u, r), i in pending.items()])
            except BaseException as failure:  # cancelled too (a shutdown): stop() flushes them
                self._keep(pending, senders)
                if not isinstance(failure, Exception):
                    raise
                log.exception("storing %d read positions failed: kept for the next flush", len(pending))
                return
            self.flushes += 1
        if moved:
            self.on_moved(moved, senders)

    def _keep(self, pending: dict[Key, int], senders: dict[Key, Connection]) -> None:
        """Put positions that were not stored back, for the next flush."""
        for key, message_id in pending.items():
            if message_id > self._pending.get(key, 0):
                self._pending[key] = message_id
                self._senders[key] = senders[key]
                self._users.add(key[0])
        self._due.set()

    async def _flush_forever(self) -> None:
        while True:
            await self._due.wait()
            await asyncio.sleep(self.interval)  # what comes meanwhile shares this flush
            self._due.clear()
            await self.flush()
