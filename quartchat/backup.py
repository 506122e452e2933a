"""`quartchat db backup`: SQLite's online backup, a consistent copy while the server
keeps writing."""

from __future__ import annotations

import sqlite3
from pathlib import Path


class BackupError(Exception):
    """A backup that cannot be made, or that failed its check; the message says which."""


def backup_sqlite(source: Path, target: Path) -> None:
    """Copy the database file `source` to the new file `target`, then check the copy."""
    if not source.exists():
        raise BackupError(f"no database at {source}")
    if target.exists():
        raise BackupError(f"{target} exists: give a new file name")
    reading = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    writing = sqlite3.connect(target)
    try:
        # In steps of 1024 pages, so the server's writes are not held up meanwhile.
        reading.backup(writing, pages=1024)
        check = writing.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        reading.close()
        writing.close()
    if check != "ok":
        raise BackupError(f"the backup failed its integrity check: {check}")
