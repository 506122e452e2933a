"""Room names (docs/protocol.md §1)."""

from __future__ import annotations

import hashlib
import hmac
import re

DEFAULT_ROOM = "lobby"
_ROOM_NAME = re.compile(r"[a-z0-9-]{1,64}")


def valid_room(name: str) -> bool:
    return _ROOM_NAME.fullmatch(name) is not None


def suggest_room(name: str) -> str | None:
    """A valid name close to an invalid one ("Bad_Room" -> "bad-room"), or None."""
    suggestion = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:64]
    return suggestion or None


def dm_room_name(secret_key: str, user_id: str, other_id: str) -> str:
    """The one DM room of two users: `dm-` and 16 hex characters of an HMAC of their
    sorted ids under the server's secret key, so that nobody can predict it and make a
    room of that name first (and `dm-` names are refused for every other room)."""
    first, second = sorted((user_id, other_id))
    digest = hmac.new(secret_key.encode(), f"dm\0{first}\0{second}".encode(), hashlib.sha256).hexdigest()
    return "dm-" + digest[:16]
