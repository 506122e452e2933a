"""Engines: one per process, with the SQLite pragmas that make it a safe chat store.

Every engine is made with `hide_parameters=True`: a failed statement's error (logged
with its traceback by the message writer and the routes) then names the statement but
not its parameters, which hold message texts, names and password hashes — a text later
deleted must not live on in the log (docs/security.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url, text
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

    The message writer has an engine of its own, made on its own thread
    (`open_sqlite_writer` or `open_postgres_writer`, quartchat/writes.py): an engine's
    connections belong to the thread, and the event loop, that opened them.
    """

    reader: AsyncEngine
    writer: AsyncEngine
    settings: Settings
    autocheckpoint: bool = True  # False: the commits leave WAL checkpoints to checkpoint()

    @property
    def is_sqlite(self) -> bool:
        return self.reader.dialect.name == "sqlite"

    def open_sqlite_writer(self) -> Engine:
        """SQLite's plain driver (sqlite3) behind a synchronous engine, for the message
        writer's thread, which has nothing else to do while a transaction runs: each
        driver call is made at once on that thread (through aiosqlite each was a round
        trip to a thread of its own). Transactions begin at their first write
        statement, by the driver itself (no round trip of their own), as IMMEDIATE. Two
        connections: the writer holds one; `probe` takes the other. A connection going
        back to the pool is not rolled back again (every transaction of the writer ends
        itself)."""
        engine = create_engine(
            make_url(self.settings.database_url).set(drivername="sqlite"),
            pool_size=1,
            max_overflow=1,
            pool_reset_on_return=None,
            hide_parameters=True,
        )
        configure_sqlite(engine, self.settings.sqlite_synchronous, begin=None, autocheckpoint=self.autocheckpoint)
        return engine

    def open_postgres_writer(self) -> AsyncEngine:
        """An engine for the message writer's own event loop, in its thread."""
        return create_async_engine(
            self.settings.database_url,
            pool_size=1,
            max_overflow=1,
            pool_pre_ping=True,
            pool_reset_on_return=None,
            hide_parameters=True,
        )

    async def ping(self) -> None:
        async with self.reader.connect() as connection:
            await connection.execute(text("SELECT version_num FROM alembic_version"))

    async def checkpoint(self) -> tuple[int, int, int] | None:
        """Copy committed WAL pages into an SQLite database file (PASSIVE: it waits
        for nobody and nobody waits for it); (busy, WAL pages, pages copied). None
        elsewhere."""
        if not self.is_sqlite:
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
        engine = create_async_engine(
            settings.database_url, pool_size=10, max_overflow=10, pool_pre_ping=True, hide_parameters=True
        )
        return Database(reader=engine, writer=engine, settings=settings)
    autocheckpoint = not background_checkpoints
    return Database(
        reader=_sqlite_engine(settings, begin="BEGIN"),
        writer=_sqlite_engine(settings, begin="BEGIN IMMEDIATE", pool_size=1, autocheckpoint=autocheckpoint),
        settings=settings,
        autocheckpoint=autocheckpoint,
    )


def _sqlite_engine(settings: Settings, begin: str, pool_size: int = 5, autocheckpoint: bool = True) -> AsyncEngine:
    engine = create_async_engine(settings.database_url, pool_size=pool_size, max_overflow=0, hide_parameters=True)
    configure_sqlite(engine, settings.sqlite_synchronous, begin, autocheckpoint)
    return engine


def configure_sqlite(
    engine: Engine | AsyncEngine,
    synchronous: str,
    begin: str | None = "BEGIN",
    autocheckpoint: bool = True,
    busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS,
) -> None:
    """WAL, a busy timeout, the chosen `synchronous`, and our own BEGIN (SQLAlchemy's
    documented recipe: the driver's implicit transactions are turned off). With
    `begin=None` the driver's implicit transactions stay on, as BEGIN IMMEDIATE: they
    begin before a transaction's first INSERT, UPDATE or DELETE, and must begin with one."""

    sync_engine = engine.sync_engine if isinstance(engine, AsyncEngine) else engine

    @event.listens_for(sync_engine, "connect")
    def on_connect(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None if begin is not None else "IMMEDIATE"
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute(f"PRAGMA synchronous = {synchronous}")
        cursor.execute("PRAGMA foreign_keys = ON")
        # A deleted or overwritten text is zeroed where it lay in its page, and freed
        # pages are zeroed: the bytes of a deleted message do not linger in the file
        # (quartchat/erasure.py). It costs a chat insert nothing measurable (docs/performance.md).
        cursor.execute("PRAGMA secure_delete = ON")
        if not autocheckpoint:
            cursor.execute("PRAGMA wal_autocheckpoint = 0")
        cursor.close()

    if begin is not None:
        statement = begin

        @event.listens_for(sync_engine, "begin")
        def on_begin(connection: Any) -> None:
            connection.exec_driver_sql(statement)
