"""Accounts, sessions, CSRF and Origin checks (SPEC §4).

The session cookie is Quart's signed cookie holding the user id, a server-side session
id and the CSRF token. The session id names a row in `sessions`: signing out deletes
it, so a copied cookie stops working too.
"""

from __future__ import annotations

import asyncio
import hmac
import re
import secrets
import unicodedata
import uuid
from datetime import timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from quart import Quart, g, has_request_context, has_websocket_context, request, session, websocket
from quart.sessions import SecureCookieSessionInterface
from sqlalchemy.exc import IntegrityError

from .protocol import UserRef
from .store import Store

SESSION_LIFETIME = timedelta(days=30)
NAME_MAX_CHARS = 32
PASSWORD_MIN_CHARS, PASSWORD_MAX_CHARS = 8, 128
_NAME_PUNCTUATION = frozenset("_-. ")


class CredentialsError(Exception):
    """Sign-in refused; `status` is 422 (invalid input) or 401 (wrong password)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def clean_name(raw: object) -> str:
    """The name as stored: trimmed, NFC; CredentialsError(422) if it is not allowed."""
    if not isinstance(raw, str):
        raise CredentialsError(422, "the name must be a string")
    name = unicodedata.normalize("NFC", raw.strip(" "))
    if not 1 <= len(name) <= NAME_MAX_CHARS:
        raise CredentialsError(422, f"a name has 1 to {NAME_MAX_CHARS} characters")
    for index, char in enumerate(name):
        category = unicodedata.category(char)
        allowed = (
            category[0] == "L" or category == "Nd" or (category[0] == "M" and index > 0) or char in _NAME_PUNCTUATION
        )
        if not allowed:
            raise CredentialsError(422, "a name may hold letters, digits, spaces, '_', '-' and '.' only")
    return name


def name_key(name: str) -> str:
    """What makes two names the same: NFC, then case-folded (then NFC again)."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).casefold())


def check_password(raw: object) -> str:
    if not isinstance(raw, str):
        raise CredentialsError(422, "the password must be a string")
    if not PASSWORD_MIN_CHARS <= len(raw) <= PASSWORD_MAX_CHARS:
        raise CredentialsError(422, f"a password has {PASSWORD_MIN_CHARS} to {PASSWORD_MAX_CHARS} characters")
    return raw


class Passwords:
    """argon2id hashes, computed in threads, at most `parallel` at once (64 MiB each)."""

    def __init__(self, parallel: int = 2) -> None:
        self._hasher = PasswordHasher()
        self._slots = asyncio.Semaphore(parallel)

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password_hash: str, password: str) -> bool:
        async with self._slots:
            try:
                return await asyncio.to_thread(self._hasher.verify, password_hash, password)
            except (VerificationError, InvalidHashError):
                return False

    def hash_sync(self, password: str) -> str:
        return self._hasher.hash(password)


async def authenticate(store: Store, passwords: Passwords, raw_name: object, raw_password: object) -> UserRef:
    """The user with this name and password; the first sign-in with a free name creates it."""
    name = clean_name(raw_name)
    password = check_password(raw_password)
    key = name_key(name)
    account = await store.account_by_name_key(key)
    if account is None:
        user_id = str(uuid.uuid4())
        try:
            await store.create_account(user_id, name, key, await passwords.hash(password))
            return UserRef(user_id, name)
        except IntegrityError:  # someone took the name meanwhile
            account = await store.account_by_name_key(key)
            if account is None:
                raise
    if account.password_hash is None:
        raise CredentialsError(401, "this name is reserved: an operator must set its password")
    if not await passwords.verify(account.password_hash, password):
        raise CredentialsError(401, "wrong name or password")
    return UserRef(account.id, account.name)


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
