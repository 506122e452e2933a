"""Running Hypercorn with the app, and shutting down gracefully on SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config
from quart import Quart

from .app import create_app
from .resources import resource
from .runtime import Runtime
from .settings import Settings

log = logging.getLogger(__name__)

LINGER_SECONDS = 1.0


def hypercorn_config(path: Path | None, bind: str | None) -> Config:
    config = Config.from_toml(path or resource("hypercorn.toml"))
    if bind is not None:
        config.bind = [bind]
    return config


def run(settings: Settings, config: Config) -> None:
    """Serve until SIGTERM or SIGINT, in this process, on uvloop where installed."""
    app = create_app(settings)
    for name in ("hypercorn.error", "hypercorn.access"):
        logging.getLogger(name).propagate = False  # Hypercorn has its own handlers
    _event_loop_runner()(_serve(app, config))


async def _serve(app: Quart, config: Config) -> None:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    chat: Runtime = app.extensions["quartchat"]

    async def shutdown_trigger() -> None:
        await stopping.wait()
        log.info("shutting down: committing what was taken, closing WebSockets with 1001")
        await chat.drain(grace=config.graceful_timeout)
        # All that can remain are Hypercorn's own connection tasks: an HTTP keep-alive,
        # or a closed WebSocket whose ping loop sleeps a whole websocket_ping_interval
        # before it notices. Nothing of ours waits on them.
        config.graceful_timeout = LINGER_SECONDS

    await hypercorn_serve(app, config, shutdown_trigger=shutdown_trigger)


def _event_loop_runner() -> Callable[[Coroutine[Any, Any, None]], None]:
    try:
        import uvloop
    except ImportError:
        return asyncio.run
    return uvloop.run
