"""Moving history in: `quartchat import` (an export file) and `quartchat db copy` (a
whole deployment, accounts and password hashes included)."""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import orjson
from sqlalchemy import Table, and_, bindparam, func, insert, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.orm import aliased

from .accounts import InvalidName, check_scripts, name_key, name_skeleton, stored_name
from .export import ExportError, parse_time
from .models import Base, Message, Room, User
from .protocol import CHAT, DELETE, EDIT, format_ts
from .rooms import valid_room

BATCH = 5000
Progress = Callable[[int], None]


class TransferError(Exception):
    """An import or copy that cannot go on; nothing was written."""


@dataclass(frozen=True, slots=True)
class Record:
    id: int
    room: str
    user_id: str
    user_name: str
    text: str
    ts_ms: int
    ts: str  # as protocol.format_ts writes ts_ms
    client_id: str | None
    where: str = ""  # "line 3": for errors found after the line was read
    # docs/protocol.md §17: "chat", or an edit or delete event of the chat message `target`;
    # a chat message's current state.
    kind: str = "chat"
    target: int | None = None
    edited_ms: int | None = None
    deleted: bool = False
    mentions: str | None = None  # the JSON list of user ids, as messages.mentions holds it


def read_export(source: TextIO, name: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, message object) from an ndjson export, or from a json export's list."""
    first = source.readline()
    stripped = first.strip()
    if name.endswith(".json") or (stripped.startswith("{") and '"messages"' in stripped and '"id"' not in stripped[:8]):
        try:
            document = orjson.loads(first + source.read())
        except orjson.JSONDecodeError as bad:
            raise TransferError(f"{name}: not a JSON export: {bad}") from None
        if not isinstance(document, dict) or not isinstance(document.get("messages"), list):
            raise TransferError(f'{name}: a JSON export is an object with a "messages" list')
        for index, message in enumerate(document["messages"], start=1):
            yield f"message {index}", message
        return
    line_number = 1
    line = first
    while line:
        if line.strip():
            try:
                yield f"line {line_number}", orjson.loads(line)
            except orjson.JSONDecodeError as bad:
                raise TransferError(f"{name}: line {line_number}: not JSON ({bad.msg})") from None
        line = source.readline()
        line_number += 1


# What protocol.format_ts writes: for these, parsing and formatting again gives the
# same text back (years before 1000 are left to format_ts).
CANONICAL_TS = re.compile(r"[1-9]\d{3}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")

# Imports keep names as they were made (no NFKC fold: an export's names are accounts').
_stored_name = functools.lru_cache(maxsize=65536)(stored_name)


def to_record(where: str, message: object) -> Record:
    """Check one message object as docs/protocol.md §5 defines it; TransferError says what is wrong."""

    def wrong(what: str) -> TransferError:
        return TransferError(f"{where}: {what}")

    if not isinstance(message, dict):
        raise wrong("not a message object")
    message_id, room, user, data = message.get("id"), message.get("room"), message.get("user"), message.get("data")
    kind = message.get("type")
    if kind not in (CHAT, EDIT, DELETE):
        raise wrong('"type" must be "chat", "edit" or "delete"')
    target = message.get("target")
    if kind != CHAT and (not isinstance(target, int) or isinstance(target, bool) or not 0 < target < 2**63):
        raise wrong('"target" must be the id of a chat message')
    if kind == DELETE:
        data = ""  # a delete event has no text
    deleted = message.get("deleted", False)
    if not isinstance(deleted, bool) or (deleted and kind != CHAT):
        raise wrong('"deleted" must be true or false, on a chat message')
    if deleted:
        data = ""  # a deleted message's text is gone, whatever the file says
    if not isinstance(message_id, int) or isinstance(message_id, bool) or not 0 < message_id < 2**63:
        raise wrong('"id" must be a positive whole number')
    if not isinstance(room, str) or not valid_room(room):
        raise wrong('"room" is not a valid room name')
    if not isinstance(user, dict) or not isinstance(user.get("id"), str) or not 0 < len(user["id"]) <= 36:
        raise wrong('"user" must be {"id": "…", "name": "…"}')
    try:
        name = user.get("name")
        # An export repeats a few hundred names a million times: check each once.
        user_name = _stored_name(name) if isinstance(name, str) else stored_name(name)
    except InvalidName as bad:
        raise wrong(f'"user.name": {bad.message}') from None
    if not isinstance(data, str) or "\x00" in data:
        raise wrong('"data" must be text')
    ts = message.get("ts")
    try:
        ts_ms = parse_time(ts if isinstance(ts, str) else None, "ts")
    except ExportError as bad:
        raise wrong(str(bad)) from None
    if ts_ms is None or not isinstance(ts, str):
        raise wrong('"ts" is missing')
    client_id = message.get("client_id")
    if client_id is not None and (not isinstance(client_id, str) or not 0 < len(client_id) <= 64):
        raise wrong('"client_id" must be a string of at most 64 characters')
    edited = message.get("edited")
    try:
        edited_ms = parse_time(edited if isinstance(edited, str) else None, "edited")
    except ExportError as bad:
        raise wrong(str(bad)) from None
    if edited is not None and (edited_ms is None or kind != CHAT):
        raise wrong('"edited" must be a time, on a chat message')
    mentions = message.get("mentions")
    if mentions is not None and (
        not isinstance(mentions, list) or not all(isinstance(m, str) and 0 < len(m) <= 36 for m in mentions)
    ):
        raise wrong('"mentions" must be a list of user ids')
    # Our own exports write times as format_ts does; anything else is rewritten so.
    ts_text = ts if CANONICAL_TS.fullmatch(ts) else format_ts(ts_ms)
    return Record(
        message_id,
        room,
        user["id"],
        user_name,
        data,
        ts_ms,
        ts_text,
        client_id,
        where,
        kind,
        None if kind == CHAT else target,
        edited_ms,
        deleted,
        orjson.dumps(mentions).decode() if mentions and not deleted else None,
    )


