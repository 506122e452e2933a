"""CPU per stored message, by thread, under a bench/chat.py scenario: work, not wall time.

    python bench/cpu.py [--scenarios rooms,closed,closed-private] [--seconds 6] [--repeat 3]
                        [--compare ../other-checkout]

On a machine shared with others the rate a closed loop reaches moves with the
neighbours; the CPU the server spends on each message it stores moves much less. Each
run starts a fresh server (bench/chat.py's Target, pinned to core 0) under the load
generator, waits past the sign-ins and the warm-up, then reads the server's CPU time
(per thread, from /proc) and its `quartchat_messages_stored` counter twice, `--seconds`
apart: the difference is µs of CPU per stored message, for the event loop's thread,
the message writer's thread and the rest. Medians of the repeats, in a round-robin.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chat import LOADGEN, SCENARIOS, Target, pin

TICK = os.sysconf("SC_CLK_TCK")


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds so far of each thread of a process."""
    seconds = {}
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        seconds[int(stat.parent.name)] = (int(fields[11]) + int(fields[12])) / TICK
    return seconds


def counters(url: str) -> tuple[float, float]:
    """(messages stored, batches committed) so far."""
    found = {}
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("quartchat_messages_stored_total", "quartchat_commit_seconds_count"):
            found[name] = float(value)
    return found["quartchat_messages_stored_total"], found["quartchat_commit_seconds_count"]


def measure(target: Target, scenario: str, seconds: float) -> dict[str, float]:
    url = target.start()
    try:
        assert target.process is not None
        pid = target.process.pid
        load = subprocess.Popen(
            [*pin(1), *LOADGEN, "--url", url, "--seconds", str(seconds + 30), "--warmup", "1", *SCENARIOS[scenario]],
            stdout=subprocess.DEVNULL,
        )
        try:
            # Past the sign-ins and the warm-up: the messages flow.
            deadline = time.monotonic() + 120
            while counters(url)[0] < 2000:
                if time.monotonic() > deadline or load.poll() is not None:
                    raise SystemExit(f"{target.name}/{scenario}: no messages stored")
                time.sleep(0.5)
            time.sleep(1)
            cpu_before, (count_before, batches_before), started = thread_cpu(pid), counters(url), time.monotonic()
            time.sleep(seconds)
            cpu_after, (count_after, batches_after), wall = thread_cpu(pid), counters(url), time.monotonic() - started
        finally:
            load.kill()
            load.wait()
        used = {tid: cpu_after.get(tid, 0.0) - cpu_before.get(tid, 0.0) for tid in cpu_after}
        # The writer's thread is the busiest thread other than the loop's (the main one).
        others = sorted((v for tid, v in used.items() if tid != pid), reverse=True)
        messages = count_after - count_before
        return {
            "stored_per_s": messages / wall,
            "per_batch": messages / max(1.0, batches_after - batches_before),
            "loop_us": used.get(pid, 0.0) / messages * 1e6,
            "writer_us": (others[0] if others else 0.0) / messages * 1e6,
            "rest_us": sum(others[1:]) / messages * 1e6,
            "total_us": sum(used.values()) / messages * 1e6,
            "cpu_share": sum(used.values()) / wall,
        }
    finally:
        target.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default="rooms,closed,closed-private")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--compare", type=Path, action="append", default=[], help="another checkout (repeatable)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="quartchat-cpu-"))
    targets = [Target("quartchat", "quartchat", workdir)] + [
        Target(f"@{path.name}", "quartchat", workdir, source=str(path.resolve())) for path in args.compare
    ]
    plan = [(t, s) for s in args.scenarios.split(",") for t in targets]
    runs: list[list[dict[str, float]]] = [[] for _ in plan]
    for repeat in range(args.repeat):
        for index, (target, scenario) in enumerate(plan):
            runs[index].append(measure(target, scenario, args.seconds))
            print(f"  run {repeat + 1}/{args.repeat}: {scenario} {target.name} {runs[index][-1]}", file=sys.stderr)
    print(f"{'scenario':>15} {'target':>14} {'stored/s':>9} {'CPU µs a stored message':>40}")
    for (target, scenario), measured in zip(plan, runs, strict=True):
        row = {key: statistics.median(run[key] for run in measured) for key in measured[0]}
        print(
            f"{scenario:>15} {target.name:>14} {row['stored_per_s']:>9,.0f}  total {row['total_us']:6.1f}  "
            f"loop {row['loop_us']:6.1f}  writer {row['writer_us']:5.1f}  rest {row['rest_us']:5.1f}  "
            f"{row['per_batch']:5.1f} a batch  (CPU {row['cpu_share']:.0%})",
            flush=True,
        )


if __name__ == "__main__":
    main()
