"""History exports (SPEC §8): ndjson, json, csv, txt and html, streamed.

Messages come from a server-side cursor in chunks (`yield_per`), are formatted a
chunk at a time and written out, so memory stays flat whatever the history's size.
The cursor reads one snapshot: an export is consistent even while people chat.
"""

from __future__ import annotations

import csv
import html
import io
import re
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from .models import Message, User
from .protocol import StoredMessage, dumps, format_ts, now_ms
from .store import message_select, to_message

CHUNK = 2000


class ExportError(Exception):
    """A bad export parameter; the message names it."""


@dataclass(frozen=True)
class ExportQuery:
    room: str | None = None
    since_ms: int | None = None  # inclusive
    until_ms: int | None = None  # exclusive

    def where(self) -> list[ColumnElement[bool]]:
        conditions: list[ColumnElement[bool]] = []
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
    return round(moment.timestamp() * 1000)


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


def _sqlite_message_json() -> ColumnElement[Any]:
    """The message object (SPEC §5) built by SQLite's json_object, key for key.

    This is what makes ndjson and json exports fast: each line is made in C, and
    Python only joins strings. The time is formatted from the integer milliseconds.
    """
    # SQLite keeps times as integer milliseconds, so %f renders ours exactly
    # (tests/test_export.py compares it with protocol.format_ts).
    ts = func.strftime("%Y-%m-%dT%H:%M:%fZ", Message.ts_ms / 1000.0, "unixepoch")
    fields: list[Any] = [
        "id", Message.id, "type", "chat", "room", Message.room,
        "user", func.json_object("id", User.id, "name", User.name),
        "data", Message.text, "ts", ts,
    ]  # fmt: skip
    return case(
        (Message.client_id.is_(None), func.json_object(*fields)),
        else_=func.json_object(*fields, "client_id", Message.client_id),
    )


async def json_chunks(engine: AsyncEngine, query: ExportQuery) -> AsyncIterator[list[str]]:
    """The matching messages as JSON text, CHUNK at a time, in id order."""
    if engine.dialect.name != "sqlite":
        async for messages in chunks(engine, query):
            yield [m.json for m in messages]
        return
    statement = (
        select(_sqlite_message_json())
        .select_from(Message)
        .join(User, User.id == Message.user_id)
        .where(*query.where())
        .order_by(Message.id)
    )
    async with engine.connect() as connection:
        result = await connection.stream(statement.execution_options(yield_per=CHUNK))
        async for partition in result.scalars().partitions():
            yield list(partition)


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

    def tail(self) -> str:
        return ""


class Ndjson(Format):
    extension, media_type = "ndjson", "application/x-ndjson"
    wants_json = True

    def body(self, messages: Sequence[Any]) -> str:
        return "\n".join(messages) + "\n" if messages else ""


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
            (m.id, m.room, format_ts(m.ts_ms), defuse(m.user.id), defuse(m.user.name), defuse(m.text)) for m in messages
        )

    @staticmethod
    def _rows(rows: Iterable[Iterable[object]]) -> str:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\r\n").writerows(rows)  # RFC 4180
        return buffer.getvalue()


def txt_stamp(ts_ms: int) -> str:
    ts = format_ts(ts_ms)
    return f"{ts[:10]} {ts[11:19]}Z"


class Txt(Format):
    extension, media_type = "txt", "text/plain; charset=utf-8"
    INDENT = "    "

    def body(self, messages: Sequence[StoredMessage]) -> str:
        lines = []
        for m in messages:
            first, *rest = m.text.split("\n")
            lines.append(f"[{txt_stamp(m.ts_ms)}] #{m.room} {m.user.name}: {first.rstrip(chr(13))}\n")
            lines.extend(f"{self.INDENT}{line.rstrip(chr(13))}\n" for line in rest)
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
            f"{html.escape(m.text)}</li>\n"
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
