"""The per-user stream (docs/protocol.md, "The per-user stream"): what every connection
of a user hears of the user's rooms besides its own — `activity` (a room's last id and
the user's unread and mention counts there, at most once a second) and `notify` (each
new message that mentions the user or arrives in one of its DMs).

Every process sees every committed message once (its own at the writer's hand-off,
the others' through the broker: hub.py), so each serves its own connections alone:
`followers` are the users with a connection here, `watchers` the followers who are
members of each room. A message costs one dict lookup, then a few integer updates per
watcher: the counts live in memory, read once per user from the database (one
statement for up to LOAD_USERS_PER_QUERY users) and then kept from the messages
themselves — never a query per message. A delete lowers the counts of those who counted
the deleted message, known from the latest messages' authors and mentions (`authors`);
only a delete of a message older than those reads the room's counts again.

A connection opened with a bot token limited to some rooms (Connection.token_rooms)
hears nothing of the user's other rooms: each frame goes to the connections that
`hear` its room.

A load races the messages still arriving: its statement reads every room's counts and
last id as of one snapshot. While a load is under way the arriving messages are also
kept in `recent`; once its rows come, those of its rooms past each room's snapshot last
id are counted on top. If more arrived than `recent` holds, the load reads again.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
from collections import OrderedDict, deque
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field

from .access import DM
from .connection import Connection
from .protocol import CHAT, DELETE, EDIT, StoredMessage, activity_frame, batch_frame, notify_frame
from .store import UNREAD_MAX, RoomCounts, Store

log = logging.getLogger(__name__)

ACTIVITY_SECONDS = 1.0  # at most one activity per room and connection in this time
RECENT_MAX = 20_000  # messages kept while a load is under way; past it, the load reads again
LOAD_USERS_PER_QUERY = 200
LOAD_RETRY_SECONDS = 1.0
# The latest chat messages of watched rooms whose author and mentions are kept, so that
# a delete of one lowers the counts it raised without reading them again (finding 8).
AUTHORS_MAX = 10_000


@dataclass(slots=True)
class Tally:
    """One user's state in one of its rooms."""

    kind: str
    last_id: int
    last_read_id: int
    unread: int
    mentions: int
    # Messages counted here past UNREAD_MAX (unread stays at the cap): so many deletes
    # leave the count at its cap with no need to read it again.
    beyond: int = field(default=0, compare=False)


class Follower:
    """A user with a connection in this process: its connections, its rooms' tallies,
    and the rooms whose activity waits for the end of its second."""

    __slots__ = ("changed", "connections", "last_sent", "quiet", "rooms", "timer", "user_id")

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        self.connections: set[Connection] = set()
        self.rooms: dict[str, Tally] = {}
        self.changed: set[str] = set()
        # Rooms the user joined by its own act (opening or first writing in a public
        # room): counted from now on, but no `activity` of their own to say so.
        self.quiet: set[str] = set()
        self.last_sent = -math.inf  # loop time of the last activity sent
        self.timer: asyncio.TimerHandle | None = None


