"""Rooms, connections, presence and fan-out inside one process.

Each connection has a bounded send queue drained by its own sender task, so a slow
reader only ever fills its own queue; when that is full it is closed with 1013 and
resumes later with `after`. Broadcasts are serialised once (StoredMessage.json) and
the same string is queued for every connection.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field

from .broker import Broker, Committed, Event, Presence
from .protocol import JOIN, LEFT, CloseCode, StoredMessage, UserRef, batch_frame, now_ms, presence_frame

log = logging.getLogger(__name__)

# Kinds of queued items.
CHAT_ITEM = 0  # a broadcast message, skipped if the history already held it
DIRECT_ITEM = 1  # a message for this connection only (a retried client_id)
FRAME_ITEM = 2  # any other frame (presence, errors, pong)
CLOSE_ITEM = 3  # close after everything queued before it has been sent

_connection_ids = itertools.count(1)


class Connection:
    """One open WebSocket, as the hub sees it."""

    def __init__(self, user: UserRef, room: str, address: str, batch: bool, capacity: int) -> None:
        self.id = next(_connection_ids)
        self.user = user
        self.room = room
        self.address = address
        self.batch = batch
        self.capacity = capacity
        self.queue: deque[tuple[int, int, str]] = deque()
        self.skip_through = 0  # chat ids up to this one came with the history
        self.close_code: int | None = None
        self.close_reason = ""
        self.closed = asyncio.Event()
        self._wake = asyncio.Event()

    def push(self, kind: int, text: str, message_id: int = 0) -> None:
        if self.close_code is not None:
            return
        if len(self.queue) >= self.capacity:
            self.abort(CloseCode.TRY_AGAIN, "send queue full: reconnect with after")
            return
        self.queue.append((kind, message_id, text))
        self._wake.set()

    def abort(self, code: int, reason: str) -> None:
        """Close now, dropping whatever is queued."""
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
            self.queue.clear()
            self.closed.set()

    def finish(self, code: int, reason: str) -> None:
        """Close once everything already queued has been sent."""
        if self.close_code is None:
            self.queue.append((CLOSE_ITEM, code, reason))
            self._wake.set()

    async def run_sender(self, send: Callable[[str], Awaitable[None]]) -> None:
        """Drain the queue into `send`, coalescing queued chat messages when asked to."""
        while self.close_code is None:
            if not self.queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            items = list(self.queue)
            self.queue.clear()
            for frame in self._frames(items):
                if self.close_code is not None:
                    return
                await send(frame)

    def _frames(self, items: list[tuple[int, int, str]]) -> Iterator[str]:
        chats: list[str] = []
        for kind, message_id, text in items:
            if kind == CHAT_ITEM:
                if message_id > self.skip_through:
                    if self.batch:
                        chats.append(text)
                    else:
                        yield text
                continue
            if chats:
                yield chats[0] if len(chats) == 1 else batch_frame(chats)
                chats = []
            if kind == CLOSE_ITEM:
                self.abort(message_id, text)
                return
            yield text
        if chats:
            yield chats[0] if len(chats) == 1 else batch_frame(chats)


@dataclass
class RoomState:
    connections: set[Connection] = field(default_factory=set)
    user_connections: Counter[str] = field(default_factory=Counter)
    users: dict[str, UserRef] = field(default_factory=dict)


class Hub:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.origin = uuid.uuid4().hex
        self.rooms: dict[str, RoomState] = {}
        self.connections: set[Connection] = set()
        self.per_address: Counter[str] = Counter()
        self.accepting = True
        self.dropped = 0  # connections closed because their queue filled
        self._published = 0
        self._delivered_own = 0
        self._caught_up = asyncio.Event()  # every event we published has come back
        self._caught_up.set()
        self._outbox: asyncio.Queue[Event] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._all_closed = asyncio.Event()
        self._all_closed.set()

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._deliver_forever(), name="hub-deliver"),
            loop.create_task(self._publish_forever(), name="hub-publish"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # Connections and presence -------------------------------------------------

    def register(self, connection: Connection) -> None:
        """Add a connection; on the user's first one here, a join to the whole room.

        The connection hears its own join at once (queued behind history and list,
        which it is sent before its sender starts); the others hear it via the broker.
        """
        state = self.rooms.setdefault(connection.room, RoomState())
        state.connections.add(connection)
        self.connections.add(connection)
        self._all_closed.clear()
        self.per_address[connection.address] += 1
        user = connection.user
        state.user_connections[user.id] += 1
        state.users[user.id] = user
        if state.user_connections[user.id] == 1:
            ts_ms = now_ms()
            connection.push(FRAME_ITEM, presence_frame(JOIN, connection.room, user, ts_ms))
            self._publish_soon(Presence(JOIN, connection.room, user, ts_ms, self.origin, connection.id))

    def unregister(self, connection: Connection) -> None:
        state = self.rooms.get(connection.room)
        if state is None or connection not in state.connections:
            return
        state.connections.discard(connection)
        self.connections.discard(connection)
        self.per_address[connection.address] -= 1
        if self.per_address[connection.address] <= 0:
            del self.per_address[connection.address]
        user = connection.user
        state.user_connections[user.id] -= 1
        if state.user_connections[user.id] <= 0:
            del state.user_connections[user.id]
            del state.users[user.id]
            self._publish_soon(Presence(LEFT, connection.room, user, now_ms(), self.origin, connection.id))
        if not state.connections:
            del self.rooms[connection.room]
        if not self.connections:
            self._all_closed.set()

    def online(self, room: str) -> list[UserRef]:
        """Users with a connection in the room, each once, sorted by name."""
        state = self.rooms.get(room)
        users = state.users.values() if state else ()
        return sorted(users, key=lambda u: (u.name.casefold(), u.name, u.id))

    # Fan-out ------------------------------------------------------------------

    async def publish_committed(self, messages: Sequence[StoredMessage]) -> None:
        """The writer's hand-off: committed messages, in id order."""
        self._published += 1
        self._caught_up.clear()
        await self.broker.publish(Committed(tuple(messages), self.origin))

    def deliver(self, event: Event) -> None:
        if isinstance(event, Committed):
            if event.origin == self.origin:
                self._delivered_own += 1
                if self._delivered_own >= self._published:
                    self._caught_up.set()
            for message in event.messages:
                state = self.rooms.get(message.room)
                if state is not None:
                    for connection in state.connections:
                        connection.push(CHAT_ITEM, message.json, message.id)
            return
        state = self.rooms.get(event.room)
        if state is None:
            return
        frame = presence_frame(event.kind, event.room, event.user, event.ts_ms)
        for connection in state.connections:
            if event.origin == self.origin and connection.id == event.connection_id:
                continue
            connection.push(FRAME_ITEM, frame)

    def _publish_soon(self, event: Event) -> None:
        self._outbox.put_nowait(event)

    async def _publish_forever(self) -> None:
        while True:
            event = await self._outbox.get()
            try:
                await self.broker.publish(event)
            except Exception:
                log.exception("publishing a %s event failed", type(event).__name__)

    async def _deliver_forever(self) -> None:
        while True:
            event = await self.broker.next_published()
            try:
                self.deliver(event)
            except Exception:
                log.exception("delivering a %s event failed", type(event).__name__)

    # Shutdown -----------------------------------------------------------------

    async def close_all(self, code: int, reason: str, grace: float = 10.0) -> None:
        """Stop taking connections; let each send what it has queued, then close it."""
        self.accepting = False
        deadline = time.monotonic() + grace
        try:
            # Our own committed messages must reach our connections before they close.
            await asyncio.wait_for(self._caught_up.wait(), grace)
        except TimeoutError:
            log.warning("closing before every committed message was delivered")
        for connection in list(self.connections):
            connection.finish(code, reason)
        try:
            await asyncio.wait_for(self._all_closed.wait(), max(0.1, deadline - time.monotonic()))
        except TimeoutError:
            log.warning("%d connections did not close in time", len(self.connections))
