"""Accounts, sessions, CSRF and Origin checks (docs/protocol.md §10).

The session cookie is Quart's signed cookie holding the user id, a server-side session
id and the CSRF token. The session id names a row in `sessions`: signing out deletes
it, so a copied cookie stops working too, and the session's open sockets close (4001).
"""

from __future__ import annotations

import hmac
import re
import secrets
from datetime import timedelta
from typing import Any

from quart import Quart, g, has_request_context, has_websocket_context, request, session, websocket
from quart.sessions import SecureCookieSessionInterface

from . import tokens
from .accounts import AccountDisabled
from .broker import Revoked
from .hub import Hub
from .protocol import UserRef, now_ms
from .store import SignedIn, Store
from .writes import Writes


async def start_session(writes: Writes, user: UserRef) -> None:
    """A fresh session (new id, new CSRF token) for `user`: no fixation. AccountDisabled
    if the user was disabled since its password was checked."""
    session_id = secrets.token_urlsafe(32)
    if not await writes.create_session(session_id, user.id):
        raise AccountDisabled("this account is disabled: ask an operator")
    session.clear()
    session.permanent = True
    session.update(uid=user.id, sid=session_id, csrf=secrets.token_urlsafe(32))
    g.signed_in = SignedIn(user, session_id, now_ms() + writes.session_lifetime_ms)
    g.user = user


async def end_session(writes: Writes, hub: Hub) -> None:
    """Sign out: the session's row goes, then its sockets, in every process."""
    session_id = session.get("sid")
    if isinstance(session_id, str):
        await writes.delete_session(session_id)
        hub.revoke(Revoked(session_ids=(session_id,)))
    session.clear()
    g.signed_in = g.user = None


async def current_session(store: Store) -> SignedIn | None:
    """The live session of this request, or None: no cookie, a forged one, or an
    ended or expired session. A request with `Authorization: Bearer` is signed in by
    that bot token alone (quartchat/tokens.py), whatever cookie it carries."""
    if "signed_in" in g:
        found: SignedIn | None = g.signed_in
        return found
    user_id, session_id = session.get("uid"), session.get("sid")
    signed_in = None
    token = bearer_token()
    if token is not None:
        signed_in = await tokens.verify(store, token)
    elif isinstance(user_id, str) and isinstance(session_id, str):
        signed_in = await store.session(session_id, user_id)
    g.signed_in = signed_in
    g.user = signed_in.user if signed_in is not None else None
    return signed_in


def bearer_token() -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None without one.

    No CSRF token and no Origin check are asked of such a request: a browser never adds
    this header by itself (it is not ambient, unlike a cookie), so a page on another
    site cannot make a request carry it (docs/security.md)."""
    scope_request: Any = websocket if has_websocket_context() else request
    header: str | None = scope_request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip()


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
    """Marks the cookie `Secure` when the request came over HTTPS (docs/protocol.md §10)."""

    def get_cookie_secure(self, app: Quart) -> bool:
        return has_request_context() and request.scheme == "https"


def configure_sessions(app: Quart, secret_key: str, lifetime: timedelta) -> None:
    app.secret_key = secret_key
    app.session_interface = ChatSessionInterface()
    app.config.update(
        SESSION_COOKIE_NAME="quartchat_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=lifetime,
    )


def safe_next(target: object) -> str:
    """`next` if it is a path inside this site, else `/`."""
    if not isinstance(target, str) or not target.startswith("/") or target.startswith("//"):
        return "/"
    if "\\" in target or re.search(r"[\x00-\x20\x7f]", target):
        return "/"
    return target
