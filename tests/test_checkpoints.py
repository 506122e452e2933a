"""WalCheckpoints: with the writer's own checkpoints off, the background task is what
copies the WAL into the database file."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

from quartchat import migrate
from quartchat.checkpoints import WalCheckpoints
from quartchat.database import create_database
from quartchat.settings import Settings
from quartchat.transfer import import_records, read_export

from .support import sqlite_url, until


async def test_the_wal_reaches_the_database_file_only_through_the_checkpoints(tmp_path: Path) -> None:
    path = tmp_path / "wal.db"
    await asyncio.to_thread(migrate.upgrade, sqlite_url(path))
    database = create_database(Settings(database_url=sqlite_url(path)), background_checkpoints=True)
    try:
        lines = [
            json.dumps(
                {
                    "id": i,
                    "type": "chat",
                    "room": "lobby",
                    "user": {"id": "u1", "name": "alice"},
                    "data": "x" * 3000,
                    "ts": "2026-12-04T10:00:00.000Z",
                }
            )
            for i in range(1, 301)
        ]
        await import_records(database.writer, read_export(io.StringIO("\n".join(lines)), "wal.ndjson"))
        before = path.stat().st_size
        assert before < 300 * 3000, "the rows wait in the WAL"
        checkpoints = WalCheckpoints(database, interval=0.01)
        checkpoints.start()
        try:
            await until(lambda: path.stat().st_size > 300 * 3000, "the WAL copied into the database file")
        finally:
            await checkpoints.stop()
    finally:
        await database.dispose()
