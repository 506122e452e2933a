"""Delete means gone (docs/protocol.md §17, §19): a deleted text leaves the database files.

Three steps, because a text lives in three places after its row changes:

1. **The rows** (`erase_texts`, in the delete's own transaction): the chat row's text
   becomes "" (and `deleted` true), and so does the text of each of its edit events.
   A raw SQL read finds it no more as soon as that commits, on SQLite and PostgreSQL.
   A retention purge deletes the rows instead (quartchat/retention.py).
2. **SQLite's pages**: every connection runs with `PRAGMA secure_delete = ON`
   (quartchat/database.py), so the old cell is zeroed in its page and freed pages are
   zeroed. FTS5's index (`messages_fts`, external content) is told to forget the old
   text by the triggers, but the tokens stay in its older segments until those are
   merged: SQLite 3.40 has no FTS5 `secure-delete` option (3.42+). The scrub merges
   every segment into one, a few pages a transaction (`merge`, negative: whatever
   their level), so the old segments are freed — and zeroed.
3. **SQLite's WAL**: the old page images stay in the `-wal` file until it is
   overwritten. The scrub ends with `wal_checkpoint(TRUNCATE)`: every frame copied into
   the database file, and the WAL cut to zero bytes. (The `-shm` file holds page
   numbers and hashes, never content.)

Steps 2 and 3 are `Scrubber`: one pass a few seconds after a process's deletes (the
writer calls `request()` when a delete commits; the retention task when a purge
ends), at most one every `min_gap` seconds; and every `check_interval` seconds it
looks for a delete event newer than the last it saw (a delete nobody told it of).
PostgreSQL needs no scrub for SQL: a deleted or updated row's old version is a dead
tuple, invisible to every query, and VACUUM (autovacuum) frees its space for reuse
(docs/operations.md, "Retention and erasure").
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, bindparam, update

from .models import Message
from .settings import SQLITE_BUSY_TIMEOUT_MS

log = logging.getLogger(__name__)

# The delete's SQL: the chat rows' texts and their edits' texts become "" in the same
# transaction as the delete event (the search index's triggers take the old text out).
ERASE_CHAT = (
    update(Message)
    .where(Message.id.in_(bindparam("ids", expanding=True)), Message.kind == "chat")
    .values(text="", deleted=True, mentions=None)
)
ERASE_EDITS = (
    update(Message)
    .where(Message.target.in_(bindparam("ids", expanding=True)), Message.kind == "edit")
    .values(text="", mentions=None)
)

MERGE_PAGES = 64  # pages an FTS merge step writes: each step is a short transaction
SCRUB_DELAY = 2.0  # seconds after a request: the deletes of a burst share one scrub
MIN_GAP = 30.0  # seconds between two scrubs, whatever the rate of deletes: at a million messages a scrub takes ~7 s
CHECK_SECONDS = 30.0  # how often a process looks for delete events nobody told it of


def erase_texts(connection: Connection, message_ids: Sequence[int]) -> None:
    """Blank the texts of these chat messages and of their edit events, in the caller's
    transaction (the delete's). Run it with the delete event's insert; after the commit,
    ask the process's `Scrubber` for a scrub."""
    if message_ids:
        ids = sorted(set(message_ids))
        connection.execute(ERASE_CHAT, {"ids": ids})
        connection.execute(ERASE_EDITS, {"ids": ids})


@dataclass(frozen=True)
class Scrub:
    merge_steps: int
    pages_merged: int
    wal_truncated: bool
    seconds: float


def scrub_sqlite(path: Path, budget_pages: int | None = None, pause: float = 1.0) -> Scrub:
    """Merge the FTS index's segments into one and truncate the WAL (module docstring).

    Each merge step is its own short transaction, followed by a rest `pause` times as
    long as the step took, so that the chat's commits keep their place. The merge stops
    when a step finds nothing left to merge or after `budget_pages` (default: twice
    the index's size when the scrub began) — while the chat goes on, new small segments
    keep coming, and merging them into the big one again and again would never end.
    Blocking: run it on a thread of its own."""
    started = time.perf_counter()
    connection = sqlite3.connect(path, isolation_level=None, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
    try:
        connection.execute("PRAGMA secure_delete = ON")
        if budget_pages is None:
            (index_pages,) = connection.execute("SELECT count(*) FROM messages_fts_data").fetchone()
            budget_pages = 2 * int(index_pages) + MERGE_PAGES
        steps = pages = 0
        while pages < budget_pages:
            step_started = time.perf_counter()
            connection.execute("BEGIN IMMEDIATE")
            before = connection.total_changes
            connection.execute("INSERT INTO messages_fts (messages_fts, rank) VALUES ('merge', ?)", (-MERGE_PAGES,))
            worked = connection.total_changes - before >= 2  # FTS5's documented test
            connection.execute("COMMIT")
            if not worked:
                break
            steps += 1
            pages += MERGE_PAGES
            time.sleep(pause * (time.perf_counter() - step_started))
        busy, _, _ = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        connection.close()
    return Scrub(steps, pages, busy == 0, time.perf_counter() - started)


def newest_delete_id(path: Path) -> int:
    """The id of the newest delete event (0: none), read through the index on `target`."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
    try:
        (newest,) = connection.execute(
            # Without INDEXED BY, SQLite walks the table back from its newest row.
            "SELECT max(id) FROM messages INDEXED BY ix_messages_target WHERE target IS NOT NULL AND kind = 'delete'"
        ).fetchone()
    finally:
        connection.close()
    return int(newest or 0)


class Scrubber:
    """One process's scrubs of its SQLite database, on a thread, after deletes."""

    def __init__(
        self, path: Path, delay: float = SCRUB_DELAY, min_gap: float = MIN_GAP, check_interval: float = CHECK_SECONDS
    ) -> None:
        self.path = path
        self.delay = delay
        self.min_gap = min_gap
        self.check_interval = check_interval
        self.scrubs = 0  # finished, for tests and metrics
        self.checks = 0  # looks for deletes nobody told of
        self._wanted = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._scrub_when_asked(), name="erasure-scrub")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def request(self) -> None:
        """Ask for a scrub soon. Safe from any thread (the message writer has its own)."""
        if self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._wanted.set)

    async def _scrub_when_asked(self) -> None:
        seen_delete = 0  # a delete from before a crash is scrubbed after the restart
        while True:
            try:
                await asyncio.wait_for(self._wanted.wait(), self.check_interval)
            except TimeoutError:
                # Deletes nobody asked about (another process, the command line, a
                # writer that does not call request()) are found by their events.
                try:
                    newest_delete = await asyncio.to_thread(newest_delete_id, self.path)
                except sqlite3.Error as exc:
                    log.warning("erasure: looking for new deletes failed: %s", exc)
                    continue
                self.checks += 1
                if newest_delete <= seen_delete:
                    continue
                seen_delete = newest_delete
            await asyncio.sleep(self.delay)
            self._wanted.clear()  # deletes from now on ask for the next scrub
            try:
                done = await asyncio.to_thread(scrub_sqlite, self.path)
            except sqlite3.Error as exc:  # busy past the timeout, a full disk: next time
                log.warning("erasure scrub failed, trying again in %g s: %s", self.min_gap, exc)
                self._wanted.set()
            else:
                self.scrubs += 1
                if not done.wal_truncated:  # a reader held the WAL: its frames stay until next time
                    self._wanted.set()
                log.info(
                    "erasure scrub: %d FTS merge steps, WAL %s, %.2f s",
                    done.merge_steps,
                    "truncated" if done.wal_truncated else "busy",
                    done.seconds,
                )
            await asyncio.sleep(self.min_gap)
