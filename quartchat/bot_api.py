"""POST /api/rooms/<room>/messages (docs/protocol.md §11, "Bot tokens"): a chat message
over HTTP, for scripts and CI jobs.

It takes the WebSocket's path on purpose: the same access check (quartchat/access.py),
the same text rules (protocol.parse_chat), the same per-user-and-room rate limit, the
same writer (stored, with the session or token and the membership checked in the
transaction, before anything is broadcast), the same client_id idempotency. A retried
client_id answers 200 with the message stored the first time; a new message, 201.
"""

from __future__ import annotations

import math
from typing import Any

import orjson
from quart import Blueprint, Response, jsonify, request

from .access import NotVisible, check_room
from .api import ApiError, check_json_post
from .protocol import ErrorCode, FrameError, parse_chat
from .runtime import runtime
from .web_session import current_session
from .writer import Draft, NotMember, SessionEnded, Unavailable

bp = Blueprint("bot_api", __name__)


@bp.post("/api/rooms/<room>/messages")
async def post_message(room: str) -> Response:
    rt = runtime()
    await request.get_data()  # read before any refusal: the client may reuse the connection
    who = await current_session(rt.store)
    if who is None:
        raise ApiError(401, "sign in first, or send Authorization: Bearer <token>")
    if who.token_id is None:
        await check_json_post()  # a cookie is ambient: the cross-site checks apply
    view = await check_room(rt.store, who, room)  # 404 unseen, 403 a token's other rooms
    frame = parse_chat(await _json_object(), rt.settings.max_message_chars)
    if not rt.rate_limiter.allow(who.user.id, room):
        limit = rt.settings.rate_limit
        response = _refusal(429, "rate_limited", f"at most {limit.count} messages in {limit.seconds:g} seconds")
        response.headers["Retry-After"] = str(max(1, math.ceil(rt.rate_limiter.retry_after(who.user.id, room))))
        return response
    try:
        outcome = await rt.writer.submit(Draft(room, who.user, frame.text, frame.client_id, who.session_id))
    except SessionEnded:
        raise ApiError(401, "sign in first, or send Authorization: Bearer <token>") from None
    except NotMember:  # removed between the check and the commit: as unseen as before
        raise NotVisible(room) from None
    except Unavailable:
        raise ApiError(503, "the message was not stored: try again later") from None
    if not view.is_member and not view.restricted:  # posting in a public room joins it, as on the socket
        await rt.writes.add_member(room, who.user.id)
    response = jsonify(outcome.message.to_dict())
    response.status_code = 201 if outcome.fresh else 200
    return response


async def _json_object() -> dict[str, Any]:
    """The body as a JSON object, parsed as the WebSocket parses a frame (orjson: invalid
    UTF-8 and lone surrogates are not JSON); a FrameError (422) if it is none."""
    try:
        body = orjson.loads(await request.get_data())
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        raise FrameError(ErrorCode.BAD_REQUEST, 'send a JSON object: {"data": "…", "client_id": "…"}')
    return body


@bp.errorhandler(FrameError)
async def refused_text(refused: FrameError) -> Response:
    """Text the WebSocket would refuse with an `error` frame: 422, with the same code."""
    return _refusal(422, refused.code.value, refused.message)


def _refusal(status: int, code: str, message: str) -> Response:
    response = jsonify(error=message, code=code)
    response.status_code = status
    return response
