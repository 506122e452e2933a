"""History exports (docs/protocol.md §13): ndjson, json, csv, txt and html, streamed.

Messages come from a server-side cursor in chunks (`yield_per`), are formatted a
chunk at a time and written out, so memory stays flat whatever the history's size.
The cursor reads one snapshot: an export is consistent even while people chat.

An export holds chat messages in their current state (docs/protocol.md §17): an edited
one with its newest text and `edited`, a deleted one with an empty text and `deleted`.
`with_edits` adds the edit events with their texts (a deleted message's edits have none
left); delete events are never exported, the chat row says it all.
"""

from __future__ import annotations

import csv
import html
import io
import re
import sqlite3
import sys
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import ColumnElement, FromClause, Select, and_, case, column, func, literal, select, table
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect

from .models import Message, User
from .plaintext import one_line, text_lines
from .protocol import CHAT, DELETE, EDIT, StoredMessage, dumps, format_ts, now_ms
from .settings import SQLITE_BUSY_TIMEOUT_MS
from .store import message_select, to_message

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

CHUNK = 2000


class ExportError(Exception):
    """A bad export parameter; the message names it."""


class ProgressBar(Protocol):
    """How far a long command got (a tqdm bar on a terminal): told the total, then each step."""

    def reset(self, total: float | None = None) -> None: ...

    def update(self, n: float | None = 1) -> bool | None: ...


@dataclass(frozen=True)
class ExportQuery:
    room: str | None = None
    since_ms: int | None = None  # inclusive
    until_ms: int | None = None  # exclusive
    with_edits: bool = False  # the edit events too, with their texts

    def where(self) -> list[ColumnElement[bool]]:
        conditions: list[ColumnElement[bool]] = [Message.kind != DELETE if self.with_edits else Message.kind == CHAT]
        if self.room is not None:
            conditions.append(Message.room == self.room)
        if self.since_ms is not None:
            conditions.append(Message.ts_ms >= self.since_ms)
        if self.until_ms is not None:
            conditions.append(Message.ts_ms < self.until_ms)
        return conditions


