"""Profile the server under a bench/chat.py scenario with py-spy; print where time goes.

    python bench/profile.py [--scenario closed] [--seconds 8] [--out profile.txt] [--gil]

Prints the functions with the most samples on top of the stack (self time) and the
largest inclusive shares by module, from py-spy's collapsed stacks. Without --gil
every thread is sampled, waiting or not (a thread blocked in a C call, such as the
writer's fsync, shows in that call); with --gil only the thread that holds the GIL.
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chat import LOADGEN, SCENARIOS, Target, pin


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenario", default="closed", choices=sorted(SCENARIOS))
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path("profile.txt"))
    parser.add_argument("--wait", type=float, default=10.0, help="seconds of sign-ins and warm-up to skip")
    parser.add_argument(
        "--gil", action="store_true", help="sample only the thread holding the GIL: where the Python CPU goes"
    )
    args = parser.parse_args()
    target = Target("quartchat", "quartchat", Path(tempfile.mkdtemp(prefix="quartchat-profile-")))
    url = target.start()
    try:
        assert target.process is not None
        load = subprocess.Popen(
            [*pin(1), *LOADGEN, "--url", url, "--seconds", str(args.seconds + args.wait + 2)]
            + SCENARIOS[args.scenario],
            stdout=subprocess.DEVNULL,
        )
        time.sleep(args.wait)  # past the sign-ins (argon2, on purpose slow) and the warm-up
        subprocess.run(
            [
                "py-spy",
                "record",
                "-p",
                str(target.process.pid),
                "-d",
                str(args.seconds),
                "-f",
                "raw",
                "-o",
                str(args.out),
                "--nonblocking",
                *(["--gil"] if args.gil else []),
            ],
            check=True,
            capture_output=True,
        )
        load.wait()
    finally:
        target.stop()
    idle_frames = ("Runner.run", "select (selectors.py", "_worker (concurrent/futures/thread.py:81)")
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in args.out.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = stack.split(";")
        if frames[-1].startswith(idle_frames) or "wait (threading.py" in frames[-1]:
            own["(idle: waiting in the event loop or a thread)"] += count
            total += count
            continue
        total += count
        own[frames[-1]] += count
        for name in {f.split(" (")[1].split(":")[0] if " (" in f else f for f in frames}:
            inclusive[name] += count
    print(f"{total} samples; self time, top 25:")
    for name, count in own.most_common(25):
        print(f"  {count / total:6.1%}  {name}")
    print("inclusive time by file, top 25:")
    for name, count in inclusive.most_common(25):
        print(f"  {count / total:6.1%}  {name}")


if __name__ == "__main__":
    main()
