# ruff: noqa
"""Attack measurement script (branch attack): run with .venv/bin/python FILE [args]; not a test."""

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, for tests.support
from tests.support import Chat, Server

MEMBERS = int(sys.argv[1])
FILL = int(sys.argv[2])
OPS = int(sys.argv[3])


def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


async def main():
    s = Server(Path(tempfile.mkdtemp(prefix="attack-del-")), rate_limit="100000/1").start()
    c = Chat(s)
    owner = await c.user()
    users = []
    for k in range(0, MEMBERS, 5):
        users += await asyncio.gather(*(c.user() for _ in range(5)))
    room = "big"
    assert (await owner.http.post("/api/rooms", json={"name": room, "private": True})).status_code == 201
    for u in users:
        r = await owner.http.post(f"/api/rooms/{room}/members", json={"name": u.name})
        assert r.status_code == 201, r.text
    socks = [await c.open(u, "lobby") for u in users]
    w = await c.open(owner, room, query="batch=1")
    for i in range(FILL):
        await w.send_json({"type": "chat", "data": f"fill {i}"})
    msgs = await w.chats(FILL, timeout=120)
    ids = [m["id"] for m in msgs]
    await asyncio.sleep(3)
    pid = s.process.pid

    async def phase(name, frames, kind):
        await asyncio.sleep(2)
        c0 = cpu(pid)
        t0 = time.perf_counter()
        for f in frames:
            await w.send_json(f)
        for _ in frames:
            await w.expect(kind, timeout=120)
        await asyncio.sleep(4)  # let the stream's loads finish
        print(
            f"{name}: {len(frames)} ops, server CPU {cpu(pid) - c0:.2f} s, wall {time.perf_counter() - t0:.1f} s",
            flush=True,
        )

    await phase("chat", [{"type": "chat", "data": f"more {i}"} for i in range(OPS)], "chat")
    await phase("delete", [{"type": "delete", "id": i} for i in ids[:OPS]], "delete")
    await phase("idle", [], "chat")
    await c.aclose()
    s.stop()


asyncio.run(main())
