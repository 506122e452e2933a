"""Accounts, sessions, CSRF and Origin checks (SPEC §4).

The session cookie is Quart's signed cookie holding the user id, a server-side session
id and the CSRF token. The session id names a row in `sessions`: signing out deletes
it, so a copied cookie stops working too.
"""

from __future__ import annotations

import hmac
import re
import secrets
from datetime import timedelta
from typing import Any

from quart import Quart, g, has_request_context, has_websocket_context, request, session, websocket
from quart.sessions import SecureCookieSessionInterface

from .protocol import UserRef
from .store import Store

SESSION_LIFETIME = timedelta(days=30)


async def start_session(store: Store, user: UserRef) -> None:
    """A fresh session (new id, new CSRF token) for `user`: no fixation."""
    session_id = secrets.token_urlsafe(32)
    await store.create_session(session_id, user.id)
    session.clear()
    session.permanent = True
    session.update(uid=user.id, sid=session_id, csrf=secrets.token_urlsafe(32))
    g.user = user


async def end_session(store: Store) -> None:
    session_id = session.get("sid")
    if isinstance(session_id, str):
        await store.delete_session(session_id)
    session.clear()
    g.user = None


async def current_user(store: Store) -> UserRef | None:
    """The signed-in user, or None: no cookie, a forged one, or an ended session."""
    if "user" in g:
        user: UserRef | None = g.user
        return user
    user_id, session_id = session.get("uid"), session.get("sid")
    user = None
    if isinstance(user_id, str) and isinstance(session_id, str):
        max_age_ms = int(SESSION_LIFETIME.total_seconds() * 1000)
        user = await store.user_by_session(session_id, user_id, max_age_ms)
    g.user = user
    return user


def csrf_token() -> str:
    token = session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


def csrf_ok(submitted: object) -> bool:
    expected = session.get("csrf")
    return (
        isinstance(submitted, str)
        and isinstance(expected, str)
        and hmac.compare_digest(submitted.encode(), expected.encode())
    )


def own_origin() -> str:
    """This site's origin as the browser sees it (through trusted proxies)."""
    scope_request: Any = websocket if has_websocket_context() else request
    secure = scope_request.scheme in ("https", "wss")
    return f"{'https' if secure else 'http'}://{scope_request.host}".lower()


def origin_allowed(origin: str | None, extra: tuple[str, ...]) -> bool:
    """No Origin (not a browser) passes; otherwise it must be ours or listed."""
    if origin is None:
        return True
    origin = origin.strip().rstrip("/").lower()
    return origin == own_origin() or origin in extra


class ChatSessionInterface(SecureCookieSessionInterface):
    """Marks the cookie `Secure` when the request came over HTTPS (SPEC §4)."""

    def get_cookie_secure(self, app: Quart) -> bool:
        return has_request_context() and request.scheme == "https"


def configure_sessions(app: Quart, secret_key: str) -> None:
    app.secret_key = secret_key
    app.session_interface = ChatSessionInterface()
    app.config.update(
        SESSION_COOKIE_NAME="quartchat_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME,
    )


def safe_next(target: object) -> str:
    """`next` if it is a path inside this site, else `/`."""
    if not isinstance(target, str) or not target.startswith("/") or target.startswith("//"):
        return "/"
    if "\\" in target or re.search(r"[\x00-\x20\x7f]", target):
        return "/"
    return target
