"""Engines: one per process, with the SQLite pragmas that make it a safe chat store."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import aiosqlite
from sqlalchemy import event, make_url, text
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from .settings import SQLITE_BUSY_TIMEOUT_MS, Settings


@dataclass
class Database:
    """`reader` serves queries; `writer` takes the write lock when it begins.

    On SQLite they are two engines: the writer's transactions begin IMMEDIATE, so a
    busy database makes them wait (busy_timeout) instead of failing with SQLITE_BUSY
    at their first write; readers begin deferred and never block the writer (WAL).
    Elsewhere both are the same engine.
    """

    reader: AsyncEngine
    writer: AsyncEngine
    # A new engine for the message writer, which runs on an event loop of its own: an
    # engine's connections belong to the loop that opened them. Like `writer`, but on
    # SQLite its transactions begin at their first write statement, by the driver
    # itself (no round trip of their own), and a connection going back to the pool
    # is not rolled back again (every transaction of the writer ends itself).
    open_writer: Callable[[], AsyncEngine]

    async def ping(self) -> None:
        async with self.reader.connect() as connection:
            await connection.execute(text("SELECT version_num FROM alembic_version"))

    async def checkpoint(self) -> tuple[int, int, int] | None:
        """Copy committed WAL pages into an SQLite database file (PASSIVE: it waits
        for nobody and nobody waits for it); (busy, WAL pages, pages copied). None
        elsewhere."""
        if self.reader.dialect.name != "sqlite":
            return None
        async with self.reader.connect() as connection:
            row: tuple[Any, ...] = tuple((await connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")).one())
        return int(row[0]), int(row[1]), int(row[2])

    async def dispose(self) -> None:
        await self.writer.dispose()
        if self.reader is not self.writer:
            await self.reader.dispose()


def create_database(settings: Settings, background_checkpoints: bool = False) -> Database:
    """`background_checkpoints`: on SQLite the writer's commits never checkpoint the
    WAL themselves; whoever asks for this must call `checkpoint()` now and then (the
    server does, every second). Otherwise the commit that crosses 1,000 WAL pages
    copies them all into the database and fsyncs it, and every message waits behind
    it: a quarter-second stall here, every few hundred commits."""
    if not settings.is_sqlite:
        engine = create_async_engine(settings.database_url, pool_size=10, max_overflow=10, pool_pre_ping=True)
        return Database(
            reader=engine,
            writer=engine,
            open_writer=lambda: create_async_engine(
                settings.database_url, pool_size=1, max_overflow=1, pool_pre_ping=True, pool_reset_on_return=None
            ),
        )
    autocheckpoint = not background_checkpoints
    return Database(
        reader=_sqlite_engine(settings, begin="BEGIN"),
        writer=_sqlite_engine(settings, begin="BEGIN IMMEDIATE", pool_size=1, autocheckpoint=autocheckpoint),
        # Two connections: the writer holds one; `probe` takes the other.
        open_writer=lambda: _sqlite_engine(
            settings,
            begin=None,
            pool_size=1,
            max_overflow=1,
            autocheckpoint=autocheckpoint,
            pool_reset_on_return=None,
            inline=True,
        ),
    )


def _sqlite_engine(
    settings: Settings,
    begin: str | None,
    pool_size: int = 5,
    max_overflow: int = 0,
    autocheckpoint: bool = True,
    pool_reset_on_return: str | None = "rollback",
    inline: bool = False,
) -> AsyncEngine:
    options: dict[str, Any] = {}
    if inline:
        path = make_url(settings.database_url).database or ""
        options["async_creator"] = partial(_InlineConnection.open, path)
    engine = create_async_engine(
        settings.database_url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_reset_on_return=pool_reset_on_return,
        **options,
    )
    configure_sqlite(engine, settings.sqlite_synchronous, begin, autocheckpoint)
    return engine


def configure_sqlite(
    engine: AsyncEngine,
    synchronous: str,
    begin: str | None = "BEGIN",
    autocheckpoint: bool = True,
    busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS,
) -> None:
    """WAL, a busy timeout, the chosen `synchronous`, and our own BEGIN (SQLAlchemy's
    documented recipe: the driver's implicit transactions are turned off). With
    `begin=None` the driver's implicit transactions stay on, as BEGIN IMMEDIATE: they
    begin before a transaction's first INSERT, UPDATE or DELETE, and must begin with one."""

    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None if begin is not None else "IMMEDIATE"
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute(f"PRAGMA synchronous = {synchronous}")
        cursor.execute("PRAGMA foreign_keys = ON")
        if not autocheckpoint:
            cursor.execute("PRAGMA wal_autocheckpoint = 0")
        cursor.close()

    if begin is not None:
        statement = begin

        @event.listens_for(engine.sync_engine, "begin")
        def on_begin(connection: Any) -> None:
            connection.exec_driver_sql(statement)


class _RunAtOnce:
    """Stands in for aiosqlite's queue to its thread: runs each call as it is put."""

    @staticmethod
    def put_nowait(item: tuple[asyncio.Future[Any] | None, Callable[[], Any]]) -> None:
        future, function = item
        try:
            result = function()
        except BaseException as exc:
            if future is not None:
                future.set_exception(exc)
            return
        if future is not None:
            future.set_result(result)


class _InlineConnection(aiosqlite.Connection):
    """aiosqlite's connection, with every call made at once on the calling thread.

    For the message writer only, whose event loop has a thread of its own and nothing
    else to do while its transaction runs. Through aiosqlite's own thread each driver
    call (cursor, execute, fetch, close, commit: a dozen a batch) was a round trip
    between two threads, each a scheduler wake-up and the GIL taken twice; a batch of
    25 messages took 6.5-9 ms alone, 3.4 ms this way. SQLAlchemy's asyncio engine, its
    pool and the Core statements are unchanged: only the awaits complete at once.

    It overrides aiosqlite's `_execute` and replaces its queue (`_tx`, which
    SQLAlchemy's adapter also uses): pyproject.toml pins aiosqlite's minor version and
    tests/test_writer.py checks the calls stay on the writer's thread."""

    def __init__(self, connector: Callable[[], sqlite3.Connection]) -> None:
        super().__init__(connector, iter_chunk_size=64)
        self._tx = _RunAtOnce()  # type: ignore[assignment]

    @classmethod
    async def open(cls, path: str) -> _InlineConnection:
        connection = cls(partial(sqlite3.connect, path))
        connection._connection = connection._connector()
        return connection

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        return fn(*args, **kwargs)

    def __await__(self) -> Any:  # aiosqlite starts its thread here; there is none
        return self._connect().__await__()

    def stop(self) -> None:
        self._running = False
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()
