"""Room names (SPEC §5)."""

from __future__ import annotations

import re

DEFAULT_ROOM = "lobby"
_ROOM_NAME = re.compile(r"[a-z0-9-]{1,64}")


def valid_room(name: str) -> bool:
    return _ROOM_NAME.fullmatch(name) is not None
