"""Who is online in each room: the union over every process (docs/protocol.md §4).

`add` and `remove` count a user's connections in a room across all processes and say
when the first one opened (a `join` is due) or the last one closed (a `left`).
In memory that is a counter; with Redis the counters live in Redis, each process
keeps a heartbeat key, and a process whose heartbeat expires (it died without saying
goodbye) is reaped by the others: its users' counts are taken away and a `left` is
published for each user who has no connection left anywhere.

`PresenceGrace` wraps either: a user's last connection in a room is taken out of the
count only after a grace period, and a reconnect within it cancels that, so a refresh
or a restart is neither a `left` nor a `join` (docs/protocol.md).
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from .protocol import UserRef

log = logging.getLogger(__name__)

OnLeft = Callable[[str, UserRef], Awaitable[None]]
_SEPARATOR = "\x1f"


class PresenceRegistry(ABC):
    async def start(self, on_left: OnLeft) -> None:  # noqa: B027 - optional for a backend
        """Begin heartbeats; `on_left(room, user)` announces users of dead processes."""

    async def stop(self) -> None:  # noqa: B027
        pass

    @abstractmethod
    async def add(self, room: str, user: UserRef) -> bool:
        """Count one more connection; True when it is the user's first in the room."""

    @abstractmethod
    async def remove(self, room: str, user: UserRef) -> bool:
        """Count one connection less; True when it was the user's last in the room."""

    @abstractmethod
    async def online(self, room: str) -> list[UserRef]:
        """Users with a connection in the room, each once, sorted by name."""


def by_name(users: list[UserRef]) -> list[UserRef]:
    return sorted(users, key=lambda u: (u.name.casefold(), u.name, u.id))


class MemoryPresence(PresenceRegistry):
    def __init__(self) -> None:
        self._counts: dict[str, Counter[UserRef]] = {}

    async def add(self, room: str, user: UserRef) -> bool:
        counts = self._counts.setdefault(room, Counter())
        counts[user] += 1
        return counts[user] == 1

    async def remove(self, room: str, user: UserRef) -> bool:
        counts = self._counts.get(room)
        if counts is None or counts[user] <= 0:
            return False
        counts[user] -= 1
        if counts[user] > 0:
            return False
        del counts[user]
        if not counts:
            del self._counts[room]
        return True

    async def online(self, room: str) -> list[UserRef]:
        return by_name(list(self._counts.get(room, {})))


