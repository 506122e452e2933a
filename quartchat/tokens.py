"""Bot tokens (docs/protocol.md §11, "Bot tokens"): made, verified, listed, revoked.

A token is 32 random bytes (URL-safe base64) after a `qct_` prefix that lets a secret
scanner recognise a leaked one. Only its SHA-256 is stored: a copy of the database
holds no usable token, and a fast hash is enough because the token is random (there is
no dictionary to try, unlike a password). The token is shown once, by `quartchat token
create`; revoking deletes the row, and the sockets opened with it close with 4001
(their session id is `token:<id>`: quartchat/session_watch.py, and the writer's check,
treat it as a session that ended).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from .accounts import CredentialsError, existing_account
from .rooms import valid_room
from .store import SignedIn, Store
from .writes import Writes

TOKEN_PREFIX = "qct_"
# What `generate` makes: anything else is refused before the database is asked.
_TOKEN_SHAPE = re.compile(r"qct_[A-Za-z0-9_-]{43}")


class TokenError(Exception):
    """A token command that cannot be done as asked; the message can be shown as it is."""


@dataclass(frozen=True)
class NewToken:
    id: str
    token: str  # shown once, never stored
    user_name: str
    rooms: tuple[str, ...] | None


def generate() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


async def verify(store: Store, token: str) -> SignedIn | None:
    """The identity a presented token stands for, or None (malformed, unknown, revoked,
    or its user disabled): every refusal looks the same to the caller."""
    if not _TOKEN_SHAPE.fullmatch(token):
        return None
    return await store.token_session(token_hash(token))


async def create(store: Store, writes: Writes, user_name: str, rooms: Sequence[str] | None) -> NewToken:
    """A new token for the named user, limited to `rooms` when given."""
    limited = None if not rooms else tuple(sorted(set(rooms)))
    for room in limited or ():
        if not valid_room(room):
            raise TokenError(f"--room: {room!r} is not a room name (1-64 of a-z, 0-9, '-')")
    try:
        account = await existing_account(store, user_name)
    except CredentialsError as missing:
        raise TokenError(missing.message) from None
    if account.disabled:
        raise TokenError(f"{account.name} is disabled: enable it first")
    token, token_id = generate(), str(uuid.uuid4())
    await writes.create_token(token_id, account.id, token_hash(token), limited)
    return NewToken(token_id, token, account.name, limited)


async def revoke(writes: Writes, token_id: str) -> None:
    if not await writes.delete_token(token_id):
        raise TokenError(f"no token has the id {token_id!r} (see `quartchat token list`)")