def parse_time(value: str | None, name: str) -> int | None:
    """An ISO 8601 date or time (no zone: UTC) as epoch milliseconds."""
    if value is None or value == "":
        return None
    text = value.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            moment = datetime.combine(date.fromisoformat(text), datetime.min.time())
        else:
            moment = datetime.fromisoformat(text)
    except ValueError:
        raise ExportError(f"{name} must be an ISO 8601 date or time, such as 2026-11-24T15:31:06Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    # Exact arithmetic: a zone can carry a time past year 1 or 9999 in UTC, where
    # datetime cannot go (and neither can the protocol's time format).
    ts_ms = round((moment - _EPOCH) / _MILLISECOND)
    if not _FIRST_MS <= ts_ms <= _LAST_MS:
        raise ExportError(f"{name} is out of range: from year 1 to 9999, in UTC")
    return ts_ms


_EPOCH, _MILLISECOND = datetime(1970, 1, 1, tzinfo=UTC), timedelta(milliseconds=1)
_FIRST_MS = round((datetime.min.replace(tzinfo=UTC) - _EPOCH) / _MILLISECOND)
_LAST_MS = round((datetime.max.replace(tzinfo=UTC) - _EPOCH) / _MILLISECOND) - 1  # .999999 rounds up


async def count(engine: AsyncEngine, query: ExportQuery) -> int:
    async with engine.connect() as connection:
        total = await connection.scalar(select(func.count()).select_from(Message).where(*query.where()))
    return int(total or 0)


async def chunks(engine: AsyncEngine, query: ExportQuery) -> AsyncIterator[list[StoredMessage]]:
    """The matching messages in id order, CHUNK at a time, from one server-side cursor."""
    statement = message_select().where(*query.where()).order_by(Message.id)
    async with engine.connect() as connection:
        result = await connection.stream(statement.execution_options(yield_per=CHUNK))
        async for partition in result.partitions():
            yield [to_message(row) for row in partition]


def _sqlite_message_json(users: FromClause) -> ColumnElement[Any]:
    """The message object (docs/protocol.md §5) built by SQLite's json_object, key for key.

    This is what makes ndjson and json exports fast: each line is made in C, and
    Python only joins strings. The time is the text stored with each message
    (messages.ts), which is protocol.format_ts of its milliseconds.
    """
    user = func.json_object("id", users.c.id, "name", users.c.name)
    fields: list[Any] = [
        "id", Message.id, "type", "chat", "room", Message.room, "user", user, "data", Message.text, "ts", Message.ts,
    ]  # fmt: skip
    # Every key a row may hold, in StoredMessage.to_dict's order: plain chat messages
    # (nearly all of them) first; then the few edited or deleted ones and edit events,
    # a form for each combination of the keys they hold.
    edited = ["edited", _sqlite_ts(Message.edited_ms.expression)]
    deleted = ["deleted", func.json("true")]
    event = [
        "id", Message.id, "type", "edit", "room", Message.room, "user", user,
        "target", Message.target, "data", Message.text, "ts", Message.ts,
    ]  # fmt: skip
    plain = and_(Message.kind == CHAT, Message.edited_ms.is_(None), Message.deleted.is_(False))
    whens: list[tuple[ColumnElement[bool], ColumnElement[Any]]] = []
    changed: list[tuple[ColumnElement[bool], ColumnElement[Any]]] = []
    for with_client_id in (False, True):
        for with_mentions in (False, True):
            tail = [*(["client_id", Message.client_id] if with_client_id else []),
                    *(["mentions", func.json(Message.mentions)] if with_mentions else [])]  # fmt: skip
            has = and_(
                Message.client_id.is_not(None) if with_client_id else Message.client_id.is_(None),
                Message.mentions.is_not(None) if with_mentions else Message.mentions.is_(None),
            )
            whens.append((and_(plain, has), func.json_object(*fields, *tail)))
            changed.append((and_(Message.kind == EDIT, has), func.json_object(*event, *tail)))
            for is_edited, is_deleted in ((True, False), (False, True), (True, True)):
                condition = and_(
                    Message.kind == CHAT,
                    has,
                    Message.edited_ms.is_not(None) if is_edited else Message.edited_ms.is_(None),
                    Message.deleted.is_(is_deleted),
                )
                keys = [*fields, *(edited if is_edited else []), *(deleted if is_deleted else []), *tail]
                changed.append((condition, func.json_object(*keys)))
    return case(*whens, *changed)


def _sqlite_ts(ms: ColumnElement[Any]) -> ColumnElement[Any]:
    """protocol.format_ts in SQLite: whole seconds by strftime, milliseconds by integer
    arithmetic (a float's .123 may print as .122)."""
    seconds = func.strftime("%Y-%m-%dT%H:%M:%S", ms / 1000, "unixepoch")
    return seconds + literal(".") + func.printf("%03d", ms % 1000) + literal("Z")


def _sqlite_json_select(query: ExportQuery, users: FromClause | None = None) -> Select[Any]:
    users = User.__table__ if users is None else users
    return (
        select(_sqlite_message_json(users))
        .select_from(Message)
        .join(users, users.c.id == Message.user_id)
        .where(*query.where())
        .order_by(Message.id)
    )


async def json_chunks(engine: AsyncEngine, query: ExportQuery) -> AsyncIterator[list[str]]:
    """The matching messages as JSON text, CHUNK at a time, in id order."""
    if engine.dialect.name != "sqlite":
        async for messages in chunks(engine, query):
            yield [m.json for m in messages]
        return
    async with engine.connect() as connection:
        result = await connection.stream(_sqlite_json_select(query).execution_options(yield_per=CHUNK))
        async for partition in result.scalars().partitions():
            yield list(partition)


class SqliteFile:
    """An SQLite database read directly, for `quartchat export`'s ndjson and json.

    Python's own sqlite3 in this thread rather than aiosqlite and SQLAlchemy's rows:
    no hop to a worker thread per chunk, and no decoding — the UTF-8 that SQLite's
    json_object made goes out as it is. One read transaction: one snapshot, however
    long the export takes and whoever writes meanwhile.
    """

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise ExportError(f"no database at {path}")
        # Not mode=ro: a reader of a WAL database may need to create its -shm file.
        self._connection = sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        self._connection.execute("BEGIN")
        # Names are looked up in a copy of the users table keyed by id alone (WITHOUT
        # ROWID: one B-tree search a message instead of two, a tenth of the export).
        # It lives in this connection's temporary database, in the same snapshot.
        try:
            self._connection.execute(
                "CREATE TEMP TABLE export_users (id TEXT PRIMARY KEY, name TEXT NOT NULL) WITHOUT ROWID"
            )
            self._connection.execute("INSERT INTO export_users SELECT id, name FROM main.users")
        except sqlite3.OperationalError as failure:
            raise ExportError(f"cannot read the database ({failure}); is it migrated? (quartchat db upgrade)") from None
        self._connection.execute("PRAGMA query_only = ON")

    def close(self) -> None:
        self._connection.close()

    def _run(self, statement: Select[Any]) -> sqlite3.Cursor:
        compiled = statement.compile(dialect=sqlite_dialect())
        parameters = [compiled.params[name] for name in compiled.positiontup or ()]
        try:
            return self._connection.execute(str(compiled), parameters)
        except sqlite3.OperationalError as failure:
            raise ExportError(f"cannot read the database ({failure}); is it migrated? (quartchat db upgrade)") from None

    def count(self, query: ExportQuery) -> int:
        return int(self._run(select(func.count()).select_from(Message).where(*query.where())).fetchone()[0])

    def json_lines(self, query: ExportQuery) -> Iterator[list[bytes]]:
        self._connection.text_factory = bytes
        cursor = self._run(_sqlite_json_select(query, table("export_users", column("id"), column("name"))))
        while rows := cursor.fetchmany(CHUNK):
            yield [row[0] for row in rows]


# Formats --------------------------------------------------------------------


class Format:
    extension = ""
    media_type = ""
    wants_json = False  # body() takes message objects as JSON text, not StoredMessages

    def __init__(self, room: str | None) -> None:
        self.room = room

    def head(self) -> str:
        return ""

    def body(self, messages: Sequence[Any]) -> str:
        raise NotImplementedError

    def body_bytes(self, lines: Sequence[bytes]) -> bytes:
        """For formats with wants_json: the body of message objects as UTF-8 JSON."""
        raise NotImplementedError

    def tail(self) -> str:
        return ""


class Ndjson(Format):
    extension, media_type = "ndjson", "application/x-ndjson"
    wants_json = True

    def body(self, messages: Sequence[Any]) -> str:
        return "\n".join(messages) + "\n" if messages else ""

    def body_bytes(self, lines: Sequence[bytes]) -> bytes:
        return b"\n".join([*lines, b""]) if lines else b""  # one copy, not two


class Json(Format):
    extension, media_type = "json", "application/json"
    wants_json = True

    def __init__(self, room: str | None) -> None:
        super().__init__(room)
        self._first = True

    def head(self) -> str:
        return '{"exported_at":' + dumps(format_ts(now_ms())) + ',"room":' + dumps(self.room) + ',"messages":['

    def body(self, messages: Sequence[Any]) -> str:
        if not messages:
            return ""
        text = ("" if self._first else ",") + ",".join(messages)
        self._first = False
        return text

    def body_bytes(self, lines: Sequence[bytes]) -> bytes:
        if not lines:
            return b""
        data = b",".join(lines if self._first else [b"", *lines])
        self._first = False
        return data

    def tail(self) -> str:
        return "]}\n"


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def defuse(cell: str) -> str:
    """A cell a spreadsheet would run as a formula, made plain text (OWASP's advice)."""
    return "'" + cell if cell.startswith(_FORMULA_START) else cell


class Csv(Format):
    extension, media_type = "csv", "text/csv; charset=utf-8"
    HEADER = ("id", "room", "ts", "user_id", "user_name", "text")

    def head(self) -> str:
        # The byte-order mark tells spreadsheets the file is UTF-8.
        return "\ufeff" + self._rows([self.HEADER])

    def body(self, messages: Sequence[StoredMessage]) -> str:
        return self._rows(
            (m.id, defuse(m.room), format_ts(m.ts_ms), defuse(m.user.id), defuse(m.user.name), defuse(shown_text(m)))
            for m in messages
        )

    @staticmethod
    def _rows(rows: Iterable[Iterable[object]]) -> str:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\r\n").writerows(rows)  # RFC 4180
        return buffer.getvalue()


def shown_text(message: StoredMessage) -> str:
    """A message's text as CSV, TXT and HTML show it: marked "(edited)" or "(deleted)";
    an edit event (with_edits) names the message it changed."""
    if message.kind == EDIT:
        return f"(edit of {message.target}) {message.text}"
    if message.deleted:
        return "(deleted)"
    if message.edited_ms is not None:
        return f"{message.text} (edited)"
    return message.text


def txt_stamp(ts_ms: int) -> str:
    ts = format_ts(ts_ms)
    return f"{ts[:10]} {ts[11:19]}Z"


class Txt(Format):
    extension, media_type = "txt", "text/plain; charset=utf-8"
    INDENT = "    "

    def body(self, messages: Sequence[StoredMessage]) -> str:
        lines = []
        for m in messages:
            # Every line break a reader could see starts an indented line: no text can
            # pass for a message of its own (quartchat/plaintext.py).
            first, *rest = text_lines(shown_text(m))
            lines.append(f"[{txt_stamp(m.ts_ms)}] #{m.room} {one_line(m.user.name)}: {first}\n")
            lines.extend(f"{self.INDENT}{line}\n" for line in rest)
        return "".join(lines)


HTML_STYLE = (
    "body{font:15px/1.45 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1d2330}"
    "li{list-style:none;margin:.25rem 0;white-space:pre-wrap;overflow-wrap:anywhere}"
    "time{color:#6b7280;font-size:.85em;margin-right:.5em}.room{color:#6b7280;margin-right:.5em}"
    "b{margin-right:.4em}ol{padding:0}"
)


class Html(Format):
    extension, media_type = "html", "text/html; charset=utf-8"

    def head(self) -> str:
        title = html.escape(f"quartchat — #{self.room}" if self.room else "quartchat — all rooms")
        return (
            f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{title}</title><style>{HTML_STYLE}</style></head>\n"
            f"<body><h1>{title}</h1><p>Exported {html.escape(format_ts(now_ms()))}</p><ol>\n"
        )

    def body(self, messages: Sequence[StoredMessage]) -> str:
        return "".join(
            f'<li id="m{m.id}"><time datetime="{format_ts(m.ts_ms)}">{txt_stamp(m.ts_ms)}</time>'
            f'<span class="room">#{html.escape(m.room)}</span><b>{html.escape(m.user.name)}</b>'
            f"{html.escape(shown_text(m))}</li>\n"
            for m in messages
        )

    def tail(self) -> str:
        return "</ol></body></html>\n"


FORMATS: dict[str, type[Format]] = {f.extension: f for f in (Ndjson, Json, Csv, Txt, Html)}


def formatter(name: str | None, room: str | None) -> Format:
    chosen = FORMATS.get(name or "ndjson")
    if chosen is None:
        raise ExportError(f"format must be one of {', '.join(FORMATS)}")
    return chosen(room)


def filename(room: str | None, extension: str) -> str:
    return f"quartchat-{room or 'all'}-{datetime.now(UTC):%Y%m%d}.{extension}"


async def render(
    engine: AsyncEngine, query: ExportQuery, output: Format, progress: Callable[[int], object] | None = None
) -> AsyncIterator[str]:
    """The whole export, as a stream of text pieces; `progress` hears each chunk's size."""
    yield output.head()
    source: AsyncIterator[Sequence[Any]] = json_chunks(engine, query) if output.wants_json else chunks(engine, query)
    async for messages in source:
        yield output.body(messages)
        if progress is not None:
            progress(len(messages))
    yield output.tail()


def render_sqlite(
    database: SqliteFile, query: ExportQuery, output: Format, progress: Callable[[int], object] | None = None
) -> Iterator[bytes]:
    """render() for ndjson and json straight from an SQLite file, as UTF-8 bytes."""
    yield output.head().encode()
    for lines in database.json_lines(query):
        yield output.body_bytes(lines)
        if progress is not None:
            progress(len(lines))
    yield output.tail().encode()


# `quartchat export` ---------------------------------------------------------


def write_sqlite_export(
    path: Path, query: ExportQuery, output: Format, target: Path | None, bar: ProgressBar | None = None
) -> None:
    """ndjson and json from an SQLite file to `target` (None: standard output):
    synchronous, bytes in and bytes out. A bar hears the total and each chunk."""
    database = SqliteFile(path)
    try:
        if target is None:
            sys.stdout.buffer.writelines(render_sqlite(database, query, output))
            sys.stdout.buffer.flush()
            return
        if bar is not None:
            bar.reset(database.count(query))
        with target.open("wb") as file:
            file.writelines(render_sqlite(database, query, output, bar.update if bar is not None else None))
    finally:
        database.close()


async def write_export(
    engine: AsyncEngine, query: ExportQuery, output: Format, target: Path | None, bar: ProgressBar | None = None
) -> None:
    """Any format from any database to `target` (None: standard output)."""
    if target is None:
        async for piece in render(engine, query, output):
            sys.stdout.buffer.write(piece.encode("utf-8"))
        sys.stdout.buffer.flush()
        return
    if bar is not None:
        bar.reset(await count(engine, query))
    # The command line's own file: nothing else runs on this loop meanwhile.
    with target.open("w", encoding="utf-8", newline="") as file:
        async for piece in render(engine, query, output, bar.update if bar is not None else None):
            file.write(piece)
