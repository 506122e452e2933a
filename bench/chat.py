"""Chat load benchmark: quartchat (and baselines) on one core, load on the other.

    python bench/chat.py --suite scale     # SQLite+memory, PostgreSQL+Redis, 2 workers
    python bench/chat.py --suite perf      # quartchat against the inmem and naive baselines
    python bench/chat.py --suite issue25   # issue 25's table beside ../shared/anchors (bench/issue25.py)
    options: --seconds 10 --repeat 3 --json results.json

Each server is started fresh (new database) pinned with `taskset -c 0`; the load
generator (bench/loadgen.mjs, or bench/loadgen.py without Node) runs pinned to core 1
and reports its own CPU share, so one can see it is not the bottleneck. Each row also
gives the server's CPU share and how much of core 0 was idle or stolen by the host over
the load generator's run (sign-ins included): whether the server's core was the bound.
Figures are medians of --repeat runs; compare them as ratios within one run (the
machine is noisy); the repeats go round the whole plan, so a drift in the machine's
speed touches every target alike.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

BENCH = Path(__file__).resolve().parent
# Node's ws client costs ~3 µs a frame, so it outpaces the server it measures; the Python
# one (bench/loadgen.py) saturates its own core first. `npm install` in bench/ for Node.
LOADGEN = (
    ["node", str(BENCH / "loadgen.mjs")]
    if shutil.which("node") and (BENCH / "node_modules" / "ws").exists()
    else [sys.executable, str(BENCH / "loadgen.py")]
)
SCENARIOS: dict[str, list[str]] = {
    "closed": ["--clients", "100", "--senders", "10", "--mode", "closed", "--batch"],
    "closed-nobatch": ["--clients", "100", "--senders", "10", "--mode", "closed"],
    # The same in a private room of which every client is a member: against "closed",
    # what the members-only check (docs/protocol.md §11) costs a message.
    "closed-private": ["--clients", "100", "--senders", "10", "--mode", "closed", "--batch", "--private"],
    # Every client reports a read for every message it receives (docs/protocol.md §18):
    # against "closed", what read positions cost when clients do not debounce them.
    "closed-reads": ["--clients", "100", "--senders", "10", "--mode", "closed", "--batch", "--reads"],
    "steady": ["--clients", "100", "--senders", "10", "--mode", "steady", "--rate", "200", "--batch"],
    # For a machine on which inmem cannot keep up with 200 a second (its queues grow and
    # its tail is seconds): the same comparison where both can.
    "steady-100": ["--clients", "100", "--senders", "10", "--mode", "steady", "--rate", "100", "--batch"],
    "fanout": ["--clients", "1000", "--senders", "1", "--mode", "closed", "--batch"],
    "rooms": ["--clients", "200", "--rooms", "100", "--senders", "50", "--mode", "closed", "--batch"],
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pin(core: int) -> list[str]:
    return ["taskset", "-c", str(core)] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else []


class Target:
    """One server configuration, started fresh for each measurement."""

    def __init__(self, name: str, kind: str, workdir: Path, **options: str) -> None:
        self.name, self.kind, self.workdir, self.options = name, kind, workdir, options
        self.process: subprocess.Popen[bytes] | None = None
        self.cleanup: list[list[str]] = []

    def start(self) -> str:
        port = free_port()
        run = Path(tempfile.mkdtemp(dir=self.workdir))
        env = {k: v for k, v in os.environ.items() if not k.startswith("QUARTCHAT_")}
        env.update(
            QUARTCHAT_SECRET_KEY="benchmark-secret-key-0123456789",
            QUARTCHAT_RATE_LIMIT="1000000/1",
            QUARTCHAT_MAX_CONNECTIONS_PER_ADDRESS="100000",
            QUARTCHAT_SIGNUP_LIMIT="1000000/1",  # every load client is a new account from 127.0.0.1
        )
        if self.kind in ("inmem", "rawasgi"):
            command = [sys.executable, str(BENCH / f"{self.kind}_server.py"), "--bind", f"127.0.0.1:{port}"]
        else:
            command = [sys.executable, "-m", "quartchat", "serve", "--bind", f"127.0.0.1:{port}"]
            env["QUARTCHAT_DATABASE_URL"] = f"sqlite+aiosqlite:///{run}/bench.db"
            if self.options.get("postgres"):
                name = f"qc_bench_{port}"
                subprocess.run(
                    [sys.executable, "-m", "tests.postgres_database", "create", name],
                    check=True,
                    capture_output=True,
                    cwd=BENCH.parent,
                )
                env["QUARTCHAT_DATABASE_URL"] = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
                self.cleanup.append([sys.executable, "-m", "tests.postgres_database", "drop", name])
            if self.options.get("redis"):
                env["QUARTCHAT_BROKER_URL"] = self.options["redis"]
            if self.options.get("workers"):
                command += ["--workers", self.options["workers"]]
            if self.options.get("synchronous"):
                env["QUARTCHAT_SQLITE_SYNCHRONOUS"] = self.options["synchronous"]
            if self.options.get("batch_size"):
                env["QUARTCHAT_WRITE_BATCH_SIZE"] = self.options["batch_size"]
            if self.options.get("source"):  # another checkout's quartchat (--compare)
                env["PYTHONPATH"] = self.options["source"]
        self.process = subprocess.Popen(
            [*pin(0), *command],
            env=env,
            cwd=run,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    return url
            except httpx.HTTPError:
                time.sleep(0.1)
        raise SystemExit(f"{self.name} did not start")

    def stop(self) -> None:
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        for command in self.cleanup:
            subprocess.run(command, capture_output=True, cwd=BENCH.parent)
        self.cleanup = []


def measure(target: Target, scenario: str, seconds: float) -> dict[str, Any]:
    url = target.start()
    try:
        args = list(SCENARIOS[scenario])
        if target.kind in ("inmem", "rawasgi") and "--batch" in args:
            args.remove("--batch")  # the baseline sends one frame per message
        assert target.process is not None
        cpu_before, core_before, started = session_cpu_seconds(target.process.pid), core_ticks(0), time.monotonic()
        output = subprocess.run(
            [*pin(1), *LOADGEN, "--url", url, "--seconds", str(seconds), *args],
            capture_output=True,
            text=True,
            timeout=seconds * 4 + 300,
        )
        if output.returncode != 0:
            raise SystemExit(f"load generator failed on {target.name}/{scenario}:\n{output.stderr[-3000:]}")
        # Over the load generator's whole run (its sign-ins included): is core 0 saturated?
        wall = time.monotonic() - started
        core = [after - before for after, before in zip(core_ticks(0), core_before, strict=True)]
        result: dict[str, Any] = json.loads(output.stdout.strip().splitlines()[-1])
        result["server_cpu_share"] = (session_cpu_seconds(target.process.pid) - cpu_before) / wall
        result["core0_idle_share"] = (core[3] + core[4]) / max(1, sum(core))
        result["core0_steal_share"] = core[7] / max(1, sum(core))
        return result
    finally:
        target.stop()


def session_cpu_seconds(session: int) -> float:
    """CPU used so far by every live process of a session (the server and its workers)."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[3]) == session:  # fields[3] is the session id (field 6 of stat)
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def core_ticks(core: int) -> list[int]:
    """/proc/stat's counters for one core: user nice system idle iowait irq softirq steal."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{core} "):
            return [int(v) for v in line.split()[1:9]]
    return [0] * 8


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", choices=["scale", "perf", "issue25"], default="perf")
    parser.add_argument("--peers", help="issue25: comma-separated anchors (default: all and quartchat)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scenarios", help="comma-separated subset")
    parser.add_argument("--synchronous", choices=["FULL", "NORMAL"], help="SQLite's setting for quartchat targets")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--compare",
        type=Path,
        help="another checkout (say a git worktree of main): its quartchat runs as one more "
        "target beside each quartchat row, in the same round-robin, for an A/B of a change",
    )
    args = parser.parse_args()
    if args.suite == "issue25":
        from issue25 import PEERS, run

        wanted = args.scenarios.split(",") if args.scenarios else None
        run(args.peers.split(",") if args.peers else PEERS, wanted, args.seconds, args.repeat, args.json)
        return
    workdir = Path(tempfile.mkdtemp(prefix="quartchat-bench-"))
    redis_port = free_port()
    redis = (
        subprocess.Popen(
            ["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            cwd=workdir,
        )
        if args.suite == "scale"
        else None
    )
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    if args.suite == "scale":
        targets = [
            Target("1 process, SQLite + memory", "quartchat", workdir),
            Target("1 process, PostgreSQL + Redis", "quartchat", workdir, postgres="1", redis=redis_url),
            Target("2 workers, PostgreSQL + Redis", "quartchat", workdir, postgres="1", redis=redis_url, workers="2"),
        ]
        plan = [(t, s) for s in ("closed", "steady", "rooms") for t in targets]
    else:
        quartchat = Target("quartchat", "quartchat", workdir)
        inmem = Target("inmem", "inmem", workdir)
        naive = Target("naive", "quartchat", workdir, batch_size="1")
        # inmem without Quart: what is left of a frame's cost is Hypercorn's.
        rawasgi = Target("rawasgi", "rawasgi", workdir)
        plan = [
            (quartchat, "closed"),
            (inmem, "closed"),
            (naive, "closed"),
            (quartchat, "closed-nobatch"),
            (quartchat, "closed-private"),
            (quartchat, "closed-reads"),
            (quartchat, "steady"),
            (inmem, "steady"),
            (quartchat, "steady-100"),
            (inmem, "steady-100"),
            (quartchat, "fanout"),
            (inmem, "fanout"),
            (rawasgi, "fanout"),
            (rawasgi, "closed"),
            (quartchat, "rooms"),
            # What one core does with the same load and nothing stored: the ceiling.
            (inmem, "rooms"),
        ]
    if args.compare:
        # Each quartchat target (not naive) gets its twin from the other checkout.
        source = str(args.compare.resolve())
        twins = {
            t: Target(f"{t.name}@{args.compare.name}", t.kind, workdir, **t.options, source=source)
            for t, _ in plan
            if t.kind == "quartchat" and not t.options.get("batch_size")
        }
        # Private rooms are new: the other checkout may not have them.
        plan = [
            row for t, s in plan for row in [(t, s)] + ([(twins[t], s)] if t in twins and s != "closed-private" else [])
        ]
    if args.synchronous:
        for target, _ in plan:
            target.options["synchronous"] = args.synchronous
    if args.scenarios:
        wanted = set(args.scenarios.split(","))
        if unknown := wanted - SCENARIOS.keys():
            parser.error(f"no such scenario: {', '.join(sorted(unknown))} (there are {', '.join(SCENARIOS)})")
        plan = [(t, s) for t, s in plan if s in wanted]
    results = []
    try:
        # Round-robin: each repeat runs the whole plan once, so that a machine whose
        # speed drifts over minutes (this one does, by 2x) slows every target alike and
        # the ratios within one run stay fair.
        runs: list[list[dict[str, Any]]] = [[] for _ in plan]
        for repeat in range(args.repeat):
            for index, (target, scenario) in enumerate(plan):
                runs[index].append(measure(target, scenario, args.seconds))
                print(f"  run {repeat + 1}/{args.repeat}: {scenario} {target.name}", file=sys.stderr, flush=True)
        for (target, scenario), measured in zip(plan, runs, strict=True):
            row = {"target": target.name, "scenario": scenario, **median_of(measured)}
            results.append(row)
            print(
                f"{scenario:>15} {target.name:>32}  {row['deliveries_per_s']:>10,.0f} deliveries/s  "
                f"{row['sent_per_s']:>8,.0f} sent/s  p50 {row['p50_ms']:7.1f} ms  p99 {row['p99_ms']:7.1f} ms  "
                f"loadgen CPU {row['loadgen_cpu_share']:.0%}  server CPU {row['server_cpu_share']:.0%}  "
                f"core 0 idle {row['core0_idle_share']:.0%} steal {row['core0_steal_share']:.0%}",
                flush=True,
            )
    finally:
        if redis is not None:
            redis.terminate()
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
