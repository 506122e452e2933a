"""Reads of users, sessions and history: every query is an index range scan."""

from __future__ import annotations

import json
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

from sqlalchemy import ColumnElement, Row, Select, and_, case, func, select
from sqlalchemy.exc import DBAPIError

from .models import ApiToken, Membership, Message, Room, Session, User
from .protocol import CHAT, RESUME_LIMIT, StoredMessage, UserRef, now_ms

if TYPE_CHECKING:
    from .database import Database

AnySelect: TypeAlias = Select[*tuple[Any, ...]]

DEFAULT_SESSION_LIFETIME_MS = 30 * 24 * 3600 * 1000
# Session ids per query when checking which are still live (SQLite allows 32,766
# parameters; a few hundred keep each statement small).
SESSIONS_PER_QUERY = 500

# A bot token's connections carry this session id (`token:<id>`): the writer's and the
# session watch's checks of live sessions then cover tokens too (quartchat/tokens.py).
TOKEN_SESSION_PREFIX = "token:"
# A token does not expire; a socket opened with one is not closed by age (a century).
TOKEN_SOCKET_LIFETIME_MS = 100 * 365 * 24 * 3600 * 1000


def token_session_id(token_id: str) -> str:
    return TOKEN_SESSION_PREFIX + token_id


def token_rooms(stored: str | None) -> tuple[str, ...] | None:
    """The rooms a token is limited to, from its JSON column (None: no limit)."""
    if stored is None:
        return None
    rooms = json.loads(stored)
    return tuple(str(room) for room in rooms)


MESSAGE_COLUMNS = (
    Message.id,
    Message.room,
    Message.user_id,
    User.name,
    Message.text,
    Message.ts_ms,
    Message.client_id,
    Message.kind,
    Message.target,
    Message.edited_ms,
    Message.deleted,
    Message.mentions,
)
# History without `after` shows chat messages only, in their current state (edits and
# deletes are in their rows); `after` brings the events too (docs/protocol.md §17).
IS_CHAT = Message.kind == CHAT


def message_select() -> AnySelect:
    return select(*MESSAGE_COLUMNS).join(User, User.id == Message.user_id)


def newest_query(room: str, limit: int) -> AnySelect:
    """The room's newest `limit + 1` chat messages, newest first: a backward range scan of
    ix_messages_room_id that skips the events it meets (tests/test_store.py checks the plan)."""
    return message_select().where(Message.room == room, IS_CHAT).order_by(Message.id.desc()).limit(limit + 1)


def before_query(room: str, before_id: int, limit: int) -> AnySelect:
    return (
        message_select()
        .where(Message.room == room, Message.id < before_id, IS_CHAT)
        .order_by(Message.id.desc())
        .limit(limit + 1)
    )


def to_message(row: Row[Any]) -> StoredMessage:
    return StoredMessage(
        id=row.id,
        room=row.room,
        user=UserRef(row.user_id, row.name),
        text=row.text,
        ts_ms=row.ts_ms,
        client_id=row.client_id,
        kind=row.kind,
        target=row.target,
        edited_ms=row.edited_ms,
        deleted=bool(row.deleted),
        mentions=stored_mentions(row.mentions),
    )


def stored_mentions(stored: str | None) -> tuple[str, ...]:
    """messages.mentions (a JSON list of user ids, or None) as StoredMessage holds it."""
    return () if stored is None else tuple(json.loads(stored))


# Unread counts stop at this many (docs/protocol.md §18): "1000+" is all a badge says.
UNREAD_MAX = 1000
# They are counted among the newest this many rows after the read position (chat
# messages, the user's own, edit and delete events): an index range scan of a bounded
# length on (room, id), however large the room.
UNREAD_SCAN = 5 * UNREAD_MAX
# What counting may read for one user at a time, across all its rooms (GET /api/rooms,
# the per-user stream's first load): a user in many rooms with much unread (attack
# finding 5: 200 rooms of 5,000 unread were 1M rows, 2 s a call) has each room counted
# among fewer rows, UNREAD_BUDGET / rooms, but never fewer than UNREAD_SCAN_FLOOR.
UNREAD_BUDGET = 10 * UNREAD_SCAN
UNREAD_SCAN_FLOOR = 50


