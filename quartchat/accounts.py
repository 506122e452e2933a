"""Accounts: names, passwords and signing in (docs/protocol.md §10). No web framework here: the
command line uses it too."""

from __future__ import annotations

import asyncio
import unicodedata
import uuid

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from icu import SpoofChecker, URestrictionLevel, USpoofChecks  # type: ignore[import-untyped]  # PyICU has no type hints
from sqlalchemy.exc import IntegrityError

from .invisible import is_invisible
from .names import name_key as name_key  # re-exported: callers ask accounts for it
from .protocol import UserRef
from .rate_limits import SignInThrottle, SignUpLimit
from .store import Account, Store
from .writes import ROLES, Writes

NAME_MAX_CHARS = 32
PASSWORD_MIN_CHARS, PASSWORD_MAX_CHARS = 8, 128
_NAME_PUNCTUATION = frozenset("_-. ")


class CredentialsError(Exception):
    """A name, a password or a sign-in refused; the message can be shown as it is."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidName(CredentialsError):
    """A name the rules do not allow."""


class NameLooksTaken(CredentialsError):
    """A new name that looks like an existing account's (the same TR39 skeleton)."""


class InvalidPassword(CredentialsError):
    """A password too short, too long, or not text."""


class NameReserved(CredentialsError):
    """An account without a password (imported): an operator must set one."""


class WrongPassword(CredentialsError):
    """No account has this name and password."""


class AccountDisabled(CredentialsError):
    """The right password for a disabled account (`quartchat user disable`)."""


class NoSuchAccount(CredentialsError):
    """An operator named an account that does not exist."""


class InvalidRole(CredentialsError):
    """A role that is neither `admin` nor `member`."""


class TooManyAttempts(CredentialsError):
    """Too many failed sign-ins, or new accounts, lately: try again after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def clean_name(raw: object) -> str:
    """A new account's name: trimmed and folded with NFKC (fullwidth, ligature and other
    compatibility forms become the plain letters they show); InvalidName if it
    is not allowed. Accounts made before the fold keep their names (find_account)."""
    if not isinstance(raw, str):
        raise InvalidName("the name must be a string")
    name = stored_name(unicodedata.normalize("NFKC", raw))
    if any(is_invisible(char) for char in name if char != " "):
        raise InvalidName("a name may not hold characters that show nothing")
    return name


def stored_name(raw: object) -> str:
    """A name as the rules before the NFKC fold allowed it (imports keep names so):
    trimmed, NFC; InvalidName if it is not allowed."""
    if not isinstance(raw, str):
        raise InvalidName("the name must be a string")
    name = unicodedata.normalize("NFC", raw.strip(" "))
    if not 1 <= len(name) <= NAME_MAX_CHARS:
        raise InvalidName(f"a name has 1 to {NAME_MAX_CHARS} characters")
    for index, char in enumerate(name):
        category = unicodedata.category(char)
        allowed = (
            category[0] == "L" or category == "Nd" or (category[0] == "M" and index > 0) or char in _NAME_PUNCTUATION
        )
        if not allowed:
            raise InvalidName("a name may hold letters, digits, spaces, '_', '-' and '.' only")
    return name


async def find_account(store: Store, raw_name: object) -> tuple[str, Account | None]:
    """(the name to use, its account or None). A name typed exactly as an existing
    account's (NFC, any case) finds it, whatever the rules were when it was made;
    otherwise the name is cleaned for a new account (clean_name) and looked up so."""
    try:
        as_stored = stored_name(raw_name)
    except InvalidName:
        as_stored = None
    if as_stored is not None:
        account = await store.account_by_name_key(name_key(as_stored))
        if account is not None:
            return as_stored, account
    name = clean_name(raw_name)
    if name == as_stored:  # nothing folded: the lookup above was this one
        return name, None
    return name, await store.account_by_name_key(name_key(name))


def account_name(raw: object) -> str:
    """The name `raw` stands for when an operator sets a password: an existing account's
    name as it was made (stored_name), else a new account's (clean_name)."""
    try:
        return stored_name(raw)
    except InvalidName:
        return clean_name(raw)


async def set_password(
    store: Store, writes: Writes, passwords: Passwords, raw_name: str, password: str
) -> tuple[bool, str]:
    """Set an account's password and end its sessions, or create the account with it:
    (created, the account's name)."""
    password_hash = await passwords.hash(password)
    name, account = await find_account(store, raw_name)
    if account is None:
        skeleton = await unconfusable(store, name)
        await writes.create_account(str(uuid.uuid4()), name, name_key(name), password_hash, skeleton)
        return True, name
    await writes.set_password_hash(account.id, password_hash, end_sessions=True)
    return False, account.name


def name_skeleton(name: str) -> str:
    """Unicode TR39's skeleton of the name's key, by ICU's spoof checker (the reference
    implementation): names that look alike share it (`alice` spelt with a Cyrillic a, and
    `alice`; `rn` and `m`; `l` and `1`). The key is folded with NFKC first, as a new name
    is (clean_name): ICU's skeleton leaves most fullwidth letters as they are, so an
    imported or older `alice` in fullwidth letters would otherwise not look like `alice`."""
    skeleton: str = _SPOOF_CHECKER.getSkeleton(0, name_key(unicodedata.normalize("NFKC", name_key(name))))
    return skeleton


