"""One open WebSocket as the hub sees it: its send queue, the task that drains it, and
the process-wide backlog that gates intake (docs/protocol.md §9, docs/reliability.md).

Each connection's frames wait in its own queue, drained by its own sender task, so a
slow reader only ever fills its own queue. Who gets 1013 is decided by the client's own
socket, never by the length of a queue: a queue is long either because the client does
not read (its socket is backed up: the sender waits in Hypercorn's drain, the transport's
write buffer above its high-water mark) or because the server is behind (the sender
waits for the loop, the socket takes every byte it is given). The first is closed with
1013 once its socket stays backed up, without one write finishing, for `stall_seconds`
(a slow reader's writes do finish: it is never closed for being slow), or at once when its queue is
past `capacity` and its socket is backed up; the second is never closed: the backlog
closes the intake instead, so that senders' frames are read later and the stored rate
follows the fan-out rate. Nothing stored is dropped for a connection that stays open.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

from .protocol import CloseCode, StoredMessage, UserRef, batch_frame

# A sender that spent at least this share of a watch interval waiting to write had its
# socket backed up for that interval (a socket that takes the bytes never waits at all).
BACKED_UP_SHARE = 0.9
# A queue past capacity whose send has waited on the socket this long is the client's
# own doing; a healthy reader's send waits at most a few turns of a busy loop.
BLOCKED_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class CloseWhenSent:
    """Queued last: close with `code` once everything queued before it has been sent."""

    code: int
    reason: str


class PresenceDue:
    """The room's presence changes waiting for one connection, as ONE queue item.

    The hub (hub.py) adds each presence window's frames to the item until the sender
    has sent them all, so a connection that is behind holds one growing item rather than
    a frame per change; past a bound the hub puts the room's `list` in place of the
    frames not yet sent (`listing`), and later changes follow that list. A batch=1
    sender takes everything at once (into one `batch` frame); any other sends frame by
    frame, and the item stays open to the hub until it is empty.
    """

    __slots__ = ("frames", "listing", "taken")

    def __init__(self) -> None:
        self.frames: deque[str] = deque()
        self.listing: str | None = None
        self.taken = False

    def take(self) -> list[str]:
        self.taken = True
        frames = list(self.frames) if self.listing is None else [self.listing, *self.frames]
        self.frames.clear()
        self.listing = None
        return frames

    def next_frame(self) -> str | None:
        """The next frame to send; None (and closed to the hub) once none is left."""
        if self.listing is not None:
            frame, self.listing = self.listing, None
            return frame
        if self.frames:
            return self.frames.popleft()
        self.taken = True
        return None


# What a send queue holds: a room's committed message (skipped if the history held it
# already, coalesced with its neighbours on a `batch=1` connection), presence changes
# (coalesced alike), any other frame as its text (an error, a pong, a retried message for
# its sender alone), or the close that ends the queue.
QueueItem = StoredMessage | PresenceDue | str | CloseWhenSent

_connection_ids = itertools.count(1)


class Backlog:
    """Frames queued in this process but not yet written, and the intake gate they drive.

    `queued` counts every queued item; `excluded` the items of connections whose socket
    is backed up (their queue is their own problem, and they get 1013 for it, not the
    others a slower intake). Over `limit` the gate closes: readers stop reading senders'
    frames (ws.py waits on `open` before each receive) until the rest is written down to
    half the limit.
    """

    def __init__(self, limit: int = 20_000) -> None:
        self.limit = limit
        self.queued = 0
        self.excluded = 0
        self.open = asyncio.Event()
        self.open.set()
        self.pauses = 0  # how often the intake closed (for tests and the metrics)

    @property
    def pending(self) -> int:
        return self.queued - self.excluded

    def close_intake(self) -> None:
        if self.open.is_set():
            self.open.clear()
            self.pauses += 1

    def written(self, count: int) -> None:
        """`count` items left a queue: reopen the intake once the backlog is down to half."""
        self.queued -= count
        if not self.open.is_set() and self.queued - self.excluded <= self.limit // 2:
            self.open.set()


class Connection:
    """One open WebSocket: who, which room, and what is waiting to be sent to it."""

    def __init__(
        self,
        user: UserRef,
        room: str,
        address: str,
        batch: bool,
        capacity: int,
        session_id: str | None = None,
        backlog: Backlog | None = None,
        token_rooms: frozenset[str] | None = None,
    ) -> None:
        self.id = next(_connection_ids)
        self.user = user
        self.session_id = session_id  # the server-side session it was opened with
        # Opened with a bot token limited to these rooms (None: a session, or a token
        # with no limit): what concerns the user's other rooms is not for it (`hears`).
        self.token_rooms = token_rooms
        self.room = room
        self.address = address
        self.batch = batch
        self.capacity = capacity
        self.backlog = Backlog() if backlog is None else backlog
        # A list, not a deque: an empty deque holds a 64-slot block (~700 bytes) for every
        # idle connection; the sender takes the whole list at once (or its one item).
        self.queue: list[QueueItem] = []
        self.skip_through = 0  # chat ids up to this one came with the history
        # False: a public room the user is no member of yet; its first stored message
        # here makes it one (docs/protocol.md §11), once.
        self.member = True
        self.presence_mark = 0  # the room's presence changes up to this one are known to it (hub.py)
        self.presence_due: PresenceDue | None = None  # queued, still open to more changes
        self.close_code: int | None = None
        self.close_reason = ""
        self.expires_ms: int | None = None  # its session's end: the hub's watch closes it then (4001)
        # Called once when the connection is closed (ws.py: it stops the reader); a plain
        # callback, not an Event and a task waiting on it: memory per idle connection.
        self.on_close: Callable[[], None] | None = None
        self._waiter: asyncio.Future[None] | None = None  # the idle sender waits on it
        # The socket's state, as the sender sees it: since when the send under way has
        # been waiting (None: no send under way), how long finished sends waited since
        # the last watch, and for how long every watch found the socket backed up.
        self.writing_since: float | None = None
        self.write_started: float | None = None  # the same, never moved by the watch
        self.waited = 0.0
        self.backed_up_for = 0.0
        self.backed_up = False  # for at least one whole watch interval; its queue is excluded
        # A write finished since the last watch (the socket took bytes), and for how long
        # every watch found it backed up with no write finished: a stall, not a slow reader.
        self.progressed = False
        self.stalled_for = 0.0
        # The bytes its transport holds, not yet taken by the kernel (ws.py sets it under
        # Hypercorn; asgi_send.unsent_bytes), and what the last watch saw.
        self.unsent: Callable[[], int] | None = None
        self.unsent_seen: int | None = None

    def hears(self, room: str) -> bool:
        """Whether news of `room` from the user's stream (activity, notify, read) may
        reach this connection: always, unless its token is limited to other rooms."""
        return self.token_rooms is None or room in self.token_rooms

    def push(self, item: QueueItem) -> None:
        """Queue `item` and wake the sender."""
        if self.enqueue(item):
            self.wake()

    def enqueue(self, item: QueueItem) -> bool:
        """Queue `item` without waking the sender; False if the connection is closed
        (or has just been closed: its queue is past capacity and its socket backed up).

        Past capacity with a socket that takes what it is given, the server is what is
        behind: the item is queued all the same and the intake closes.
        """
        if self.close_code is not None:
            return False
        backlog = self.backlog
        if len(self.queue) >= self.capacity:
            if self._socket_backed_up():
                self.abort(CloseCode.TRY_AGAIN, "not reading: reconnect with after")
                return False
            if self.write_started is None:  # its socket takes what it is given: we are behind
                backlog.close_intake()
        self.queue.append(item)
        backlog.queued += 1
        if self.backed_up:
            backlog.excluded += 1
        elif backlog.queued - backlog.excluded > backlog.limit:
            backlog.close_intake()
        return True

    def _socket_backed_up(self) -> bool:
        started = self.write_started
        return self.backed_up or (started is not None and time.monotonic() - started >= BLOCKED_SECONDS)

    def wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def abort(self, code: int, reason: str) -> None:
        """Close now, dropping whatever is queued."""
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
            self._drop_queue()
            self.wake()
            if self.on_close is not None:
                self.on_close()

    @property
    def closed(self) -> bool:
        return self.close_code is not None

    def forget(self) -> None:
        """The connection is gone (unregistered): its queue no longer counts, nor does
        anything queued for it later (a stray push would otherwise hold the intake)."""
        self._drop_queue()
        self.backlog = Backlog(self.backlog.limit)

    def _drop_queue(self) -> None:
        dropped = len(self.queue)
        self.queue.clear()
        self._leave_backlog(dropped)

    def finish(self, code: int, reason: str) -> None:
        """Close once everything already queued has been sent."""
        if self.close_code is None:
            self.queue.append(CloseWhenSent(code, reason))  # past capacity too: it ends the queue
            self.backlog.queued += 1
            if self.backed_up:
                self.backlog.excluded += 1
            self.wake()

    def watch(self, now: float, interval: float) -> float:
        """Called every `interval` seconds by the hub: how long this connection's socket
        has been stalled — backed up (its sender waited to write for most of every
        interval) with not one write finished. A slow reader's socket is backed up too,
        but the kernel keeps taking its bytes: its writes finish, and it is never closed
        for it (docs/protocol.md §9).

        A backed-up connection's queue leaves the backlog (it slows no one's intake);
        one that drains again counts again.
        """
        waited = self.waited
        if self.writing_since is not None:
            waited += now - self.writing_since
            self.writing_since = now
        self.waited = 0.0
        progressed, self.progressed = self.progressed, False
        if self.unsent is not None:  # the kernel took some of the bytes: progress too
            try:
                unsent = self.unsent()
            except Exception:  # the transport is gone
                unsent = None
            seen, self.unsent_seen = self.unsent_seen, unsent
            progressed = progressed or (unsent is not None and seen is not None and unsent < seen)
        backed_up = waited >= BACKED_UP_SHARE * interval
        self.backed_up_for = self.backed_up_for + interval if backed_up else 0.0
        stalled = backed_up and not progressed and self.writing_since is not None
        self.stalled_for = self.stalled_for + interval if stalled else 0.0
        if self.backed_up != (self.backed_up_for > 0):
            self.backed_up = not self.backed_up
            self.backlog.excluded += len(self.queue) if self.backed_up else -len(self.queue)
            self.backlog.written(0)  # fewer pending: perhaps the intake may reopen
        return self.stalled_for

    async def _write(self, send: Callable[[str], Awaitable[None]], frame: str) -> None:
        """One frame to the socket, timing how long the socket kept the sender waiting."""
        self.writing_since = self.write_started = time.monotonic()
        try:
            await send(frame)
            self.progressed = True
        finally:
            if self.writing_since is not None:  # moved on by each watch while it waits
                self.waited += time.monotonic() - self.writing_since
            self.writing_since = self.write_started = None

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
            # A round in a call of its own: what it sent is not kept alive by this
            # frame while the connection waits idle (memory per idle connection).
            await self._send_round(send)

    async def _send_round(self, send: Callable[[str], Awaitable[None]]) -> None:
        if len(self.queue) == 1:  # the usual case: one frame as it is
            item = self.queue.pop()
            self._leave_backlog(1)
            if isinstance(item, StoredMessage):
                if item.id > self.skip_through:
                    await self._write(send, item.json)
            elif isinstance(item, str):
                await self._write(send, item)
            elif isinstance(item, PresenceDue):
                await self._send_presence(item, send)
            else:
                self.abort(item.code, item.reason)
            return
        items, self.queue = self.queue, []
        self._leave_backlog(len(items))
        for sent, frame in enumerate(self._frames(items), start=1):
            if self.close_code is not None:
                return
            await self._write(send, frame)
            if sent % 64 == 0:
                await asyncio.sleep(0)
        if self.queue:
            # A send need not yield (a socket with room takes the bytes at once):
            # before the next round, let other senders and the readers have a turn.
            await asyncio.sleep(0)

    async def _send_presence(self, due: PresenceDue, send: Callable[[str], Awaitable[None]]) -> None:
        for frame in self._frames([due]):
            await self._write(send, frame)

    def _sent(self, due: PresenceDue) -> None:
        """`due` is taken and closed to the hub: the connection lets it go (the next
        change makes a new one) rather than keep its emptied deque while idle."""
        if self.presence_due is due:
            self.presence_due = None

    def _leave_backlog(self, count: int) -> None:
        if self.backed_up:
            self.backlog.excluded -= count
        self.backlog.written(count)

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
            if isinstance(item, PresenceDue):  # packed with the chats around it, or frame by frame
                if self.batch:
                    chats.extend(item.take())
                    self._sent(item)
                    continue
                while (frame := item.next_frame()) is not None:
                    yield frame  # the hub may add to the item (or list) between two sends
                self._sent(item)
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
