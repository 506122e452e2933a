"""Rooms, presence and fan-out inside one process.

Each connection (connection.py) has a bounded send queue drained by its own sender
task. Broadcasts are serialised once (StoredMessage.json) and the same message is
queued for every connection.

Order: every committed message names its predecessor in the room (`prev_id`). A room
delivers a message only after its predecessor; one that arrives early (another
process published it first) waits, and if the gap does not close soon — or the broker
was cut off — the room is repaired from the database, which holds every committed
message. So each connection sees its room's messages in id order, none missing.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .broker import Broker, Committed, Event, Presence, Resync, Revoked
from .connection import Connection
from .metrics import Metrics
from .presence import PresenceRegistry
from .protocol import JOIN, LEFT, CloseCode, StoredMessage, UserRef, now_ms, presence_frame
from .store import Store

log = logging.getLogger(__name__)

WAKE_CHUNK = 128


def _wake_from(connections: list[Connection], start: int) -> None:
    end = start + WAKE_CHUNK
    for connection in connections[start:end]:
        connection.wake()
    if end < len(connections):
        asyncio.get_running_loop().call_soon(_wake_from, connections, end)


@dataclass
class RoomState:
    connections: set[Connection] = field(default_factory=set)
    local_users: Counter[str] = field(default_factory=Counter)  # user id -> our connections
    last_id: int | None = None  # the last message delivered here; None until primed
    waiting: dict[int, StoredMessage] = field(default_factory=dict)  # by prev_id
    priming: asyncio.Task[None] | None = None
    repairing: bool = False
    # A Resync came while a repair was pending or reading: whatever that repair reads
    # (or read) may predate what was lost, so it must read the database (again).
    read_again: bool = False


GAP_WAIT_SECONDS = 0.5
REPAIR_PAGE = 500
# Committed batches whose publish failed, kept to publish again once the broker is
# back: the other processes may have resynced already (their subscription came back
# before our publish failed), so only this copy tells them. Beyond the bound the
# oldest go; an outage that long has cut every subscriber, and they all resync.
UNPUBLISHED_MAX = 10_000
REVOKED_MEMORY_SECONDS = 60.0  # far longer than an opening takes
CATCH_UP_SECONDS = 1.0  # at shutdown, for our own published messages to come back
REPUBLISH_FIRST_SECONDS = 0.2
REPUBLISH_MAX_SECONDS = 5.0


class Hub:
    def __init__(
        self,
        broker: Broker,
        presence: PresenceRegistry,
        store: Store,
        metrics: Metrics,
        origin: str | None = None,
    ) -> None:
        self.broker = broker
        self.presence = presence
        self.store = store
        self.metrics = metrics
        self.origin = origin or uuid.uuid4().hex
        self.rooms: dict[str, RoomState] = {}
        self.connections: set[Connection] = set()
        self.per_address: Counter[str] = Counter()  # sockets opening or open, by client address
        self.accepting = True
        self.repairs = 0  # rooms repaired from the database
        self._present: set[tuple[str, str]] = set()  # (room, user id) we told the registry of
        # Sessions revoked lately (id -> monotonic time), for sockets still opening: one
        # whose session was checked just before the revocation registers just after it.
        self._revoked_sessions: dict[str, float] = {}
        self._published = 0
        self._delivered_own = 0
        self._caught_up = asyncio.Event()  # every event we published has come back
        self._caught_up.set()
        self._outbox: asyncio.Queue[Event] = asyncio.Queue()
        self._unpublished: deque[Committed] = deque()
        self._republish = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._all_closed = asyncio.Event()
        self._all_closed.set()

    async def start(self) -> None:
        await self.presence.start(self._announce_left)
        self._spawn(self._deliver_forever(), "hub-deliver")
        self._spawn(self._publish_forever(), "hub-publish")
        self._spawn(self._republish_forever(), "hub-republish")

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.presence.stop()

    def _spawn(self, work: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # Connections and presence -------------------------------------------------

    def take_address_slot(self, address: str, limit: int) -> bool:
        """Count one more socket from `address`, unless it holds `limit` already.

        Taken before the opening awaits anything, so that concurrent opens cannot all
        pass the check; every taken slot is given back with `release_address_slot`.
        """
        if self.per_address[address] >= limit:
            return False
        self.per_address[address] += 1
        return True

    def release_address_slot(self, address: str) -> None:
        self.per_address[address] -= 1
        if self.per_address[address] <= 0:
            del self.per_address[address]

    def register(self, connection: Connection) -> None:
        """Add a connection; from now on the room's messages are queued for it."""
        state = self.rooms.setdefault(connection.room, RoomState())
        state.connections.add(connection)
        self.connections.add(connection)
        self._all_closed.clear()
        if connection.session_id in self._revoked_sessions:
            connection.abort(CloseCode.INVALID_USER, "Invalid user")
        state.local_users[connection.user.id] += 1
        self.metrics.connections.set(len(self.connections))

    async def join(self, connection: Connection) -> None:
        """On the user's first connection in the room anywhere, a join to the room.

        The connection hears its own join at once (queued behind history and list,
        which it is sent before its sender starts); the others hear it via the broker.
        """
        room, user = connection.room, connection.user
        state = self.rooms.get(room)
        if state is None or state.local_users[user.id] != 1 or (room, user.id) in self._present:
            return
        self._present.add((room, user.id))
        if await self.presence.add(room, user):
            ts_ms = now_ms()
            connection.push(presence_frame(JOIN, room, user, ts_ms))
            self._outbox.put_nowait(Presence(JOIN, room, user, ts_ms, self.origin, connection.id))

    def unregister(self, connection: Connection) -> None:
        state = self.rooms.get(connection.room)
        if state is None or connection not in state.connections:
            return
        state.connections.discard(connection)
        self.connections.discard(connection)
        user = connection.user
        state.local_users[user.id] -= 1
        if state.local_users[user.id] <= 0:
            del state.local_users[user.id]
            if (connection.room, user.id) in self._present:
                self._present.discard((connection.room, user.id))
                self._spawn(self._leave(connection.room, user, connection.id), "presence-leave")
        if not state.connections:
            del self.rooms[connection.room]
            if state.priming is not None:
                state.priming.cancel()
        if not self.connections:
            self._all_closed.set()
        self.metrics.connections.set(len(self.connections))
        if connection.close_code is not None:
            self.metrics.closes.labels(code=str(connection.close_code)).inc()
            if connection.close_code == CloseCode.TRY_AGAIN:
                self.metrics.send_queue_drops.inc()

    async def _leave(self, room: str, user: UserRef, connection_id: int) -> None:
        try:
            if await self.presence.remove(room, user):
                self._outbox.put_nowait(Presence(LEFT, room, user, now_ms(), self.origin, connection_id))
        except Exception:
            log.exception("presence: removing %s from %s failed", user.id, room)

    async def _announce_left(self, room: str, user: UserRef) -> None:
        """A dead process's user, reaped by the registry."""
        self._outbox.put_nowait(Presence(LEFT, room, user, now_ms(), self.origin, 0))

    def revoke(self, event: Revoked) -> None:
        """Access ended: close the affected sockets here now, then in every process."""
        self.close_revoked(event)
        self._outbox.put_nowait(replace(event, origin=self.origin))

    def close_revoked(self, event: Revoked) -> int:
        """Close this process's sockets that `event` names; how many."""
        sessions, users = set(event.session_ids), set(event.user_ids)
        now = time.monotonic()
        for session_id in [s for s, at in self._revoked_sessions.items() if now - at > REVOKED_MEMORY_SECONDS]:
            del self._revoked_sessions[session_id]
        self._revoked_sessions.update(dict.fromkeys(sessions, now))
        closed = 0
        for connection in list(self.connections):
            named = connection.session_id in sessions or connection.user.id in users
            if named and (event.room is None or connection.room == event.room) and connection.close_code is None:
                connection.abort(event.code, event.reason)
                closed += 1
        return closed

    async def online(self, room: str) -> list[UserRef]:
        """Users with a connection in the room (in any process), each once, by name."""
        return await self.presence.online(room)

    # Order ----------------------------------------------------------------------

    async def prime(self, room: str) -> None:
        """Learn the room's last committed id, from which its live messages follow."""
        state = self.rooms.get(room)
        if state is None or state.last_id is not None:
            return
        if state.priming is None or state.priming.done():
            state.priming = asyncio.get_running_loop().create_task(self._prime(room, state))
        await asyncio.shield(state.priming)

    async def _prime(self, room: str, state: RoomState) -> None:
        last_id = await self.store.room_last_id(room)
        if state.last_id is None:
            state.last_id = last_id
            self._settle(room, state)

    def _accept(self, room: str, state: RoomState, message: StoredMessage) -> None:
        if state.last_id is None:
            state.waiting[message.prev_id] = message  # priming: the start is not known yet
        elif message.id <= state.last_id:
            return  # delivered already (a repair got there first)
        elif message.prev_id <= state.last_id:
            self._fan(state, message)
            self._settle(room, state)
        else:  # its predecessor has not come yet
            state.waiting[message.prev_id] = message
            self._schedule_repair(room, state, GAP_WAIT_SECONDS)

    def _fan(self, state: RoomState, message: StoredMessage) -> None:
        # Queued for everyone now (so each connection's queue stays in id order); the
        # author's own connections are woken first, then the others WAKE_CHUNK at a
        # time, one event-loop pass each, so that in a large room the loop reads the
        # sockets between chunks: the author, who has its echo, is already sending
        # the next message and its commit runs while the rest are sent this one.
        authors: list[Connection] = []
        others: list[Connection] = []
        for connection in state.connections:
            if connection.enqueue(message):
                (authors if connection.user.id == message.user.id else others).append(connection)
        for connection in authors:
            connection.wake()
        _wake_from(others, 0)
        state.last_id = message.id
        self.metrics.broadcasts.inc(len(state.connections))

    def _settle(self, room: str, state: RoomState) -> None:
        """Deliver the waiting messages that now follow on; drop what came already."""
        assert state.last_id is not None
        while (following := state.waiting.pop(state.last_id, None)) is not None:
            self._fan(state, following)
        for prev_id in [p for p, m in state.waiting.items() if m.id <= (state.last_id or 0)]:
            del state.waiting[prev_id]
        if state.waiting:
            self._schedule_repair(room, state, GAP_WAIT_SECONDS)

    def _schedule_repair(self, room: str, state: RoomState, delay: float, resync: bool = False) -> None:
        if state.repairing:
            state.read_again = state.read_again or resync
            return
        state.repairing = True
        self._spawn(self._repair(room, state, delay), f"repair-{room}")

    async def _repair(self, room: str, state: RoomState, delay: float) -> None:
        try:
            read = await self._read_missing(room, state, delay)
        except Exception:
            log.exception("repairing room %s from the database failed; trying again", room)
            state.repairing = False
            self._schedule_repair(room, state, 1.0, resync=True)
            return
        state.repairing = False  # on every way out, or the room could never repair again
        if read:
            self._settle(room, state)

    async def _read_missing(self, room: str, state: RoomState, delay: float) -> bool:
        """Deliver what the database holds after the room's last id; False if not needed."""
        await asyncio.sleep(delay)
        if self.rooms.get(room) is not state or state.last_id is None:
            return False
        if delay and not state.waiting and not state.read_again:
            return False  # the gap closed by itself
        self.repairs += 1
        while True:
            state.read_again = False
            page = await self.store.after(room, state.last_id, REPAIR_PAGE)
            for message in page.messages:
                if message.id > state.last_id:
                    self._fan(state, message)
            if not page.has_more and not state.read_again:
                return True

    # Fan-out ------------------------------------------------------------------

    async def publish_committed(self, messages: Sequence[StoredMessage]) -> None:
        """The writer's hand-off: committed messages, in id order."""
        event = Committed(tuple(messages), self.origin)
        self._published += 1
        self._caught_up.clear()
        try:
            await self.broker.publish(event)
        except Exception as exc:
            # Stored already: our own connections get it now; the other processes when
            # it is published again, or from the database on their Resync.
            log.warning("broker unavailable (%s): delivering %d messages locally", exc, len(messages))
            self.deliver(event)
            self._keep_unpublished(Committed(event.messages, self.origin, again=True))

    def _keep_unpublished(self, event: Committed) -> None:
        if len(self._unpublished) >= UNPUBLISHED_MAX:
            self._unpublished.popleft()
        self._unpublished.append(event)
        self._republish.set()

    async def _republish_forever(self) -> None:
        delay = REPUBLISH_FIRST_SECONDS
        while True:
            await self._republish.wait()
            await asyncio.sleep(delay)
            while self._unpublished:
                try:
                    await self.broker.publish(self._unpublished[0])
                except Exception:
                    delay = min(delay * 2, REPUBLISH_MAX_SECONDS)
                    break
                self._unpublished.popleft()
            else:
                log.info("broker back: published again what could not be published")
                self._republish.clear()
                delay = REPUBLISH_FIRST_SECONDS

    def deliver(self, event: Event) -> None:
        if isinstance(event, Resync):
            for room, state in self.rooms.items():
                if state.last_id is not None:
                    self._schedule_repair(room, state, 0, resync=True)
            return
        if isinstance(event, Revoked):
            if event.origin != self.origin:
                self.close_revoked(event)
            return
        if isinstance(event, Committed):
            if event.origin == self.origin and not event.again:
                self._delivered_own += 1
                if self._delivered_own >= self._published:
                    self._caught_up.set()
            for message in event.messages:
                found = self.rooms.get(message.room)
                if found is not None:
                    self._accept(message.room, found, message)
            return
        listeners = self.rooms.get(event.room)
        if listeners is None:
            return
        frame = presence_frame(event.kind, event.room, event.user, event.ts_ms)
        for connection in listeners.connections:
            if event.origin == self.origin and connection.id == event.connection_id:
                continue
            connection.push(frame)

    async def _publish_forever(self) -> None:
        while True:
            event = await self._outbox.get()
            try:
                await self.broker.publish(event)
            except Exception as exc:
                log.warning("publishing a %s event failed: %s", type(event).__name__, exc)
                self.deliver(event)  # at least this process's connections hear it

    async def _deliver_forever(self) -> None:
        while True:
            event = await self.broker.next_published()
            try:
                self.deliver(event)
            except Exception:
                log.exception("delivering a %s event failed", type(event).__name__)

    # Shutdown -----------------------------------------------------------------

    async def _read_all_rooms(self) -> None:
        for room, state in list(self.rooms.items()):
            if await self._read_missing(room, state, 0):
                self._settle(room, state)

    async def close_all(self, code: int, reason: str, grace: float = 10.0) -> None:
        """Stop taking connections; let each send what it has queued, then close it."""
        self.accepting = False
        deadline = time.monotonic() + grace
        try:
            # Our own committed messages must reach our connections before they close.
            await asyncio.wait_for(self._caught_up.wait(), min(grace, CATCH_UP_SECONDS))
        except TimeoutError:
            # The broker is away (it would hand them back within milliseconds): the
            # database has every one of them.
            log.warning("the broker did not hand back what we committed: reading our rooms from the database")
            try:
                await asyncio.wait_for(self._read_all_rooms(), max(0.1, deadline - time.monotonic()))
            except Exception as exc:
                log.warning("closing before every committed message was delivered (%s)", exc or type(exc).__name__)
        for connection in list(self.connections):
            connection.finish(code, reason)
        try:
            await asyncio.wait_for(self._all_closed.wait(), max(0.1, deadline - time.monotonic()))
        except TimeoutError:
            log.warning("%d connections did not close in time", len(self.connections))
