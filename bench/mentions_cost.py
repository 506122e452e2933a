# ruff: noqa
"""Attack measurement script (branch attack): run with .venv/bin/python FILE [args]; not a test."""

import random
import string
import time

from quartchat.mentions import candidates


def w(t, k):
    t = t[:4000]
    s = time.perf_counter()
    for _ in range(20):
        c = candidates(t)
    d = (time.perf_counter() - s) / 20
    print(f"{k:22s} len={len(t)} ats={len(c)} keys={sum(map(len, c))} {d * 1000:.2f} ms")


w(("@" + "a" * 33 + " a" * 47 + "!") * 40, "nfc long no keys")
w(("@" + "a\u0301" * 17 + " a\u0301" * 30 + "!") * 40, "decomp")
w(("@" + "a." * 64 + "!") * 40, "dots")
w("".join("@" + "".join(random.choices(string.ascii_lowercase, k=3)) + " " for _ in range(1000)), "distinct")
