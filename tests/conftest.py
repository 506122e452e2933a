"""Fixtures: a real server per test module or test, and a chat driver."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from quartchat.database import Database

from .support import ALICE, Chat, Server, add_user

StartServer = Callable[..., Server]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server shared by a module's tests (they use unique rooms and users), on
    QUARTCHAT_TEST_DATABASE_URL when set (the PostgreSQL pass of tests/run), else SQLite."""
    database_url = os.environ.get("QUARTCHAT_TEST_DATABASE_URL") or None
    instance = Server(tmp_path_factory.mktemp("server"), database_url, rate_limit="100000/1").start()
    yield instance
    instance.stop()


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    """Start servers of a test's own: `start_server(workdir=…, database_url=…, **settings)`."""
    started: list[Server] = []

    def start(workdir: Path | None = None, database_url: str | None = None, **settings: str | None) -> Server:
        instance = Server(workdir or tmp_path, database_url, **settings)
        started.append(instance)
        return instance.start()

    yield start
    for instance in started:
        instance.stop()


@pytest.fixture
async def chat(server: Server) -> AsyncIterator[Chat]:
    driver = Chat(server)
    yield driver
    await driver.aclose()


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """Where `database` is made: an SQLite file of the test's own (a module may override it)."""
    return f"sqlite+aiosqlite:///{tmp_path}/w.db"


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    """A migrated database at `database_url`, with ALICE in it, and no server."""
    import asyncio

    from quartchat import migrate
    from quartchat.database import create_database
    from quartchat.settings import Settings

    await asyncio.to_thread(migrate.upgrade, database_url)
    db = create_database(Settings(database_url=database_url))
    await add_user(db, ALICE)
    yield db
    await db.dispose()


POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database for one test (dropped afterwards)."""
    from .support import need_service, unique

    try:
        import asyncpg
    except ImportError:
        need_service(False, "asyncpg (pip install .[scale])")
    try:
        admin = await asyncpg.connect(POSTGRES_ADMIN, timeout=5)
    except (OSError, asyncpg.PostgresError):
        need_service(False, "PostgreSQL on 127.0.0.1:5432")
    name = unique("qc_test_")
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """Debian's headless Chromium, driven by Playwright (never a downloaded browser)."""
    from .support import CHROMIUM, CHROMIUM_ARGS, need_service

    need_service(shutil.which(CHROMIUM) is not None or os.path.exists(CHROMIUM), f"Chromium at {CHROMIUM}")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        need_service(False, "the playwright package")
    async with async_playwright() as playwright:
        instance = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        await instance.close()


class RedisServer:
    """A private redis-server on a free loopback port, stoppable and restartable."""

    def __init__(self, workdir: Path) -> None:
        from .support import free_port

        self.workdir = workdir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(100):
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    from .support import need_service

    need_service(shutil.which("redis-server") is not None, "redis-server (apt-get install redis-server)")
    try:
        import redis  # noqa: F401
    except ImportError:
        need_service(False, "the redis package (pip install .[scale])")
    instance = RedisServer(tmp_path).start()
    yield instance
    instance.stop()


@pytest.fixture
async def two_workers(tmp_path: Path, postgres_url: str, redis_server: RedisServer) -> AsyncIterator[Server]:
    """`quartchat serve --workers 2` on PostgreSQL and Redis, both workers listening."""
    server = Server(tmp_path, database_url=postgres_url, broker_url=redis_server.url, rate_limit="100000/1")
    await server.start_workers(2)
    yield server
    server.stop()
