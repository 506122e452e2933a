"""Retention and erasure, measured (docs/performance.md, "Retention and erasure").

    python bench/retention.py                        # every part, at their default sizes
    python bench/retention.py --part purge --old 100000 --senders 20
    python bench/retention.py --part scrub --messages 1000000
    python bench/retention.py --part secure-delete

- purge: a real server (SQLite) whose history holds --old messages three days old in 20
  rooms; --senders users (one account each) send into those rooms at a steady rate and
  time each message from send to its echo. Run A keeps everything (retention 0); run B
  has a one-day limit, so its first pass (5 s after start) purges them all while the
  senders send. Printed: p50/p99 of the delivery latency in run A, in run B during the
  purge, and in run B during the scrub that follows.
- scrub: the erasure scrub (quartchat/erasure.py: FTS merge and WAL truncate) on an
  index of --messages messages after 1,000 deletes: seconds, merge steps.
- secure-delete: the writer's INSERT (20 messages a transaction, synchronous FULL, the
  FTS triggers on) with `PRAGMA secure_delete` ON and OFF, alternating rounds.

Numbers from one run on a shared machine are rough: compare them within a run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from quartchat import migrate  # noqa: E402
from quartchat.erasure import scrub_sqlite  # noqa: E402
from quartchat.protocol import format_ts, now_ms  # noqa: E402
from tests.support import Chat, Conn, Server, sqlite_url  # noqa: E402

DAY_MS = 86_400_000
ROOMS = 20


def seed(path: Path, old: int) -> None:
    """A migrated database holding `old` messages of three days ago in ROOMS rooms."""
    migrate.upgrade(sqlite_url(path))
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA synchronous = OFF")
    connection.execute("BEGIN")
    connection.execute("INSERT INTO users (id, name, name_key, created_ms) VALUES ('u-old', 'old', 'old', 0)")
    connection.executemany(
        "INSERT INTO rooms (name, message_count, last_id) VALUES (?, 0, 0)", [(f"old-{r:02d}",) for r in range(ROOMS)]
    )
    start = now_ms() - 3 * DAY_MS
    rng = random.Random(22)
    words = "retention keeps what the team needs and lets the rest go quietly at night".split()  # noqa: SIM905
    connection.executemany(
        "INSERT INTO messages (room, user_id, text, ts_ms, ts) VALUES (?, 'u-old', ?, ?, ?)",
        (
            (f"old-{i % ROOMS:02d}", " ".join(rng.choices(words, k=12)) + f" {i}", start + i, format_ts(start + i))
            for i in range(old)
        ),
    )
    connection.execute("UPDATE rooms SET message_count = (SELECT count(*) FROM messages WHERE room = rooms.name)")
    connection.execute("UPDATE rooms SET last_id = (SELECT max(id) FROM messages WHERE room = rooms.name)")
    connection.execute("COMMIT")
    connection.close()


class Sender:
    """One account sending into its room every `period` seconds; latency per message."""

    def __init__(self, conn: Conn, period: float) -> None:
        self.conn = conn
        self.period = period
        self.sent: dict[str, float] = {}
        self.samples: list[tuple[float, float]] = []  # (time sent, seconds to the echo)

    async def run(self, until: float) -> None:
        reader = asyncio.create_task(self._read())
        n = 0
        next_at = time.monotonic()
        while time.monotonic() < until:
            client_id = f"{id(self)}-{n}"
            self.sent[client_id] = time.monotonic()
            await self.conn.send_json({"type": "chat", "data": f"live message {n}", "client_id": client_id})
            n += 1
            next_at += self.period
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await asyncio.sleep(2)  # the last echoes
        reader.cancel()

    async def _read(self) -> None:
        while True:
            frame = await self.conn.recv(60)
            sent = self.sent.pop(frame.get("client_id") or "", None)
            if frame.get("type") == "chat" and sent is not None:
                self.samples.append((sent, time.monotonic() - sent))


def old_left(path: Path) -> int:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
        (count,) = connection.execute("SELECT count(*) FROM messages WHERE user_id = 'u-old' AND text != ''").fetchone()
    return int(count)


def percentiles(latencies: list[float]) -> dict[str, float]:
    if len(latencies) < 2:
        return {"n": len(latencies)}
    cuts = statistics.quantiles(latencies, n=100)
    return {"n": len(latencies), "p50_ms": round(cuts[49] * 1000, 1), "p99_ms": round(cuts[98] * 1000, 1)}


async def one_run(path: Path, days: int, args: argparse.Namespace) -> dict[str, Any]:
    """One server on a copy of the seeded database (`path`, in a directory of its own)."""
    workdir = path.parent
    server = Server(workdir, sqlite_url(path), rate_limit="100000/1", retention_days=str(days))
    server.env["QUARTCHAT_RETENTION_INTERVAL_SECONDS"] = str(args.first_pass)
    server.start()
    chat = Chat(server)
    window: dict[str, float] = {}
    try:
        conns = [await chat.open(await chat.user(), f"old-{i % ROOMS:02d}") for i in range(args.senders)]
        started = time.monotonic()
        senders = [Sender(conn, 1 / args.rate) for conn in conns]
        stop = threading.Event()
        initial = old_left(path)

        def watch() -> None:  # the purge's window, seen from outside
            while not stop.is_set():
                left = old_left(path)
                if left < initial and "purge_start" not in window:
                    window["purge_start"] = time.monotonic()
                if left == 0 and "purge_end" not in window:
                    window["purge_end"] = time.monotonic()
                time.sleep(0.1)

        watcher = threading.Thread(target=watch)
        watcher.start()
        await asyncio.gather(*(s.run(started + args.seconds) for s in senders))
        stop.set()
        watcher.join()
        window["left_at_end"] = old_left(path)
    finally:
        await chat.aclose()
        server.stop()
    samples = sorted(sample for s in senders for sample in s.samples)
    lost = sum(len(s.sent) for s in senders)
    result: dict[str, Any] = {"all": percentiles([lat for _, lat in samples]), "unanswered": lost}
    if "purge_start" in window:
        end = window.get("purge_end", time.monotonic())
        during = [lat for sent, lat in samples if window["purge_start"] <= sent <= end]
        result["purge_seconds"] = round(end - window["purge_start"], 1)
        result["during_purge"] = percentiles(during)
        result["purge_finished"] = "purge_end" in window
        result["purged_per_second"] = round(
            (initial - window.get("left_at_end", 0)) / max(end - window["purge_start"], 0.001)
        )
    scrubs = [line for line in server.log().splitlines() if "erasure scrub:" in line]
    result["scrub_log"] = scrubs[:3]
    return result


def part_purge(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    seeded = workdir / "seeded.db"
    started = time.perf_counter()
    seed(seeded, args.old)
    print(f"seeded {args.old} old messages in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    runs = {}
    for name, days in (("keep", 0), ("purge", 1)):
        (workdir / name).mkdir()
        shutil.copy(seeded, workdir / name / "chat.db")
        runs[name] = asyncio.run(one_run(workdir / name / "chat.db", days, args))
    keep, purge = runs["keep"], runs["purge"]
    ratio = None
    if "p99_ms" in purge.get("during_purge", {}) and "p99_ms" in keep["all"]:
        ratio = round(purge["during_purge"]["p99_ms"] / keep["all"]["p99_ms"], 2)
    return {"no_purge": keep, "purge": purge, "p99_ratio_during_purge": ratio}


def part_scrub(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from search import fill_sqlite, history  # bench/search.py's history: English and Chinese

    path = workdir / "scrub.db"
    migrate.upgrade(sqlite_url(path))
    fill_seconds = fill_sqlite(path, history(args.messages))
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA secure_delete = ON")
    (index_pages,) = connection.execute("SELECT count(*) FROM messages_fts_data").fetchone()
    ids = random.Random(5).sample(range(1, args.messages + 1), 1000)
    started = time.perf_counter()
    connection.execute("BEGIN IMMEDIATE")
    connection.executemany("UPDATE messages SET text = '', deleted = 1 WHERE id = ?", [(i,) for i in ids])
    connection.execute("COMMIT")
    delete_seconds = time.perf_counter() - started
    connection.close()
    done = scrub_sqlite(path, pause=0)
    again = scrub_sqlite(path, pause=0)
    return {
        "messages": args.messages,
        "fill_seconds": round(fill_seconds, 1),
        "index_pages_before": index_pages,
        "delete_1000_seconds": round(delete_seconds, 3),
        "scrub": {"seconds": round(done.seconds, 1), "merge_steps": done.merge_steps, "wal": done.wal_truncated},
        "scrub_again_nothing_to_do": {"seconds": round(again.seconds, 2), "merge_steps": again.merge_steps},
    }


def part_secure_delete(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    path = workdir / "insert.db"
    migrate.upgrade(sqlite_url(path))
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = FULL")
    connection.execute("INSERT INTO users (id, name, name_key, created_ms) VALUES ('u', 'u', 'u', 0)")
    rates: dict[str, list[float]] = {"ON": [], "OFF": []}
    statement = "INSERT INTO messages (room, user_id, text, ts_ms, ts, client_id) VALUES " + ", ".join(
        ["(?, 'u', ?, ?, ?, NULL)"] * 20
    )
    n = 0
    for _ in range(args.rounds):
        for mode in ("ON", "OFF"):
            connection.execute(f"PRAGMA secure_delete = {mode}")
            started = time.perf_counter()
            for _ in range(args.commits):
                values = []
                for _ in range(20):
                    n += 1
                    values += [f"room-{n % 20}", f"message number {n} about nothing much", n, format_ts(n)]
                connection.execute("BEGIN IMMEDIATE")
                connection.execute(statement, values)
                connection.execute("COMMIT")
            rates[mode].append(args.commits * 20 / (time.perf_counter() - started))
    connection.close()
    on, off = statistics.median(rates["ON"]), statistics.median(rates["OFF"])
    return {
        "messages_per_second_median": {"secure_delete ON": round(on), "OFF": round(off)},
        "on_over_off": round(on / off, 3),
        "rounds": {mode: [round(r) for r in found] for mode, found in rates.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["purge", "scrub", "secure-delete", "all"], default="all")
    parser.add_argument("--old", type=int, default=100_000, help="old messages to purge")
    parser.add_argument("--senders", type=int, default=20)
    parser.add_argument("--rate", type=float, default=5.0, help="messages a second per sender")
    parser.add_argument("--seconds", type=float, default=90.0, help="how long the senders send, per run")
    parser.add_argument("--first-pass", type=int, default=5, help="retention interval: the first pass after it")
    parser.add_argument("--messages", type=int, default=1_000_000, help="index size for the scrub")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--commits", type=int, default=300, help="commits a round (secure-delete)")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="qc-retention-") as directory:
        workdir = Path(directory)
        if args.part in ("secure-delete", "all"):
            results["secure_delete"] = part_secure_delete(args, workdir)
            print(json.dumps(results["secure_delete"]), file=sys.stderr)
        if args.part in ("purge", "all"):
            results["purge"] = part_purge(args, workdir)
        if args.part in ("scrub", "all"):
            results["scrub"] = part_scrub(args, workdir)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