class RedisPresence(PresenceRegistry):
    """Keys, each under the deployment's namespace `<ns>`: `<ns>:online:<room>` hash
    user → connections (all processes); `<ns>:conns:<origin>` hash room+user →
    connections (this process's share); `<ns>:alive:<origin>` the heartbeat (expires
    after `ttl`); `<ns>:origins` the set of processes that registered."""

    def __init__(self, redis: Any, namespace: str, origin: str, ttl: float) -> None:
        self.redis = redis
        self.ns = namespace
        self.origin = origin
        self.ttl = ttl
        self._lock = asyncio.Lock()  # one process's changes reach Redis in order
        self._task: asyncio.Task[None] | None = None
        self._on_left: OnLeft | None = None

    async def start(self, on_left: OnLeft) -> None:
        self._on_left = on_left
        await self._beat()
        self._task = asyncio.get_running_loop().create_task(self._heartbeats(), name="presence-heartbeats")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        try:  # a clean exit: hand our users back now rather than after the ttl
            await self.redis.delete(f"{self.ns}:alive:{self.origin}")
            await self._reap(self.origin)
        except Exception as exc:
            log.warning("presence: could not clear this process's users: %s", exc)

    async def add(self, room: str, user: UserRef) -> bool:
        field = user.id + _SEPARATOR + user.name
        async with self._lock, self.redis.pipeline(transaction=True) as pipe:
            pipe.hincrby(f"{self.ns}:conns:{self.origin}", room + _SEPARATOR + field, 1)
            pipe.hincrby(f"{self.ns}:online:{room}", field, 1)
            _, total = await pipe.execute()
        return int(total) == 1

    async def remove(self, room: str, user: UserRef) -> bool:
        field = user.id + _SEPARATOR + user.name
        async with self._lock:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hincrby(f"{self.ns}:conns:{self.origin}", room + _SEPARATOR + field, -1)
                pipe.hincrby(f"{self.ns}:online:{room}", field, -1)
                mine, total = await pipe.execute()
            if int(mine) <= 0:
                await self.redis.hdel(f"{self.ns}:conns:{self.origin}", room + _SEPARATOR + field)
            if int(total) <= 0:
                await self.redis.hdel(f"{self.ns}:online:{room}", field)
                return True
        return False

    async def online(self, room: str) -> list[UserRef]:
        counts = await self.redis.hgetall(f"{self.ns}:online:{room}")
        users = []
        for field, count in counts.items():
            if int(count) > 0:
                user_id, _, name = field.decode().partition(_SEPARATOR)
                users.append(UserRef(user_id, name))
        return by_name(users)

    async def _beat(self) -> None:
        await self.redis.set(f"{self.ns}:alive:{self.origin}", "1", px=int(self.ttl * 1000))
        await self.redis.sadd(f"{self.ns}:origins", self.origin)

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            try:
                await self._beat()
                for raw in await self.redis.smembers(f"{self.ns}:origins"):
                    origin = raw.decode()
                    if origin != self.origin and not await self.redis.exists(f"{self.ns}:alive:{origin}"):
                        await self._reap(origin)
            except Exception as exc:  # Redis away: try again at the next beat
                log.warning("presence heartbeat failed: %s", exc)

    async def _reap(self, origin: str) -> None:
        """Take a gone process's connections out of every room, once (a lock key)."""
        if not await self.redis.set(f"{self.ns}:reaping:{origin}", "1", nx=True, px=int(self.ttl * 1000)):
            return
        shares = await self.redis.hgetall(f"{self.ns}:conns:{origin}")
        for key, count in shares.items():
            room, _, field = key.decode().partition(_SEPARATOR)
            total = await self.redis.hincrby(f"{self.ns}:online:{room}", field, -int(count))
            if int(total) <= 0:
                await self.redis.hdel(f"{self.ns}:online:{room}", field)
                user_id, _, name = field.partition(_SEPARATOR)
                if self._on_left is not None and origin != self.origin:
                    await self._on_left(room, UserRef(user_id, name))
        await self.redis.delete(f"{self.ns}:conns:{origin}")
        await self.redis.srem(f"{self.ns}:origins", origin)
        log.info("presence: reaped process %s (%d room memberships)", origin, len(shares))


class PresenceGrace(PresenceRegistry):
    """Holds each `remove` of `registry` for `grace` seconds; an `add` of the same user
    and room in that time cancels both (the count never drops, so no process sees a
    last connection or a first one). A reconnect that lands on another process finds
    the count still held by this one: not a first connection there either."""

    def __init__(self, registry: PresenceRegistry, grace: float) -> None:
        self.registry = registry
        self.grace = grace
        self._leaving: dict[tuple[str, str], asyncio.Event] = {}  # (room, user id) -> "came back"

    async def start(self, on_left: OnLeft) -> None:
        await self.registry.start(on_left)

    async def stop(self) -> None:
        await self.registry.stop()

    async def add(self, room: str, user: UserRef) -> bool:
        came_back = self._leaving.pop((room, user.id), None)
        if came_back is not None:
            came_back.set()
            return False
        return await self.registry.add(room, user)

    async def remove(self, room: str, user: UserRef) -> bool:
        key = (room, user.id)
        came_back = asyncio.Event()
        self._leaving[key] = came_back
        try:
            await asyncio.wait_for(came_back.wait(), self.grace)
            return False
        except TimeoutError:
            pass
        finally:
            if self._leaving.get(key) is came_back:
                del self._leaving[key]
        return await self.registry.remove(room, user)

    async def online(self, room: str) -> list[UserRef]:
        return await self.registry.online(room)
