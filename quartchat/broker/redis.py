"""Several processes: events go through one Redis pub/sub channel per deployment,
`<namespace>:events` (channels are global to a Redis server, whatever database number
the URL names, so two deployments on one Redis must not share one).

Redis pub/sub is at-most-once: whatever is published while a subscriber is cut off is
gone. So after any reconnection the broker hands the hub a `Resync`, and the hub
repairs every room it serves from the database, which stays the source of truth.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from ..protocol import CHAT, StoredMessage, UserRef
from . import Broker, Committed, Event, MemberAdded, Presence, ReadMoved, Resync, Revoked

log = logging.getLogger(__name__)

RECONNECT_MAX_SECONDS = 5.0


def encode(event: Event) -> bytes:
    if isinstance(event, Committed):
        return orjson.dumps({
            "k": "c",
            "o": event.origin,
            # Mentions ride along; an edit or delete event adds its kind and target
            # (docs/protocol.md §17).
            "m": [[m.id, m.room, m.user.id, m.user.name, m.text, m.ts_ms, m.client_id, m.prev_id, m.mentions]
                  if m.kind == CHAT else
                  [m.id, m.room, m.user.id, m.user.name, m.text, m.ts_ms, m.client_id, m.prev_id, m.mentions,
                   m.kind, m.target]
                  for m in event.messages],
        })  # fmt: skip
    if isinstance(event, Presence):
        # "c": 0 for the processes of earlier versions during a rolling upgrade, which
        # read it (the connection that caused the change, of use to its origin alone).
        return orjson.dumps({
            "k": "p", "o": event.origin, "kind": event.kind, "room": event.room,
            "user": [event.user.id, event.user.name], "ts": event.ts_ms, "c": 0,
        })  # fmt: skip
    if isinstance(event, Revoked):
        return orjson.dumps({
            "k": "r", "o": event.origin, "s": event.session_ids, "u": event.user_ids, "room": event.room,
            "code": event.code, "reason": event.reason, "ab": event.all_but,
        })  # fmt: skip
    if isinstance(event, MemberAdded):
        return orjson.dumps({"k": "a", "o": event.origin, "room": event.room, "u": event.user_ids, "n": event.announce})
    if isinstance(event, ReadMoved):
        return orjson.dumps({"k": "rd", "o": event.origin, "m": event.moves})
    raise TypeError(f"{type(event).__name__} is not published")


def decode(raw: bytes) -> Event:
    data: dict[str, Any] = orjson.loads(raw)
    if data["k"] == "c":
        return Committed(
            tuple(
                # Shorter lists come from processes of earlier versions (a rolling upgrade).
                StoredMessage(id=m[0], room=m[1], user=UserRef(m[2], m[3]), text=m[4], ts_ms=m[5],
                              client_id=m[6], prev_id=m[7], mentions=tuple(m[8]) if len(m) > 8 else (),
                              kind=m[9] if len(m) > 10 else CHAT, target=m[10] if len(m) > 10 else None)
                for m in data["m"]
            ),
            data["o"],
        )  # fmt: skip
    if data["k"] == "rd":
        return ReadMoved(tuple((user_id, room, last_read_id) for user_id, room, last_read_id in data["m"]), data["o"])
    if data["k"] == "r":
        all_but = None if data.get("ab") is None else tuple(data["ab"])
        sessions, users = tuple(data["s"]), tuple(data["u"])
        return Revoked(sessions, users, data["room"], data["code"], data["reason"], data["o"], all_but)
    if data["k"] == "a":
        return MemberAdded(data["room"], tuple(data["u"]), data["o"], data.get("n", True))
    user = UserRef(data["user"][0], data["user"][1])
    return Presence(data["kind"], data["room"], user, data["ts"], data["o"])


class RedisBroker(Broker):
    def __init__(self, url: str, namespace: str) -> None:
        self.url = url
        self.namespace = namespace
        self.channel = f"{namespace}:events"
        # A publish gets one retry, on a fresh connection: after a Redis restart the
        # pooled one is dead though Redis is back. Otherwise it fails at once (the
        # outbox publishes it again later) rather than hold the writer's hand-off.
        self.redis: aioredis.Redis = aioredis.from_url(url, retry=Retry(NoBackoff(), 1))
        # No retries inside redis-py for the subscription: a pub/sub connection it
        # re-made by itself would be resubscribed silently, losing what was published
        # meanwhile without a Resync. This class does its own reconnecting.
        self._subscriber: aioredis.Redis = aioredis.from_url(url, health_check_interval=10, retry=Retry(NoBackoff(), 0))
        self._pubsub: Any = None
        self._connected = False

    async def connect(self) -> None:
        await self._subscribe()

    async def disconnect(self) -> None:
        if self._pubsub is not None:
            await self._pubsub.aclose()
        await self._subscriber.aclose()
        await self.redis.aclose()

    async def publish(self, event: Event) -> None:
        await self.redis.publish(self.channel, encode(event))

    async def next_published(self) -> Event:
        while True:
            try:
                if not self._connected:
                    await self._subscribe()
                    return Resync()
                message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
            except (RedisError, OSError) as lost:
                await self._lost(lost)
                continue
            if message is not None and message["type"] == "message":
                return decode(message["data"])

    async def _subscribe(self) -> None:
        delay = 0.1
        while True:
            try:
                if self._pubsub is not None:
                    await self._pubsub.aclose()
                self._pubsub = self._subscriber.pubsub()
                await self._pubsub.subscribe(self.channel)
                self._connected = True
                return
            except (RedisError, OSError) as refused:
                log.warning("Redis broker: cannot subscribe (%s); retrying in %.1f s", refused, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_SECONDS)

    async def _lost(self, error: BaseException) -> None:
        log.warning("Redis broker: connection lost (%s); reconnecting", error)
        self._connected = False
        await asyncio.sleep(0.1)
