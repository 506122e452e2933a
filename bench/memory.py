"""Memory per idle connection (issue 25): RSS and tracemalloc growth, by where it goes.

    python bench/memory.py [--connections 1000]              # RSS per connection
    python bench/memory.py [--connections 1000] --tracemalloc # and what holds it, by file and line
    python bench/memory.py --code ../main                    # the server from another checkout (A/B)

Starts a quartchat server (one process, SQLite in a temporary directory), makes
`connections` accounts in bulk (bench/accounts.py: no thousand argon2 hashes), signs each
in through /api/session, opens one idle WebSocket per account into one room (every user
distinct: each join reaches everyone), waits for the room to be quiet, and prints the
server's growth divided by the connections. With --tracemalloc the server runs traced
(slower, and its RSS then includes the tracing: read the tracemalloc figures, not RSS)
and a snapshot is taken before and after, compared by file and by line.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import httpx
from websockets.asyncio.client import ClientConnection, connect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.accounts import bulk_accounts

PASSWORD = "memory-password-1"
SECRET = "memory-bench-secret-key-0123456789abcdef"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_traced(snapshot_path: str, argv: list[str]) -> None:
    """The server, traced: SIGUSR1 writes a tracemalloc snapshot (after a full collection)."""
    code = os.environ.get("MEMORY_CODE")
    if code:  # the server from another checkout, not this one
        sys.path.insert(0, code)
        for name in [m for m in sys.modules if m == "quartchat" or m.startswith("quartchat.")]:
            del sys.modules[name]
    tracemalloc.start(int(os.environ.get("MEMORY_FRAMES", "1")))

    def dump(signum: int, frame: object) -> None:
        gc.collect()
        tracemalloc.take_snapshot().dump(snapshot_path)
        Path(snapshot_path + ".done").touch()

    signal.signal(signal.SIGUSR1, dump)
    from quartchat.cli import main

    sys.argv = ["quartchat", *argv]
    main()


def take_snapshot(process: subprocess.Popen[bytes], path: Path) -> tracemalloc.Snapshot:
    """Ask the traced server for a snapshot and wait until it is written."""
    done = Path(str(path) + ".done")
    done.unlink(missing_ok=True)
    process.send_signal(signal.SIGUSR1)
    while not done.exists():
        time.sleep(0.1)
    return tracemalloc.Snapshot.load(str(path))


async def snapshot(process: subprocess.Popen[bytes], path: Path) -> tracemalloc.Snapshot:
    return await asyncio.to_thread(take_snapshot, process, path)


async def open_idle(base: str, room: str, cookies: list[str], in_flight: int = 50) -> list[ClientConnection]:
    gate = asyncio.Semaphore(in_flight)

    async def one(cookie: str) -> ClientConnection:
        async with gate:
            return await connect(
                f"{base.replace('http', 'ws')}/ws/chat/{room}?batch=1",
                origin=base,  # type: ignore[arg-type]
                additional_headers={"Cookie": cookie},
                open_timeout=60,
                proxy=None,
                compression=None,
                max_queue=None,
            )

    return list(await asyncio.gather(*(one(c) for c in cookies)))


async def sign_in_all(base: str, names: list[str]) -> list[str]:
    gate = asyncio.Semaphore(16)
    async with httpx.AsyncClient(base_url=base, timeout=60, trust_env=False) as http:

        async def one(name: str) -> str:
            async with gate:
                response = await http.post("/api/session", json={"name": name, "password": PASSWORD})
            response.raise_for_status()
            return "; ".join(f"{k}={v}" for k, v in response.cookies.items())

        return list(await asyncio.gather(*(one(n) for n in names)))


def report(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, count: int, key: str, top: int) -> None:
    stats = after.compare_to(before, key)
    total = sum(s.size_diff for s in stats)
    print(f"\ntracemalloc growth by {key}: {total / count / 1024:.1f} KiB per connection")
    for stat in stats[:top]:
        frame = stat.traceback[0]
        where = f"{frame.filename.split('site-packages/')[-1].split('lib/python3.11/')[-1]}"
        where += f":{frame.lineno}" if key == "lineno" else ""
        print(f"  {stat.size_diff / count:8.0f} B  {stat.count_diff / count:6.1f} blocks  {where}")


def start_server(count: int, traced: bool, code: str | None) -> tuple[subprocess.Popen[bytes], str, Path]:
    """A migrated database with `count` + 20 accounts, and a server on it: (process, base URL, snapshot path)."""
    workdir = Path(tempfile.mkdtemp(prefix="quartchat-memory-"))
    database_url = f"sqlite+aiosqlite:///{workdir / 'chat.db'}"
    port = free_port()
    env = {
        **os.environ,
        "QUARTCHAT_DATABASE_URL": database_url,
        "QUARTCHAT_SECRET_KEY": SECRET,
        "QUARTCHAT_RATE_LIMIT": "100000/1",
        "QUARTCHAT_MAX_CONNECTIONS_PER_ADDRESS": "100000",
    }
    if code:
        env["MEMORY_CODE"] = env["PYTHONPATH"] = str(Path(code).resolve())
    serve_args = ["serve", "--bind", f"127.0.0.1:{port}"]
    snapshot_path = workdir / "snapshot"
    command = [sys.executable, "-m", "quartchat", *serve_args]
    if traced:
        command = [sys.executable, __file__, "--serve-traced", str(snapshot_path), *serve_args]
    migrate = [sys.executable, "-m", "quartchat", "db", "upgrade"]
    subprocess.run(migrate, env=env, cwd=code or None, check=True, capture_output=True)
    asyncio.run(bulk_accounts(database_url, count + 20, "idle", PASSWORD))
    with open(workdir / "server.log", "wb") as log:
        server = subprocess.Popen(command, env=env, cwd=code or None, stdout=subprocess.DEVNULL, stderr=log)
    return server, f"http://127.0.0.1:{port}", snapshot_path


async def measure(server: subprocess.Popen[bytes], base: str, snapshot_path: Path, count: int, traced: bool) -> None:
    async with httpx.AsyncClient(base_url=base, trust_env=False) as http:
        for _ in range(300):
            try:
                if (await http.get("/healthz")).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    cookies = await sign_in_all(base, [f"idle{i}" for i in range(count + 20)])
    # Warm up: every code path once, so that imports and caches are not counted.
    warm = await open_idle(base, "warm", cookies[count:])
    await asyncio.sleep(1)
    for ws in warm:
        await ws.close()
    await asyncio.sleep(5)  # past the presence grace
    before_snapshot = await snapshot(server, snapshot_path) if traced else None
    rss_before = rss_kib(server.pid)
    started = time.monotonic()
    sockets = await open_idle(base, "idle", cookies[:count])
    opened = time.monotonic() - started
    await asyncio.sleep(8)  # the join storm settles; the clients read it all
    rss_after = rss_kib(server.pid)
    after_snapshot = await snapshot(server, snapshot_path) if traced else None
    print(
        f"{count} idle connections (one account each, one room, batch=1) opened in {opened:.1f} s: "
        f"server RSS {rss_before / 1024:.1f} -> {rss_after / 1024:.1f} MiB, "
        f"{(rss_after - rss_before) / count:.1f} KiB per connection" + (" (traced)" if traced else "")
    )
    if before_snapshot is not None and after_snapshot is not None:
        report(before_snapshot, after_snapshot, count, "filename", 15)
        report(before_snapshot, after_snapshot, count, "lineno", 25)
        if os.environ.get("MEMORY_FRAMES"):  # where the largest come from, whole tracebacks
            for stat in after_snapshot.compare_to(before_snapshot, "traceback")[:12]:
                print(f"\n{stat.size_diff / count:.0f} B per connection:")
                print("\n".join(stat.traceback.format()[-16:]))
    for ws in sockets:
        await ws.close()


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--serve-traced":
        serve_traced(sys.argv[2], sys.argv[3:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--tracemalloc", action="store_true")
    parser.add_argument("--code", help="serve the quartchat of this checkout instead (for an A/B)")
    args = parser.parse_args()
    server, base, snapshot_path = start_server(args.connections, args.tracemalloc, args.code)
    try:
        asyncio.run(measure(server, base, snapshot_path, args.connections, args.tracemalloc))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)


if __name__ == "__main__":
    main()
