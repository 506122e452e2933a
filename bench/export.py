"""Export and import benchmark (issue 4): fill SQLite, export every format, compare.

    python bench/export.py [--messages 1000000] [--small 100000] [--json out.json]

For each size: generate an ndjson file, `quartchat import` it into a fresh database
(messages/s), then `quartchat export` it in each format (messages/s and the exporting
process's peak RSS), and `sqlite3 -json` dumping the same table in the same run as the
yardstick. Prints a table and the targets' verdicts; writes JSON if asked.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

FORMATS = ["ndjson", "json", "csv", "txt", "html"]


def run(command: list[str], env: dict[str, str], stdout: Any = subprocess.DEVNULL) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one child process."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=stdout, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed: {process.stderr.read().decode() if process.stderr else ''}")
    return elapsed, usage.ru_maxrss


def generate(path: Path, count: int) -> None:
    users = [(f"user-{i:04d}", f"user {i}") for i in range(200)]
    rooms = [f"room-{i}" for i in range(20)]
    base_ms = 1_790_000_000_000
    with path.open("w", encoding="utf-8") as out:
        for i in range(1, count + 1):
            user_id, name = users[i % len(users)]
            ts_ms = base_ms + i * 37
            seconds, millis = divmod(ts_ms, 1000)
            ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"
            message = {
                "id": i,
                "type": "chat",
                "room": rooms[i % len(rooms)],
                "user": {"id": user_id, "name": name},
                "data": f"message number {i}: the quick brown fox jumps over the lazy dog 你好",
                "ts": ts,
            }
            out.write(json.dumps(message, ensure_ascii=False, separators=(",", ":")) + "\n")


def measure(workdir: Path, count: int) -> dict[str, Any]:
    database = workdir / f"bench-{count}.db"
    env = {**os.environ, "QUARTCHAT_DATABASE_URL": f"sqlite+aiosqlite:///{database}"}
    cli = [sys.executable, "-m", "quartchat"]
    source = workdir / f"seed-{count}.ndjson"
    generate(source, count)
    run([*cli, "db", "upgrade"], env)
    seconds, _ = run([*cli, "import", str(source)], env)
    results: dict[str, Any] = {"messages": count, "import_per_s": count / seconds}
    for fmt in FORMATS:
        target = workdir / f"out-{count}.{fmt}"
        seconds, rss = run([*cli, "export", "--format", fmt, "-o", str(target)], env)
        results[fmt] = {"per_s": count / seconds, "peak_rss_mib": rss / 1024, "bytes": target.stat().st_size}
        target.unlink()
    with (workdir / "sqlite3.json").open("wb") as out:
        seconds, rss = run(["sqlite3", "-json", str(database), "SELECT * FROM messages ORDER BY id"], env, stdout=out)
    results["sqlite3_json"] = {"per_s": count / seconds, "peak_rss_mib": rss / 1024}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if shutil.which("sqlite3") is None:
        raise SystemExit("needs the sqlite3 command line shell (apt-get install sqlite3)")
    with tempfile.TemporaryDirectory(prefix="quartchat-bench-") as tmp:
        small = measure(Path(tmp), args.small)
        large = measure(Path(tmp), args.messages)
    print(f"{'':>14} {'msgs/s':>12} {'peak RSS MiB':>13} {'msgs/s':>12} {'peak RSS MiB':>13}")
    print(f"{'':>14} {f'— {args.small:,} —':>26} {f'— {args.messages:,} —':>26}")
    for name in [*FORMATS, "sqlite3_json"]:
        a, b = small[name], large[name]
        cells = f"{a['per_s']:>12,.0f} {a['peak_rss_mib']:>13.1f} {b['per_s']:>12,.0f} {b['peak_rss_mib']:>13.1f}"
        print(f"{name:>14} {cells}")
    print(f"{'import':>14} {small['import_per_s']:>12,.0f} {'':>13} {large['import_per_s']:>12,.0f}")
    ratio = large["ndjson"]["per_s"] / large["sqlite3_json"]["per_s"]
    growth = large["ndjson"]["peak_rss_mib"] / small["ndjson"]["peak_rss_mib"]
    print()
    print(f"ndjson export / sqlite3 -json: {ratio:.2f}x (target >= 0.5x) {'MET' if ratio >= 0.5 else 'MISSED'}")
    worst = max(large[f]["peak_rss_mib"] / small[f]["peak_rss_mib"] for f in FORMATS)
    print(
        f"peak RSS {args.messages:,} / {args.small:,}: ndjson {growth:.3f}, worst format {worst:.3f} "
        f"(target <= 1.10) {'MET' if worst <= 1.10 else 'MISSED'}"
    )
    rate = large["import_per_s"]
    print(f"import into SQLite: {rate:,.0f} msgs/s (target >= 50,000) {'MET' if rate >= 50_000 else 'MISSED'}")
    if args.json:
        args.json.write_text(json.dumps({"small": small, "large": large}, indent=2))


if __name__ == "__main__":
    main()
