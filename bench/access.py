"""What the members-only check (docs/protocol.md §11) costs a message: the writer's
transaction alone, batches in public rooms against the same batches in private rooms.

    python bench/access.py [--rooms 5] [--messages 25] [--batches 300] [--repeat 3]
                           [--memberships 20000] [--postgres]

Runs `Writes.commit_batch` (quartchat/writes.py) on a fresh database, as the message
writer does: every draft has a live session and a client_id, as a browser's has. The
only difference between the two rows is the rooms' kind, so the difference is the
check: CPU (this thread's, not wall time: the machine is shared) per message, and SQL
statements per batch. `--memberships` adds other rooms' members, so that a lookup that
scanned the table would show. With `--postgres` the database is a fresh PostgreSQL one
(the CPU is then the writer's side alone, not the server's).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from sqlalchemy import event, insert

from quartchat import migrate
from quartchat.database import create_database
from quartchat.models import Membership, Room, Session, User
from quartchat.protocol import UserRef
from quartchat.settings import Settings
from quartchat.writes import Draft, Outcome, create_writes

ROOT = Path(__file__).resolve().parent.parent
_batches = itertools.count()
TEXT = "a chat message of about sixty characters, like most of them"


async def prepare(url: str, rooms: int, messages: int, memberships: int) -> None:
    await asyncio.to_thread(migrate.upgrade, url)
    database = create_database(Settings(database_url=url))
    now = int(time.time() * 1000)
    fillers = max(1, memberships // max(1, messages))
    async with database.writer.begin() as connection:
        await connection.execute(
            insert(User),
            [
                dict(id=f"u{i}", name=f"u{i}", name_key=f"u{i}", password_hash=None, created_ms=0)
                for i in range(messages)
            ],
        )
        await connection.execute(
            insert(Session), [dict(id=f"s{i}", user_id=f"u{i}", created_ms=now) for i in range(messages)]
        )
        names = [(f"{kind}{r}", kind) for kind in ("public", "private") for r in range(rooms)]
        names += [(f"other{r}", "private") for r in range(fillers)]
        await connection.execute(
            insert(Room), [dict(name=n, kind=k, message_count=0, last_id=0, created_ms=1) for n, k in names]
        )
        members = [(f"private{r}", i) for r in range(rooms) for i in range(messages)]
        members += [(f"other{r}", i) for r in range(fillers) for i in range(messages)]
        await connection.execute(
            insert(Membership), [dict(room=n, user_id=f"u{i}", role="member", joined_ms=0) for n, i in members]
        )
    await database.dispose()


async def measure(url: str, kind: str, rooms: int, messages: int, batches: int) -> tuple[float, float]:
    """(CPU seconds a message, statements a batch) over `batches` batches in `kind` rooms."""
    database = create_database(Settings(database_url=url))
    writes = create_writes(database)
    await writes.open()
    engine: Any = getattr(writes, "_engine")  # noqa: B009 (the writer's own engine)
    statements = 0

    def count(*_: Any) -> None:
        nonlocal statements
        statements += 1

    def batch() -> list[Draft]:
        n = next(_batches)  # a new client_id for every message of every run
        return [
            Draft(f"{kind}{i % rooms}", UserRef(f"u{i}", f"u{i}"), TEXT, f"{kind}-{n}-{i}", f"s{i}")
            for i in range(messages)
        ]

    try:
        for _ in range(20):  # warm up: statement caches, the rooms' rows
            await writes.commit_batch(batch())
        event.listen(engine.sync_engine if hasattr(engine, "sync_engine") else engine, "before_cursor_execute", count)
        cpu = 0.0
        for _ in range(batches):
            drafts = batch()
            started = time.thread_time()
            outcomes = await writes.commit_batch(drafts)
            cpu += time.thread_time() - started
            assert all(isinstance(o, Outcome) and o.fresh for o in outcomes), outcomes[:3]
    finally:
        await writes.close()
        await database.dispose()
    return cpu / (batches * messages), statements / batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, default=5, help="rooms a batch touches")
    parser.add_argument("--messages", type=int, default=25, help="messages a batch (one user each)")
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--memberships", type=int, default=20_000, help="other rooms' members in the table")
    parser.add_argument("--postgres", action="store_true", help="a fresh PostgreSQL database (127.0.0.1:5432)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="quartchat-access-"))
    name = f"qc_access_{int(time.time())}"
    if args.postgres:
        manage = [sys.executable, "-m", "tests.postgres_database"]
        subprocess.run([*manage, "create", name], check=True, capture_output=True, cwd=ROOT)
        url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    else:
        url = f"sqlite+aiosqlite:///{workdir}/access.db"
    try:
        asyncio.run(prepare(url, args.rooms, args.messages, args.memberships))
        runs: dict[str, list[tuple[float, float]]] = {"public": [], "private": []}
        for _ in range(args.repeat):  # alternating: a drift of the machine touches both alike
            for kind in runs:
                runs[kind].append(asyncio.run(measure(url, kind, args.rooms, args.messages, args.batches)))
    finally:
        if args.postgres:
            subprocess.run([*manage, "drop", name], capture_output=True, cwd=ROOT)
        shutil.rmtree(workdir, ignore_errors=True)
    database = "PostgreSQL" if args.postgres else "SQLite"
    print(
        f"{database}, {args.messages} messages a batch in {args.rooms} rooms, "
        f"{args.memberships:,} other memberships, medians of {args.repeat} x {args.batches} batches:"
    )
    cpu = {kind: statistics.median(c for c, _ in measured) for kind, measured in runs.items()}
    for kind, measured in runs.items():
        print(
            f"  {kind:>8} rooms: {cpu[kind] * 1e6:6.1f} µs of the writer's CPU a message, "
            f"{measured[0][1]:.1f} statements a batch"
        )
    print(f"  the members-only check: {(cpu['private'] - cpu['public']) * 1e6:+.1f} µs a message")


if __name__ == "__main__":
    main()
