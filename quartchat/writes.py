"""Every statement that changes the database: chat messages, accounts and sessions.

`create_writes` picks the class for the database once, at start-up: `SqliteWrites` or
`PostgresWrites`. Accounts and sessions are written on the server's loop through
`Database.writer`. Chat messages are written only by the message writer
(quartchat/writer.py), in batches, on its own thread and event loop, with an engine it
opens there (`open`): each batch is one transaction (`commit_batch`) that takes the
batch's rooms, leaves out the messages of sessions that have ended, finds the
client_ids stored before, inserts the new messages and updates the rooms' counters.
The two classes differ only in the SQL of those steps and in how they run it.
"""

from __future__ import annotations

import functools
import json
import logging
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

from sqlalchemy import (
    Connection,
    Engine,
    bindparam,
    case,
    delete,
    func,
    insert,
    literal,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .database import Database
from .mentions import find_mentions, mention_keys
from .models import ApiToken, Membership, Message, Room, Session, User
from .protocol import CHAT, DELETE, EDIT, StoredMessage, UserRef, format_ts, now_ms
from .store import (
    DEFAULT_SESSION_LIFETIME_MS,
    SESSIONS_PER_QUERY,
    TOKEN_SESSION_PREFIX,
    message_select,
    to_message,
    token_session_id,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

ADMIN, MEMBER = "admin", "member"
ROLES = (ADMIN, MEMBER)
_FIRST_ADMIN_LOCK = 0x71_63_61_64  # "qcad": PostgreSQL advisory lock key of the first sign-up


class Refused(Exception):
    """A message the transaction left out: it was not stored, and must not be retried."""


class SessionEnded(Refused):
    """The sender's session had ended (or expired) when the message came to be stored:
    it was not stored, and it must not be retried on that session."""


class NotMember(Refused):
    """The sender was no member of the private room or DM when the message came to be
    stored (removed, or left, however long the news takes to reach its socket)."""


class NotFound(Refused):
    """An edit or delete of no chat message of this room that is not deleted."""


class Forbidden(Refused):
    """An edit of another user's message, or a delete by none of the author, the room's
    owner and an admin."""


@dataclass(frozen=True, slots=True)
class Draft:
    room: str
    user: UserRef
    text: str
    client_id: str | None = None
    # Stored only if this session is live when its transaction runs (None: no check).
    session_id: str | None = None
    # "chat", or an event (docs/protocol.md §17): "edit" (text: the new text) or
    # "delete" (text: "") of the chat message `target`.
    kind: str = CHAT
    target: int | None = None
    # The sender was an admin when its socket opened: an admin may delete any message of
    # a room it can read (it has a socket there). The writer reads users.role again in the
    # transaction (a demoted admin's open socket deletes no more).
    admin: bool = False
    # The keys each `@` of the text may stand for (quartchat/mentions.py `candidates`),
    # read before the transaction (`with_mention_keys`); None: not read yet.
    mention_keys: tuple[tuple[str, ...], ...] | None = None


def with_mention_keys(draft: Draft) -> Draft:
    """The draft with its mention keys read: reading a text is CPU work (normalising
    each place a name could end) that must not lengthen the transaction."""
    if draft.mention_keys is not None or "@" not in draft.text:
        return draft  # a text without `@` mentions nobody: None reads as ()
    return replace(draft, mention_keys=mention_keys(draft.text))


@dataclass(frozen=True, slots=True)
class Outcome:
    message: StoredMessage
    fresh: bool  # False: the same user and client_id were stored before


ClientKey = tuple[str, str, str]  # (user id, room, client_id)


def create_writes(database: Database, session_lifetime_ms: int = DEFAULT_SESSION_LIFETIME_MS) -> Writes:
    if database.is_sqlite:
        return SqliteWrites(database, session_lifetime_ms)
    return PostgresWrites(database, session_lifetime_ms)


class Writes(ABC):
    """The writes of one database: one instance per process (quartchat/runtime.py)."""

    def __init__(self, database: Database, session_lifetime_ms: int = DEFAULT_SESSION_LIFETIME_MS) -> None:
        self.database = database
        self.session_lifetime_ms = session_lifetime_ms
        self._last_ts = 0

    # Accounts and sessions, on the server's loop ------------------------------

    async def create_account(
        self, user_id: str, name: str, name_key: str, password_hash: str, name_skeleton: str
    ) -> None:
        """Raises IntegrityError when the name was taken meanwhile. The first account of an
        empty database is an admin (docs/protocol.md §11), however many sign up at once."""
        async with self.database.writer.begin() as connection:
            if not self.database.is_sqlite and not await self._any_user(connection):
                # Two first sign-ups at once would each see no user under READ
                # COMMITTED: the second waits here, and its INSERT's own snapshot,
                # taken after the first committed, sees the first.
                await connection.execute(select(func.pg_advisory_xact_lock(_FIRST_ADMIN_LOCK)))
            # One statement: SQLite's single writer runs it whole.
            first = ~select(User.id).limit(1).exists()
            await connection.execute(
                insert(User).values(
                    id=user_id,
                    name=name,
                    name_key=name_key,
                    name_skeleton=name_skeleton,
                    password_hash=password_hash,
                    created_ms=now_ms(),
                    role=case((first, ADMIN), else_=MEMBER),
                )
            )

    @staticmethod
    async def _any_user(connection: AsyncConnection) -> bool:
        return (await connection.execute(select(User.id).limit(1))).first() is not None

    async def set_password_hash(self, user_id: str, password_hash: str, end_sessions: bool) -> None:
        async with self.database.writer.begin() as connection:
            await connection.execute(update(User).where(User.id == user_id).values(password_hash=password_hash))
            if end_sessions:
                await connection.execute(delete(Session).where(Session.user_id == user_id))

    async def set_role(self, user_id: str, role: str) -> None:
        async with self.database.writer.begin() as connection:
            await connection.execute(update(User).where(User.id == user_id).values(role=role))

    async def set_disabled(self, user_id: str, disabled: bool) -> tuple[int, int]:
        """Disable (or enable) a user. Disabling deletes its sessions and bot tokens in the
        same transaction: (sessions, tokens) ended. Their sockets close when the hub or
        the session watch hears of it; the writer refuses their messages at once."""
        async with self.database.writer.begin() as connection:
            await connection.execute(update(User).where(User.id == user_id).values(disabled=disabled))
            if not disabled:
                return 0, 0
            sessions = await connection.execute(delete(Session).where(Session.user_id == user_id))
            tokens = await connection.execute(delete(ApiToken).where(ApiToken.user_id == user_id))
            return sessions.rowcount, tokens.rowcount

    async def create_session(self, session_id: str, user_id: str) -> bool:
        """A session for the user unless it is disabled (checked in the same statement,
        so that a sign-in racing a `user disable` cannot outlive it): whether it was made."""
        made = select(literal(session_id), User.id, literal(now_ms())).where(
            User.id == user_id, User.disabled.is_(False)
        )
        async with self.database.writer.begin() as connection:
            result = await connection.execute(insert(Session).from_select(["id", "user_id", "created_ms"], made))
            return bool(result.rowcount)

    async def delete_session(self, session_id: str) -> None:
        async with self.database.writer.begin() as connection:
            await connection.execute(delete(Session).where(Session.id == session_id))

    async def create_token(self, token_id: str, user_id: str, token_hash: str, rooms: Sequence[str] | None) -> None:
        """Store a bot token's hash (quartchat/tokens.py), never the token."""
        async with self.database.writer.begin() as connection:
            await connection.execute(
                insert(ApiToken).values(
                    id=token_id,
                    user_id=user_id,
                    token_hash=token_hash,
                    rooms=None if rooms is None else json.dumps(sorted(set(rooms))),
                    created_ms=now_ms(),
                )
            )

    async def delete_token(self, token_id: str) -> bool:
        """Revoke a bot token: whether it existed."""
        async with self.database.writer.begin() as connection:
            result = await connection.execute(delete(ApiToken).where(ApiToken.id == token_id))
            return bool(result.rowcount)

    async def purge_expired_sessions(self) -> int:
        """Delete the rows of expired sessions; how many went."""
        async with self.database.writer.begin() as connection:
            result = await connection.execute(delete(Session).where(Session.created_ms <= self._oldest_live_ms()))
            return int(result.rowcount)

    # Rooms and memberships, on the server's loop (docs/protocol.md §11) -------

    async def create_room(self, name: str, kind: str, owner_id: str) -> bool:
        """A room with its creator as owner; False when the name is taken (by any room)."""
        async with self.database.writer.begin() as connection:
            made = await connection.execute(
                self._insert_ignore(Room).values(name=name, kind=kind, message_count=0, last_id=0, created_ms=now_ms())
            )
            if made.rowcount != 1:
                return False
            await connection.execute(
                insert(Membership).values(room=name, user_id=owner_id, role="owner", joined_ms=now_ms())
            )
        return True

    async def open_dm(self, name: str, user_ids: tuple[str, str]) -> str:
        """The DM room `name` with both users as members, made if missing: however many
        ask at once, one room. The kind of the room of that name ("dm" unless a room
        made before `dm-` names were reserved holds it)."""
        async with self.database.writer.begin() as connection:
            await connection.execute(
                self._insert_ignore(Room).values(name=name, kind="dm", message_count=0, last_id=0, created_ms=now_ms())
            )
            kind = (await connection.execute(select(Room.kind).where(Room.name == name))).scalar_one()
            if kind == "dm":
                await connection.execute(
                    self._insert_ignore(Membership),
                    [{"room": name, "user_id": u, "role": "member", "joined_ms": now_ms()} for u in user_ids],
                )
        return str(kind)

    async def add_member(self, room: str, user_id: str, role: str = "member") -> bool:
        """Make the user a member; False when it was one already."""
        async with self.database.writer.begin() as connection:
            added = await connection.execute(
                self._insert_ignore(Membership).values(room=room, user_id=user_id, role=role, joined_ms=now_ms())
            )
            return bool(added.rowcount == 1)

    async def remove_member(self, room: str, user_id: str) -> bool:
        """False when the user was no member."""
        async with self.database.writer.begin() as connection:
            removed = await connection.execute(
                delete(Membership).where(Membership.room == room, Membership.user_id == user_id)
            )
            return bool(removed.rowcount == 1)

    async def move_read_positions(self, moves: Sequence[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
        """`move_read_positions` in a transaction of its own, on the server's loop (the
        server itself runs it on the message writer's thread: `run_work`)."""
        async with self.database.writer.begin() as connection:
            return await connection.run_sync(move_read_positions, moves)

    def _insert_ignore(self, table: type[Room] | type[Membership]) -> postgresql.Insert | sqlite.Insert:
        """INSERT … ON CONFLICT DO NOTHING: a row made concurrently is no error."""
        dialect_insert = sqlite.insert if self.database.is_sqlite else postgresql.insert
        return dialect_insert(table).on_conflict_do_nothing()

    # Chat messages, on the message writer's thread and loop -------------------

    @abstractmethod
    async def open(self) -> None:
        """Open the writer's engine (on the thread and loop that will use it)."""

    @abstractmethod
    async def run_work(self, work: Callable[[Connection], T]) -> T:
        """Run `work` in a transaction of its own with the writer's engine, on the
        writer's thread and loop (MessageWriter.execute), between two batches."""

    @abstractmethod
    async def close(self) -> None:
        """Close the writer's connection and engine."""

    @abstractmethod
    async def probe(self) -> None:
        """Write and commit one unchanged row with the writer's engine: raises while
        writes cannot be stored. Taking the lock alone is not enough: on a full disk
        the lock is free but a commit fails, so the probe rewrites a room's counter to
        the value it has."""

    async def commit_batch(self, drafts: list[Draft]) -> list[Outcome | Refused]:
        """Store a batch in one transaction; an outcome per draft, in order. Raises
        when nothing of it was stored; the next batch then starts on a new connection."""
        drafts = [with_mention_keys(draft) for draft in drafts]  # before the write lock
        try:
            try:
                return await self._run(drafts)
            except IntegrityError:
                # Another process stored the same client_id between our lookup and
                # insert: the second try finds it.
                return await self._run(drafts)
        except Exception:
            await self._drop_connection()
            raise

    @abstractmethod
    async def _run(self, drafts: list[Draft]) -> list[Outcome | Refused]:
        """Run `_transaction` on the writer's connection."""

    @abstractmethod
    async def _drop_connection(self) -> None: ...

    @abstractmethod
    def _take_rooms(self, connection: Connection, rooms: list[str]) -> dict[str, tuple[int, str]]:
        """Each room's row, made if missing, and taken (in name order, so two writers
        cannot deadlock) until commit: on PostgreSQL no other transaction can then take
        an id in these rooms and commit before us, so ids in a room grow in commit
        order (SQLite's single writer holds the whole database already). The rows give
        each room's last id so far (its next message's predecessor) and its kind, which
        never changes: a public room's messages need no membership check at all."""

    @abstractmethod
    def _live_sessions(self, connection: Connection, session_ids: Collection[str]) -> set[str]:
        """Those of `session_ids` (a few hundred at most) that exist and have not expired."""

    def _live_tokens(self, connection: Connection, token_ids: Collection[str]) -> set[str]:
        """Those of `token_ids` that exist (revoking deletes the row; so does disabling its user)."""
        return set(connection.execute(select(ApiToken.id).where(ApiToken.id.in_(token_ids))).scalars())

    @abstractmethod
    def _insert_messages(
        self, connection: Connection, drafts: list[Draft], ts_ms: int, mentions: list[str | None]
    ) -> list[int]:
        """Insert the messages in one statement (or a few); their ids, in the drafts' order.
        `mentions`: each draft's messages.mentions."""

    @abstractmethod
    def _update_rooms(self, connection: Connection, counts: dict[str, tuple[int, int]]) -> None:
        """Add to each room's message count and set its last id: room -> (added, last id)."""

    def _transaction(self, connection: Connection, drafts: list[Draft]) -> list[Outcome | Refused]:
        with connection.begin():
            # Taking the rooms first makes the transaction's first statement a write: on
            # SQLite that is where it begins (IMMEDIATE), so the lookups below are inside it.
            taken = self._take_rooms(connection, sorted({d.room for d in drafts}))
            last_ids = {room: last_id for room, (last_id, _) in taken.items()}
            restricted = {room for room, (_, kind) in taken.items() if kind != "public"}
            ended = self._ended_sessions(connection, drafts)
            outsiders = (
                self._outsiders(connection, [d for d in drafts if d.room in restricted]) if restricted else set()
            )
            refused: dict[int, Refused] = {
                index: SessionEnded("the session ended: sign in again")
                if draft.session_id in ended
                else NotMember("Not a member")
                for index, draft in enumerate(drafts)
                if draft.session_id in ended or (draft.room, draft.user.id) in outsiders
            }
            keys = [(d.user.id, d.room, d.client_id) for d in drafts if d.client_id is not None]
            earlier = self._by_client_ids(connection, keys) if keys else {}
            events = [d for i, d in enumerate(drafts) if d.kind != CHAT and i not in refused]
            check = _EventCheck(connection, events) if events else None
            first_in_batch: dict[ClientKey, int] = {}
            new_indexes: list[int] = []
            for index, draft in enumerate(drafts):
                if index in refused:
                    continue
                key = (draft.user.id, draft.room, draft.client_id) if draft.client_id is not None else None
                if key is None or (key not in earlier and key not in first_in_batch):
                    if check is not None and draft.kind != CHAT:
                        refusal = check.refusal(draft)
                        if refusal is not None:
                            refused[index] = refusal
                            continue
                    new_indexes.append(index)
                    if key is not None:
                        first_in_batch[key] = index
            stored = self._insert(connection, [drafts[i] for i in new_indexes], last_ids)
            if check is not None:
                self._apply_events(connection, [m for m in stored if m.kind != CHAT])
            if refused:  # a room made above for refused messages alone is no room yet
                unused = {d.room for d in drafts} - {d.room for i, d in enumerate(drafts) if i not in refused}
                connection.execute(
                    delete(Room).where(
                        Room.name.in_(sorted(unused)),
                        Room.message_count == 0,
                        Room.kind == "public",
                        Room.created_ms == 0,  # made by a first message, not by POST /api/rooms
                        ~select(Membership.room).where(Membership.room == Room.name).exists(),
                    )
                )
        by_index = dict(zip(new_indexes, stored, strict=True))
        outcomes: list[Outcome | Refused] = []
        for index, draft in enumerate(drafts):
            if index in refused:
                outcomes.append(refused[index])
                continue
            if index in by_index:
                outcomes.append(Outcome(by_index[index], fresh=True))
                continue
            key = (draft.user.id, draft.room, draft.client_id or "")
            previous = earlier.get(key) or by_index[first_in_batch[key]]
            outcomes.append(Outcome(previous, fresh=False))
        return outcomes

    def _ended_sessions(self, connection: Connection, drafts: list[Draft]) -> set[str | None]:
        """The batch's sessions that ended (signed out anywhere, expired) before it, and
        its bot tokens that were revoked (`token:<id>`, quartchat/tokens.py): their
        messages are not stored, however long the news takes to reach the socket."""
        sessions = sorted({d.session_id for d in drafts if d.session_id is not None})
        cookies = [s for s in sessions if not s.startswith(TOKEN_SESSION_PREFIX)]
        tokens = [s.removeprefix(TOKEN_SESSION_PREFIX) for s in sessions if s.startswith(TOKEN_SESSION_PREFIX)]
        live: set[str] = set()
        for start in range(0, len(cookies), SESSIONS_PER_QUERY):
            live |= self._live_sessions(connection, cookies[start : start + SESSIONS_PER_QUERY])
        # Only a batch holding a bot's messages asks: browsers' batches pay nothing.
        for start in range(0, len(tokens), SESSIONS_PER_QUERY):
            found = self._live_tokens(connection, tokens[start : start + SESSIONS_PER_QUERY])
            live |= {token_session_id(token_id) for token_id in found}
        return {session_id for session_id in sessions if session_id not in live}

    def _outsiders(self, connection: Connection, drafts: list[Draft]) -> set[tuple[str, str]]:
        """The (room, user id) of these drafts (all in private rooms or DMs) whose
        user is no member of the room, read inside the batch's transaction."""
        pairs = sorted({(d.room, d.user.id) for d in drafts})
        return set(pairs) - self._members(connection, pairs)

    @abstractmethod
    def _members(self, connection: Connection, pairs: list[tuple[str, str]]) -> set[tuple[str, str]]:
        """Those of the (room, user id) pairs that are memberships: one statement of a
        shape fixed once, looked up by the primary key (docs/performance.md, Access checks)."""

    def _by_client_ids(self, connection: Connection, keys: Sequence[ClientKey]) -> dict[ClientKey, StoredMessage]:
        """Stored messages by (user id, room, client_id)."""
        # One query for the whole batch: PostgreSQL searches the index for each row value
        # (SqliteWrites joins on VALUES instead: SQLite would scan the index).
        query = message_select().where(tuple_(Message.user_id, Message.room, Message.client_id).in_(sorted(set(keys))))
        rows = connection.execute(query).all()
        return {(row.user_id, row.room, row.client_id): to_message(row) for row in rows}

    def _apply_events(self, connection: Connection, events: list[StoredMessage]) -> None:
        """Bring each event's chat message to its current state, in the event's
        transaction: an edit's text and time; a delete empties it and every edit's text
        (docs/protocol.md §17: a deleted text is gone from the database)."""
        edits = [
            {"b_id": e.target, "b_text": e.text, "b_ms": e.ts_ms, "b_mentions": _mentions_json(e.mentions)}
            for e in events
            if e.kind == EDIT
        ]
        if edits:
            connection.execute(_APPLY_EDIT, edits)
        deletes = [{"b_id": e.target} for e in events if e.kind == DELETE]
        if deletes:
            connection.execute(_APPLY_DELETE, deletes)
            connection.execute(_ERASE_EDITS, deletes)

    def _insert(self, connection: Connection, drafts: list[Draft], last_ids: dict[str, int]) -> list[StoredMessage]:
        """Three statements a batch however many rooms it touches, with _take_rooms."""
        if not drafts:
            return []
        # Ids grow with commits, and so must times, even if the clock steps back.
        ts_ms = self._last_ts = max(now_ms(), self._last_ts)
        mentions = find_mentions(connection, [d.mention_keys or () for d in drafts])
        ids = self._insert_messages(connection, drafts, ts_ms, [_mentions_json(m) for m in mentions])
        # A room's message count is of its chat messages; its last id, of every row.
        added = Counter(d.room for d in drafts if d.kind == CHAT)
        stored = []
        for draft, message_id, mentioned in zip(drafts, ids, mentions, strict=True):
            stored.append(
                StoredMessage(
                    id=message_id,
                    room=draft.room,
                    user=draft.user,
                    text=draft.text,
                    ts_ms=ts_ms,
                    client_id=draft.client_id,
                    prev_id=last_ids[draft.room],
                    kind=draft.kind,
                    target=draft.target,
                    mentions=mentioned,
                )
            )
            last_ids[draft.room] = message_id
        rooms = sorted({d.room for d in drafts})
        self._update_rooms(connection, {room: (added[room], last_ids[room]) for room in rooms})
        return stored

    def _oldest_live_ms(self) -> int:
        return now_ms() - self.session_lifetime_ms


class SqliteWrites(Writes):
    """SQLite through its plain driver, on a synchronous engine
    (`Database.open_sqlite_writer`): each call runs at once on the writer's thread,
    whose event loop has nothing else to do meanwhile.

    The statements are SQL text run as is (exec_driver_sql): one multi-row statement
    each, without SQLAlchemy rendering the batch's VALUES, binding and processing
    parameters, and building result rows for every execution — half the writer's CPU
    in a batch. The text says what PostgresWrites's Core statements say
    (tests/test_writes.py checks every stored column and the rooms' counters).
    """

    def __init__(self, database: Database, session_lifetime_ms: int = DEFAULT_SESSION_LIFETIME_MS) -> None:
        super().__init__(database, session_lifetime_ms)
        self._engine: Engine | None = None
        # Held from one batch to the next (no pool checkout each time); dropped after a
        # failure, so that the next batch starts on a new one.
        self._connection: Connection | None = None

    async def open(self) -> None:
        self._engine = self.database.open_sqlite_writer()

    async def close(self) -> None:
        await self._drop_connection()
        if self._engine is not None:
            self._engine.dispose()

    async def probe(self) -> None:
        assert self._engine is not None
        with self._engine.begin() as connection:
            connection.execute(_PROBE)

    async def run_work(self, work: Callable[[Connection], T]) -> T:
        # Synchronous, like a batch: it cannot interleave with one, and it holds the
        # write lock only for its own statements.
        assert self._engine is not None
        if self._connection is None:
            self._connection = self._engine.connect()
        try:
            with self._connection.begin():
                return work(self._connection)
        except Exception:
            await self._drop_connection()
            raise

    async def _run(self, drafts: list[Draft]) -> list[Outcome | Refused]:
        assert self._engine is not None
        if self._connection is None:
            self._connection = self._engine.connect()
        return self._transaction(self._connection, drafts)

    async def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def _take_rooms(self, connection: Connection, rooms: list[str]) -> dict[str, tuple[int, str]]:
        taken = connection.exec_driver_sql(_sqlite_take_rooms(len(rooms)), tuple(rooms))
        return {name: (int(last_id), kind) for name, last_id, kind in taken}

    def _live_sessions(self, connection: Connection, session_ids: Collection[str]) -> set[str]:
        rows = connection.exec_driver_sql(
            _sqlite_live_sessions(len(session_ids)), (self._oldest_live_ms(), *session_ids)
        )
        return {session_id for (session_id,) in rows}

    def _members(self, connection: Connection, pairs: list[tuple[str, str]]) -> set[tuple[str, str]]:
        # SQLite's single writer serialises a removal with this check and the insert.
        members: set[tuple[str, str]] = set()
        for start in range(0, len(pairs), _SQLITE_KEYS_PER_QUERY):
            page = pairs[start : start + _SQLITE_KEYS_PER_QUERY]
            rows = connection.exec_driver_sql(_sqlite_members(len(page)), tuple(v for pair in page for v in pair))
            members.update((room, user_id) for room, user_id in rows)
        return members

    def _by_client_ids(self, connection: Connection, keys: Sequence[ClientKey]) -> dict[ClientKey, StoredMessage]:
        # SQLite runs `(user_id, room, client_id) IN (VALUES …)` as a scan of the whole
        # index (every message ever stored, for every batch): a join on the VALUES
        # looks each key up instead. Then the rows of what was found, a retry's alone.
        unique = sorted(set(keys))
        ids: list[int] = []
        for start in range(0, len(unique), _SQLITE_KEYS_PER_QUERY):
            page = unique[start : start + _SQLITE_KEYS_PER_QUERY]
            rows = connection.exec_driver_sql(_sqlite_by_client_ids(len(page)), tuple(v for key in page for v in key))
            ids.extend(message_id for (message_id,) in rows)
        if not ids:
            return {}
        found = connection.execute(message_select().where(Message.id.in_(ids))).all()
        return {(row.user_id, row.room, row.client_id): to_message(row) for row in found}

    def _insert_messages(
        self, connection: Connection, drafts: list[Draft], ts_ms: int, mentions: list[str | None]
    ) -> list[int]:
        # SQLAlchemy cannot make SQLite promise the order of RETURNING rows (with
        # sort_by_parameter_order it would insert one row per statement). Under SQLite's
        # write lock one INSERT numbers its rows in order, each above the last: the
        # sorted ids are the drafts' ids.
        ts = format_ts(ts_ms)
        ids: list[int] = []
        for start in range(0, len(drafts), _SQLITE_ROWS_PER_INSERT):
            end = start + _SQLITE_ROWS_PER_INSERT
            page = list(zip(drafts[start:end], mentions[start:end], strict=True))
            if all(d.kind == CHAT for d, _ in page):  # the common case keeps its short statement
                values = tuple(v for d, m in page for v in (d.room, d.user.id, d.text, ts_ms, ts, d.client_id, m))
                result = connection.exec_driver_sql(_sqlite_insert_messages(len(page)), values)
            else:
                values = tuple(
                    v for d, m in page for v in (d.room, d.user.id, d.text, ts_ms, ts, d.client_id, m, d.kind, d.target)
                )
                result = connection.exec_driver_sql(_sqlite_insert_events(len(page)), values)
            ids.extend(sorted(int(message_id) for (message_id,) in result))
        return ids

    def _update_rooms(self, connection: Connection, counts: dict[str, tuple[int, int]]) -> None:
        connection.exec_driver_sql(
            _SQLITE_UPDATE_ROOMS, [(added, last, room) for room, (added, last) in counts.items()]
        )


class PostgresWrites(Writes):
    """PostgreSQL through asyncpg: an asynchronous engine on the writer's own loop
    (`Database.open_postgres_writer`), the whole transaction in one `run_sync` (inside
    it only the driver calls cross to the event loop), Core statements built once:
    building and keying a statement for SQLAlchemy's compiled cache costs more than
    running it."""

    # Upserting with an update that changes nothing returns the row as it was, and
    # locks it, like SELECT … FOR UPDATE.
    TAKE_ROOMS = (
        postgresql.insert(Room)
        .values(name=bindparam("name"), message_count=0, last_id=0)
        .on_conflict_do_update(index_elements=[Room.name], set_={"last_id": Room.last_id})
        .returning(Room.name, Room.last_id, Room.kind)
    )
    INSERT_MESSAGES = insert(Message).returning(Message.id, sort_by_parameter_order=True)
    # FOR SHARE: a removal waits for this commit, so none commits between the check and
    # the insert. The pairs go as two arrays: one SQL text whatever their number (one
    # compiled statement, one prepared statement), each pair looked up by the key.
    MEMBERS = (
        select(Membership.room, Membership.user_id)
        .where(
            tuple_(Membership.room, Membership.user_id).in_(
                select(
                    func.unnest(bindparam("rooms", type_=postgresql.ARRAY(Membership.room.type))),
                    func.unnest(bindparam("users", type_=postgresql.ARRAY(Membership.user_id.type))),
                )
            )
        )
        .with_for_update(read=True)
    )
    UPDATE_ROOMS = (
        update(Room)
        .where(Room.name == bindparam("room"))
        .values(message_count=Room.message_count + bindparam("added"), last_id=bindparam("last"))
    )

    def __init__(self, database: Database, session_lifetime_ms: int = DEFAULT_SESSION_LIFETIME_MS) -> None:
        super().__init__(database, session_lifetime_ms)
        self._engine: AsyncEngine | None = None
        # Held from one batch to the next, as SqliteWrites's.
        self._connection: AsyncConnection | None = None

    async def open(self) -> None:
        self._engine = self.database.open_postgres_writer()

    async def close(self) -> None:
        await self._drop_connection()
        if self._engine is not None:
            await self._engine.dispose()

    async def probe(self) -> None:
        assert self._engine is not None
        async with self._engine.begin() as connection:
            await connection.execute(_PROBE)

    async def run_work(self, work: Callable[[Connection], T]) -> T:
        # A pooled connection of its own: a batch may be running on the held one.
        assert self._engine is not None
        async with self._engine.begin() as connection:
            return await connection.run_sync(work)

    async def _run(self, drafts: list[Draft]) -> list[Outcome | Refused]:
        assert self._engine is not None
        if self._connection is None:
            self._connection = await self._engine.connect()
        return await self._connection.run_sync(self._transaction, drafts)

    async def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                await connection.close()
            except Exception as exc:  # a connection to a database that went away
                log.warning("closing the writer's connection failed: %s", exc)

    def _take_rooms(self, connection: Connection, rooms: list[str]) -> dict[str, tuple[int, str]]:
        taken = connection.execute(self.TAKE_ROOMS, [{"name": room} for room in rooms])
        return {name: (int(last_id), kind) for name, last_id, kind in taken}

    def _live_sessions(self, connection: Connection, session_ids: Collection[str]) -> set[str]:
        query = select(Session.id).where(Session.id.in_(session_ids), Session.created_ms > self._oldest_live_ms())
        return set(connection.execute(query).scalars())

    def _members(self, connection: Connection, pairs: list[tuple[str, str]]) -> set[tuple[str, str]]:
        rooms, users = [room for room, _ in pairs], [user_id for _, user_id in pairs]
        return {(room, user_id) for room, user_id in connection.execute(self.MEMBERS, {"rooms": rooms, "users": users})}

    def _insert_messages(
        self, connection: Connection, drafts: list[Draft], ts_ms: int, mentions: list[str | None]
    ) -> list[int]:
        ts = format_ts(ts_ms)
        rows = [
            {
                "room": d.room,
                "user_id": d.user.id,
                "text": d.text,
                "ts_ms": ts_ms,
                "ts": ts,
                "client_id": d.client_id,
                "mentions": m,
                "kind": d.kind,
                "target": d.target,
            }
            for d, m in zip(drafts, mentions, strict=True)
        ]
        return list(connection.execute(self.INSERT_MESSAGES, rows).scalars().all())

    def _update_rooms(self, connection: Connection, counts: dict[str, tuple[int, int]]) -> None:
        connection.execute(
            self.UPDATE_ROOMS,
            [{"room": room, "added": added, "last": last} for room, (added, last) in counts.items()],
        )


def _mentions_json(mentions: tuple[str, ...]) -> str | None:
    """messages.mentions: None when the text mentions nobody."""
    return json.dumps(list(mentions)) if mentions else None


_PROBE = update(Room).where(Room.name == select(func.min(Room.name)).scalar_subquery()).values(last_id=Room.last_id)

_SQLITE_ROWS_PER_INSERT = 1000  # 7,000 parameters: far below SQLite's 32,766


_READS_PER_STATEMENT = 300  # 900 parameters


def move_read_positions(connection: Connection, moves: Sequence[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
    """Move read positions forward, given as (user id, room, message id), inside the
    connection's transaction: each to that id or the room's last id, whichever is lower,
    and only forward; a user who is no member of the room has none. The positions that
    moved, as (user id, room, new position)."""
    moved: list[tuple[str, str, int]] = []
    for start in range(0, len(moves), _READS_PER_STATEMENT):
        chunk = moves[start : start + _READS_PER_STATEMENT]
        params: dict[str, str | int] = {}
        for index, (user_id, room, message_id) in enumerate(chunk):
            params.update({f"u{index}": user_id, f"r{index}": room, f"i{index}": message_id})
        statement = _move_reads_sql(len(chunk), connection.dialect.name == "sqlite")
        moved.extend((row[0], row[1], int(row[2])) for row in connection.execute(text(statement), params))
    return moved


@functools.lru_cache(maxsize=16)
def _move_reads_sql(count: int, is_sqlite: bool) -> str:
    """One statement for `count` read positions (named parameters u0, r0, i0, …). The
    position is clamped to the room's last id and moves only forward; RETURNING gives
    the rows that moved (SQLite 3.35+; UPDATE … FROM: 3.33+)."""
    if is_sqlite:
        values = ", ".join(f"(:u{i}, :r{i}, :i{i})" for i in range(count))
        target = "MIN(wanted.read_id, rooms.last_id)"
        returning = "user_id, room, last_read_id"
    else:
        values = ", ".join(
            f"(CAST(:u{i} AS VARCHAR), CAST(:r{i} AS VARCHAR), CAST(:i{i} AS BIGINT))" for i in range(count)
        )
        target = "LEAST(wanted.read_id, rooms.last_id)"
        returning = "memberships.user_id, memberships.room, memberships.last_read_id"
    return (
        f"WITH wanted(user_id, room, read_id) AS (VALUES {values}) "
        f"UPDATE memberships SET last_read_id = {target} "
        "FROM wanted JOIN rooms ON rooms.name = wanted.room "
        "WHERE memberships.room = wanted.room AND memberships.user_id = wanted.user_id "
        f"AND memberships.last_read_id < {target} "
        f"RETURNING {returning}"
    )


@functools.lru_cache(maxsize=64)
def _sqlite_take_rooms(count: int) -> str:
    values = ", ".join(["(?, 0, 0)"] * count)
    return (
        f"INSERT INTO rooms (name, message_count, last_id) VALUES {values} "
        "ON CONFLICT (name) DO UPDATE SET last_id = rooms.last_id RETURNING name, last_id, kind"
    )


@functools.lru_cache(maxsize=300)
def _sqlite_insert_messages(count: int) -> str:
    values = ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * count)
    return f"INSERT INTO messages (room, user_id, text, ts_ms, ts, client_id, mentions) VALUES {values} RETURNING id"


@functools.lru_cache(maxsize=300)
def _sqlite_insert_events(count: int) -> str:
    values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?)"] * count)
    columns = "room, user_id, text, ts_ms, ts, client_id, mentions, kind, target"
    return f"INSERT INTO messages ({columns}) VALUES {values} RETURNING id"


_APPLY_EDIT = (
    update(Message)
    .where(Message.id == bindparam("b_id"))
    .values(text=bindparam("b_text"), edited_ms=bindparam("b_ms"), mentions=bindparam("b_mentions"))
)
_APPLY_DELETE = update(Message).where(Message.id == bindparam("b_id")).values(text="", deleted=True, mentions=None)
_ERASE_EDITS = update(Message).where(Message.target == bindparam("b_id"), Message.kind == EDIT).values(text="")


class _EventCheck:
    """Whether each edit or delete of a batch may be stored, read inside its transaction
    and kept up to date as the batch goes (a delete makes a later edit of the same
    message not_found).

    Read after `_take_rooms`: an event's target counts only in the event's own room, whose
    row this transaction holds, so on PostgreSQL another process's delete of the same
    message has committed before this read (READ COMMITTED sees it) or waits for ours.
    """

    def __init__(self, connection: Connection, events: list[Draft]) -> None:
        targets = sorted({d.target for d in events if d.target is not None})
        query = select(Message.id, Message.room, Message.user_id, Message.kind, Message.deleted).where(
            Message.id.in_(targets)
        )
        self.targets = {row.id: row for row in connection.execute(query)}
        others = [
            d
            for d in events
            if d.kind == DELETE and d.target in self.targets and self.targets[d.target].user_id != d.user.id
        ]
        # The room owners among those who delete another's message: a removed owner is none.
        pairs = sorted({(d.room, d.user.id) for d in others})
        self.owners: set[tuple[str, str]] = set()
        if pairs:
            owners = select(Membership.room, Membership.user_id).where(
                tuple_(Membership.room, Membership.user_id).in_(pairs), Membership.role == "owner"
            )
            self.owners = {(row.room, row.user_id) for row in connection.execute(owners)}
        # Draft.admin is what the sender was when its socket opened: whether it is an admin
        # still (not demoted, not disabled) is read here, in the transaction that deletes.
        # Both must hold: a demotion counts at once, a promotion from the next socket on.
        claimed = sorted({d.user.id for d in others if d.admin})
        self.admins: set[str] = set()
        if claimed:
            admins = select(User.id).where(User.id.in_(claimed), User.role == ADMIN, User.disabled.is_(False))
            self.admins = set(connection.execute(admins).scalars())
        self.deleted: set[int] = set()

    def refusal(self, draft: Draft) -> Refused | None:
        """None if the event may be stored (then it counts as stored)."""
        row = self.targets.get(draft.target) if draft.target is not None else None
        if row is None or row.room != draft.room or row.kind != CHAT or row.deleted or row.id in self.deleted:
            return NotFound("no such message in this room")
        if draft.kind == EDIT:
            if row.user_id != draft.user.id:
                return Forbidden("only its author may edit a message")
            return None
        if (
            row.user_id != draft.user.id
            and not (draft.admin and draft.user.id in self.admins)
            and (draft.room, draft.user.id) not in self.owners
        ):
            return Forbidden("only its author, the room's owner or an admin may delete a message")
        self.deleted.add(row.id)
        return None


_SQLITE_KEYS_PER_QUERY = 1000  # 3,000 parameters at most


@functools.lru_cache(maxsize=64)
def _sqlite_members(count: int) -> str:
    values = ", ".join(["(?, ?)"] * count)
    return (
        f"SELECT m.room, m.user_id FROM (VALUES {values}) AS v "
        "JOIN memberships AS m ON m.room = v.column1 AND m.user_id = v.column2"
    )


@functools.lru_cache(maxsize=300)
def _sqlite_by_client_ids(count: int) -> str:
    values = ", ".join(["(?, ?, ?)"] * count)
    return (
        f"SELECT m.id FROM (VALUES {values}) AS v JOIN messages AS m "
        "ON m.user_id = v.column1 AND m.room = v.column2 AND m.client_id = v.column3"
    )


_SQLITE_UPDATE_ROOMS = "UPDATE rooms SET message_count = message_count + ?, last_id = ? WHERE name = ?"


@functools.lru_cache(maxsize=64)
def _sqlite_live_sessions(count: int) -> str:
    return f"SELECT id FROM sessions WHERE created_ms > ? AND id IN ({', '.join(['?'] * count)})"
