"""One open WebSocket as the hub sees it: a bounded send queue and the task that drains it.

Each connection's frames wait in its own queue, drained by its own sender task, so a
slow reader only ever fills its own queue; when that is full the connection is closed
with 1013 and the client resumes later with `after` (docs/protocol.md, "Closing codes").
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

from .protocol import CloseCode, StoredMessage, UserRef, batch_frame


@dataclass(frozen=True, slots=True)
class CloseWhenSent:
    """Queued last: close with `code` once everything queued before it has been sent."""

    code: int
    reason: str


# What a send queue holds: a room's committed message (skipped if the history held it
# already, coalesced with its neighbours on a `batch=1` connection), any other frame as
# its text (presence, an error, a pong, a retried message for its sender alone), or the
# close that ends the queue.
QueueItem = StoredMessage | str | CloseWhenSent

_connection_ids = itertools.count(1)


class Connection:
    """One open WebSocket: who, which room, and what is waiting to be sent to it."""

    def __init__(
        self, user: UserRef, room: str, address: str, batch: bool, capacity: int, session_id: str | None = None
    ) -> None:
        self.id = next(_connection_ids)
        self.user = user
        self.session_id = session_id  # the server-side session it was opened with
        self.room = room
        self.address = address
        self.batch = batch
        self.capacity = capacity
        self.queue: deque[QueueItem] = deque()
        self.skip_through = 0  # chat ids up to this one came with the history
        self.presence_mark = 0  # the room's presence changes up to this one are known to it (hub.py)
        self.close_code: int | None = None
        self.close_reason = ""
        self.closed = asyncio.Event()
        self._waiter: asyncio.Future[None] | None = None  # the idle sender waits on it

    def push(self, item: QueueItem) -> None:
        """Queue `item` and wake the sender."""
        if self.enqueue(item):
            self.wake()

    def enqueue(self, item: QueueItem) -> bool:
        """Queue `item` without waking the sender; False if the connection is closed
        (or has just been closed for a full queue)."""
        if self.close_code is not None:
            return False
        if len(self.queue) >= self.capacity:
            self.abort(CloseCode.TRY_AGAIN, "send queue full: reconnect with after")
            return False
        self.queue.append(item)
        return True

    def wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def abort(self, code: int, reason: str) -> None:
        """Close now, dropping whatever is queued."""
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
            self.queue.clear()
            self.closed.set()

    def finish(self, code: int, reason: str) -> None:
        """Close once everything already queued has been sent."""
        if self.close_code is None:
            self.queue.append(CloseWhenSent(code, reason))
            self.wake()

    async def run_sender(self, send: Callable[[str], Awaitable[None]]) -> None:
        """Drain the queue into `send`, coalescing queued chat messages when asked to."""
        loop = asyncio.get_running_loop()
        while self.close_code is None:
            if not self.queue:
                # A bare future, not an Event: one broadcast wakes every connection of
                # a room, and this is the cheapest wake-up asyncio has.
                self._waiter = loop.create_future()
                await self._waiter
                continue
            if len(self.queue) == 1:  # the usual case: one frame as it is
                item = self.queue.popleft()
                if isinstance(item, StoredMessage):
                    if item.id > self.skip_through:
                        await send(item.json)
                elif isinstance(item, str):
                    await send(item)
                else:
                    self.abort(item.code, item.reason)
                    return
                continue
            items = list(self.queue)
            self.queue.clear()
            for sent, frame in enumerate(self._frames(items), start=1):
                if self.close_code is not None:
                    return
                await send(frame)
                if sent % 64 == 0:
                    await asyncio.sleep(0)
            if self.queue:
                # A send need not yield (a socket with room takes the bytes at once):
                # before the next round, let other senders and the readers have a turn.
                await asyncio.sleep(0)

    def _frames(self, items: list[QueueItem]) -> Iterator[str]:
        chats: list[str] = []
        for item in items:
            if isinstance(item, StoredMessage):
                if item.id > self.skip_through:
                    if self.batch:
                        chats.append(item.json)
                    else:
                        yield item.json
                continue
            if chats:
                yield chats[0] if len(chats) == 1 else batch_frame(chats)
                chats = []
            if isinstance(item, CloseWhenSent):
                self.abort(item.code, item.reason)
                return
            yield item
        if chats:
            yield chats[0] if len(chats) == 1 else batch_frame(chats)