class UserStream:
    def __init__(self, store: Store, enabled: bool = True) -> None:
        self.store = store
        self.enabled = enabled
        self.followers: dict[str, Follower] = {}
        self.watchers: dict[str, set[Follower]] = {}  # room -> its members with a connection here
        # The messages that arrive while a load is under way (and only then: memory).
        self.recent: deque[StoredMessage] = deque(maxlen=RECENT_MAX)
        self.seq = 0  # messages seen so far
        # Message id -> (author id, mentioned ids) of the latest AUTHORS_MAX chat messages
        # of rooms with watchers here, edits applied: what a delete of one takes back.
        self.authors: OrderedDict[int, tuple[str, tuple[str, ...]]] = OrderedDict()
        self.loads = 0  # statements run (for tests and the benchmark)
        # User id -> the rooms to read again (None: all of them).
        self._to_load: dict[str, set[str] | None] = {}
        self._loading: set[str] = set()
        self._wanted: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.enabled:
            self._wanted = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._load_forever(), name="user-stream-load")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for follower in self.followers.values():
            if follower.timer is not None:
                follower.timer.cancel()

    # Connections and memberships ------------------------------------------------

    def opened(self, connection: Connection) -> None:
        if not self.enabled:
            return
        user_id = connection.user.id
        follower = self.followers.get(user_id)
        if follower is None:
            follower = self.followers[user_id] = Follower(user_id)
            self._load(user_id, None)
        follower.connections.add(connection)

    def closed(self, connection: Connection) -> None:
        follower = self.followers.get(connection.user.id)
        if follower is None:
            return
        follower.connections.discard(connection)
        if not follower.connections:
            del self.followers[follower.user_id]
            self._to_load.pop(follower.user_id, None)
            for room in follower.rooms:
                self._unwatch(room, follower)
            if follower.timer is not None:
                follower.timer.cancel()

    def joined(self, room: str, user_ids: Iterable[str], announce: bool = True) -> None:
        """These users became members of `room` (any process): read their counts there,
        and tell their connections with an `activity` unless the user joined by its own
        act (`announce` False: a client that never asked for the stream hears nothing
        of the rooms it opens itself)."""
        for user_id in user_ids:
            follower = self.followers.get(user_id)
            if follower is not None:
                if not announce:
                    follower.quiet.add(room)
                self._load(user_id, {room})

    def removed(self, room: str, user_ids: Collection[str], all_but: Collection[str] | None = None) -> None:
        """These users (or all but `all_but`) are members of `room` no more: nothing more of it."""
        if all_but is not None:
            named = [f for f in self.watchers.get(room, ()) if f.user_id not in all_but]
        else:
            named = [f for user_id in user_ids if (f := self.followers.get(user_id)) is not None]
        for follower in named:
            if follower.rooms.pop(room, None) is not None:
                self._unwatch(room, follower)
            follower.changed.discard(room)
            if follower.user_id in self._loading:  # a load under way may still hold the room
                self._load(follower.user_id, {room})

    def read_moved(self, user_id: str, room: str, read_id: int) -> None:
        """The user's read position in `room` moved to `read_id` (any process)."""
        follower = self.followers.get(user_id)
        tally = follower.rooms.get(room) if follower is not None else None
        if tally is None and user_id in self._loading:  # its load may have read the old position
            self._load(user_id, {room})
        if follower is None or tally is None or read_id <= tally.last_read_id:
            return
        tally.last_read_id = read_id
        if read_id >= tally.last_id:
            tally.unread = tally.mentions = tally.beyond = 0
            self._changed(follower, room)
        else:  # what is left unread is in the database alone
            self._load(user_id, {room})

    def resync(self) -> None:
        """Messages may have been lost (the broker was cut off): read every count again."""
        for user_id in self.followers:
            self._load(user_id, None)

    # Messages -------------------------------------------------------------------

    def deliver(self, messages: Sequence[StoredMessage]) -> None:
        """Committed messages, each once, from this process or another."""
        if not self.enabled:
            return
        for message in messages:
            self.seq += 1
            if self._loading:
                self.recent.append(message)
            watchers = self.watchers.get(message.room)
            if not watchers:
                continue
            if message.kind != CHAT:
                known = self.authors.get(message.target or 0)
                for follower in watchers:
                    self._event(follower, message, known)
                if message.kind == EDIT and known is not None:  # whom it mentions now
                    self.authors[message.target or 0] = (known[0], message.mentions)
                continue
            self._note_chat(message)
            notify: str | None = None
            mentioned = message.mentions
            for follower in watchers:
                if self._count(follower, message, mentioned):
                    notify = notify or notify_frame(message)
                    self._notify(follower, message.room, notify)

    def _note_chat(self, message: StoredMessage) -> None:
        self.authors[message.id] = (message.user.id, message.mentions)
        if len(self.authors) > AUTHORS_MAX:
            self.authors.popitem(last=False)

    def _event(self, follower: Follower, message: StoredMessage, known: tuple[str, tuple[str, ...]] | None) -> None:
        """An edit or a delete (docs/protocol.md §17) of a message whose author and
        mentions were `known` (None: not remembered here). No news of its own, but the
        counts follow the database's: an unread message deleted counts no more, and an
        edit may add or take away a mention. A delete of a message not remembered (an
        old one), or at the count's cap with no message known past it, reads the
        room's counts again."""
        tally = follower.rooms[message.room]
        tally.last_id = max(tally.last_id, message.id)
        me = follower.user_id
        if (message.target or 0) <= tally.last_read_id or not tally.unread:
            return  # read already: counted nowhere
        if known is not None and known[0] == me:  # one's own: never counted
            return
        if message.kind == DELETE and (known is None or (tally.unread >= UNREAD_MAX and not tally.beyond)):
            self._load(me, {message.room})  # not remembered, or the count past its cap unknown
            return
        if known is None:  # an edit of a message not remembered: its mention is not followed
            return
        was_mention = me in known[1]
        if message.kind == EDIT:
            change = (me in message.mentions) - was_mention
        else:
            if tally.beyond:
                tally.beyond -= 1
            else:
                tally.unread -= 1
            change = -was_mention
        if change or message.kind == DELETE:
            tally.mentions = max(0, min(tally.mentions + change, tally.unread))
            self._changed(follower, message.room)

    @staticmethod
    def _notify(follower: Follower, room: str, frame: str) -> None:
        for connection in follower.connections:
            if connection.hears(room):  # not to a token limited to other rooms
                connection.push(frame)

    def _count(self, follower: Follower, message: StoredMessage, mentioned: tuple[str, ...]) -> bool:
        """Count the chat message for the follower; True if it is to be notified of it."""
        tally = follower.rooms[message.room]
        tally.last_id = max(tally.last_id, message.id)
        if message.user.id == follower.user_id:  # one's own message: no news
            return False
        is_mention = follower.user_id in mentioned
        if message.id > tally.last_read_id:  # counted as GET /api/rooms counts (store.unread_query)
            if tally.unread >= UNREAD_MAX:
                tally.beyond += 1
            else:
                tally.unread += 1
            tally.mentions = min(tally.mentions + is_mention, tally.unread)
        self._changed(follower, message.room)
        return is_mention or tally.kind == DM

    def _changed(self, follower: Follower, room: str) -> None:
        """The room's activity is due: now if the follower's last went out a second ago
        or more (on the next loop pass, so that a batch's messages make one), else when
        that second ends. The latest state goes; none is lost."""
        follower.changed.add(room)
        if follower.timer is None:
            loop = asyncio.get_running_loop()
            delay = max(0.0, follower.last_sent + ACTIVITY_SECONDS - loop.time())
            follower.timer = loop.call_later(delay, self._flush, follower)

    def _flush(self, follower: Follower) -> None:
        follower.timer = None
        if self.followers.get(follower.user_id) is not follower or not follower.changed:
            return
        follower.last_sent = asyncio.get_running_loop().time()
        frames = {
            room: activity_frame(room, tally.last_id, tally.unread, tally.mentions)
            for room in follower.changed
            if (tally := follower.rooms.get(room)) is not None
        }
        follower.changed.clear()
        for connection in follower.connections:
            # A connection has its own room's messages themselves: no activity of it; a
            # token limited to some rooms hears of those alone.
            due = [frame for room, frame in frames.items() if room != connection.room and connection.hears(room)]
            if connection.batch and len(due) > 1:
                connection.push(batch_frame(due))
            else:
                for frame in due:
                    connection.push(frame)

    def _watch(self, room: str, follower: Follower) -> None:
        self.watchers.setdefault(room, set()).add(follower)

    def _unwatch(self, room: str, follower: Follower) -> None:
        watchers = self.watchers.get(room)
        if watchers is not None:
            watchers.discard(follower)
            if not watchers:
                del self.watchers[room]

    # Loading counts ---------------------------------------------------------------

    def _load(self, user_id: str, rooms: set[str] | None) -> None:
        if user_id in self._to_load:
            queued = self._to_load[user_id]
            self._to_load[user_id] = None if queued is None or rooms is None else queued | rooms
        else:
            self._to_load[user_id] = None if rooms is None else set(rooms)
        if self._wanted is not None:
            self._wanted.set()

    async def _load_forever(self) -> None:
        assert self._wanted is not None
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            while self._to_load:
                chunk = dict(itertools.islice(self._to_load.items(), LOAD_USERS_PER_QUERY))
                for user_id in chunk:
                    del self._to_load[user_id]
                self.recent.clear()
                start, self._loading = self.seq, set(chunk)
                try:
                    rows = await self.store.stream_counts(list(chunk))
                except Exception:
                    log.exception("reading the counts of %d users failed; trying again", len(chunk))
                    rows = None
                self._loading = set()
                arrived, complete = list(self.recent), self.seq - start == len(self.recent)
                self.recent.clear()
                self.loads += 1
                if rows is None or not complete:  # failed, or more arrived than were kept
                    for user_id, rooms in chunk.items():
                        self._load(user_id, rooms)
                    if rows is None:
                        await asyncio.sleep(LOAD_RETRY_SECONDS)
                    continue
                self._install(chunk, rows, arrived)

    def _install(self, chunk: dict[str, set[str] | None], rows: list[RoomCounts], arrived: list[StoredMessage]) -> None:
        """Put the rows in place, then count for them what `arrived` while they were read."""
        by_user: dict[str, dict[str, RoomCounts]] = {}
        for counts in rows:
            by_user.setdefault(counts.user_id, {})[counts.room] = counts
        for user_id, rooms in chunk.items():
            follower = self.followers.get(user_id)
            if follower is None:
                continue
            found = by_user.get(user_id, {})
            scope = set(follower.rooms) | set(found) if rooms is None else rooms
            snapshot: dict[str, int] = {}
            for room in scope:
                row = found.get(room)
                before = follower.rooms.pop(room, None)
                if row is None:
                    if before is not None:
                        self._unwatch(room, follower)
                    follower.changed.discard(room)
                    continue
                tally = Tally(row.kind, row.last_id, row.last_read_id, row.unread, row.mentions)
                follower.rooms[room] = tally
                snapshot[room] = row.last_id
                self._watch(room, follower)
                # A room joined or read again, or counts that a lost message changed: news.
                announced = rooms is not None and room not in follower.quiet
                follower.quiet.discard(room)
                if announced or (before is not None and before != tally):
                    follower.changed.add(room)
            for message in arrived:
                if message.id <= snapshot.get(message.room, message.id):
                    continue  # the rows hold it already (or the room is not this load's)
                if message.kind == DELETE:  # no edit can follow it: what is known is as it was
                    self._event(follower, message, self.authors.get(message.target or 0))
                elif message.kind != CHAT:  # an edit's mention change is not followed here
                    tally = follower.rooms[message.room]
                    tally.last_id = max(tally.last_id, message.id)
                elif self._count(follower, message, message.mentions):
                    self._notify(follower, message.room, notify_frame(message))
            if follower.changed:
                self._changed(follower, next(iter(follower.changed)))
