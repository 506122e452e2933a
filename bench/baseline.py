"""What the two baselines (inmem_server.py on Quart, rawasgi_server.py on bare ASGI)
share: the rooms, the ids, and turning one received frame into one broadcast."""

from __future__ import annotations

import asyncio
import itertools
import json
from datetime import UTC, datetime

rooms: dict[str, set[asyncio.Queue[str]]] = {}
ids = itertools.count(1)


def broadcast(room: str, name: str, raw: str | bytes) -> None:
    """A `chat` frame, serialised once and queued for everyone in the room (a full
    queue drops it: the baselines never wait for a slow client)."""
    frame = json.loads(raw)
    if frame.get("type") != "chat":
        return
    message = json.dumps({
        "id": next(ids), "type": "chat", "room": room, "user": {"id": name, "name": name},
        "data": frame["data"], "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
    })  # fmt: skip
    for member in rooms.get(room, ()):
        if not member.full():
            member.put_nowait(message)
