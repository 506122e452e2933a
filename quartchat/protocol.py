"""The wire protocol in one place: frame types, error and close codes, message objects.

docs/protocol.md describes the same protocol for people.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from .invisible import is_blank

# Server → client frame types.
HISTORY = "history"
LIST = "list"
JOIN = "join"
LEFT = "left"
CHAT = "chat"
BATCH = "batch"
PONG = "pong"
ERROR = "error"
# The per-user stream: news of the user's other rooms, on every connection (§18).
ACTIVITY = "activity"
NOTIFY = "notify"
READ = "read"  # both ways: a client's read position, and the news of it to its other connections
# Client → server frame types (besides CHAT and READ).
PING = "ping"

MAX_CLIENT_ID_CHARS = 64
MAX_FRAME_BYTES = 64 * 1024
RESUME_LIMIT = 1000  # more missed messages than this: `reset` to the newest


class ErrorCode(enum.StrEnum):
    BAD_REQUEST = "bad_request"
    EMPTY = "empty"
    TOO_LONG = "too_long"
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"


class CloseCode(enum.IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001  # server shutting down: reconnect with `after`
    POLICY = 1008  # abuse: a flood far past the rate limit
    TOO_BIG = 1009
    SERVER_ERROR = 1011
    TRY_AGAIN = 1013  # the send queue filled: reconnect with `after`
    INVALID_USER = 4001
    NOT_MEMBER = 4003  # removed from the room, left it, or a token limited to other rooms
    INVALID_ROOM = 4004


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


@functools.lru_cache(maxsize=1)  # a batch's messages share one time: one strftime a batch
def format_ts(ts_ms: int) -> str:
    """UTC ISO 8601 with milliseconds and `Z`: 2026-11-24T15:31:06.123Z."""
    moment = datetime.fromtimestamp(ts_ms / 1000, UTC)
    # %Y does not pad years before 1000 to four digits (glibc): the year by hand.
    return f"{moment.year:04d}" + moment.strftime("-%m-%dT%H:%M:%S.") + f"{ts_ms % 1000:03d}Z"


def now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class UserRef:
    id: str
    name: str

    def to_dict(self) -> dict[str, str]:
        return {"id": self.id, "name": self.name}


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A committed chat message, and its wire form, serialised once."""

    id: int
    room: str
    user: UserRef
    text: str
    ts_ms: int
    client_id: str | None = None
    # The room's previous message id when this one was committed (0: unknown, e.g. read
    # back from the database). Lets every process deliver a room's messages in order
    # and notice a gap (docs/scaling.md).
    prev_id: int = field(default=0, compare=False)
    # The ids of the users the text mentions (quartchat/mentions.py), in order; on the
    # wire only when there are any.
    mentions: tuple[str, ...] = ()
    json: str = field(default="", compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.json:
            object.__setattr__(self, "json", dumps(self.to_dict()))

    def to_dict(self) -> dict[str, Any]:
        message: dict[str, Any] = {
            "id": self.id,
            "type": CHAT,
            "room": self.room,
            "user": self.user.to_dict(),
            "data": self.text,
            "ts": format_ts(self.ts_ms),
        }
        if self.client_id is not None:
            message["client_id"] = self.client_id
        if self.mentions:
            message["mentions"] = list(self.mentions)
        return message


def history_frame(
    room: str, messages: Sequence[StoredMessage], has_more: bool, reset: bool, last_read_id: int = 0
) -> str:
    """The first frame on a socket; each message goes in as its wire form, serialised once.
    `last_read_id`: the user's read position in the room (docs/protocol.md §18)."""
    return (
        '{"type":"'
        + HISTORY
        + '","room":'
        + dumps(room)
        + ',"messages":['
        + ",".join(m.json for m in messages)
        + '],"has_more":'
        + dumps(has_more)
        + ',"reset":'
        + dumps(reset)
        + ',"last_read_id":'
        + str(int(last_read_id))
        + "}"
    )


def list_frame(room: str, users: Sequence[UserRef]) -> str:
    """The users online in the room, in the order given (by name)."""
    return dumps({"type": LIST, "room": room, "data": [u.to_dict() for u in users]})


def presence_frame(kind: str, room: str, user: UserRef, ts_ms: int) -> str:
    return dumps({"type": kind, "room": room, "user": user.to_dict(), "ts": format_ts(ts_ms)})


def read_frame(room: str, last_read_id: int) -> str:
    """The user's read position in `room` moved (docs/protocol.md §18)."""
    return dumps({"type": READ, "room": room, "id": last_read_id})


def error_frame(code: ErrorCode, message: str, client_id: str | None = None) -> str:
    frame: dict[str, Any] = {"type": ERROR, "code": code.value, "message": message}
    if client_id is not None:
        frame["client_id"] = client_id
    return dumps(frame)


def activity_frame(room: str, last_id: int, unread: int, mentions: int) -> str:
    return dumps({"type": ACTIVITY, "room": room, "last_id": last_id, "unread": unread, "mentions": mentions})


def notify_frame(message: StoredMessage) -> str:
    """A message for a user it concerns (a mention, a DM), in its wire form as serialised once."""
    return '{"type":"' + NOTIFY + '","room":' + dumps(message.room) + ',"message":' + message.json + "}"


_BATCH_START = '{"type":"' + BATCH + '","messages":['


def batch_frame(message_jsons: list[str]) -> str:
    return _BATCH_START + ",".join(message_jsons) + "]}"


PONG_FRAME = dumps({"type": PONG})


class FrameError(Exception):
    """A client frame we refuse; becomes an `error` frame to its sender alone."""

    def __init__(self, code: ErrorCode, message: str, client_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.client_id = client_id


@dataclass(frozen=True, slots=True)
class ChatFrame:
    text: str
    client_id: str | None


@dataclass(frozen=True, slots=True)
class PingFrame:
    pass


@dataclass(frozen=True, slots=True)
class ReadFrame:
    message_id: int


MAX_MESSAGE_ID = (1 << 63) - 1


def parse_frame(raw: str | bytes, max_chars: int) -> ChatFrame | PingFrame | ReadFrame:
    """Check one client frame; raise FrameError saying what is wrong with it."""
    if isinstance(raw, bytes):
        raise FrameError(ErrorCode.BAD_REQUEST, "binary frames are not accepted: send JSON text")
    try:
        frame = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise FrameError(ErrorCode.BAD_REQUEST, "the frame is not valid JSON") from None
    if not isinstance(frame, dict):
        raise FrameError(ErrorCode.BAD_REQUEST, "the frame must be a JSON object")
    client_id = frame.get("client_id")
    echo = client_id if isinstance(client_id, str) and len(client_id) <= MAX_CLIENT_ID_CHARS else None
    kind = frame.get("type")
    if kind == PING:
        return PingFrame()
    if kind == READ:
        message_id = frame.get("id")
        # bool is an int to Python, not to JSON's readers.
        if not isinstance(message_id, int) or isinstance(message_id, bool) or not 0 <= message_id <= MAX_MESSAGE_ID:
            raise FrameError(ErrorCode.BAD_REQUEST, '"id" must be a message id (an integer, 0 or more)')
        return ReadFrame(message_id)
    if kind != CHAT:
        raise FrameError(ErrorCode.BAD_REQUEST, 'unknown "type": expected "chat", "read" or "ping"', echo)
    return parse_chat(frame, max_chars)


def parse_chat(frame: dict[str, Any], max_chars: int) -> ChatFrame:
    """Check a chat message's `data` and `client_id` (a WebSocket frame's, or the body
    of POST /api/rooms/<room>/messages): the same rules at both doors."""
    client_id = frame.get("client_id")
    echo = client_id if isinstance(client_id, str) and len(client_id) <= MAX_CLIENT_ID_CHARS else None
    if client_id is not None:
        if not isinstance(client_id, str) or not client_id:
            raise FrameError(ErrorCode.BAD_REQUEST, '"client_id" must be a non-empty string')
        if len(client_id) > MAX_CLIENT_ID_CHARS:
            raise FrameError(ErrorCode.BAD_REQUEST, f'"client_id" is longer than {MAX_CLIENT_ID_CHARS} characters')
        _check_storable(client_id, "client_id", echo)
    text = frame.get("data")
    if not isinstance(text, str):
        raise FrameError(ErrorCode.BAD_REQUEST, '"data" must be a string', echo)
    if is_blank(text):  # spaces, zero-width and other characters that show nothing
        raise FrameError(ErrorCode.EMPTY, "the message is empty", echo)
    if len(text) > max_chars:
        raise FrameError(ErrorCode.TOO_LONG, f"the message is longer than {max_chars} characters", echo)
    _check_storable(text, "data", echo)
    return ChatFrame(text=text, client_id=client_id)


def _check_storable(value: str, name: str, echo: str | None) -> None:
    # NUL cannot be stored in PostgreSQL text; lone surrogates cannot be encoded at all.
    if "\x00" in value:
        raise FrameError(ErrorCode.BAD_REQUEST, f'"{name}" may not contain NUL characters', echo)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise FrameError(ErrorCode.BAD_REQUEST, f'"{name}" is not valid Unicode text', echo) from None
