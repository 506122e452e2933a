"""Running Hypercorn with the app, and shutting down gracefully on SIGTERM."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import multiprocessing
import os
import signal
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config
from quart import Quart

from . import hypercorn_lean
from .app import create_app
from .hosts import default_hosts
from .logs import configure_logging
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


def serve(settings: Settings, config: Config, workers: int) -> None:
    """`quartchat serve`: migrate the database once, then run `workers` processes (or
    serve in this one)."""
    if not settings.allowed_hosts:
        binds = [*config.bind, *config.insecure_bind, *config.quic_bind]
        settings = dataclasses.replace(settings, allowed_hosts=default_hosts(binds))
    settings.resolved_secret_key()  # made once, before anything else reads it
    from . import migrate  # Alembic is loaded only by the commands that need it

    migrate.upgrade(settings.database_url)  # once, before any worker starts
    if workers > 1:
        run_workers(settings, config, workers)
    else:
        run(settings, config)


def run(settings: Settings, config: Config) -> None:
    """Serve until SIGTERM or SIGINT, in this process, on uvloop where installed."""
    configure_logging()
    hypercorn_lean.install()  # Hypercorn's hand-over queue, leaner (memory per idle connection)
    app = create_app(settings)
    if config.errorlog == "-":
        # Hypercorn's "-" adds a handler of its own beside ours, and every line
        # ("Running on …") would show twice: its logger, through ours, instead.
        config.errorlog = logging.getLogger("hypercorn.error")
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


def run_workers(settings: Settings, config: Config, workers: int) -> None:
    """`workers` processes, each a whole server on the same port (SO_REUSEPORT: the
    kernel spreads connections). The parent forwards SIGTERM/SIGINT, waits for every
    worker's graceful shutdown, and starts a new worker if one dies meanwhile."""
    config.workers = workers  # makes Hypercorn set SO_REUSEPORT on each worker's socket
    context = multiprocessing.get_context("spawn")
    stopping = False

    def spawn() -> multiprocessing.process.BaseProcess:
        process = context.Process(target=run, args=(settings, config), name="quartchat-worker")
        process.start()
        return process

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for process in processes:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signal.SIGTERM)

    processes = [spawn() for _ in range(workers)]
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while processes:
        for index, process in enumerate(list(processes)):
            process.join(timeout=0.2)
            if process.exitcode is None:
                continue
            if stopping:
                processes.remove(process)
            else:
                log.error("worker %s exited with %s; starting another", process.pid, process.exitcode)
                processes[index] = spawn()


def _event_loop_runner() -> Callable[[Coroutine[Any, Any, None]], None]:
    try:
        import uvloop
    except ImportError:
        return asyncio.run
    return uvloop.run
