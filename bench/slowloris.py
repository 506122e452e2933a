# ruff: noqa
"""Attack measurement script (branch attack): run with .venv/bin/python FILE [args]; not a test."""

import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, for tests.support
import httpx

from tests.support import Server


async def main():
    s = Server(Path(tempfile.mkdtemp(prefix="attack-slow-"))).start()
    socks = []
    for i in range(800):
        try:
            r, w = await asyncio.open_connection("127.0.0.1", s.port)
        except OSError as e:
            print("open failed at", i, e)
            break
        w.write(b"GET /ws/chat/lobby HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        socks.append((r, w))
    print("opened", len(socks), flush=True)
    start = time.monotonic()
    for t in range(8):
        await asyncio.sleep(5)
        alive = 0
        for r, w in socks:
            if w.is_closing() or r.at_eof():
                continue
            try:
                w.write(b"X-a: b\r\n")
                await w.drain()
                alive += 1
            except Exception:
                pass
        try:
            t0 = time.perf_counter()
            st = httpx.get(s.base_url + "/healthz", timeout=5, trust_env=False).status_code
            lat = time.perf_counter() - t0
        except Exception as e:
            st, lat = repr(e), 0
        print(f"t={time.monotonic() - start:.0f}s alive~{alive} healthz={st} {lat * 1000:.0f}ms", flush=True)

    print("server log tail:", s.log()[-300:])
    s.stop()


asyncio.run(main())