def _dialect(connection: AsyncConnection) -> Any:
    return postgresql if connection.dialect.name == "postgresql" else sqlite


async def import_records(
    engine: AsyncEngine, records: Iterator[tuple[str, dict[str, Any]]], progress: Progress | None = None
) -> tuple[int, int]:
    """Import in one transaction: a bad message anywhere imports nothing. Messages and
    users already present (same id) are kept as they are. Returns (read, added)."""
    read = 0
    known_users: dict[str, str] = {}  # id -> name_key
    rooms: set[str] = set()
    events: dict[int, Record] = {}  # the file's edit and delete events, by id (a few)
    batches = _checked_batches(records)
    async with engine.begin() as connection:
        before = await connection.scalar(select(func.count()).select_from(Message)) or 0
        # Checking the next batch (Python, in a thread) overlaps with inserting this
        # one (SQLite or the network, which let go of the GIL): the two halves of an
        # import take about as long as each other.
        checking = asyncio.ensure_future(asyncio.to_thread(next, batches, None))
        try:
            while (chunk := await checking) is not None:
                checking = asyncio.ensure_future(asyncio.to_thread(next, batches, None))
                await _import_chunk(connection, chunk, known_users, rooms)
                events.update((r.id, r) for r in chunk if r.kind != CHAT)
                read += len(chunk)
                if progress:
                    progress(len(chunk))
        finally:
            await asyncio.wait([checking])  # let the thread finish before the file closes
            if not checking.cancelled():
                checking.exception()  # seen: what matters is the error being raised already
        if events:
            await _check_events(connection, events)
            await _apply_events(connection, list(events.values()))
        await _recount_rooms(connection, sorted(rooms))
        await _advance_sequence(connection)
        after = await connection.scalar(select(func.count()).select_from(Message)) or 0
    return read, after - before


def _checked_batches(records: Iterator[tuple[str, dict[str, Any]]]) -> Iterator[list[Record]]:
    chunk: list[Record] = []
    for where, message in records:
        chunk.append(to_record(where, message))
        if len(chunk) >= BATCH:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


