"""The JSON API (docs/protocol.md §12): sessions, rooms, history pages, online users, health."""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import re
import shutil
from collections.abc import AsyncIterator
from typing import Any, ParamSpec

import orjson
from quart import Blueprint, Response, jsonify, request

from .access import NotAllowed, NotVisible, check_room, is_admin
from .accounts import CredentialsError, authenticate
from .export import ExportError, ExportQuery, formatter, parse_time, render
from .export import filename as export_filename
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .runtime import runtime
from .store import Page, SignedIn
from .web_errors import headers_of, status_of
from .web_session import current_session, end_session, origin_allowed, start_session

log = logging.getLogger(__name__)
bp = Blueprint("api", __name__)
P = ParamSpec("P")

DEFAULT_PAGE, MAX_PAGE = 50, 200
_ID = re.compile(r"\d{1,18}")


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error(status: int, message: str) -> Response:
    response = jsonify(error=message)
    response.status_code = status
    return response


@bp.app_errorhandler(ApiError)
async def api_error(exc: ApiError) -> Response:
    return error(exc.status, exc.message)


# The same bytes for every room an outsider may not see, whatever it holds
# (docs/protocol.md §11): never the name, never a hint.
NOT_VISIBLE_MESSAGE = "no such room"


@bp.app_errorhandler(NotVisible)
async def not_visible(_: NotVisible) -> Response:
    return error(404, NOT_VISIBLE_MESSAGE)


@bp.app_errorhandler(NotAllowed)
async def not_allowed(_: NotAllowed) -> Response:
    return error(403, "not allowed in this room")


async def signed_in_as() -> SignedIn:
    """The request's live session (cookie or bot token); 401 without one."""
    who = await current_session(runtime().store)
    if who is None:
        raise ApiError(401, "sign in first: POST /api/session")
    return who


async def readable_room(room: str) -> str:
    """The room, if the signed-in user may read it (quartchat/access.py); 401/403/404 otherwise."""
    await check_room(runtime().store, await signed_in_as(), room)
    return room


async def check_json_post() -> None:
    """JSON posts need the JSON content type (no cross-site form can send it) and,
    from a browser, our own Origin."""
    allowed = origin_allowed(request.headers.get("Origin"), runtime().settings.allowed_origins)
    json_type = request.method != "POST" or request.mimetype == "application/json"
    if not (allowed and json_type):
        # Read the (size-capped) body first: refusing with it unread makes Hypercorn
        # drop the keep-alive connection under a client that is about to reuse it.
        await request.get_data()
        if not allowed:
            raise ApiError(403, "cross-site requests are refused")
        raise ApiError(415, "send JSON with Content-Type: application/json")


async def json_object() -> dict[str, Any] | None:
    """The request's JSON object, or None for anything else. orjson first: it refuses
    nesting past 1,024 levels, where the json module's recursion would end in a 500.
    What orjson refuses that json takes (an escaped lone surrogate: JavaScript's
    JSON.stringify writes one) is read by json, so it gets the answer its field would."""
    raw = await request.get_data()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            return None
    return body if isinstance(body, dict) else None


def message_page(page: Page) -> dict[str, Any]:
    return {"messages": [m.to_dict() for m in page.messages], "has_more": page.has_more}


@bp.post("/api/session")
async def sign_in() -> Response:
    await check_json_post()
    body = await json_object()
    if body is None:
        raise ApiError(422, 'send {"name": …, "password": …}')
    rt = runtime()
    try:
        user = await authenticate(
            rt.store,
            rt.writes,
            rt.passwords,
            body.get("name"),
            body.get("password"),
            rt.throttle,
            request.remote_addr or "",
            rt.signups,
        )
        await start_session(rt.writes, user)
    except CredentialsError as refused:
        response = error(status_of(refused), refused.message)
        response.headers.update(headers_of(refused))
        return response
    return jsonify(user=user.to_dict())


@bp.delete("/api/session")
async def sign_out() -> Response:
    await check_json_post()
    rt = runtime()
    await end_session(rt.writes, rt.hub)
    return Response(status=204)


@bp.get("/api/rooms")
async def rooms() -> Response:
    """Public rooms and the user's private rooms and DMs (docs/protocol.md §11)."""
    from .rooms_api import room_json, rooms_of

    who = await signed_in_as()
    rt = runtime()
    if rt.reads.is_pending(who.user.id):  # a read sent a moment ago counts already
        await rt.reads.flush()
    summaries = await rooms_of(who)
    return jsonify(rooms=[room_json(s, reads=True) for s in summaries])


