"""HTML pages (docs/protocol.md §12): the lobby, rooms, signing in and out."""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit

from quart import Blueprint, abort, flash, redirect, render_template, request, url_for
from werkzeug.wrappers.response import Response

from .accounts import NAME_MAX_CHARS, PASSWORD_MIN_CHARS, CredentialsError, authenticate, clean_name, name_key
from .rooms import DEFAULT_ROOM, suggest_room, valid_room
from .runtime import runtime
from .web_errors import headers_of, status_of
from .web_session import (
    csrf_ok,
    csrf_token,
    current_user,
    end_session,
    origin_allowed,
    safe_next,
    start_session,
)

bp = Blueprint("pages", __name__)


def _to_signin() -> Response:
    here = request.path + (f"?{request.query_string.decode()}" if request.query_string else "")
    return redirect("/signin?" + urlencode({"next": here}), 303)


async def _chat_page(room: str) -> Response | str:
    user = await current_user(runtime().store)
    if user is None:
        return _to_signin()
    return await render_template(
        "chat.html",
        room=room,
        user=user,
        csrf_token=csrf_token(),
        max_chars=runtime().settings.max_message_chars,
        # Quart renders WebSocket routes as absolute ws:// URLs; the page needs only the
        # path (with any prefix) and picks ws:// or wss:// from its own address.
        ws_path=urlsplit(url_for("ws.chat_socket", room=room)).path,
    )


@bp.get("/")
async def lobby() -> Response | str:
    return await _chat_page(DEFAULT_ROOM)


@bp.get("/r/<room>")
async def room(room: str) -> Response | str | tuple[str, int]:
    if not valid_room(room):
        # Not a bare 404: say what a room name may be, and offer the nearest valid one.
        page = await render_template("bad_room.html", name=room, suggestion=suggest_room(room))
        return page, 404
    return await _chat_page(room)


@bp.get("/signin")
async def signin_form() -> str:
    return await render_template(
        "signin.html", next=safe_next(request.args.get("next")), csrf_token=csrf_token(), problem=None, **_name_rules()
    )


def _form_allowed(token: object) -> bool:
    """A form post must carry our CSRF token and, from a browser, our Origin."""
    return csrf_ok(token) and origin_allowed(request.headers.get("Origin"), runtime().settings.allowed_origins)


@bp.post("/signin")
async def signin() -> Response | tuple[str, int] | tuple[str, int, dict[str, str]]:
    form = await request.form
    next_url = safe_next(form.get("next"))
    if not _form_allowed(form.get("csrf_token")):
        problem = "This form has expired or came from another site. Please sign in again."
        return await _signin_again(next_url, problem, form.get("name", ""), 403)
    rt = runtime()
    try:
        # A free name makes a new account (scripts and the API rely on it); the page
        # after says so, so that a typo in a name does not go unnoticed.
        free = await rt.store.account_by_name_key(name_key(clean_name(form.get("name")))) is None
        user = await authenticate(
            rt.store,
            rt.writes,
            rt.passwords,
            form.get("name"),
            form.get("password"),
            rt.throttle,
            request.remote_addr or "",
            rt.signups,
        )
    except CredentialsError as refused:
        page, status = await _signin_again(next_url, refused.message, form.get("name", ""), status_of(refused))
        return page, status, headers_of(refused)
    await start_session(rt.writes, user)
    if free:
        await flash(user.name, "new_account")
    return redirect(next_url, 303)


async def _signin_again(next_url: str, problem: str, name: str, status: int) -> tuple[str, int]:
    page = await render_template(
        "signin.html", next=next_url, csrf_token=csrf_token(), problem=problem, name=name, **_name_rules()
    )
    return page, status


def _name_rules() -> dict[str, int]:
    return {"name_max": NAME_MAX_CHARS, "password_min": PASSWORD_MIN_CHARS}


@bp.post("/signout")
async def signout() -> Response:
    form = await request.form
    if not _form_allowed(form.get("csrf_token")):
        abort(403)
    rt = runtime()
    await end_session(rt.writes, rt.hub)
    return redirect("/signin", 303)
