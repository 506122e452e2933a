"""Room names (docs/protocol.md §1)."""

from __future__ import annotations

import re

DEFAULT_ROOM = "lobby"
_ROOM_NAME = re.compile(r"[a-z0-9-]{1,64}")


def valid_room(name: str) -> bool:
    return _ROOM_NAME.fullmatch(name) is not None


def suggest_room(name: str) -> str | None:
    """A valid name close to an invalid one ("Bad_Room" -> "bad-room"), or None."""
    suggestion = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:64]
    return suggestion or None
