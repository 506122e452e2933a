"""The message writer alone: milliseconds per batch, idle and beside a busy thread.

    python bench/writer.py [--rooms 20] [--messages 20] [--busy | --busy-process] [--switch-interval S]

Runs the message writer's transaction (`SqliteWrites.commit_batch`) on an SQLite file
in a loop, pinned to core 0. `--busy` starts a thread spinning Python on the same
core, as the server's event loop does under load: the writer then waits for the GIL
after each call that released it (the commit's fsync above all), for up to the
interpreter's switch interval (5 ms unless `--switch-interval`). `--busy-process` spins in another process on the
same core instead: what a writer of its own process would see (the kernel, not the
GIL, shares the core then).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from sqlalchemy import insert

from quartchat import migrate
from quartchat.database import create_database
from quartchat.models import User
from quartchat.protocol import UserRef
from quartchat.settings import Settings
from quartchat.writes import Draft, create_writes


def spin_until(stop: threading.Event | None = None) -> None:
    while stop is None or not stop.is_set():
        sum(range(100))


async def measure(rooms: int, messages: int, busy: str, batches: int) -> list[float]:
    workdir = tempfile.mkdtemp(prefix="quartchat-writer-")
    url = f"sqlite+aiosqlite:///{workdir}/writer.db"
    try:
        await asyncio.to_thread(migrate.upgrade, url)
        database = create_database(Settings(database_url=url))
        users = [UserRef(f"u{i}", f"user{i}") for i in range(messages)]
        async with database.writer.begin() as connection:
            for user in users:
                await connection.execute(
                    insert(User).values(
                        id=user.id, name=user.name, name_key=user.name, password_hash=None, created_ms=0
                    )
                )

        writes = create_writes(database)
        await writes.open()
        drafts = [
            Draft(f"room{i % rooms}", users[i], "a chat message of about sixty characters, like most")
            for i in range(messages)
        ]
        for _ in range(20):  # warm up: statement caches, the rooms' rows
            await writes.commit_batch(drafts)
        stop = threading.Event()
        spinner = None
        if busy == "thread":
            threading.Thread(target=spin_until, args=(stop,), daemon=True).start()
        elif busy == "process":
            spinner = multiprocessing.get_context("fork").Process(target=spin_until, daemon=True)
            spinner.start()
        seconds = []
        for _ in range(batches):
            started = time.perf_counter()
            await writes.commit_batch(drafts)
            seconds.append(time.perf_counter() - started)
        stop.set()
        if spinner is not None:
            spinner.terminate()
            spinner.join()
        await writes.close()
        await database.dispose()
        return sorted(seconds)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rooms", type=int, default=20)
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--batches", type=int, default=200)
    busy = parser.add_mutually_exclusive_group()
    busy.add_argument("--busy", action="store_true", help="a thread spinning Python on the same core")
    busy.add_argument("--busy-process", action="store_true", help="a process spinning Python on the same core")
    parser.add_argument("--switch-interval", type=float, help="sys.setswitchinterval, seconds")
    args = parser.parse_args()
    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {0})  # the spinning thread, started later, shares core 0
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)
    busy = "thread" if args.busy else "process" if args.busy_process else "none"
    seconds = asyncio.run(measure(args.rooms, args.messages, busy, args.batches))
    n = len(seconds)
    print(
        f"{args.messages} messages in {args.rooms} rooms, busy {busy}, "
        f"switch interval {sys.getswitchinterval() * 1e3:g} ms: "
        f"median {seconds[n // 2] * 1e3:.2f} ms, p90 {seconds[n * 9 // 10] * 1e3:.2f} ms a batch"
    )


if __name__ == "__main__":
    main()