_SPOOF_CHECKER = SpoofChecker()
# TR39's "moderately restrictive" level: one script, or Latin with Han and Japanese or
# Korean, or Latin with one other script but Cyrillic or Greek. A name that mixes Latin
# with Cyrillic letters (Cyrillic a, e, o for the Latin ones) is how look-alikes get past a skeleton.
_MIXED_SCRIPTS = SpoofChecker()
_MIXED_SCRIPTS.setChecks(USpoofChecks.RESTRICTION_LEVEL)
_MIXED_SCRIPTS.setRestrictionLevel(URestrictionLevel.MODERATELY_RESTRICTIVE)


def check_scripts(name: str) -> None:
    """InvalidName if a new name mixes scripts that are not written together (TR39's
    moderately restrictive level: Latin with Cyrillic or Greek letters, say)."""
    if _MIXED_SCRIPTS.check(name) != 0:
        raise InvalidName("a name may not mix scripts that are not written together (Latin with Cyrillic, say)")


async def unconfusable(store: Store, name: str) -> str:
    """The skeleton of a new account's name; InvalidName when it mixes scripts
    (check_scripts), NameLooksTaken when an account with another name that looks the
    same exists."""
    skeleton = name_skeleton(name)
    if await store.name_skeleton_taken(skeleton):
        raise NameLooksTaken("this name looks like one that is taken: choose another")
    check_scripts(name)
    return skeleton


def check_password(raw: object) -> str:
    if not isinstance(raw, str):
        raise InvalidPassword("the password must be a string")
    if not PASSWORD_MIN_CHARS <= len(raw) <= PASSWORD_MAX_CHARS:
        raise InvalidPassword(f"a password has {PASSWORD_MIN_CHARS} to {PASSWORD_MAX_CHARS} characters")
    try:  # JSON can carry a lone surrogate ("\ud800"), which no hash can take
        raw.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidPassword("the password is not valid Unicode text") from None
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


async def authenticate(
    store: Store,
    writes: Writes,
    passwords: Passwords,
    raw_name: object,
    raw_password: object,
    throttle: SignInThrottle | None = None,
    address: str = "",
    signups: SignUpLimit | None = None,
) -> UserRef:
    """The user with this name and password; the first sign-in with a free name creates it.

    With a throttle, repeated failures for a name or from an address must wait; with a
    sign-up limit, so must an address that created too many accounts.
    """
    name, account = await find_account(store, raw_name)
    password = check_password(raw_password)
    key = name_key(name)
    if throttle is not None:
        wait = throttle.retry_after(key, address)
        if wait > 0:
            raise TooManyAttempts(f"too many failed sign-ins: try again in {wait:.0f} s", wait)
    if account is None:
        # A look-alike name is refused before it can use up one of the address's sign-ups.
        skeleton = await unconfusable(store, name)
        wait = signups.take(address) if signups is not None else 0.0
        if wait > 0:
            raise TooManyAttempts(f"too many new accounts from your address: try again in {wait:.0f} s", wait)
        user_id = str(uuid.uuid4())
        try:
            await writes.create_account(user_id, name, key, await passwords.hash(password), skeleton)
            return UserRef(user_id, name)
        except IntegrityError:  # someone took the name meanwhile
            account = await store.account_by_name_key(key)
            if account is None:
                raise
    if account.password_hash is None:
        raise NameReserved("this name is reserved: an operator must set its password")
    if not await passwords.verify(account.password_hash, password):
        if throttle is not None:
            throttle.failed(key, address)
        raise WrongPassword("wrong name or password")
    if throttle is not None:
        throttle.succeeded(key)
    if account.disabled:  # said only to whoever knows the password
        raise AccountDisabled("this account is disabled: ask an operator")
    return UserRef(account.id, account.name)


# Administration (the command line: quartchat/cli.py) ----------------------------


async def existing_account(store: Store, raw_name: object) -> Account:
    """The account of that name (typed as it was made, any case); NoSuchAccount if none."""
    try:
        _, account = await find_account(store, raw_name)
    except InvalidName:
        account = None
    if account is None:
        raise NoSuchAccount(f"no user is named {raw_name!r}")
    return account


async def set_role(store: Store, writes: Writes, raw_name: str, role: str) -> Account:
    """Make the named user an admin or a member (docs/protocol.md §11)."""
    if role not in ROLES:
        raise InvalidRole(f"a role is one of {', '.join(ROLES)}")
    account = await existing_account(store, raw_name)
    await writes.set_role(account.id, role)
    return account


async def set_disabled(store: Store, writes: Writes, raw_name: str, disabled: bool) -> tuple[Account, int, int]:
    """Disable or enable the named user: (account, sessions ended, tokens ended).
    Disabling ends every session and bot token of the user; enabling brings none back."""
    account = await existing_account(store, raw_name)
    sessions, tokens = await writes.set_disabled(account.id, disabled)
    return account, sessions, tokens
