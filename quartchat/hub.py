"""Rooms: their connections, who is present in them, and their messages in order.

The end of the message path. The writer commits a batch on a thread of its own and
hands it back on the server's loop to `Hub.on_commit` (runtime.py passes that method to
the writer as its `on_commit`, so that writer.py never imports the hub). The hub queues
each message at once for the connections of its room in this process, then gives the
batch to the outbox (outbox.py), which publishes it for the other processes. What they
commit comes in through the broker (`receive`); the broker hands this process's own
events back too, and those are ignored. Presence changes and revocations take the same
way: here at once, then to the others.

Order: every committed message names its predecessor in the room (`prev_id`). A room
delivers a message only after its predecessor; one that arrives early (its predecessor,
committed by another process, has not come yet) waits, and if the gap does not close
soon — or the broker was cut off — the room is repaired from the database, which holds
every committed message. So each connection sees its room's messages in id order, none
missing.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .access import PUBLIC
from .broker import Broker, Committed, Event, MemberAdded, Presence, ReadMoved, Resync, Revoked
from .connection import Backlog, Connection, PresenceDue
from .metrics import Metrics
from .outbox import Outbox
from .presence import PresenceRegistry
from .protocol import (
    JOIN,
    LEFT,
    CloseCode,
    StoredMessage,
    UserRef,
    list_frame,
    now_ms,
    presence_frame,
    read_frame,
)
from .store import Store
from .user_stream import UserStream

log = logging.getLogger(__name__)

WAKE_CHUNK = 128

# Presence is coalesced per room (docs/protocol.md §4): changes wait a window that grows
# with the room — each flush costs a frame per connection (tens of µs each), so a room of
# 2,000 waits 0.4 s and a storm of joins costs a few frames per client, not thousands.
PRESENCE_WINDOW_MIN = 0.025
PRESENCE_WINDOW_PER_CONNECTION = 0.0002
PRESENCE_WINDOW_MAX = 0.5
# When more changes than this wait for one connection — and more than a 32nd of the
# room's users without batch=1, more than its users with it — the room's `list`
# replaces them (hub._flush_presence).
PRESENCE_AS_LIST_MIN = 64


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
    # Presence changes waiting for the room's window to close, as (sequence, frame).
    presence_seq: int = 0
    presence_pending: list[tuple[int, str]] = field(default_factory=list)
    presence_flush: asyncio.TimerHandle | None = None


GAP_WAIT_SECONDS = 0.5
REPAIR_PAGE = 500
REVOKED_MEMORY_SECONDS = 60.0  # far longer than an opening takes
REVOKE_PUBLISH_SECONDS = 2.0  # how long a removal's answer waits for the broker at most
WATCH_SECONDS = 1.0  # how often each connection's socket is looked at (connection.py)


class Hub:
    def __init__(
        self,
        broker: Broker,
        presence: PresenceRegistry,
        store: Store,
        metrics: Metrics,
        origin: str | None = None,
        stall_seconds: float = 10.0,
        backlog_limit: int = 20_000,
        user_stream: bool = True,
    ) -> None:
        self.broker = broker
        self.presence = presence
        self.store = store
        self.metrics = metrics
        self.origin = origin or uuid.uuid4().hex  # names this process to the others
        self.stall_seconds = stall_seconds  # a socket backed up this long earns 1013
        self.backlog = Backlog(backlog_limit)  # what is queued here: it gates the intake
        metrics.fanout_backlog.set_function(lambda: self.backlog.pending)
        metrics.intake_pauses.set_function(lambda: self.backlog.pauses)
        self.outbox = Outbox(broker)
        self.stream = UserStream(store, user_stream)  # each user's news of its other rooms
        self.rooms: dict[str, RoomState] = {}
        self.connections: set[Connection] = set()
        # Every connection of a user here, whatever its room: what concerns the user
        # rather than a room (read positions) goes to them all.
        self.user_connections: dict[str, set[Connection]] = {}
        self.per_address: Counter[str] = Counter()  # sockets opening or open, by client address
        self.accepting = True
        self.repairs = 0  # rooms repaired from the database
        self._present: set[tuple[str, str]] = set()  # (room, user id) we told the registry of
        # Sessions revoked lately (id -> monotonic time), for sockets still opening: one
        # whose session was checked just before the revocation registers just after it.
        self._revoked_sessions: dict[str, float] = {}
        # One method for each kind of event the broker hands over.
        self._receivers: dict[type, Callable[[Any], None]] = {
            Committed: self._receive_committed,
            Presence: self._receive_presence,
            Revoked: self._receive_revoked,
            ReadMoved: self._receive_reads,
            Resync: self._resync,
            MemberAdded: self._receive_member_added,
        }
        self._tasks: set[asyncio.Task[None]] = set()
        self._all_closed = asyncio.Event()
        self._all_closed.set()

    async def start(self) -> None:
        await self.presence.start(self._announce_left)
        self.outbox.start()
        self.stream.start()
        self._spawn(self._receive_forever(), "hub-receive")
        self._spawn(self._watch_sockets(), "hub-watch-sockets")

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.stream.stop()
        await self.outbox.stop()
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
        self.user_connections.setdefault(connection.user.id, set()).add(connection)
        # Changes announced before now are in the list this connection will be sent.
        connection.presence_mark = state.presence_seq
        self._all_closed.clear()
        if connection.session_id in self._revoked_sessions:
            connection.abort(CloseCode.INVALID_USER, "Invalid user")
        state.local_users[connection.user.id] += 1
        self.stream.opened(connection)
        self.metrics.connections.set(len(self.connections))

    async def join(self, connection: Connection) -> None:
        """On the user's first connection in the room anywhere, a join to the room.

        The connection hears its own join at once, queued behind history and list,
        which it is sent before its sender starts; the rest of the room in the room's
        next presence window.
        """
        room, user = connection.room, connection.user
        state = self.rooms.get(room)
        if state is None or state.local_users[user.id] != 1 or (room, user.id) in self._present:
            return
        self._present.add((room, user.id))
        if await self.presence.add(room, user):
            event = Presence(JOIN, room, user, now_ms(), self.origin)
            connection.push(presence_frame(event.kind, room, user, event.ts_ms))
            self._announce(event)
            # Its own join is sent; whatever came before it is in its list.
            connection.presence_mark = state.presence_seq

    def unregister(self, connection: Connection) -> None:
        state = self.rooms.get(connection.room)
        if state is None or connection not in state.connections:
            return
        state.connections.discard(connection)
        self.connections.discard(connection)
        connection.forget()
        self.stream.closed(connection)
        user = connection.user
        mine = self.user_connections.get(user.id)
        if mine is not None:
            mine.discard(connection)
            if not mine:
                del self.user_connections[user.id]
        state.local_users[user.id] -= 1
        if state.local_users[user.id] <= 0:
            del state.local_users[user.id]
            if (connection.room, user.id) in self._present:
                self._present.discard((connection.room, user.id))
                self._spawn(self._leave(connection.room, user), "presence-leave")
        if not state.connections:
            del self.rooms[connection.room]
            if state.priming is not None:
                state.priming.cancel()
            if state.presence_flush is not None:
                state.presence_flush.cancel()
        if not self.connections:
            self._all_closed.set()
        self.metrics.connections.set(len(self.connections))
        if connection.close_code is not None:
            self.metrics.closes.labels(code=str(connection.close_code)).inc()
            if connection.close_code == CloseCode.TRY_AGAIN:
                self.metrics.send_queue_drops.inc()

    async def _leave(self, room: str, user: UserRef) -> None:
        try:
            if await self.presence.remove(room, user):
                self._announce(Presence(LEFT, room, user, now_ms(), self.origin))
        except Exception:
            log.exception("presence: removing %s from %s failed", user.id, room)

    async def _announce_left(self, room: str, user: UserRef) -> None:
        """A dead process's user, reaped by the registry."""
        self._announce(Presence(LEFT, room, user, now_ms(), self.origin))

    def _announce(self, event: Presence) -> None:
        """A presence change made here: to this process's connections now, then to the others."""
        self._tell_room(event)
        self.outbox.post(event)

    def _tell_room(self, event: Presence) -> None:
        """Queue the change for the room's next presence flush (opening its window)."""
        state = self.rooms.get(event.room)
        if state is None:
            return
        state.presence_seq += 1
        state.presence_pending.append(
            (state.presence_seq, presence_frame(event.kind, event.room, event.user, event.ts_ms))
        )
        if state.presence_flush is None:
            window = len(state.connections) * PRESENCE_WINDOW_PER_CONNECTION
            window = min(PRESENCE_WINDOW_MAX, max(PRESENCE_WINDOW_MIN, window))
            state.presence_flush = asyncio.get_running_loop().call_later(
                window, self._flush_presence, event.room, state
            )

    def _flush_presence(self, room: str, state: RoomState) -> None:
        """The window closed: each connection's waiting presence item (one per
        connection, see PresenceDue) gets the changes it has not seen; one that holds
        more than the bound gets the room's `list` in their place instead."""
        state.presence_flush = None
        pending, state.presence_pending = state.presence_pending, []
        if not pending or self.rooms.get(room) is not state:
            return
        first, last = pending[0][0], pending[-1][0]
        everything = [frame for _, frame in pending]
        # A batch=1 connection gets its changes in one frame however many: the list
        # replaces them only when it is the smaller message. Any other pays a frame per
        # change, so a far shorter backlog is worth a list.
        users = len(state.local_users)
        bounds = (max(PRESENCE_AS_LIST_MIN, users // 32), max(PRESENCE_AS_LIST_MIN, users))
        over: list[Connection] = []
        for connection in state.connections:
            mark = connection.presence_mark
            if mark >= last:
                continue
            due = connection.presence_due
            if due is None or due.taken:
                due = connection.presence_due = PresenceDue()
                if not connection.enqueue(due):
                    continue
                connection.wake()
            due.frames.extend(everything if mark < first else [frame for seq, frame in pending if seq > mark])
            if len(due.frames) > bounds[connection.batch]:
                over.append(connection)
        if over:
            self._spawn(self._list_instead(room, over), "presence-list")

    async def _list_instead(self, room: str, connections: list[Connection]) -> None:
        """The room's list replaces the changes still waiting for `connections`: read
        at once (the registry holds every change announced so far)."""
        try:
            frame = list_frame(room, await self.presence.online(room))
        except Exception:
            log.exception("presence: reading the users of %s failed", room)
            return
        for connection in connections:
            due = connection.presence_due
            if due is not None and not due.taken:
                due.listing = frame
                due.frames.clear()
            else:  # sent meanwhile: the list follows it
                due = connection.presence_due = PresenceDue()
                due.listing = frame
                connection.push(due)

    def revoke(self, event: Revoked) -> None:
        """Access ended: close the affected sockets here now, then in every process."""
        self.close_revoked(event)
        self.outbox.post(replace(event, origin=self.origin))

    async def revoke_published(self, event: Revoked) -> None:
        """`revoke`, returning once the broker has taken the event (or failed to, or took
        REVOKE_PUBLISH_SECONDS): a removal's answer then comes after every other process
        can hear of it, ahead of any message sent once the answer is seen (the broker
        keeps one order for what it is given). Not through the outbox's queue: the
        others' streams read memberships from the database, so its order with a
        MemberAdded does not matter. A publish that fails loses the event; the others'
        Resync makes up for it (_close_non_members)."""
        self.close_revoked(event)
        try:
            async with asyncio.timeout(REVOKE_PUBLISH_SECONDS):
                await self.broker.publish(replace(event, origin=self.origin))
        except Exception as exc:
            log.warning("publishing a Revoked event failed (only this process heard it): %s", exc)

    def members_added(self, room: str, user_ids: tuple[str, ...], announce: bool = True) -> None:
        """New members of `room` (committed): their streams here now, then in every
        process (`announce`: see UserStream.joined)."""
        self.stream.joined(room, user_ids, announce)
        self.outbox.post(MemberAdded(room, user_ids, self.origin, announce))

    def close_revoked(self, event: Revoked) -> int:
        """Close this process's sockets that `event` names; how many. A room's members
        no more hear nothing more of it on their other connections either."""
        if event.room is not None and (event.user_ids or event.all_but is not None):
            self.stream.removed(event.room, event.user_ids, event.all_but)
        sessions, users = set(event.session_ids), set(event.user_ids)
        now = time.monotonic()
        for session_id in [s for s, at in self._revoked_sessions.items() if now - at > REVOKED_MEMORY_SECONDS]:
            del self._revoked_sessions[session_id]
        self._revoked_sessions.update(dict.fromkeys(sessions, now))
        closed = 0
        for connection in list(self.connections):
            named = (
                connection.session_id in sessions
                or connection.user.id in users
                or (event.all_but is not None and connection.user.id not in event.all_but)
            )
            if named and (event.room is None or connection.room == event.room) and connection.close_code is None:
                connection.abort(event.code, event.reason)
                closed += 1
        return closed

    def reads_moved(self, moves: Sequence[tuple[str, str, int]], senders: dict[tuple[str, str], Connection]) -> None:
        """Read positions stored (quartchat/reads.py), as (user id, room, last read id):
        a `read` frame to every connection of each user here but the one that moved it
        (`senders`, by (user id, room)), then to the other processes."""
        self._tell_reads(moves, senders)
        self.outbox.post(ReadMoved(tuple(moves), self.origin))

    def _tell_reads(self, moves: Sequence[tuple[str, str, int]], senders: dict[tuple[str, str], Connection]) -> None:
        for user_id, room, last_read_id in moves:
            self.stream.read_moved(user_id, room, last_read_id)  # its activity counts follow
            connections = self.user_connections.get(user_id)
            if not connections:
                continue
            frame = read_frame(room, last_read_id)
            sender = senders.get((user_id, room))
            for connection in connections:
                if connection is not sender and connection.hears(room):  # a limited token: its rooms only
                    connection.push(frame)

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

    # Delivery ---------------------------------------------------------------

    async def on_commit(self, messages: Sequence[StoredMessage]) -> None:
        """The writer's hand-off: messages it committed, in id order, to this process's
        connections at once, then to the other processes."""
        self._deliver(messages)
        await self.outbox.publish_committed(Committed(tuple(messages), self.origin))

    def _deliver(self, messages: Sequence[StoredMessage]) -> None:
        self.stream.deliver(messages)
        for message in messages:
            state = self.rooms.get(message.room)
            if state is not None:
                self._accept(message.room, state, message)

    def receive(self, event: Event) -> None:
        """An event the broker handed over: another process's, or our own come back."""
        self._receivers[type(event)](event)

    def _receive_committed(self, event: Committed) -> None:
        if event.origin != self.origin:
            self._deliver(event.messages)

    def _receive_presence(self, event: Presence) -> None:
        if event.origin != self.origin:
            self._tell_room(event)

    def _receive_reads(self, event: ReadMoved) -> None:
        if event.origin != self.origin:
            self._tell_reads(event.moves, {})

    def _receive_revoked(self, event: Revoked) -> None:
        if event.origin != self.origin:
            self.close_revoked(event)

    def _receive_member_added(self, event: MemberAdded) -> None:
        if event.origin != self.origin:
            self.stream.joined(event.room, event.user_ids, event.announce)

    def _resync(self, event: Resync) -> None:
        """The broker was cut off: whatever was published meanwhile is read from the
        database — messages, counts, and the memberships a lost `Revoked` ended."""
        self.stream.resync()
        for room, state in self.rooms.items():
            if state.last_id is not None:
                self._schedule_repair(room, state, 0, resync=True)
        self._spawn(self._close_non_members(), "resync-members")

    async def _close_non_members(self) -> None:
        """Close with 4003 this process's sockets in rooms other than public ones whose
        user is a member no more: a removal whose `Revoked` was published while the
        broker was cut off is lost with it, and such a socket would go on hearing the
        room. Two statements per room with sockets here, on the rare Resync alone."""
        for room in sorted(self.rooms):
            try:
                access = await self.store.room_access(room, "")
                if access is None or access.kind == PUBLIC:  # no room yet, or one open to all
                    continue
                members = await self.store.members(room)
            except Exception:
                log.exception("resync: reading the members of %s failed", room)
                continue
            kept = {member.user.id for member in members}
            state = self.rooms.get(room)
            gone = {c.user.id for c in state.connections if c.user.id not in kept} if state is not None else set()
            if gone:
                self.close_revoked(
                    Revoked(user_ids=tuple(sorted(gone)), room=room, code=CloseCode.NOT_MEMBER, reason="Not a member")
                )

    async def _receive_forever(self) -> None:
        while True:
            event = await self.broker.next_published()
            try:
                self.receive(event)
            except Exception:
                log.exception("delivering a %s event failed", type(event).__name__)

    async def _watch_sockets(self) -> None:
        """Every WATCH_SECONDS: close with 4001 the connections whose session has expired,
        and with 1013 the connections whose own socket has stayed
        backed up, not one write finishing, for `stall_seconds` (docs/protocol.md §9). A
        slow reader's writes finish, and a server that is behind closes no one: its
        senders wait for the loop, not for their sockets."""
        last = time.monotonic()
        while True:
            await asyncio.sleep(WATCH_SECONDS)
            now = time.monotonic()
            interval, last = now - last, now
            wall = now_ms()
            for connection in list(self.connections):
                if connection.expires_ms is not None and wall >= connection.expires_ms:
                    connection.abort(CloseCode.INVALID_USER, "Invalid user")  # its session expired
                elif connection.watch(now, interval) >= self.stall_seconds:
                    connection.abort(CloseCode.TRY_AGAIN, "not reading: reconnect with after")

    # Shutdown -----------------------------------------------------------------

    async def close_all(self, code: int, reason: str, grace: float = 10.0) -> None:
        """Stop taking connections; let each send what it has queued, then close it.

        Runtime.drain closes the writer first: every message it committed has been
        queued for our connections by then.
        """
        self.accepting = False
        for connection in list(self.connections):
            connection.finish(code, reason)
        try:
            await asyncio.wait_for(self._all_closed.wait(), grace)
        except TimeoutError:
            log.warning("%d connections did not close in time", len(self.connections))
