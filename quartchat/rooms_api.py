"""The rooms API of docs/protocol.md §11: create a room, open a DM, list, add and
remove members. Every room it names goes through quartchat/access.py first."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from quart import Blueprint, Response, jsonify

from .access import DM, PRIVATE, PUBLIC, NotAllowed, check_room, is_admin, may_create_room, readable_rooms
from .accounts import InvalidName, name_key, stored_name
from .api import ApiError, check_json_post, json_object, signed_in_as
from .broker import Revoked
from .models import Room
from .protocol import CloseCode, UserRef
from .rooms import dm_room_name
from .runtime import runtime
from .store import RoomSummary, SignedIn

bp = Blueprint("rooms_api", __name__)

MAX_USER_ID_CHARS = 36
NOT_A_MEMBER = "Not a member"


def room_json(summary: RoomSummary, reads: bool = False) -> dict[str, Any]:
    """A room as GET /api/rooms lists it (`reads`: with the user's read position and
    counts, docs/protocol.md §18): a DM names its other member as `peer`."""
    room: dict[str, Any] = {
        "name": summary.name,
        "kind": summary.kind,
        "member": summary.member,
        "messages": summary.messages,
        "last_id": summary.last_id,
    }
    if reads:
        room.update(last_read_id=summary.last_read_id, unread=summary.unread, mentions=summary.mentions)
    if summary.kind == DM:
        room["peer"] = summary.peer.to_dict() if summary.peer is not None else None
    return room


RoomsKey = tuple[int, str, frozenset[str] | None]


class RoomLists:
    """One user's concurrent room lists share one count (attack finding 5: ten calls at
    once of a user in 200 busy rooms took ten times the database's time). A call that
    finds a count running waits for the next one, which starts when the running one
    ends and is shared by every call that arrived meanwhile: each answer is read after
    its call began (a read it flushed counts), and a user runs at most one count at a
    time, with one more waiting."""

    def __init__(self) -> None:
        self._running: dict[RoomsKey, asyncio.Task[list[RoomSummary]]] = {}
        self._next: dict[RoomsKey, asyncio.Task[list[RoomSummary]]] = {}

    async def get(self, key: RoomsKey, count: Callable[[], Awaitable[list[RoomSummary]]]) -> list[RoomSummary]:
        task = self._next.get(key)
        if task is None:
            task = asyncio.ensure_future(self._run(key, self._running.get(key), count))
            task.add_done_callback(_retrieved)
            self._next[key] = task
        return await asyncio.shield(task)  # a caller that goes away leaves it to the others

    async def _run(
        self,
        key: RoomsKey,
        previous: asyncio.Task[list[RoomSummary]] | None,
        count: Callable[[], Awaitable[list[RoomSummary]]],
    ) -> list[RoomSummary]:
        if previous is not None:
            await asyncio.wait([previous])
        me = asyncio.current_task()
        assert me is not None
        if self._next.get(key) is me:
            del self._next[key]
        self._running[key] = me
        try:
            return await count()
        finally:
            if self._running.get(key) is me:
                del self._running[key]

    def busy(self) -> int:
        """Users with a count running or waiting (tests)."""
        return len(self._running.keys() | self._next.keys())


def _retrieved(task: asyncio.Task[list[RoomSummary]]) -> None:
    if not task.cancelled():
        task.exception()  # every caller may have gone: asyncio must not call it lost


room_lists = RoomLists()


async def rooms_of(who: SignedIn) -> list[RoomSummary]:
    """The rooms GET /api/rooms lists for `who`, one count at a time per user (RoomLists)."""
    store = runtime().store
    key = (id(store), who.user.id, who.token_rooms)
    return await room_lists.get(key, lambda: store.rooms_of(who.user.id, readable_rooms(who)))


async def json_body(*fields: str) -> dict[str, Any]:
    await check_json_post()
    body = await json_object()
    if body is None:
        raise ApiError(422, "send a JSON object with " + ", ".join(f'"{f}"' for f in fields))
    return body


async def user_named(raw: object) -> UserRef:
    """The active account of that name; 404 for an unknown, reserved or disabled one alike."""
    try:
        key = name_key(stored_name(raw))
    except InvalidName:
        raise ApiError(404, "no such user") from None
    found = await runtime().store.active_user(key)
    if found is None:
        raise ApiError(404, "no such user")
    return found


@bp.post("/api/rooms")
async def create_room() -> Response:
    who = await signed_in_as()
    body = await json_body("name", "private")
    name, private = body.get("name"), body.get("private", False)
    if not isinstance(private, bool):
        raise ApiError(422, '"private" is true or false')
    if not isinstance(name, str) or not may_create_room(name):
        raise ApiError(422, "a room name is 1-64 of a-z, 0-9 and '-', and does not start with 'dm-'")
    if who.token_rooms is not None:
        raise NotAllowed(name)  # a bot token limited to rooms makes none
    kind = PRIVATE if private else PUBLIC
    rt = runtime()
    if not await rt.writes.create_room(name, kind, who.user.id):
        raise ApiError(409, "that name is taken")
    rt.hub.members_added(name, (who.user.id,))
    if kind == PRIVATE:
        # Sockets opened on the name while it was a public room still to be made are
        # outsiders' now (all but the creator's): they close as any invisible room's do.
        rt.hub.revoke(Revoked(room=name, all_but=(who.user.id,), code=CloseCode.INVALID_ROOM, reason="Invalid room"))
    summary = RoomSummary(name, 0, 0, kind, member=True)
    response = jsonify(room=room_json(summary))
    response.status_code = 201
    return response


@bp.post("/api/dm")
async def open_dm() -> Response:
    who = await signed_in_as()
    body = await json_body("name")
    peer = await user_named(body.get("name"))
    if peer.id == who.user.id:
        raise ApiError(422, "a direct message needs another user")
    rt = runtime()
    name = dm_room_name(rt.settings.resolved_secret_key(), who.user.id, peer.id)
    if who.token_rooms is not None and name not in who.token_rooms:
        raise NotAllowed(name)
    if await rt.writes.open_dm(name, (who.user.id, peer.id)) != DM:
        raise ApiError(409, "that name is taken")
    rt.hub.members_added(name, (who.user.id, peer.id))  # made now or before: a load reads it
    (summary,) = await rt.store.rooms_of(who.user.id, Room.name == name)
    return jsonify(room=room_json(summary))


@bp.get("/api/rooms/<room>/members")
async def members(room: str) -> Response:
    who = await signed_in_as()
    store = runtime().store
    await check_room(store, who, room)
    found = await store.members(room)
    return jsonify(members=[{**m.user.to_dict(), "role": m.role} for m in found])


@bp.post("/api/rooms/<room>/members")
async def add_member(room: str) -> Response:
    """Any member of a private room may add a user to it. A DM keeps its two members;
    a public room needs no invitation (opening it makes a member)."""
    who = await signed_in_as()
    rt = runtime()
    view = await check_room(rt.store, who, room)
    body = await json_body("name")
    if view.kind == DM:
        raise ApiError(403, "a direct message has exactly its two members")
    if view.kind == PUBLIC:
        raise ApiError(422, "anyone may join a public room by opening it: no invitation needed")
    user = await user_named(body.get("name"))
    added = await rt.writes.add_member(room, user.id)
    if added:
        rt.hub.members_added(room, (user.id,))
    response = jsonify(member={**user.to_dict(), "role": "member"})
    response.status_code = 201 if added else 200
    return response


@bp.delete("/api/rooms/<room>/members/<user_id>")
async def remove_member(room: str, user_id: str) -> Response:
    """Leave (yourself), or remove someone: a room's owner or an admin. Its sockets of
    the room close with 4003 in every process; the writer stores nothing more of it there."""
    await check_json_post()
    who = await signed_in_as()
    rt = runtime()
    view = await check_room(rt.store, who, room)
    if user_id != who.user.id:
        if view.kind == DM:
            raise ApiError(403, "in a direct message you may only leave")
        if not (view.role == "owner" or is_admin(who)):
            raise ApiError(403, "only the room's owner or an admin may remove others")
    if len(user_id) > MAX_USER_ID_CHARS or not await rt.writes.remove_member(room, user_id):
        raise ApiError(404, "not a member")
    # Answered once every process can hear of it (hub.revoke_published, docs/security.md).
    await rt.hub.revoke_published(
        Revoked(user_ids=(user_id,), room=room, code=CloseCode.NOT_MEMBER, reason=NOT_A_MEMBER)
    )
    return Response(status=204)