async def _import_chunk(
    connection: AsyncConnection, chunk: list[Record], known_users: dict[str, str], rooms: set[str]
) -> None:
    dialect = _dialect(connection)
    new_users: dict[str, Record] = {}
    for record in chunk:
        if record.user_id not in known_users and record.user_id not in new_users:
            new_users[record.user_id] = record
    if new_users:
        stored = await connection.execute(select(User.id, User.name_key).where(User.id.in_(list(new_users))))
        for row in stored:
            known_users[row.id] = row.name_key
            del new_users[row.id]
    for user_id, record in new_users.items():
        key = name_key(record.user_name)
        owner = await connection.scalar(select(User.id).where(User.name_key == key))
        if owner is not None and owner != user_id:
            raise TransferError(f"{record.where}: the name {record.user_name!r} belongs to another account")
        # A look-alike of an account's name is refused as sign-up refuses it (quartchat/accounts.py).
        skeleton = name_skeleton(record.user_name)
        alike = await connection.scalar(select(User.name).where(User.name_skeleton == skeleton).limit(1))
        if alike is not None:
            raise TransferError(f"{record.where}: the name {record.user_name!r} looks like the account {alike!r}")
        try:
            check_scripts(record.user_name)
        except InvalidName as error:
            raise TransferError(f"{record.where}: the name {record.user_name!r}: {error.message}") from None
        # No password: the name stays reserved until an operator sets one.
        await connection.execute(
            insert(User).values(
                id=user_id,
                name=record.user_name,
                name_key=key,
                name_skeleton=skeleton,
                password_hash=None,
                created_ms=record.ts_ms,
            )
        )
        known_users[user_id] = key
    fresh_rooms = {r.room for r in chunk} - rooms
    if fresh_rooms:
        await connection.execute(
            dialect.insert(Room).on_conflict_do_nothing(),
            [{"name": room, "message_count": 0, "last_id": 0} for room in sorted(fresh_rooms)],
        )
        rooms |= fresh_rooms
    rows = [
        (
            r.id,
            r.room,
            r.user_id,
            r.text,
            r.ts_ms,
            r.ts,
            r.client_id,
            r.kind,
            r.target,
            r.edited_ms,
            r.deleted,
            r.mentions,
        )
        for r in chunk
    ]
    if connection.dialect.name == "sqlite":
        # The driver's executemany, without SQLAlchemy's per-row parameter processing
        # (a fifth of an import's time; these values need no conversion).
        await connection.exec_driver_sql(SQLITE_INSERT_MESSAGES, rows)
        return
    await connection.execute(
        dialect.insert(Message).on_conflict_do_nothing(), [dict(zip(MESSAGE_COLUMNS, row, strict=True)) for row in rows]
    )


MESSAGE_COLUMNS = (
    "id",
    "room",
    "user_id",
    "text",
    "ts_ms",
    "ts",
    "client_id",
    "kind",
    "target",
    "edited_ms",
    "deleted",
    "mentions",
)
SQLITE_INSERT_MESSAGES = (
    f"INSERT INTO messages ({', '.join(MESSAGE_COLUMNS)}) VALUES ({', '.join('?' * len(MESSAGE_COLUMNS))}) "
    "ON CONFLICT DO NOTHING"
)


_EVENTS_PER_QUERY = 500


async def _check_events(connection: AsyncConnection, events: dict[int, Record]) -> None:
    """Refuse, by its line, the first event that the server would not have stored
    (docs/protocol.md §17: not_found, forbidden): one whose target is no chat message of
    the event's room, in the file or the database, or an edit by another than the
    message's author. Read once everything is in, so a target later in the file counts."""
    event, target = aliased(Message), aliased(Message)
    bad: set[int] = set()
    ids = sorted(events)
    for start in range(0, len(ids), _EVENTS_PER_QUERY):
        query = (
            select(event.id)
            .outerjoin(target, target.id == event.target)
            .where(
                event.id.in_(ids[start : start + _EVENTS_PER_QUERY]),
                or_(
                    target.id.is_(None),
                    target.room != event.room,
                    target.kind != CHAT,
                    and_(event.kind == EDIT, target.user_id != event.user_id),
                ),
            )
        )
        bad.update((await connection.execute(query)).scalars())
    if bad:
        first = min((events[i] for i in bad), key=lambda r: _position(r.where))
        author = " by the edit's author" if first.kind == EDIT else ""
        raise TransferError(f'{first.where}: "target" {first.target} is no chat message of room {first.room}{author}')


def _position(where: str) -> int:
    """The number in "line 12" or "message 12": the file's order."""
    return int(where.rpartition(" ")[2] or 0)


_APPLY_DELETE = (
    update(Message)
    .where(Message.id == bindparam("b_id"), Message.kind == CHAT)
    .values(text="", deleted=True, mentions=None)
)
_DELETED = select(Message.id).where(Message.id.in_(bindparam("b_ids", expanding=True)), Message.deleted.is_(True))
_ERASE_EDITS = update(Message).where(Message.target == bindparam("b_id"), Message.kind == EDIT).values(text="")


