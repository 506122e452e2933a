"""Who may read what (docs/protocol.md §11): the one access check every door uses.

The WebSocket (open, and the writer for every message), the history and paging API,
users/presence, members, exports and the room list all ask `check_room` (or, for a
query over many rooms, `readable_rooms`). An outsider learns nothing of a private room
or a DM: every refusal for a room it may not see is `NotVisible`, the same whether the
room is full of history, empty, or does not exist. Admins are outsiders too; only the
whole-server export (`/api/export`) is theirs.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, false, or_, select

from .models import Membership, Room
from .rooms import valid_room
from .store import SignedIn, Store

PUBLIC, PRIVATE, DM = "public", "private", "dm"
DM_PREFIX = "dm-"  # DM rooms only: refused for every other room (quartchat/rooms.py)


class NotVisible(Exception):
    """The room does not exist for this user: HTTP 404, WebSocket 4004."""


class NotAllowed(Exception):
    """The user sees the room but may not use it (a bot token limited to other rooms,
    a member no more, a change only an owner or admin may make): HTTP 403, WebSocket 4003."""


@dataclass(frozen=True)
class RoomView:
    """A room as one user may see it."""

    name: str
    kind: str  # "public", "private" or "dm"
    is_member: bool
    role: str | None  # "owner" or "member" in this room; None: not a member
    exists: bool  # False: a public room that its first message will make

    @property
    def restricted(self) -> bool:
        """Members only: private rooms and DMs."""
        return self.kind != PUBLIC


async def check_room(store: Store, who: SignedIn, room: str) -> RoomView:
    """The room as `who` may see it; NotVisible or NotAllowed otherwise.

    A name that no room has yet is a public room to be (Part I: a first message makes
    it), except for `dm-` names, which only POST /api/dm makes: those are as invisible
    as a DM of others.
    """
    if not valid_room(room):
        raise NotVisible(room)
    if who.token_rooms is not None and room not in who.token_rooms:
        raise NotAllowed(room)
    found = await store.room_access(room, who.user.id)
    if found is None:
        if room.startswith(DM_PREFIX):
            raise NotVisible(room)
        return RoomView(room, PUBLIC, is_member=False, role=None, exists=False)
    if found.kind != PUBLIC and found.role is None:
        raise NotVisible(room)
    return RoomView(room, found.kind, found.role is not None, found.role, exists=True)


def readable_rooms(who: SignedIn, column: ColumnElement[str] | None = None) -> ColumnElement[bool]:
    """A condition on a room-name column (rooms.name by default; messages.room for a
    search): public rooms and the rooms `who` is a member of, within its token's rooms."""
    room = Room.name if column is None else column
    public = select(Room.name).where(Room.kind == PUBLIC)
    mine = select(Membership.room).where(Membership.user_id == who.user.id)
    readable = or_(room.in_(public), room.in_(mine))
    if who.token_rooms is not None:
        if not who.token_rooms:
            return false()
        readable = readable & room.in_(sorted(who.token_rooms))
    return readable


def is_admin(who: SignedIn) -> bool:
    return who.role == "admin"


def may_create_room(name: str) -> bool:
    """A valid name that is not a DM's (`dm-…` names are POST /api/dm's alone)."""
    return valid_room(name) and not name.startswith(DM_PREFIX)
