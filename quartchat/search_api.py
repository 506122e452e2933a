"""GET /api/search (docs/protocol.md §16): the signed-in user's search over the rooms it
may read, newest first, `before` paging back."""

from __future__ import annotations

import re
import unicodedata

from quart import Blueprint, Response, jsonify, request

from .access import readable_rooms
from .accounts import name_key
from .api import ApiError, api_error, message_page, signed_in_as
from .rooms import valid_room
from .runtime import runtime
from .search import DEFAULT_LIMIT, MAX_LIMIT, BadQuery, parse, search_query

bp = Blueprint("search", __name__)
bp.register_error_handler(ApiError, api_error)

_ID = re.compile(r"\d{1,18}")
_LIMIT = re.compile(r"\d{1,3}")
MAX_NAME_CHARS = 64


@bp.get("/api/search")
async def search() -> Response:
    chat = runtime()
    who = await signed_in_as()
    args = request.args
    try:
        terms = parse(args.get("q", ""))
    except BadQuery as bad:
        raise ApiError(422, str(bad)) from None
    room, user = args.get("room"), args.get("user")
    if room is not None and not valid_room(room):
        raise ApiError(422, "room: 1-64 of a-z, 0-9 and '-'")
    if user is not None and not 1 <= len(user) <= MAX_NAME_CHARS:
        raise ApiError(422, f"user: a name of 1-{MAX_NAME_CHARS} characters")
    before = _number(args.get("before"), "before", _ID)
    limit = _number(args.get("limit"), "limit", _LIMIT)
    if limit is not None and not 1 <= limit <= MAX_LIMIT:
        raise ApiError(422, f"limit must be a whole number from 1 to {MAX_LIMIT}")
    limit = limit or DEFAULT_LIMIT
    if not chat.search_limiter.allow(who.user.id, ""):
        response = jsonify(error="too many searches: wait a moment")
        response.status_code = 429
        response.headers["Retry-After"] = str(max(1, round(chat.settings.search_limit.seconds)))
        return response
    query = search_query(
        terms,
        lambda column: readable_rooms(who, column),
        sqlite=chat.database.is_sqlite,
        room=room,
        user_name_keys=_name_keys(user) if user is not None else None,
        before=before,
        limit=limit,
    )
    return jsonify(message_page(await chat.store.search(query, limit)))


def _name_keys(name: str) -> set[str]:
    """The keys an author's name may have: as typed (an account kept as it was made) and
    folded with NFKC as sign-in folds new names (quartchat/accounts.py)."""
    typed = name.strip(" ")
    return {name_key(typed), name_key(unicodedata.normalize("NFKC", typed))}


def _number(value: str | None, name: str, shape: re.Pattern[str]) -> int | None:
    if value is None:
        return None
    if not shape.fullmatch(value):
        raise ApiError(422, f"{name} must be a whole number")
    return int(value)