def unread_scan(rooms: int) -> int:
    """How many rows after the read position each room is counted among, for a user
    with `rooms` rooms that have anything after it (docs/protocol.md §18): UNREAD_SCAN
    for up to 10 such rooms, then UNREAD_BUDGET shared among them, at least
    UNREAD_SCAN_FLOOR. A room with fewer new rows than that is counted exactly; a busier
    one may be counted short (never over)."""
    return max(UNREAD_SCAN_FLOOR, min(UNREAD_SCAN, UNREAD_BUDGET // max(rooms, 1)))


def rooms_to_count(user_ids: Collection[str]) -> AnySelect:
    """For each of these users, how many of its rooms have anything after its read
    position (unread_scan's argument): ix_memberships_user_id, no message is read."""
    return (
        select(Membership.user_id, func.count().label("rooms"))
        .join(Room, Room.name == Membership.room)
        .where(Membership.user_id.in_(sorted(user_ids)), Room.last_id > Membership.last_read_id)
        .group_by(Membership.user_id)
    )


def unread_query(room: str, user_id: str, last_read_id: int, scan: int = UNREAD_SCAN) -> AnySelect:
    """Chat messages by others, not deleted, after `last_read_id` among the newest
    `scan` rows after it: how many (`unread`), and how many mention the user (`mentions`)."""
    recent = (
        select(Message.user_id, Message.kind, Message.deleted, Message.mentions)
        .where(Message.room == room, Message.id > last_read_id)
        # (room, id): the order of ix_messages_room_id, which the primary key cannot give,
        # so PostgreSQL never walks the whole table's ids backwards filtering on the room.
        .order_by(Message.room.desc(), Message.id.desc())
        .limit(scan)
        .subquery("recent")
    )
    # messages.mentions is a JSON list of ids: the quoted id inside it (ids are uuids, or
    # at least never hold a quote; LIKE's wildcards are escaped all the same).
    quoted = '%"' + user_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + '"%'
    return select(
        func.count().label("unread"),
        func.count(case((recent.c.mentions.like(quoted, escape="\\"), 1))).label("mentions"),
    ).where(recent.c.kind == "chat", recent.c.deleted.is_(False), recent.c.user_id != user_id)


@dataclass(frozen=True)
class Page:
    messages: list[StoredMessage]
    has_more: bool
    reset: bool = False


class TooBroad(Exception):
    """A search that ran past its time budget (docs/protocol.md §16): HTTP 422."""


@dataclass(frozen=True)
class Around:
    """A message in its context (docs/protocol.md §16), oldest first."""

    messages: list[StoredMessage]
    has_more_before: bool
    has_more_after: bool


@dataclass(frozen=True)
class Account:
    id: str
    name: str
    password_hash: str | None
    role: str = "member"
    disabled: bool = False


@dataclass(frozen=True)
class SignedIn:
    """A live server-side session: whose it is, and when it expires."""

    user: UserRef
    session_id: str
    expires_ms: int
    role: str = "member"  # "admin" or "member" (docs/protocol.md §11)
    # Signed in with a bot token (Authorization: Bearer) rather than a cookie: its id,
    # and the rooms it is limited to (None: every room its user may use).
    token_id: str | None = None
    token_rooms: frozenset[str] | None = None


@dataclass(frozen=True)
class TokenInfo:
    """A bot token as `quartchat token list` shows it: never the token itself."""

    id: str
    user: UserRef
    rooms: tuple[str, ...] | None
    created_ms: int


@dataclass(frozen=True)
class RoomSummary:
    name: str
    messages: int
    last_id: int
    kind: str = "public"
    member: bool = False
    peer: UserRef | None = None  # a DM's other member
    # The user's read position, and what came after it (docs/protocol.md §18): chat
    # messages by others, not deleted, at most UNREAD_MAX; those that mention the user.
    last_read_id: int = 0
    unread: int = 0
    mentions: int = 0


@dataclass(frozen=True)
class RoomCounts:
    """A user's counts in one of its rooms (docs/protocol.md §18)."""

    user_id: str
    room: str
    kind: str
    last_id: int
    last_read_id: int
    unread: int
    mentions: int


@dataclass(frozen=True)
class RoomAccess:
    """A room's kind and the asking user's role in it (None: not a member)."""

    kind: str
    role: str | None


@dataclass(frozen=True)
class Member:
    user: UserRef
    role: str  # "owner" or "member"


class Store:
    """Queries against the reader engine. Every write is in quartchat/writes.py."""

    def __init__(self, database: Database, session_lifetime_ms: int = DEFAULT_SESSION_LIFETIME_MS) -> None:
        self.database = database
        self.session_lifetime_ms = session_lifetime_ms

    # History -----------------------------------------------------------------

    async def newest(self, room: str, limit: int) -> Page:
        """The newest `limit` chat messages, oldest first; has_more = older ones exist."""
        rows = await self._rows(newest_query(room, limit))
        return Page([to_message(r) for r in reversed(rows[:limit])], len(rows) > limit)

    async def before(self, room: str, before_id: int, limit: int) -> Page:
        rows = await self._rows(before_query(room, before_id, limit))
        return Page([to_message(r) for r in reversed(rows[:limit])], len(rows) > limit)

    async def after(self, room: str, after_id: int, limit: int) -> Page:
        """Every row after `after_id`: chat messages (in their current state) and events."""
        query = (
            message_select().where(Message.room == room, Message.id > after_id).order_by(Message.id).limit(limit + 1)
        )
        rows = await self._rows(query)
        return Page([to_message(r) for r in rows[:limit]], len(rows) > limit)

    async def around(self, room: str, message_id: int, limit: int) -> Around | None:
        """The message and up to limit // 2 messages either side, oldest first; None
        when the room has no such message."""
        side = limit // 2
        older = await self._rows(
            message_select()
            .where(Message.room == room, Message.id < message_id, IS_CHAT)
            .order_by(Message.id.desc())
            .limit(side + 1)
        )
        newer = await self._rows(
            message_select()
            .where(Message.room == room, Message.id >= message_id, IS_CHAT)
            .order_by(Message.id)
            .limit(side + 2)
        )
        if not newer or newer[0].id != message_id:
            return None
        messages = [to_message(r) for r in [*reversed(older[:side]), *newer[: side + 1]]]
        return Around(messages, has_more_before=len(older) > side, has_more_after=len(newer) > side + 1)

    async def search(self, query: AnySelect, limit: int, budget_s: float | None = None) -> Page:
        """A search's page, newest first: `query` asks for limit + 1 rows
        (quartchat/search.py builds it). TooBroad if the statement runs past `budget_s`:
        on SQLite a progress handler interrupts it, on PostgreSQL statement_timeout."""
        if budget_s is None:  # the operator's command line: no budget
            rows = await self._rows(query)
            return Page([to_message(r) for r in rows[:limit]], len(rows) > limit)
        async with self.database.reader.connect() as connection:
            try:
                if self.database.is_sqlite:
                    driver = (await connection.get_raw_connection()).driver_connection
                    assert driver is not None  # aiosqlite's connection
                    deadline = time.monotonic() + budget_s
                    # Called every 1,000 VM steps in aiosqlite's thread; true interrupts.
                    await driver.set_progress_handler(lambda: time.monotonic() > deadline, 1000)
                    try:
                        rows = (await connection.execute(query)).all()
                    finally:
                        await driver.set_progress_handler(None, 0)
                else:
                    async with connection.begin():
                        await connection.exec_driver_sql(f"SET LOCAL statement_timeout = {round(budget_s * 1000)}")
                        rows = (await connection.execute(query)).all()
            except DBAPIError as error:
                if "interrupted" in str(error) or "statement timeout" in str(error):
                    raise TooBroad from None
                raise
        return Page([to_message(r) for r in rows[:limit]], len(rows) > limit)

    async def resume(self, room: str, after_id: int, history_limit: int) -> Page:
        """Every message after `after_id`; past RESUME_LIMIT of them, a reset to the newest.

        An `after_id` beyond the room's last id (a restored backup, a move, commits lost
        to a power cut) is a reset too: the client's view is of a history the room no
        longer has, and its next messages would otherwise look like ones it has seen.
        """
        missed = await self.after(room, after_id, RESUME_LIMIT)
        beyond_the_end = not missed.messages and after_id > await self.room_last_id(room)
        if not missed.has_more and not beyond_the_end:
            return Page(missed.messages, has_more=False, reset=False)
        newest = await self.newest(room, history_limit)
        return Page(newest.messages, newest.has_more, reset=True)

    async def room_last_id(self, room: str) -> int:
        """The room's last committed message id (0 for a room with none)."""
        rows = await self._rows(select(Room.last_id).where(Room.name == room))
        return int(rows[0].last_id) if rows else 0

    async def last_read_id(self, room: str, user_id: str) -> int:
        """The user's read position in the room (0: none, or not a member)."""
        query = select(Membership.last_read_id).where(Membership.room == room, Membership.user_id == user_id)
        rows = await self._rows(query)
        return int(rows[0].last_read_id) if rows else 0

    async def rooms(self) -> list[RoomSummary]:
        """Every room (the operator's view: exports, the command line)."""
        query = select(Room.name, Room.message_count, Room.last_id, Room.kind).order_by(Room.name)
        return [RoomSummary(r.name, r.message_count, r.last_id, r.kind) for r in await self._rows(query)]

    async def rooms_of(self, user_id: str, readable: ColumnElement[bool]) -> list[RoomSummary]:
        """The rooms `readable` lets the user see (quartchat/access.py), the latest
        activity first: whether the user is a member of each, its read position and
        unread counts there, and each DM's other member."""
        mine = and_(Membership.room == Room.name, Membership.user_id == user_id)
        query = (
            select(
                Room.name,
                Room.message_count,
                Room.last_id,
                Room.kind,
                Membership.user_id.label("member"),
                Membership.last_read_id,
            )
            .outerjoin(Membership, mine)
            .where(readable)
            .order_by(Room.last_id.desc(), Room.name)
        )
        rows = await self._rows(query)
        # Every membership's counts in one statement (not one a room: 200 rooms were 200
        # round trips), exactly the per-user stream's.
        counts = {c.room: (c.unread, c.mentions) for c in await self.stream_counts((user_id,))}
        peers = await self._dm_peers(user_id, [r.name for r in rows if r.kind == "dm"])
        return [
            RoomSummary(
                r.name,
                r.message_count,
                r.last_id,
                r.kind,
                r.member is not None,
                peers.get(r.name),
                r.last_read_id or 0,
                *counts.get(r.name, (0, 0)),
            )
            for r in rows
        ]

    async def _dm_peers(self, user_id: str, rooms: list[str]) -> dict[str, UserRef]:
        if not rooms:
            return {}
        query = (
            select(Membership.room, User.id, User.name)
            .join(User, User.id == Membership.user_id)
            .where(Membership.room.in_(rooms), Membership.user_id != user_id)
        )
        return {r.room: UserRef(r.id, r.name) for r in await self._rows(query)}

    async def room_access(self, room: str, user_id: str) -> RoomAccess | None:
        """The room's kind and the user's role in it; None when the room does not exist."""
        mine = and_(Membership.room == Room.name, Membership.user_id == user_id)
        query = select(Room.kind, Membership.role).outerjoin(Membership, mine).where(Room.name == room)
        rows = await self._rows(query)
        return RoomAccess(rows[0].kind, rows[0].role) if rows else None

    async def members(self, room: str) -> list[Member]:
        query = (
            select(User.id, User.name, Membership.role)
            .join(User, User.id == Membership.user_id)
            .where(Membership.room == room)
            .order_by(User.name_key)
        )
        return [Member(UserRef(r.id, r.name), r.role) for r in await self._rows(query)]

    async def active_user(self, name_key: str) -> UserRef | None:
        """The account of that name, unless it is disabled or has no password (reserved)."""
        query = select(User.id, User.name).where(
            User.name_key == name_key, User.disabled.is_(False), User.password_hash.is_not(None)
        )
        rows = await self._rows(query)
        return UserRef(rows[0].id, rows[0].name) if rows else None

    async def user_ref(self, user_id: str) -> UserRef | None:
        rows = await self._rows(select(User.id, User.name).where(User.id == user_id))
        return UserRef(rows[0].id, rows[0].name) if rows else None

    # Accounts and sessions ---------------------------------------------------

    async def account_by_name_key(self, name_key: str) -> Account | None:
        query = select(User.id, User.name, User.password_hash, User.role, User.disabled).where(
            User.name_key == name_key
        )
        rows = await self._rows(query)
        if not rows:
            return None
        row = rows[0]
        return Account(row.id, row.name, row.password_hash, row.role, bool(row.disabled))

    async def name_skeleton_taken(self, skeleton: str) -> bool:
        rows = await self._rows(select(User.id).where(User.name_skeleton == skeleton).limit(1))
        return bool(rows)

    async def session(self, session_id: str, user_id: str) -> SignedIn | None:
        """The session, if it exists, is the user's, has not expired and its user is not disabled."""
        query = (
            select(User.id, User.name, User.role, Session.created_ms)
            .join(Session, Session.user_id == User.id)
            .where(
                Session.id == session_id,
                User.id == user_id,
                Session.created_ms > self._oldest_live_ms(),
                User.disabled.is_(False),
            )
        )
        rows = await self._rows(query)
        if not rows:
            return None
        row = rows[0]
        return SignedIn(UserRef(row.id, row.name), session_id, row.created_ms + self.session_lifetime_ms, role=row.role)

    async def token_session(self, token_hash: str) -> SignedIn | None:
        """The identity of a bot token (quartchat/tokens.py) by its hash, or None: no such
        token (never made, or revoked) or its user is disabled."""
        query = (
            select(ApiToken.id, ApiToken.rooms, User.id.label("user_id"), User.name, User.role)
            .join(User, User.id == ApiToken.user_id)
            .where(ApiToken.token_hash == token_hash, User.disabled.is_(False))
        )
        rows = await self._rows(query)
        if not rows:
            return None
        row = rows[0]
        rooms = token_rooms(row.rooms)
        return SignedIn(
            UserRef(row.user_id, row.name),
            token_session_id(row.id),
            now_ms() + TOKEN_SOCKET_LIFETIME_MS,
            role=row.role,
            token_id=row.id,
            token_rooms=None if rooms is None else frozenset(rooms),
        )

    async def tokens(self) -> list[TokenInfo]:
        """Every bot token, oldest first."""
        query = (
            select(ApiToken.id, ApiToken.rooms, ApiToken.created_ms, User.id.label("user_id"), User.name)
            .join(User, User.id == ApiToken.user_id)
            .order_by(ApiToken.created_ms, ApiToken.id)
        )
        return [
            TokenInfo(row.id, UserRef(row.user_id, row.name), token_rooms(row.rooms), row.created_ms)
            for row in await self._rows(query)
        ]

    async def live_sessions(self, session_ids: Collection[str]) -> set[str]:
        """Those of `session_ids` that still exist and have not expired; a bot token's
        (`token:<id>`) while the token exists."""
        cookies = sorted(s for s in session_ids if not s.startswith(TOKEN_SESSION_PREFIX))
        tokens = sorted(s.removeprefix(TOKEN_SESSION_PREFIX) for s in session_ids if s.startswith(TOKEN_SESSION_PREFIX))
        live: set[str] = set()
        async with self.database.reader.connect() as connection:
            for start in range(0, len(cookies), SESSIONS_PER_QUERY):
                chunk = cookies[start : start + SESSIONS_PER_QUERY]
                query = select(Session.id).where(Session.id.in_(chunk), Session.created_ms > self._oldest_live_ms())
                live.update((await connection.execute(query)).scalars())
            for start in range(0, len(tokens), SESSIONS_PER_QUERY):
                chunk = tokens[start : start + SESSIONS_PER_QUERY]
                found = (await connection.execute(select(ApiToken.id).where(ApiToken.id.in_(chunk)))).scalars()
                live.update(token_session_id(token_id) for token_id in found)
        return live

    # The per-user stream (quartchat/user_stream.py) ---------------------------

    async def stream_counts(self, user_ids: Collection[str]) -> list[RoomCounts]:
        """Each membership of these users with the room's kind and last id, and the
        user's counts there exactly as GET /api/rooms gives them (unread_query's, for
        every membership at once, each user's rooms among unread_scan's rows: what
        one user costs is bounded by UNREAD_BUDGET). One statement per scan length, so
        every room's counts and last id of one user are of one snapshot."""
        if not user_ids:
            return []
        async with self.database.reader.connect() as connection:
            to_count = {r.user_id: r.rooms for r in (await connection.execute(rooms_to_count(user_ids))).all()}
        by_scan: dict[int, list[str]] = {}
        for user_id in user_ids:
            by_scan.setdefault(unread_scan(to_count.get(user_id, 0)), []).append(user_id)
        found: list[RoomCounts] = []
        for scan, users in sorted(by_scan.items()):
            found += await self._stream_counts(users, scan)
        return found

    async def _stream_counts(self, user_ids: Collection[str], scan: int) -> list[RoomCounts]:
        recent = (
            select(Message.user_id, Message.kind, Message.deleted, Message.mentions)
            .where(Message.room == Membership.room, Message.id > Membership.last_read_id)
            .order_by(Message.room.desc(), Message.id.desc())
            .limit(scan)
            .correlate(Membership)
            .subquery("recent")
        )
        theirs = and_(recent.c.kind == "chat", recent.c.deleted.is_(False), recent.c.user_id != Membership.user_id)
        counted = select(func.count()).select_from(recent).correlate(Membership)
        query = (
            select(
                Membership.user_id,
                Membership.room,
                Membership.last_read_id,
                Room.kind,
                Room.last_id,
                counted.where(theirs).scalar_subquery().label("unread"),
                counted.where(theirs, recent.c.mentions.like('%"' + Membership.user_id + '"%'))
                .scalar_subquery()
                .label("mentions"),
            )
            .join(Room, Room.name == Membership.room)
            .where(Membership.user_id.in_(sorted(user_ids)))
        )
        found = []
        for r in await self._rows(query):
            unread = min(int(r.unread), UNREAD_MAX)
            found.append(
                RoomCounts(r.user_id, r.room, r.kind, r.last_id, r.last_read_id, unread, min(r.mentions, unread))
            )
        return found

    def _oldest_live_ms(self) -> int:
        return now_ms() - self.session_lifetime_ms

    async def _rows(self, query: AnySelect) -> Sequence[Row[Any]]:
        async with self.database.reader.connect() as connection:
            rows: Sequence[Row[Any]] = (await connection.execute(query)).all()
            return rows
