"""TCP-level backpressure (docs/reliability.md, "Overload"): a connection whose reader
waits (its messages are not being stored, or the intake is paused) leaves the sender's
further frames in the kernel's socket buffers, where the sender's TCP window closes,
not in the server's memory; once the reader goes on, every frame is read and stored.

A real server on PostgreSQL: the test holds an exclusive lock on `messages`, so the
writer's INSERT waits, the connection's 32 messages in flight fill, and its read loop
stops reading. The flood is 24 MB, more than loopback's socket buffers take.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import asyncpg
import httpx
import pytest

from ..conftest import StartServer
from ..support import TEXT, Chat, RawSocket, unique

FRAMES = 6000
TEXT_CHARS = 4000  # the longest chat text accepted by default
STALLED_SECONDS = 3.0  # a write that waits this long: the sender's window is closed


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def stored_texts(base_url: str, cookie: str, room: str) -> list[str]:
    texts: list[str] = []
    after = 0
    async with httpx.AsyncClient(base_url=base_url, timeout=60, trust_env=False) as http:
        while True:
            response = await http.get(
                f"/api/rooms/{room}/messages", params={"after": after, "limit": 200}, headers={"Cookie": cookie}
            )
            page = response.json()
            texts.extend(m["data"] for m in page["messages"])
            if page["messages"]:
                after = page["messages"][-1]["id"]
            if not page["has_more"]:
                return texts


@pytest.mark.timeout(300)
async def test_a_flood_while_the_reader_waits_fills_the_kernels_buffers_not_the_servers_memory(
    start_server: StartServer, postgres_url: str
) -> None:
    server = start_server(database_url=postgres_url, rate_limit="100000/1")
    assert server.process is not None
    chat = Chat(server)
    lock = await asyncpg.connect(postgres_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        user = await chat.user()
        room = unique("flood-")
        await (await chat.open(user, room)).say("before the flood")
        flood = await RawSocket.open(server, f"/ws/chat/{room}", user.cookie)

        async def discard() -> None:  # the flooder reads what it is sent: it is no slow reader
            while await flood.reader.read(1 << 16):
                pass

        reading = asyncio.create_task(discard())
        await asyncio.sleep(1)  # opened: history, list and join sent
        holding = lock.transaction()
        await holding.start()
        await lock.execute("LOCK TABLE messages IN EXCLUSIVE MODE")
        rss_before = rss_mib(server.process.pid)
        texts = [f"{n:05d} " + "x" * (TEXT_CHARS - 6) for n in range(FRAMES)]
        sent = 0
        stalled = False
        for n, text in enumerate(texts):
            flood.send(TEXT, json.dumps({"type": "chat", "data": text, "client_id": f"f{n}"}).encode())
            try:
                await asyncio.wait_for(flood.writer.drain(), STALLED_SECONDS)
            except TimeoutError:
                stalled = True
                break
            sent = n + 1
        rss_stalled = rss_mib(server.process.pid)
        print(f"flood: {sent} of {FRAMES} frames ({sent * TEXT_CHARS / 1e6:.0f} MB) written before the window closed;")
        print(f"server RSS {rss_before:.1f} -> {rss_stalled:.1f} MiB")
        assert stalled, f"all {FRAMES} frames ({FRAMES * TEXT_CHARS / 1e6:.0f} MB) were taken while nothing was stored"
        assert rss_stalled - rss_before < 16, "the server read the flood into its memory"

        started = time.monotonic()
        await holding.rollback()  # the writer goes on: the reader reads again
        for n in range(sent, FRAMES):  # the rest, as fast as the window opens
            flood.send(TEXT, json.dumps({"type": "chat", "data": texts[n], "client_id": f"f{n}"}).encode())
            await asyncio.wait_for(flood.writer.drain(), 60)
        for _ in range(240):
            stored = await stored_texts(server.base_url, user.cookie, room)
            if len(stored) >= FRAMES + 1:
                break
            await asyncio.sleep(0.5)
        print(f"all {FRAMES} stored {time.monotonic() - started:.1f} s after the lock went")
        assert stored == ["before the flood", *texts], "a frame was lost or stored out of order"
        assert not reading.done(), "the flooder's socket was closed"
        reading.cancel()
        flood.writer.close()
    finally:
        await lock.close()
        await chat.aclose()
