"""GET /api/search (docs/protocol.md §16): the signed-in user's search over the rooms it
may read, newest first, `before` paging back."""

from __future__ import annotations

import asyncio
import re
import unicodedata

from quart import Blueprint, Response, jsonify, request

from .access import NotAllowed, NotVisible, check_room, readable_rooms
from .accounts import name_key
from .api import ApiError, api_error, message_page, signed_in_as
from .rooms import valid_room
from .runtime import runtime
from .search import DEFAULT_LIMIT, MAX_LIMIT, TOO_BROAD, BadQuery, check_breadth, parse, search_query
from .store import Page, TooBroad

bp = Blueprint("search", __name__)
bp.register_error_handler(ApiError, api_error)

_ID = re.compile(r"\d{1,18}")
_LIMIT = re.compile(r"\d{1,3}")
MAX_NAME_CHARS = 64
# Searches share the small reader pool (5 connections on SQLite) with every ordinary
# request: at most SEARCH_SLOTS (quartchat/search.py) run at once in a process, a search
# that cannot start within SEARCH_WAIT_S answers 503, and each stops at
# QUARTCHAT_SEARCH_BUDGET_MS.
SEARCH_WAIT_S = 0.5


@bp.get("/api/search")
async def search() -> Response:
    chat = runtime()
    who = await signed_in_as()
    args = request.args
    try:
        terms = parse(args.get("q", ""))
        check_breadth(terms)
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
    nothing = jsonify(message_page(Page([], has_more=False)))
    if room is not None:
        # A room it may not read answers at once, as a readable room without a hit does:
        # its messages are never visited, so neither the answer nor its time tells of them.
        try:
            view = await check_room(chat.store, who, room)
        except (NotVisible, NotAllowed):
            return nothing
        if not view.exists:
            return nothing
    query = search_query(
        terms,
        lambda column: readable_rooms(who, column),
        sqlite=chat.database.is_sqlite,
        room=room,
        user_name_keys=_name_keys(user) if user is not None else None,
        before=before,
        limit=limit,
    )
    slots = chat.search_slots
    try:
        await asyncio.wait_for(slots.acquire(), SEARCH_WAIT_S)
    except TimeoutError:
        response = jsonify(error="the server is busy with other searches: try again in a moment")
        response.status_code = 503
        response.headers["Retry-After"] = "1"
        return response
    try:
        page = await chat.store.search(query, limit, chat.settings.search_budget_ms / 1000)
    except TooBroad:
        raise ApiError(422, TOO_BROAD) from None
    finally:
        slots.release()
    return jsonify(message_page(page))


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
