"""Fan-out between processes, chosen by the broker URL's scheme (like encode/broadcaster).

A process delivers its own events to its own connections itself (hub.py) and publishes
them for the others (outbox.py); every process receives everything published, its own
included, and ignores its own by their origin.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from ..protocol import CloseCode, StoredMessage, UserRef


@dataclass(frozen=True, slots=True)
class Committed:
    """Messages committed together, in id order."""

    messages: tuple[StoredMessage, ...]
    origin: str  # the publishing process


@dataclass(frozen=True, slots=True)
class Presence:
    kind: str  # protocol.JOIN or protocol.LEFT
    room: str
    user: UserRef
    ts_ms: int
    origin: str  # the publishing process


@dataclass(frozen=True, slots=True)
class Resync:
    """The broker was cut off and is back: events may have been lost meanwhile, so the
    hub repairs every room it serves from the database (Redis pub/sub is at-most-once)."""


@dataclass(frozen=True, slots=True)
class Revoked:
    """Access ended: every socket of these sessions, or of these users, closes with
    `code` (in `room` only, when one is named). The one message that says so, whatever
    ended it (sign-out, a password change, a disabled user, a removal from a room)."""

    session_ids: tuple[str, ...] = ()
    user_ids: tuple[str, ...] = ()
    room: str | None = None
    code: int = CloseCode.INVALID_USER
    reason: str = "Invalid user"
    origin: str = ""  # the publishing process, which closed its own sockets already
    # Every socket of `room` but these users' (a name that has just become a private
    # room: whoever had it open waiting for its first message is an outsider now).
    all_but: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class MemberAdded:
    """These users became members of `room` (an invitation, a DM, opening a public room):
    the per-user stream reads their counts there (quartchat/user_stream.py)."""

    room: str
    user_ids: tuple[str, ...]
    origin: str  # the publishing process
    # False when the users joined by their own act: no `activity` to announce it.
    announce: bool = True


@dataclass(frozen=True, slots=True)
class ReadMoved:
    """Users' read positions moved forward (docs/protocol.md §18), flushed together:
    every connection of each user, in any room, hears of its own."""

    moves: tuple[tuple[str, str, int], ...]  # (user id, room, last read id)
    origin: str  # the publishing process, which told its own connections already


Event = Committed | Presence | Resync | Revoked | MemberAdded | ReadMoved


class Broker(ABC):
    @abstractmethod
    async def connect(self) -> None: ...

    @abstractmethod
    async def disconnect(self) -> None: ...

    @abstractmethod
    async def publish(self, event: Event) -> None: ...

    @abstractmethod
    async def next_published(self) -> Event:
        """The next event published by any process; waits for one."""


def create_broker(url: str, namespace: str) -> Broker:
    """`namespace`: this deployment's prefix for whatever the broker names outside it."""
    if url == "memory://":
        from .memory import MemoryBroker

        return MemoryBroker()
    from .redis import RedisBroker  # needs the `redis` package: pip install quartchat[scale]

    return RedisBroker(url, namespace)