@bp.get("/api/rooms/<room>/messages")
async def messages(room: str) -> Response:
    room = await readable_room(room)
    args = request.args
    before, after = _id_arg(args.get("before"), "before"), _id_arg(args.get("after"), "after")
    around = _id_arg(args.get("around"), "around")
    if sum(x is not None for x in (before, after, around)) > 1:
        raise ApiError(422, "give one of before, after and around")
    limit_text = args.get("limit")
    if limit_text is None:
        limit = DEFAULT_PAGE
    elif re.fullmatch(r"\d{1,3}", limit_text) and 1 <= int(limit_text) <= MAX_PAGE:
        limit = int(limit_text)
    else:
        raise ApiError(422, f"limit must be a whole number from 1 to {MAX_PAGE}")
    store = runtime().store
    if around is not None:
        return await _around(room, around, limit)
    if before is not None:
        page = await store.before(room, before, limit)
    elif after is not None:
        page = await store.after(room, after, limit)
    else:
        page = await store.newest(room, limit)
    return jsonify(message_page(page))


async def _around(room: str, message_id: int, limit: int) -> Response:
    """docs/protocol.md §16: the message in its context, to open a search's hit."""
    found = await runtime().store.around(room, message_id, limit)
    if found is None:
        raise ApiError(404, "no such message in this room")
    return jsonify(
        messages=[m.to_dict() for m in found.messages],
        has_more_before=found.has_more_before,
        has_more_after=found.has_more_after,
    )


@bp.get("/api/rooms/<room>/users")
async def users(room: str) -> Response:
    room = await readable_room(room)
    return jsonify(users=[u.to_dict() for u in await runtime().hub.online(room)])


@bp.get("/metrics")
async def metrics() -> Response:
    """Prometheus text format, for a scraper on this host (the client's address as the
    trusted proxies report it) or one that sends `Authorization: Bearer <token>`."""
    chat = runtime()
    if not (_from_loopback(request.remote_addr) or _bearer_ok(chat.settings.metrics_token)):
        raise ApiError(403, "metrics are served to this host only, or with QUARTCHAT_METRICS_TOKEN")
    return Response(chat.metrics.render(), content_type=METRICS_CONTENT_TYPE)


def _from_loopback(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _bearer_ok(token: str | None) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return (
        token is not None
        and scheme.lower() == "bearer"
        and hmac.compare_digest(given.strip().encode("utf-8", "replace"), token.encode("utf-8", "replace"))
    )


MIN_FREE_DISK_BYTES = 1024 * 1024


@bp.get("/healthz")
async def healthz() -> Response:
    """200 while the database can be read and written; 503 otherwise."""
    chat = runtime()
    database_file = chat.settings.sqlite_path
    if database_file is not None and shutil.disk_usage(database_file.parent).free < MIN_FREE_DISK_BYTES:
        # A full disk still lets SQLite take its lock and even reuse WAL space for a
        # tiny write, while a real message fails: say so before it does.
        log.warning("health check: less than 1 MiB free beside %s", database_file)
        return error(503, "the database's disk is full")
    try:
        await chat.database.ping()
        if chat.writer.failing:  # the last batch failed: is the write lock back?
            await chat.writer.probe()
    except Exception as exc:  # any failure to answer is "not ready"
        log.warning("health check: the database does not answer: %s", exc)
        return error(503, "the database does not answer")
    return jsonify(status="ok")


def _id_arg(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    if not _ID.fullmatch(value):
        raise ApiError(422, f"{name} must be a message id (a whole number)")
    return int(value)


@bp.get("/api/rooms/<room>/export")
async def export_room(room: str) -> Response:
    return await _export(await readable_room(room))


@bp.get("/api/export")
async def export_all() -> Response:
    """Every room, private ones included: the operator's compliance export, admins only."""
    who = await signed_in_as()
    if not is_admin(who) or who.token_rooms is not None:
        raise ApiError(403, "the export of every room is for admins")
    return await _export(None)


async def _export(room: str | None) -> Response:
    args = request.args
    with_edits = args.get("include_edits") not in (None, "", "0")
    if with_edits:
        # Texts their authors replaced: the operator's to see, not the room's (§17).
        who = await signed_in_as()
        if not is_admin(who) or who.token_rooms is not None:
            raise ApiError(403, "include_edits is for admins")
    try:
        query = ExportQuery(
            room=room,
            since_ms=parse_time(args.get("since"), "since"),
            until_ms=parse_time(args.get("until"), "until"),
            with_edits=with_edits,
        )
        output = formatter(args.get("format"), room)
    except ExportError as bad:
        raise ApiError(422, str(bad)) from None

    chat = runtime()  # the body is streamed outside the app context
    engine = chat.database.reader

    async def encoded() -> AsyncIterator[bytes]:
        async for piece in render(engine, query, output):
            if piece:
                yield piece.encode("utf-8")

    response = Response(chat.downloads.tracked(encoded()), content_type=output.media_type)
    response.headers["Content-Disposition"] = f'attachment; filename="{export_filename(room, output.extension)}"'
    response.headers["X-Accel-Buffering"] = "no"  # nginx: pass it on as it comes
    response.timeout = None  # a large history takes longer than Quart's default 60 s
    return response
