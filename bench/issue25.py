"""Issue 25's table: quartchat beside the anchors (../shared/anchors), one harness, one run.

    python bench/chat.py --suite issue25 [--peers quartchat,seed-node] [--scenarios storm-2000]
                         [--seconds 10] [--repeat 3] [--json out.json]

A peer `quartchat@PATH` runs another checkout's quartchat (say /work/main) for an A/B.

Every peer is started fresh for every measurement, pinned to core 0; the anchors'
load generator (harness/load.js, Node + ws) runs pinned to core 1. The anchors are
copied to a scratch folder and installed there by their own install.sh (npm, a venv).
quartchat runs from this checkout with SQLite; before each run its accounts
(`load0`…, one per client) are written in bulk (bench/accounts.py), and every client
still signs in through /api/session with its own account; `sign-in` times those
sign-ins alone. The overload row offers more than any peer can fan out; for quartchat
it also counts what was stored (rows in the database over the sending time).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

BENCH = Path(__file__).resolve().parent
ANCHORS = Path(os.environ.get("ANCHORS_DIR", BENCH.parent.parent / "shared" / "anchors"))
PEERS = ["seed-node", "starlette-uvicorn", "quart-hypercorn", "quartchat"]
PASSWORD = "load-password-1"


def scenarios(seconds: float) -> dict[str, list[str]]:
    d = f"{seconds:g}"
    return {
        "closed-100c-10s": ["--clients", "100", "--senders", "10", "--duration", d],
        "deflate-100c-10s": ["--clients", "100", "--senders", "10", "--duration", d, "--deflate"],
        "steady-500": ["--clients", "100", "--senders", "10", "--rate", "500", "--duration", d],
        "fanout-1000c-1s": ["--clients", "1000", "--senders", "1", "--duration", d],
        # Offered: 2,000 texts/s to 1,000 clients = 2M deliveries/s, past every peer here
        # (at 400/s quartchat's batch frames kept up: 397k deliveries/s, p99 0.5 s).
        "overload": ["--clients", "1000", "--senders", "20", "--rate", "2000", "--duration", d],
        # bench/storm.mjs, not the harness: the harness's "quiet" is the first 0.5 s without
        # a frame, which a server still reading its sessions and histories reaches early.
        "storm-2000": ["--clients", "2000", "--timeout", "120"],
        # The same without `batch=1` (Part I's clients): a frame per change, or the list.
        "storm-2000-nobatch": ["--clients", "2000", "--timeout", "120"],
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clients_of(args: list[str]) -> int:
    return int(args[args.index("--clients") + 1])


class Peer:
    """One server of the table, started fresh (its own folder) for each measurement."""

    def __init__(self, name: str, work: Path) -> None:
        self.name, self.work = name, work
        self.process: subprocess.Popen[bytes] | None = None
        self.folder = work

    def start(self, accounts: int) -> tuple[int, int]:
        """Start pinned to core 0; (port, the PID that serves)."""
        port = free_port()
        self.folder = Path(tempfile.mkdtemp(dir=self.work))
        if self.quartchat:
            env = {k: v for k, v in os.environ.items() if not k.startswith("QUARTCHAT_")}
            env.update(
                QUARTCHAT_DATABASE_URL=f"sqlite+aiosqlite:///{self.folder}/chat.db",
                QUARTCHAT_SECRET_KEY="bench-secret-key-0123456789abcdef",
                QUARTCHAT_RATE_LIMIT="1000000/1",
                QUARTCHAT_MAX_CONNECTIONS_PER_ADDRESS="100000",
            )
            if "@" in self.name:  # quartchat@PATH: another checkout's code, for an A/B
                env["PYTHONPATH"] = self.name.partition("@")[2]
            command = [sys.executable, "-m", "quartchat", "serve", "--bind", f"127.0.0.1:{port}"]
            cwd = self.folder  # not the checkout: `-m` puts the cwd first on sys.path
        else:
            env, cwd = dict(os.environ), self.work
            command = [str(self.work / "peers" / self.name / "run.sh"), str(port), str(self.folder)]
        with open(self.folder / "server.log", "wb") as log:  # kept with the run's folder
            self.process = subprocess.Popen(
                ["taskset", "-c", "0", *command],
                env=env,
                cwd=cwd,
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
            )
        self._wait_open(port)
        pid = self.process.pid
        if self.quartchat:  # Hypercorn serves from a child process (FACTS.md)
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            pid = int(children[0]) if children else pid
            sys.path.insert(0, str(BENCH))
            from accounts import bulk_accounts

            asyncio.run(bulk_accounts(f"sqlite+aiosqlite:///{self.folder}/chat.db", accounts, "load", PASSWORD))
        return port, pid

    def _wait_open(self, port: int) -> None:
        for _ in range(300):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    time.sleep(0.5)
                    return
            except OSError:
                time.sleep(0.1)
        raise SystemExit(f"{self.name} did not start")

    @property
    def quartchat(self) -> bool:
        return self.name.partition("@")[0] == "quartchat"

    def harness_args(self, port: int, chat: bool = True, batch: bool = True) -> list[str]:
        if self.quartchat:
            return [
                "--url",
                f"ws://127.0.0.1:{port}/ws/chat" + ("?batch=1" if batch else ""),
                *(["--json"] if chat else []),
                "--login-url",
                f"http://127.0.0.1:{port}/api/session",
                "--password",
                PASSWORD,
            ]
        return ["--url", f"ws://127.0.0.1:{port}/ws/chat"]

    def stored(self) -> int | None:
        if not self.quartchat:
            return None
        with sqlite3.connect(self.folder / "chat.db") as db:
            return int(db.execute("select count(*) from messages").fetchone()[0])

    def stop(self) -> None:
        if self.process is not None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
            self.process = None
        shutil.rmtree(self.folder, ignore_errors=True)


def install(work: Path, peers: list[str]) -> None:
    """Copy the anchors to `work` and run the install steps of the peers asked for."""
    shutil.copytree(ANCHORS, work, dirs_exist_ok=True, ignore=shutil.ignore_patterns("node_modules", ".venv*"))
    for path in work.rglob("*"):
        path.chmod(path.stat().st_mode | 0o200)
    for name in [p for p in peers if p.partition("@")[0] != "quartchat"]:
        subprocess.run([str(work / "peers" / name / "install.sh")], check=True)
    subprocess.run([str(work / "harness" / "install.sh")], check=True)


def measure(peer: Peer, scenario: str, args: list[str], seconds: float) -> dict[str, Any]:
    port, pid = peer.start(clients_of(args))
    try:
        if scenario.startswith("storm"):
            command = ["taskset", "-c", "1", "node", str(BENCH / "storm.mjs")]
        else:
            command = ["taskset", "-c", "1", "node", str(peer.work / "harness" / "load.js"), "--pid", str(pid)]
        storm = scenario.startswith("storm")
        command += [*peer.harness_args(port, not storm, not scenario.endswith("-nobatch")), *args]
        output = subprocess.run(command, capture_output=True, text=True, timeout=400)
        lines = output.stdout.strip().splitlines()
        result: dict[str, Any] = json.loads(lines[-1]) if lines else {"error": output.stderr[-500:]}
        stored = peer.stored()
        if stored is not None and result.get("mode") == "chat":
            sending = float(result.get("warmup_s", 2)) + float(result.get("duration_s", seconds))
            result["stored_per_s"] = round(stored / (sending + float(result.get("drain_s", 0))))
        return result
    finally:
        peer.stop()


def sign_in_rate(work: Path, count: int = 1000) -> float:
    """quartchat: sign-ins per second of `count` distinct accounts (16 in flight, as the harness)."""
    peer = Peer("quartchat", work)
    port, _ = peer.start(count)

    async def run() -> float:
        gate = asyncio.Semaphore(16)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", trust_env=False, timeout=60) as http:

            async def one(i: int) -> None:
                async with gate:
                    response = await http.post("/api/session", json={"name": f"load{i}", "password": PASSWORD})
                    assert response.status_code == 200, response.text

            started = time.monotonic()
            await asyncio.gather(*(one(i) for i in range(count)))
            return count / (time.monotonic() - started)

    try:
        return asyncio.run(run())
    finally:
        peer.stop()


def summary(scenario: str, r: dict[str, Any]) -> str:
    if "error" in r:
        return f"error: {r['error']}"[:60]
    if r.get("mode") == "storm-views":
        seen = r["everyone_sees_everyone_s"]
        done = f"everyone sees everyone at {seen} s" if seen else f"{r['complete_clients']} complete"
        return f"{done}, {r['presence_frames_per_client']} presence frames each, closes {r['closes']}"
    closes = sum(r.get("closes", {}).values())
    text = f"{r['deliveries_per_s'] / 1000:.1f}k/s, p99 {r['latency_ms']['p99']} ms, lost {r['lost']}"
    if closes:
        text += f", closes {r['closes']}"
    if "stored_per_s" in r:
        text += f", stored {r['stored_per_s']}/s"
    return text


def run(peers: list[str], wanted: list[str] | None, seconds: float, repeat: int, out: Path | None) -> None:
    work = Path(tempfile.mkdtemp(prefix="quartchat-issue25-"))
    install(work, peers)
    table = scenarios(seconds)
    plan = [(s, p) for s in table if not wanted or s in wanted for p in peers]
    results: dict[tuple[str, str], list[dict[str, Any]]] = {row: [] for row in plan}
    try:
        extra = {}
        if "quartchat" in peers and (not wanted or "sign-in" in wanted):
            extra["sign-in"] = sign_in_rate(work)
            print(f"  quartchat sign-ins of 1,000 accounts: {extra['sign-in']:.0f}/s", file=sys.stderr)
        for attempt in range(repeat):  # round-robin: a drifting machine slows every peer alike
            for scenario, name in plan:
                result = measure(Peer(name, work), scenario, table[scenario], seconds)
                results[(scenario, name)].append(result)
                print(f"  run {attempt + 1}/{repeat} {scenario} {name}: {summary(scenario, result)}", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("| scenario | " + " | ".join(peers) + " |")
    print("|---|" + "---|" * len(peers))
    for scenario in dict.fromkeys(s for s, _ in plan):
        cells = [summary(scenario, median_run(results[(scenario, p)])) for p in peers]
        print(f"| {scenario} | " + " | ".join(cells) + " |")
    if "sign-in" in extra:
        print(f"\nquartchat sign-ins (1,000 distinct accounts, 16 in flight): {extra['sign-in']:.0f}/s")
    if out:
        out.write_text(json.dumps({f"{s}/{p}": runs for (s, p), runs in results.items()} | extra, indent=1))


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median headline figure (deliveries/s, or the storm's time to quiet)."""
    good = [r for r in runs if "error" not in r] or runs
    if "error" in good[0]:
        return good[0]
    if good[0].get("mode") == "storm-views":
        ordered = sorted(good, key=lambda r: r["everyone_sees_everyone_s"] or 1e9)
    else:
        ordered = sorted(good, key=lambda r: r["deliveries_per_s"])
    return ordered[len(ordered) // 2] if len(ordered) % 2 else ordered[(len(ordered) - 1) // 2]


if __name__ == "__main__":  # for a quick look: python bench/issue25.py [peer ...]
    run(sys.argv[1:] or PEERS, None, 5, 1, None)
