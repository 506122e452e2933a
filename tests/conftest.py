"""Fixtures: a real server per test module or test, and a chat driver."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .support import Chat, Server

StartServer = Callable[..., Server]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server shared by a module's tests (they use unique rooms and users)."""
    instance = Server(tmp_path_factory.mktemp("server"), rate_limit="100000/1").start()
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
