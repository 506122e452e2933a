"""Presence grace (docs/protocol.md): a user whose last connection closes leaves only
after QUARTCHAT_PRESENCE_GRACE seconds; a reconnect within them is neither a `left`
nor a `join`, on one process (memory://) and across workers (PostgreSQL + Redis)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from ..conftest import RedisServer, StartServer
from ..support import Chat, Server, unique

DEFAULT_GRACE_SECONDS = 3.0


async def refreshes_are_not_departures(chat: Chat, room: str, refreshes: int) -> None:
    """A watcher sees a user refresh `refreshes` times, then leave for good."""
    watcher = await chat.open(await chat.user(), room)
    assert (await watcher.recv())["type"] == "join"  # its own
    user = await chat.user()
    conn = await chat.open(user, room)
    joined = await watcher.recv()
    assert (joined["type"], joined["user"]) == ("join", user.ref)
    for _ in range(refreshes):
        await conn.ws.close()
        conn = await chat.open(user, room)
        assert user.ref in conn.online, "still listed: the grace holds the user online"
    # Past the grace of every close above: had one of them counted, its `left` (or the
    # reconnect's `join`) would reach the watcher before this message.
    await asyncio.sleep(DEFAULT_GRACE_SECONDS + 0.5)
    marker = await conn.say("refreshed, never gone")
    assert await watcher.recv() == marker, "no left and no join for a refresh"
    await conn.ws.close()
    closed_at = time.monotonic()
    left = await watcher.recv()
    waited = time.monotonic() - closed_at
    assert (left["type"], left["user"]) == ("left", user.ref)
    assert waited >= DEFAULT_GRACE_SECONDS * 0.9, f"left after {waited:.2f} s, before the grace"


async def test_a_refresh_within_the_grace_is_neither_left_nor_join(start_server: StartServer) -> None:
    server = start_server(rate_limit="1000/1")  # QUARTCHAT_PRESENCE_GRACE unset: the default
    chat = Chat(server)
    try:
        await refreshes_are_not_departures(chat, unique("grace-"), refreshes=3)
    finally:
        await chat.aclose()


async def test_the_grace_is_a_setting(start_server: StartServer) -> None:
    server = start_server(presence_grace="1.5")
    chat = Chat(server)
    try:
        room = unique("short-grace-")
        watcher = await chat.open(await chat.user(), room)
        assert (await watcher.recv())["type"] == "join"
        user = await chat.user()
        conn = await chat.open(user, room)
        assert (await watcher.recv())["type"] == "join"
        await conn.ws.close()
        closed_at = time.monotonic()
        left = await watcher.recv()
        waited = time.monotonic() - closed_at
        assert (left["type"], left["user"]) == ("left", user.ref)
        assert 1.5 * 0.9 <= waited < DEFAULT_GRACE_SECONDS, f"left after {waited:.2f} s"
    finally:
        await chat.aclose()


async def test_a_refresh_across_workers_is_neither_left_nor_join(
    tmp_path: Path, postgres_url: str, redis_server: RedisServer
) -> None:
    server = Server(tmp_path, database_url=postgres_url, broker_url=redis_server.url, rate_limit="100000/1")
    server.extra_args = ["--workers", "2"]
    server.start()
    server.wait_for_workers(2)
    chat = Chat(server)
    try:
        await refreshes_are_not_departures(chat, unique("grace-workers-"), refreshes=6)
        workers = server.workers_that_closed_websockets()
        assert len(workers) == 2, f"the refreshes landed on workers {workers} only"
    finally:
        await chat.aclose()
        server.stop()
