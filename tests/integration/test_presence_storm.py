"""A join storm of distinct users (docs/protocol.md §4): 300 accounts, each signed in
through /api/session and opening one socket at once. Every batch=1 client hears the
storm coalesced (far fewer presence frames than joins), a client without batch=1 still
sees every join (or a `list` in their place), and everyone ends with the right list."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from bench.accounts import bulk_accounts

from ..conftest import StartServer
from ..support import Server, unique, until

STORM = 300
PASSWORD = "storm-password-1"


class View:
    """One client's idea of who is online, kept from the frames it reads."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.online: dict[str, str] = {}
        self.presence_frames = 0  # frames that carried a join, a left or a list
        self.joins = 0
        self.task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for raw in self.ws:
            frame = json.loads(raw)
            items = frame["messages"] if frame["type"] == "batch" else [frame]
            if any(item["type"] in ("join", "left", "list") for item in items):
                self.presence_frames += 1
            for item in items:
                self._apply(item)

    def _apply(self, item: dict[str, Any]) -> None:
        if item["type"] == "list":
            self.online = {user["id"]: user["name"] for user in item["data"]}
        elif item["type"] == "join":
            self.joins += 1
            self.online[item["user"]["id"]] = item["user"]["name"]
        elif item["type"] == "left":
            self.online.pop(item["user"]["id"], None)


async def sign_in(http: httpx.AsyncClient, name: str, gate: asyncio.Semaphore) -> str:
    async with gate:
        response = await http.post("/api/session", json={"name": name, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return "; ".join(f"{k}={v}" for k, v in response.cookies.items())


async def open_view(server: Server, room: str, cookie: str, batch: bool) -> View:
    ws = await connect(
        f"{server.ws_url}/ws/chat/{room}" + ("?batch=1" if batch else ""),
        origin=server.base_url,  # type: ignore[arg-type]
        additional_headers={"Cookie": cookie},
        open_timeout=60,
        close_timeout=2,
        proxy=None,
        max_queue=None,
    )
    return View(ws)


async def test_a_storm_of_distinct_users_is_coalesced_and_every_list_ends_right(start_server: StartServer) -> None:
    server = start_server(rate_limit="100000/1", max_connections_per_address="100000")
    prefix = unique("s")[:12]
    await bulk_accounts(server.database_url, STORM + 2, prefix, PASSWORD)
    room = unique("storm-")
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60, trust_env=False) as http:
        gate = asyncio.Semaphore(16)
        cookies = await asyncio.gather(*(sign_in(http, f"{prefix}{i}", gate) for i in range(STORM + 2)))
    # Two watchers in first: one with batch=1 (the web page), one without (Part I clients).
    batched = await open_view(server, room, cookies[0], batch=True)
    plain = await open_view(server, room, cookies[1], batch=False)
    await until(lambda: len(batched.online) == 2 and len(plain.online) == 2, "both watchers see both")
    opening = asyncio.Semaphore(100)

    async def storm_client(cookie: str) -> View:
        async with opening:
            return await open_view(server, room, cookie, batch=True)

    storm = await asyncio.gather(*(storm_client(cookie) for cookie in cookies[2:]))
    views = [batched, plain, *storm]
    everyone = STORM + 2
    try:
        await until(lambda: all(len(v.online) == everyone for v in views), "every list has every user", 120)
        names = {f"{prefix}{i}" for i in range(everyone)}
        assert all(set(v.online.values()) == names for v in views)
        # The batch=1 watcher heard all 300 joins, in far fewer frames.
        assert batched.joins >= STORM
        assert batched.presence_frames <= STORM // 5, f"{batched.presence_frames} frames for {STORM} joins"
        # The one without batch=1: each join as its frame, or a list in their place.
        assert plain.joins + plain.presence_frames >= STORM or len(plain.online) == everyone
        # A departure still reaches everyone (past the default grace of 3 s).
        await storm[-1].ws.close()
        await until(lambda: all(len(v.online) == everyone - 1 for v in views[:-1]), "the left reaches all", 30)
    finally:
        for view in views:
            view.task.cancel()
            await view.ws.close()
