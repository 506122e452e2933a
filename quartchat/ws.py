"""The WebSocket route (docs/protocol.md §2-§9): protocol in, protocol out.

Opening: Origin check (403 before the upgrade; none for a bot's Bearer token), session
(4001), room (4004 for a room the user may not see, 4003 for one it may not use, a bot
token's other rooms included: quartchat/access.py); then
history, list and the user's join, in that order. Then a reader (this task) and a
sender (one task per connection, draining a bounded queue) run until either ends.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from functools import partial
from typing import Any, cast

from quart import Blueprint, Response, websocket

from .access import PUBLIC, NotAllowed, NotVisible, RoomView, check_room
from .asgi_send import frame_sender, unsent_bytes
from .connection import Connection
from .protocol import (
    DELETE,
    EDIT,
    MAX_FRAME_BYTES,
    PONG_FRAME,
    ChatFrame,
    CloseCode,
    EditFrame,
    ErrorCode,
    FrameError,
    ReadFrame,
    error_frame,
    history_frame,
    list_frame,
    parse_frame,
)
from .rate_limits import SlidingWindow, flood_limit
from .rooms import DEFAULT_ROOM
from .runtime import Runtime, runtime
from .store import SignedIn
from .web_session import bearer_token, current_session, origin_allowed
from .writer import Draft, Forbidden, NotFound, NotMember, Outcome, SessionEnded, Unavailable

log = logging.getLogger(__name__)
bp = Blueprint("ws", __name__)

IN_FLIGHT_PER_CONNECTION = 32
# A non-member's read (a public room made after its socket opened) looks the room up at
# most this often: a flood of reads is no flood of queries.
MEMBERSHIP_RETRY_SECONDS = 1.0
CLOSE_TIMEOUT = 5.0
NOT_A_MEMBER = "Not a member"
# Memberships being written for a first message in a public room (kept from the collector).
_joining: set[asyncio.Task[None]] = set()


@bp.websocket("/ws/chat", defaults={"room": DEFAULT_ROOM})
@bp.websocket("/ws/chat/<room>")
async def chat_socket(room: str) -> Response | None:
    rt = runtime()
    settings = rt.settings
    # A bot's Authorization header is no browser's ambient credential: any Origin may carry it.
    bearer = bearer_token() is not None
    if not bearer and not origin_allowed(websocket.headers.get("Origin"), settings.allowed_origins):
        return Response("cross-origin WebSocket refused", 403)
    address = websocket.remote_addr or "unknown"
    if not rt.hub.take_address_slot(address, settings.max_connections_per_address):
        return Response("too many connections from your address", 429)
    try:
        await _chat(rt, room, address)
    finally:
        rt.hub.release_address_slot(address)
    return None


async def _chat(rt: Runtime, room: str, address: str) -> None:
    settings = rt.settings
    await websocket.accept()
    signed_in = await current_session(rt.store)
    if signed_in is None:
        await websocket.close(CloseCode.INVALID_USER, "Invalid user")
        return
    try:
        view = await check_room(rt.store, signed_in, room)
    except NotVisible:  # the same close for every room the user may not see
        await websocket.close(CloseCode.INVALID_ROOM, "Invalid room")
        return
    except NotAllowed:
        await websocket.close(CloseCode.NOT_MEMBER, "Not allowed")
        return
    except Exception:
        log.exception("opening %s failed: the database did not answer", room)
        await websocket.close(CloseCode.TRY_AGAIN, "the database is unavailable: try again later")
        return
    after_text = websocket.args.get("after")
    if after_text is not None and not re.fullmatch(r"\d{1,18}", after_text):
        await websocket.close(CloseCode.POLICY, "after must be a message id")
        return
    if not rt.hub.accepting:
        await websocket.close(CloseCode.GOING_AWAY, "server shutting down")
        return

    user = signed_in.user
    connection = Connection(
        user,
        room,
        address,
        batch=websocket.args.get("batch") == "1",
        capacity=settings.send_queue_size,
        session_id=signed_in.session_id,
        backlog=rt.hub.backlog,
        token_rooms=signed_in.token_rooms,
    )
    connection.member = view.is_member
    started = time.monotonic()
    # The session's end closes the socket: a sign-out or password change through the
    # hub (Revoked), one made elsewhere by the periodic check (session_watch.py), its expiry
    # by the hub's once-a-second watch (no timer per connection: memory, issue 25).
    connection.expires_ms = signed_in.expires_ms
    # Registered before the history is read: whatever commits from here on is queued
    # for this connection, and the sender drops what the history already held.
    rt.hub.register(connection)
    try:
        await _still_member(rt, signed_in, connection, view)
        if connection.close_code is None:
            await rt.hub.join(connection)
            await _open(rt, connection, None if after_text is None else int(after_text))
        if connection.close_code is None:
            _forget_headers()
            await _serve(rt, connection, signed_in.role == "admin")
        if connection.close_code is not None:
            await _close(connection.close_code, connection.close_reason)
    finally:
        rt.hub.unregister(connection)
        log.info(
            "websocket closed address=%s user=%s room=%s seconds=%.1f code=%s",
            address,
            user.id,
            room,
            time.monotonic() - started,
            connection.close_code,
        )


def _forget_headers() -> None:
    """Once open, nothing reads the upgrade request's headers again (the Origin, cookie
    and token were checked, the address taken): an idle socket need not keep them —
    Quart's Headers and Hypercorn's list, the parsed cookies and query (werkzeug's cached
    properties: read again, they are parsed again), ~3 KiB a connection
    (docs/performance.md, issue 25)."""
    websocket.headers.clear()
    cached: dict[str, object] = cast(Any, websocket)._get_current_object().__dict__
    for name in ("cookies", "args"):
        cached.pop(name, None)
    raw = websocket.scope.get("headers")
    if isinstance(raw, list):
        raw.clear()


async def _still_member(rt: Runtime, who: SignedIn, connection: Connection, view: RoomView) -> None:
    """Membership once the connection is registered. A private room's, or a name with no
    room yet, is read again: a removal (or the name becoming a private room) committed
    before this read is seen here; one committed after it is published after the
    registration, so its Revoked closes this connection. A public room's existing row
    makes the user a member now; a room still to be made, with its first message
    (`_stored`)."""
    try:
        if view.restricted or not view.exists:
            await check_room(rt.store, who, connection.room)
        elif not view.is_member:
            if await rt.writes.add_member(connection.room, connection.user.id):
                rt.hub.members_added(connection.room, (connection.user.id,), announce=False)
            connection.member = True
    except NotVisible:  # made private meanwhile by someone else: as invisible as any
        connection.abort(CloseCode.INVALID_ROOM, "Invalid room")
    except NotAllowed:
        connection.abort(CloseCode.NOT_MEMBER, NOT_A_MEMBER)
    except Exception:
        log.exception("opening %s failed: the database did not answer", connection.room)
        connection.abort(CloseCode.TRY_AGAIN, "the database is unavailable: try again later")


async def _open(rt: Runtime, connection: Connection, after: int | None) -> None:
    room, limit = connection.room, rt.settings.history_limit
    try:
        await rt.hub.prime(room)  # live messages follow from the room's last committed id
        page = await (rt.store.newest(room, limit) if after is None else rt.store.resume(room, after, limit))
        if rt.reads.is_pending(connection.user.id):  # a read sent a moment ago, on another tab
            await rt.reads.flush()
        last_read_id = await rt.store.last_read_id(room, connection.user.id)
        online = await rt.hub.online(room)
    except Exception:
        log.exception("opening %s failed: the database or broker did not answer", room)
        connection.abort(CloseCode.TRY_AGAIN, "the database is unavailable: try again later")
        return
    if page.messages:
        connection.skip_through = page.messages[-1].id
    elif after is not None and not page.reset:  # a reset starts again from the room's end
        connection.skip_through = after
    await websocket.send(history_frame(room, page.messages, page.has_more, page.reset, last_read_id))
    await websocket.send(list_frame(room, online))


async def _serve(rt: Runtime, connection: Connection, admin: bool) -> None:
    """Read in this task (the handler's), send in a task of its own, until either ends.

    Two tasks a connection, not four: the reader is this task, and the close stops it
    through a callback (Connection.on_close) instead of a task waiting on an Event —
    memory per idle connection (docs/performance.md, issue 25).
    """
    me = asyncio.current_task()
    assert me is not None
    reading = True
    interrupted = False

    def stop(_: object = None) -> None:
        """The connection closed, or the sender ended: stop reading. Not when the reader
        closed it itself: it sees the close code and returns."""
        nonlocal interrupted
        if reading and not interrupted and asyncio.current_task() is not me:
            interrupted = True
            me.cancel()

    connection.unsent = unsent_bytes()  # a slow reader from a stalled one (the hub's watch)
    sender = asyncio.create_task(connection.run_sender(frame_sender()))
    sender.add_done_callback(stop)
    connection.on_close = stop
    try:
        await _read(rt, connection, admin)
    except asyncio.CancelledError:
        # Our own stop is swallowed; a cancellation from outside (the client went, the
        # server stops) is not.
        if not interrupted or me.uncancel() > 0:
            raise
    except Exception:
        reading = False
        log.exception("websocket reader failed")
        connection.abort(CloseCode.SERVER_ERROR, "server error")
    finally:
        reading = False
        connection.on_close = None
        sender.cancel()
    if sender.done() and not sender.cancelled() and sender.exception() is not None:
        log.error("websocket sender failed", exc_info=sender.exception())
        connection.abort(CloseCode.SERVER_ERROR, "server error")


async def _read(rt: Runtime, connection: Connection, admin: bool) -> None:
    settings = rt.settings
    refusals: SlidingWindow | None = None  # made at the first refusal: most never need one
    in_flight = asyncio.Semaphore(IN_FLIGHT_PER_CONNECTION)

    def refuse(code: ErrorCode, message: str, client_id: str | None) -> None:
        nonlocal refusals
        connection.push(error_frame(code, message, client_id))
        rt.metrics.errors.labels(code=code.value).inc()
        if refusals is None:
            refusals = SlidingWindow(flood_limit(settings.rate_limit))
        if not refusals.allow():
            connection.abort(CloseCode.POLICY, "flooding: far past the rate limit")

    intake = rt.hub.backlog.open
    read_wanted = 0  # the highest read asked for while membership is settled
    membership_checked = -MEMBERSHIP_RETRY_SECONDS

    async def read_as_member() -> None:
        await _become_member(rt, connection)
        if connection.member:
            rt.reads.note(connection, read_wanted)

    while connection.close_code is None:
        if not intake.is_set():  # the server is behind its fan-out: read senders later
            await intake.wait()
        received: str | bytes | None = await websocket.receive()
        if connection.close_code is not None:  # closed while we waited (the session ended)
            return
        # Quart hands over `bytes or text`: an empty binary frame arrives as None.
        raw = b"" if received is None else received
        if len(raw) > MAX_FRAME_BYTES:  # Hypercorn enforces it too (hypercorn.toml)
            connection.abort(CloseCode.TOO_BIG, "frame larger than 64 KiB")
            return
        try:
            frame = parse_frame(raw, settings.max_message_chars)
        except FrameError as refused:
            refuse(refused.code, refused.message, refused.client_id)
            continue
        if isinstance(frame, ReadFrame):
            if connection.member:
                rt.reads.note(connection, frame.message_id)
                continue
            # Opened before the room had a message: reading it makes a member, as
            # opening it now would; on a name with no room yet the read is ignored.
            read_wanted = max(read_wanted, frame.message_id)
            if time.monotonic() - membership_checked >= MEMBERSHIP_RETRY_SECONDS:
                membership_checked = time.monotonic()
                joining = asyncio.get_running_loop().create_task(read_as_member())
                _joining.add(joining)
                joining.add_done_callback(_joining.discard)
            continue
        if not isinstance(frame, ChatFrame | EditFrame):
            connection.push(PONG_FRAME)
            continue
        if not rt.rate_limiter.allow(connection.user.id, connection.room):
            limit = settings.rate_limit
            refuse(
                ErrorCode.RATE_LIMITED,
                f"at most {limit.count} messages in {limit.seconds:g} seconds",
                frame.client_id,
            )
            continue
        await in_flight.acquire()
        if isinstance(frame, EditFrame):  # an edit or delete: the writer checks who may (§17)
            kind, text = (DELETE, "") if frame.text is None else (EDIT, frame.text)
            draft = Draft(
                connection.room,
                connection.user,
                text,
                frame.client_id,
                connection.session_id,
                kind=kind,
                target=frame.target,
                admin=admin,
            )
        else:
            draft = Draft(connection.room, connection.user, frame.text, frame.client_id, connection.session_id)
        stored = rt.writer.submit(draft)
        stored.add_done_callback(partial(_stored, rt, connection, in_flight, frame.client_id))


def _stored(
    rt: Runtime,
    connection: Connection,
    in_flight: asyncio.Semaphore,
    client_id: str | None,
    stored: asyncio.Future[Outcome],
) -> None:
    """The writer's answer: a fresh message is already queued for the room (the writer
    hands each batch to Hub.on_commit before it answers); a retried client_id gets the
    stored message back to its sender alone; a failure, an error."""
    in_flight.release()
    if stored.cancelled():
        return
    failure = stored.exception()
    if isinstance(failure, SessionEnded):
        connection.abort(CloseCode.INVALID_USER, "Invalid user")
        return
    if isinstance(failure, NotMember):
        connection.abort(CloseCode.NOT_MEMBER, NOT_A_MEMBER)
        return
    if isinstance(failure, NotFound | Forbidden):
        code = ErrorCode.NOT_FOUND if isinstance(failure, NotFound) else ErrorCode.FORBIDDEN
        rt.metrics.errors.labels(code=code.value).inc()
        connection.push(error_frame(code, str(failure), client_id))
        return
    if failure is not None:
        rt.metrics.errors.labels(code=ErrorCode.UNAVAILABLE.value).inc()
    if isinstance(failure, Unavailable):
        connection.push(error_frame(ErrorCode.UNAVAILABLE, str(failure), client_id))
        return
    if failure is not None:
        log.error("storing a message failed", exc_info=failure)
        connection.push(error_frame(ErrorCode.UNAVAILABLE, "the message was not stored", client_id))
        return
    outcome = stored.result()
    if not connection.member:
        connection.member = True
        joining = asyncio.get_running_loop().create_task(_join_room(rt, connection))
        _joining.add(joining)
        joining.add_done_callback(_joining.discard)
    if not outcome.fresh:
        connection.push(outcome.message.json)  # a frame for its sender alone


async def _become_member(rt: Runtime, connection: Connection) -> None:
    """Make the user a member of the socket's room if it is a public room that exists now."""
    try:
        access = await rt.store.room_access(connection.room, connection.user.id)
        if access is not None and (access.role is not None or access.kind == PUBLIC):
            if access.role is None:
                await rt.writes.add_member(connection.room, connection.user.id)
            connection.member = True
    except Exception:
        log.exception("making %s a member of %s failed", connection.user.id, connection.room)


async def _join_room(rt: Runtime, connection: Connection) -> None:
    try:
        if await rt.writes.add_member(connection.room, connection.user.id):
            rt.hub.members_added(connection.room, (connection.user.id,), announce=False)
    except Exception:
        log.exception("making %s a member of %s failed", connection.user.id, connection.room)


async def _close(code: int, reason: str) -> None:
    try:
        await asyncio.wait_for(websocket.close(code, reason), CLOSE_TIMEOUT)
    except TimeoutError:
        log.warning("closing a websocket with %d timed out", code)
