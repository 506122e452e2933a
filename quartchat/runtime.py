"""The long-lived parts of one process: database, store, writes, writer, broker and hub."""

from __future__ import annotations

import asyncio
import gc
import uuid
from collections.abc import Sequence
from functools import partial

from quart import current_app

from .accounts import Passwords
from .broker import Broker, create_broker
from .broker.memory import MemoryBroker
from .checkpoints import WalCheckpoints
from .database import create_database
from .downloads import Downloads
from .erasure import Scrubber
from .hub import Hub
from .metrics import Metrics
from .presence import MemoryPresence, PresenceGrace, PresenceRegistry, RedisPresence
from .protocol import DELETE, CloseCode, StoredMessage
from .rate_limits import RateLimiter, SignInThrottle, SignUpLimit
from .reads import ReadPositions
from .retention import Retention
from .search import SEARCH_SLOTS
from .session_watch import SessionWatch
from .settings import Settings
from .store import Store
from .writer import MessageWriter
from .writes import create_writes, move_read_positions


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.database = create_database(settings, background_checkpoints=True)
        self.store = Store(self.database, settings.session_lifetime * 1000)
        self.writes = create_writes(self.database, settings.session_lifetime * 1000)
        self.metrics = Metrics()
        self.broker = create_broker(settings.broker_url, settings.resolved_redis_namespace())
        origin = uuid.uuid4().hex  # names this process to the others
        presence = create_presence(settings, self.broker, origin)
        self.hub = Hub(
            self.broker,
            presence,
            self.store,
            self.metrics,
            origin,
            stall_seconds=settings.send_stall_seconds,
            backlog_limit=settings.fanout_backlog,
            user_stream=bool(settings.user_stream),
        )
        # After a delete or a purge, SQLite's files forget the texts (quartchat/erasure.py).
        self.scrubber = Scrubber(settings.sqlite_path) if settings.sqlite_path is not None else None
        self.writer = MessageWriter(
            self.writes,
            self.on_commit,  # the hand-off: the writer calls the hub back, never imports it
            self.metrics,
            settings.write_batch_size,
            settings.write_linger_ms / 1000,
        )
        self.reads = ReadPositions(self._store_reads, self.hub.reads_moved)
        self.passwords = Passwords()
        self.throttle = SignInThrottle()
        self.signups = SignUpLimit(settings.signup_limit)
        self.rate_limiter = RateLimiter(settings.rate_limit)
        self.search_limiter = RateLimiter(settings.search_limit)
        # Searches at once in this process (quartchat/search_api.py): the reader pool stays
        # free for everything else.
        self.search_slots = asyncio.Semaphore(SEARCH_SLOTS)
        self.session_watch = SessionWatch(self.hub, self.store, self.writes)
        self.downloads = Downloads()
        self.checkpoints = WalCheckpoints(self.database) if settings.is_sqlite else None
        self.retention = Retention(
            self.database,
            origin,
            settings.retention_days,
            settings.retention_interval_seconds,
            self.scrubber,
        )
        self._drained = False

    async def on_commit(self, messages: Sequence[StoredMessage]) -> None:
        """The writer's hand-off: the hub delivers; a batch holding a delete asks for a scrub."""
        await self.hub.on_commit(messages)
        if self.scrubber is not None and any(m.kind == DELETE for m in messages):
            self.scrubber.request()

    async def _store_reads(self, moves: list[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
        """Read positions, stored on the message writer's thread (quartchat/reads.py)."""
        return await self.writer.execute(partial(move_read_positions, moves=moves))

    async def start(self) -> None:
        """Quart's before_serving."""
        # Everything made so far (modules, the app, its routes) lives as long as the
        # process: keep it out of the collector's full passes, which stop the event
        # loop for as long as they take to walk every object.
        gc.collect()
        gc.freeze()
        await self.broker.connect()
        await self.hub.start()
        self.writer.start()
        self.reads.start()
        self.session_watch.start()
        if self.checkpoints is not None:
            self.checkpoints.start()
        if self.scrubber is not None:
            self.scrubber.start()
        self.retention.start()

    async def drain(self, grace: float = 10.0) -> None:
        """Graceful shutdown, before the listener closes: commit what was taken, let
        every connection send what it has, close them with 1001, and give downloads
        under way up to `grace` seconds to finish."""
        if self._drained:
            return
        self._drained = True
        self.hub.accepting = False
        await self.reads.stop()  # stored by the writer, and heard by the connections still open
        await self.writer.close()
        await self.hub.close_all(CloseCode.GOING_AWAY, "server shutting down", grace)
        await self.downloads.finished(grace)

    async def stop(self) -> None:
        """Quart's after_serving."""
        await self.drain()
        await self.retention.stop()
        if self.scrubber is not None:
            await self.scrubber.stop()
        if self.checkpoints is not None:
            await self.checkpoints.stop()
        await self.session_watch.stop()
        await self.hub.stop()
        await self.broker.disconnect()
        await self.database.dispose()


def create_presence(settings: Settings, broker: Broker, origin: str) -> PresenceRegistry:
    registry: PresenceRegistry
    if isinstance(broker, MemoryBroker):
        registry = MemoryPresence()
    else:
        from .broker.redis import RedisBroker

        assert isinstance(broker, RedisBroker)
        registry = RedisPresence(broker.redis, broker.namespace, origin, ttl=settings.presence_ttl)
    return PresenceGrace(registry, settings.presence_grace)


def runtime() -> Runtime:
    """The Runtime of the app handling this request or WebSocket."""
    found: Runtime = current_app.extensions["quartchat"]
    return found
