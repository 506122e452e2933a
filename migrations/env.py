"""Alembic's async environment, with our settings' URL and our models' metadata."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from quartchat.database import configure_sqlite
from quartchat.models import Base
from quartchat.search import in_the_models

config = context.config
target_metadata = Base.metadata


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


# Several instances may start at once on an empty database, each migrating it first:
# one at a time, and the others then find it at the newest revision. On PostgreSQL a
# session-level advisory lock (per database; this connection's end releases it); on
# SQLite the whole upgrade is one transaction that takes the write lock as it begins.
MIGRATION_LOCK = 0x71756172_74636874  # "quartcht": any constant our own code never uses otherwise
# How long a starting instance waits for another's migration (a big history's takes minutes).
SQLITE_MIGRATION_WAIT_MS = 600_000


def do_run_migrations(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_lock({MIGRATION_LOCK})")
        connection.commit()  # the lock outlives this transaction; Alembic begins its own
    # render_as_batch: SQLite cannot ALTER most things; batch mode copies the table.
    # transactional_ddl: one transaction for the whole upgrade on SQLite too (Alembic's
    # default there is one per revision), so no other process reads a half-way revision.
    # on_version_apply: quartchat.migrate's one-line report of the revisions applied.
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        transactional_ddl=True,
        on_version_apply=config.attributes.get("on_version_apply"),
        include_name=in_the_models,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations() -> None:
    url = config.get_main_option("sqlalchemy.url") or ""
    engine = create_async_engine(url, poolclass=NullPool)
    if url.startswith("sqlite"):
        configure_sqlite(engine, "FULL", begin="BEGIN IMMEDIATE", busy_timeout_ms=SQLITE_MIGRATION_WAIT_MS)
    async with engine.connect() as connection:
        await connection.run_sync(do_run_migrations)
    await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_async_migrations())
