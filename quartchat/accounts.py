"""Accounts: names, passwords and signing in (SPEC §4). No web framework here: the
command line uses it too."""

from __future__ import annotations

import asyncio
import unicodedata
import uuid

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.exc import IntegrityError

from .protocol import UserRef
from .store import Store
from .throttle import SignInThrottle

NAME_MAX_CHARS = 32
PASSWORD_MIN_CHARS, PASSWORD_MAX_CHARS = 8, 128
_NAME_PUNCTUATION = frozenset("_-. ")


class CredentialsError(Exception):
    """Sign-in refused; `status` is 422 (invalid input), 401 (wrong password) or 429
    (too many failures: try again after `retry_after` seconds)."""

    def __init__(self, status: int, message: str, retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


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
    try:  # JSON can carry a lone surrogate ("\ud800"), which no hash can take
        raw.encode("utf-8")
    except UnicodeEncodeError:
        raise CredentialsError(422, "the password is not valid Unicode text") from None
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


async def authenticate(
    store: Store,
    passwords: Passwords,
    raw_name: object,
    raw_password: object,
    throttle: SignInThrottle | None = None,
    address: str = "",
) -> UserRef:
    """The user with this name and password; the first sign-in with a free name creates it.

    With a throttle, repeated failures for a name or from an address must wait.
    """
    name = clean_name(raw_name)
    password = check_password(raw_password)
    key = name_key(name)
    if throttle is not None:
        wait = throttle.retry_after(key, address)
        if wait > 0:
            raise CredentialsError(429, f"too many failed sign-ins: try again in {wait:.0f} s", wait)
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
        if throttle is not None:
            throttle.failed(key, address)
        raise CredentialsError(401, "wrong name or password")
    if throttle is not None:
        throttle.succeeded(key)
    return UserRef(account.id, account.name)
