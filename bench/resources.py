"""Scenarios 5 and 6 of the performance issue.

    python bench/resources.py idle [--connections 5000]   # connect rate, memory per connection
    python bench/resources.py join [--messages 1000000]   # open -> list, big room vs small room

Uses bench/chat.py's pinned server (core 0) and runs the client on core 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chat import BENCH, Target, pin


def rss_kib(pid: int) -> int:
    """Resident memory of the server process (and its children, e.g. workers)."""
    total = 0
    for candidate in [pid, *_children(pid)]:
        for line in Path(f"/proc/{candidate}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def idle(connections: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="quartchat-idle-"))
    target = Target("quartchat", "quartchat", workdir)
    url = target.start()
    try:
        assert target.process is not None
        time.sleep(1)
        before = rss_kib(target.process.pid)
        loader = subprocess.Popen(
            [*pin(1), "node", str(BENCH / "idle.mjs"), "--url", url, "--connections", str(connections), "--hold", "8"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert loader.stdout is not None
        result = json.loads(loader.stdout.readline())
        time.sleep(3)
        during = rss_kib(target.process.pid)
        loader.wait()
        per_connection = (during - before) / max(1, result["opened"])
        print(
            f"idle: {result['opened']}/{connections} opened ({result['failed']} failed) at "
            f"{result['connect_per_s']:.0f} connections/s; server RSS {before / 1024:.0f} -> {during / 1024:.0f} MiB "
            f"= {per_connection:.1f} KiB per connection (target <= 64)"
        )
    finally:
        target.stop()


async def join_times(url: str, room: str, cookie: str, count: int) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        async with connect(
            f"{url.replace('http://', 'ws://')}/ws/chat/{room}",
            additional_headers={"Cookie": cookie},
            compression=None,
            max_size=2**24,
        ) as ws:
            while json.loads(await ws.recv())["type"] != "list":
                pass
            times.append(time.perf_counter() - started)
    return times


def join(messages: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="quartchat-join-"))
    target = Target("quartchat", "quartchat", workdir)
    url = target.start()
    database = next(workdir.rglob("bench.db"))
    env = {**os.environ, "QUARTCHAT_DATABASE_URL": f"sqlite+aiosqlite:///{database}"}
    seed = workdir / "seed.ndjson"
    with seed.open("w") as out:
        for i in range(1, messages + 101):
            room = "big" if i <= messages else "small"
            out.write(
                json.dumps(
                    {
                        "id": i,
                        "type": "chat",
                        "room": room,
                        "user": {"id": "u-j", "name": "j"},
                        "data": f"message {i}",
                        "ts": "2026-11-24T10:00:00.000Z",
                    }
                )
                + "\n"
            )
    subprocess.run([sys.executable, "-m", "quartchat", "import", str(seed)], env=env, check=True, capture_output=True)
    try:
        cookie_jar = httpx.post(f"{url}/api/session", json={"name": "joiner", "password": "benchmark password"})
        cookie = "; ".join(f"{k}={v}" for k, v in cookie_jar.cookies.items())
        for room in ("small", "big"):
            asyncio.run(join_times(url, room, cookie, 20))  # warm up
        small = statistics.median(asyncio.run(join_times(url, "small", cookie, 200)))
        big = statistics.median(asyncio.run(join_times(url, "big", cookie, 200)))
        print(
            f"join (open -> list), p50: room of 100 messages {small * 1000:.2f} ms, room of {messages:,} "
            f"{big * 1000:.2f} ms: {big / small:.2f}x (target <= 1.2x)"
        )
    finally:
        target.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["idle", "join"])
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--messages", type=int, default=1_000_000)
    args = parser.parse_args()
    idle(args.connections) if args.what == "idle" else join(args.messages)