async def _apply_events(connection: AsyncConnection, events: list[Record]) -> None:
    """What the server does when it stores an event (quartchat/writes.py
    `_apply_events`): a delete empties its message, and the message of a delete keeps
    no edit's text — whether the file marks it `deleted` or has its delete event."""
    deletes = sorted({r.target for r in events if r.kind == DELETE and r.target is not None})
    if deletes:
        await connection.execute(_APPLY_DELETE, [{"b_id": target} for target in deletes])
    targets = sorted({r.target for r in events if r.target is not None})
    deleted: list[int] = []
    for start in range(0, len(targets), _EVENTS_PER_QUERY):
        chunk = targets[start : start + _EVENTS_PER_QUERY]
        deleted.extend((await connection.execute(_DELETED, {"b_ids": chunk})).scalars())
    if deleted:
        await connection.execute(_ERASE_EDITS, [{"b_id": target} for target in deleted])


async def _recount_rooms(connection: AsyncConnection, rooms: Sequence[str]) -> None:
    for room in rooms:
        # A room's message count is of its chat messages; its last id, of every row.
        chats = func.count().filter(Message.kind == CHAT)
        totals = (await connection.execute(select(chats, func.max(Message.id)).where(Message.room == room))).one()
        await connection.execute(
            Room.__table__.update()  # type: ignore[attr-defined]
            .where(Room.name == room)
            .values(message_count=totals[0], last_id=totals[1] or 0)
        )


async def _advance_sequence(connection: AsyncConnection) -> None:
    """New messages get ids above the imported ones. SQLite does this by itself (the
    next rowid is max + 1); PostgreSQL's sequence has to be told."""
    if connection.dialect.name == "postgresql":
        await connection.execute(
            text(
                "SELECT setval(pg_get_serial_sequence('messages', 'id'), "
                "GREATEST((SELECT COALESCE(MAX(id), 0) FROM messages), 1))"
            )
        )


async def import_file(
    engine: AsyncEngine, path: str, stdin: TextIO, progress: Progress | None = None
) -> tuple[int, int]:
    if path == "-":
        return await import_records(engine, read_export(stdin, "stdin"), progress)
    try:
        # The command line's own file: nothing else runs on this loop meanwhile.
        with Path(path).open(encoding="utf-8-sig") as source:  # noqa: ASYNC230
            return await import_records(engine, read_export(source, path), progress)
    except OSError as bad:
        raise TransferError(f"cannot read {path}: {bad.strerror}") from None


# db copy ------------------------------------------------------------------

# Parents before children (foreign keys): every table of the deployment, bot tokens and
# memberships included (a copy without them would revoke every token and empty every
# private room).
COPY_ORDER: tuple[Table, ...] = tuple(
    Base.metadata.tables[name] for name in ("users", "sessions", "api_tokens", "rooms", "memberships", "messages")
)


async def table_counts(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as connection:
        return {
            table.name: int(await connection.scalar(select(func.count()).select_from(table)) or 0)
            for table in COPY_ORDER
        }


async def copy_database(source: AsyncEngine, target: AsyncEngine, progress: Progress | None = None) -> dict[str, int]:
    """Copy every table in primary-key batches into an empty database, then check
    counts and the last message id. Returns the counts."""
    if any((await table_counts(target)).values()):
        raise TransferError("the target database is not empty")
    async with source.connect() as reading, target.begin() as writing:
        for table in COPY_ORDER:
            key = next(iter(table.primary_key.columns))
            result = await reading.stream(select(table).order_by(key).execution_options(yield_per=BATCH))
            async for rows in result.partitions():
                await writing.execute(insert(table), [dict(row._mapping) for row in rows])
                if progress:
                    progress(len(rows))
        await _advance_sequence(writing)
    expected, copied = await table_counts(source), await table_counts(target)
    if expected != copied:
        raise TransferError(f"the copy does not match: source {expected}, target {copied}")
    last = [await _last_message_id(engine) for engine in (source, target)]
    if last[0] != last[1]:
        raise TransferError(f"the last message id differs: source {last[0]}, target {last[1]}")
    return copied


async def _last_message_id(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int(await connection.scalar(select(func.max(Message.id))) or 0)
