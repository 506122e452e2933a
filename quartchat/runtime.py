"""The long-lived parts of one process: database, store, writes, writer, broker and hub."""

from __future__ import annotations

import asyncio
import gc
import logging
import uuid
from collections.abc import AsyncIterator

from quart import current_app

from .accounts import Passwords
from .broker import Broker, create_broker
from .broker.memory import MemoryBroker
from .database import create_database
from .hub import Hub
from .limits import RateLimiter
from .metrics import Metrics
from .presence import MemoryPresence, PresenceGrace, PresenceRegistry, RedisPresence
from .protocol import CloseCode
from .sessions import SessionWatch
from .settings import Settings
from .store import Store
from .throttle import SignInThrottle, SignUpLimit
from .writer import MessageWriter
from .writes import create_writes

log = logging.getLogger(__name__)


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.database = create_database(settings, background_checkpoints=True)
        self.store = Store(self.database, settings.session_lifetime * 1000)
        self.writes = create_writes(self.database, settings.session_lifetime * 1000)
        self.metrics = Metrics()
        self.broker = create_broker(settings.broker_url, settings.resolved_redis_namespace())
        origin = uuid.uuid4().hex  # names this process to the others
        self.hub = Hub(self.broker, create_presence(settings, self.broker, origin), self.store, origin)
        self.writer = MessageWriter(
            self.writes,
            self.hub.publish_committed,
            self.metrics,
            settings.write_batch_size,
            settings.write_linger_ms / 1000,
        )
        self.passwords = Passwords()
        self.throttle = SignInThrottle()
        self.signups = SignUpLimit(settings.signup_limit)
        self.hub.metrics = self.metrics
        self.rate_limiter = RateLimiter(settings.rate_limit)
        self.session_watch = SessionWatch(self.hub, self.store, self.writes)
        self._drained = False
        self._downloads = 0
        self._no_downloads = asyncio.Event()
        self._no_downloads.set()
        self._checkpoints: asyncio.Task[None] | None = None

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
        self.session_watch.start()
        if self.settings.is_sqlite:
            self._checkpoints = asyncio.get_running_loop().create_task(self._checkpoint_now_and_then())

    async def _checkpoint_now_and_then(self, interval: float = 1.0) -> None:
        """SQLite's WAL is copied into the database here, on a reader connection (its
        own thread), so that no commit waits for it (database.create_database)."""
        failing = False
        while True:
            await asyncio.sleep(interval)
            try:
                await self.database.checkpoint()
            except Exception as exc:  # a full disk, a lock: try again next time
                if not failing:  # one line when it starts failing, not one a second
                    log.warning("WAL checkpoints are failing: %s", exc)
                failing = True
            else:
                if failing:
                    log.info("WAL checkpoints work again")
                failing = False

    async def drain(self, grace: float = 10.0) -> None:
        """Graceful shutdown, before the listener closes: commit what was taken, let
        every connection send what it has, close them with 1001, and give downloads
        under way up to `grace` seconds to finish."""
        if self._drained:
            return
        self._drained = True
        self.hub.accepting = False
        await self.writer.close()
        await self.hub.close_all(CloseCode.GOING_AWAY, "server shutting down", grace)
        try:
            await asyncio.wait_for(self._no_downloads.wait(), grace)
        except TimeoutError:
            log.warning("%d downloads were cut short by the shutdown", self._downloads)

    async def tracked_download(self, pieces: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """A streamed response body that a graceful shutdown waits for."""
        self._downloads += 1
        self._no_downloads.clear()
        try:
            async for piece in pieces:
                yield piece
        finally:
            self._downloads -= 1
            if not self._downloads:
                self._no_downloads.set()

    async def stop(self) -> None:
        """Quart's after_serving."""
        await self.drain()
        if self._checkpoints is not None:
            self._checkpoints.cancel()
            await asyncio.gather(self._checkpoints, return_exceptions=True)
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
