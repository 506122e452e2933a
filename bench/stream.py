"""What the per-user stream (activity and notify, docs/protocol.md) costs a server.

    python bench/stream.py [--clients 1000] [--rooms 100] [--per-user 20] [--rate 50]
                           [--seconds 20] [--repeat 2]

Sets up one SQLite database: `--clients` accounts (bench/accounts.py), `--rooms`
public rooms, each user a member of `--per-user` of them (user i: rooms (i + s·k) mod
rooms, s = rooms // per-user). Then, with QUARTCHAT_USER_STREAM=1 and =0 in turn (`--repeat` rounds, one
database, a fresh server each run), bench/stream.mjs opens one connection per user and
sends `--rate` messages a second spread over the rooms; this prints the server's CPU
over the measured seconds (every process of its group, from /proc) and the clients'
delivery latency; the measured time runs until every chat has arrived, so a server that
fell behind is charged the whole work (`server_cpu_ms_per_message`). Compare the ratios
within one run: the machine is noisy. `--micro`: the stream's own work alone, in process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert, select

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

from accounts import bulk_accounts  # noqa: E402

from quartchat import migrate, models  # noqa: E402
from quartchat.database import create_database  # noqa: E402
from quartchat.settings import Settings  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


async def memberships(database_url: str, clients: int, rooms: int, per_user: int) -> None:
    database = create_database(Settings(database_url=database_url))
    try:
        async with database.writer.begin() as connection:
            users = (await connection.execute(select(models.User.id, models.User.name))).all()
            number = {row.id: int(row.name.removeprefix("load")) for row in users}
            stride = rooms // per_user
            await connection.execute(
                insert(models.Room),
                [
                    {"name": f"s-{r}", "message_count": 0, "last_id": 0, "kind": "public", "created_ms": 1}
                    for r in range(rooms)
                ],
            )
            await connection.execute(
                insert(models.Membership),
                [
                    {"room": f"s-{(n + stride * k) % rooms}", "user_id": user_id, "role": "member", "joined_ms": 0}
                    for user_id, n in number.items()
                    for k in range(per_user)
                ],
            )
    finally:
        await database.dispose()


def cpu_seconds(group: int) -> float:
    """User + system CPU of every live process in the process group."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group:  # pgrp
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_once(folder: Path, database_url: str, stream: bool, args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUARTCHAT_")}
    env.update(
        QUARTCHAT_DATABASE_URL=database_url,
        QUARTCHAT_SECRET_KEY="bench-secret-key-0123456789abcdef",
        QUARTCHAT_RATE_LIMIT="1000000/1",
        QUARTCHAT_MAX_CONNECTIONS_PER_ADDRESS="100000",
        QUARTCHAT_USER_STREAM="1" if stream else "0",
    )
    log = open(folder / f"server-{port}.log", "ab")  # noqa: SIM115
    server = subprocess.Popen(
        [sys.executable, "-m", "quartchat", "serve", "--bind", f"127.0.0.1:{port}"],
        env=env,
        cwd=folder,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", trust_env=False).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.1)
        command = [
            "node", str(BENCH / "stream.mjs"), "--url", f"http://127.0.0.1:{port}",
            "--clients", str(args.clients), "--rooms", str(args.rooms), "--per-user", str(args.per_user),
            "--rate", str(args.rate), "--seconds", str(args.seconds),
        ]  # fmt: skip
        load = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=BENCH)
        assert load.stdout is not None
        result: dict[str, Any] = {}
        cpu_start = started = 0.0
        for line in load.stdout:
            line = line.strip()
            if line == "MEASURE-START":
                cpu_start, started = cpu_seconds(server.pid), time.monotonic()
            elif line == "MEASURE-END":
                cpu = cpu_seconds(server.pid) - cpu_start
                result["server_cpu_seconds"] = round(cpu, 2)
                result["server_cpu_percent"] = round(100 * cpu / (time.monotonic() - started), 1)
            elif line.startswith("{"):
                result.update(json.loads(line))
                result["server_cpu_ms_per_message"] = round(1000 * result["server_cpu_seconds"] / result["sent"], 2)
        load.wait()
        return result
    finally:
        os.killpg(server.pid, 15)
        server.wait(30)
        log.close()


async def micro(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """The stream's own work per message, in this process (CPU time, so a busy machine
    changes it little): the same users, rooms and memberships, every user with one
    connection (no socket: frames stay queued), messages at `--rate` a second with the
    coalescing window shrunk in proportion, so that as many messages share a window."""
    from quartchat import user_stream
    from quartchat.connection import Connection
    from quartchat.protocol import StoredMessage, UserRef
    from quartchat.store import RoomCounts, Store

    windows = 40
    user_stream.ACTIVITY_SECONDS = 0.05  # a 20th of a second holds a second's messages
    database = create_database(Settings(database_url=f"sqlite+aiosqlite:///{folder}/micro.db"))
    stream = user_stream.UserStream(Store(database))
    stride = args.rooms // args.per_user
    users = [UserRef(f"u{i}", f"load{i}") for i in range(args.clients)]
    connections = [
        Connection(user, f"s-{i % args.rooms}", "127.0.0.1", batch=True, capacity=10**9) for i, user in enumerate(users)
    ]
    for connection in connections:
        stream.opened(connection)
    rows = [
        RoomCounts(user.id, f"s-{(i + stride * k) % args.rooms}", "public", 0, 0, 0, 0)
        for i, user in enumerate(users)
        for k in range(args.per_user)
    ]
    stream._install(dict.fromkeys(stream._to_load), rows, [])
    members: dict[str, list[int]] = {}
    for row in rows:
        members.setdefault(row.room, []).append(int(row.user_id[1:]))
    rng = random.Random(1)
    message_id = 0
    cpu = time.process_time()
    for _ in range(windows):
        for n in range(args.rate):
            author = rng.randrange(args.clients)
            room = f"s-{author % args.rooms}"
            message_id += 1
            mentioned = (f"u{rng.choice(members[room])}",) if n % 10 == 0 else ()
            stream.deliver([StoredMessage(message_id, room, users[author], "t", 0, mentions=mentioned)])
        await asyncio.sleep(user_stream.ACTIVITY_SECONDS)
    cpu = time.process_time() - cpu
    await database.dispose()
    frames = sum(len(c.queue) for c in connections)
    sent = windows * args.rate
    return {
        "messages": sent,
        "watchers_per_message": round(sum(len(members[f"s-{r}"]) for r in range(args.rooms)) / args.rooms),
        "cpu_us_per_message": round(cpu / sent * 1e6),
        "frames_queued_per_message": round(frames / sent, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rooms", type=int, default=100)
    parser.add_argument("--per-user", type=int, default=20)
    parser.add_argument("--rate", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (database, server logs)")
    parser.add_argument("--micro", action="store_true", help="only the stream's own CPU per message, in process")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="stream-bench-"))
    print(f"scratch folder: {folder}", flush=True)
    try:
        if args.micro:
            print("in process: " + json.dumps(asyncio.run(micro(args, folder))), flush=True)
            return
        database_url = f"sqlite+aiosqlite:///{folder}/chat.db"
        migrate.upgrade(database_url)
        asyncio.run(bulk_accounts(database_url, args.clients))
        asyncio.run(memberships(database_url, args.clients, args.rooms, args.per_user))
        for round_ in range(args.repeat):
            for stream in (True, False):
                result = run_once(folder, database_url, stream, args)
                label = "stream on " if stream else "stream off"
                print(f"round {round_ + 1} {label}: " + json.dumps(result), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(folder)


if __name__ == "__main__":
    main()
