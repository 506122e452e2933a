"""The server under overload (docs/protocol.md §9): more offered than it can fan out.

A real server, real sockets, one account per client (made in bulk: bench/accounts.py).
Readers that read as fast as they can are never closed, and every one of them receives
every stored message in order, while the intake slows (senders' frames are read later,
never refused); a client whose own socket stays backed up is closed with 1013 after
`send_stall_seconds`, and only it.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from bench.accounts import bulk_accounts

from ..conftest import StartServer
from ..support import RawSocket, Server, unique, until

PASSWORD = "overload-password-1"


async def metric(server: Server, sample: str) -> float:
    async with httpx.AsyncClient(base_url=server.base_url, trust_env=False) as client:
        text = (await client.get("/metrics")).text
    found = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


async def sign_in_all(server: Server, prefix: str, count: int) -> list[str]:
    """`count` distinct accounts, each signed in through /api/session: their cookies."""
    await bulk_accounts(server.database_url, count, prefix, PASSWORD)
    gate = asyncio.Semaphore(16)

    async def sign_in(http: httpx.AsyncClient, name: str) -> str:
        async with gate:
            response = await http.post("/api/session", json={"name": name, "password": PASSWORD})
        assert response.status_code == 200, response.text
        return "; ".join(f"{k}={v}" for k, v in response.cookies.items())

    async with httpx.AsyncClient(base_url=server.base_url, timeout=60, trust_env=False) as http:
        return list(await asyncio.gather(*(sign_in(http, f"{prefix}{i}") for i in range(count))))


class Reader:
    """A client that reads as fast as it can and keeps the chat ids it was sent, in order."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.ids: list[int] = []
        self.errors: list[dict[str, Any]] = []
        self.close_code: int | None = None
        self.task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for raw in self.ws:
            frame = json.loads(raw)
            for item in frame["messages"] if frame["type"] == "batch" else [frame]:
                if item["type"] == "chat":
                    self.ids.append(item["id"])
                elif item["type"] == "error":
                    self.errors.append(item)
        self.close_code = self.ws.close_code


async def open_reader(server: Server, room: str, cookie: str, batch: bool) -> Reader:
    ws = await connect(
        f"{server.ws_url}/ws/chat/{room}" + ("?batch=1" if batch else ""),
        origin=server.base_url,  # type: ignore[arg-type]
        additional_headers={"Cookie": cookie},
        open_timeout=60,
        close_timeout=2,
        proxy=None,
        max_queue=None,
        compression=None,
    )
    reader = Reader(ws)
    await until(lambda: reader.ws.state.name == "OPEN", "open")
    return reader


async def stored_ids(server: Server, cookie: str, room: str) -> list[int]:
    ids: list[int] = []
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60, trust_env=False) as http:
        while True:
            response = await http.get(
                f"/api/rooms/{room}/messages",
                params={"after": ids[-1] if ids else 0, "limit": 200},
                headers={"Cookie": cookie},
            )
            page = response.json()
            ids.extend(m["id"] for m in page["messages"])
            if not page["has_more"]:
                return ids


@pytest.mark.timeout(300)
async def test_under_overload_no_reader_is_closed_none_loses_a_message_and_senders_are_slowed(
    start_server: StartServer,
) -> None:
    # A small backlog and send queue: the server is behind from the first second, and
    # under the old rule (a full queue earns 1013) every reader would have been closed.
    server = start_server(
        rate_limit="100000/1",
        max_connections_per_address="100000",
        fanout_backlog="2000",
        send_queue_size="64",
    )
    readers_count, senders_count, rate, seconds = 100, 10, 1000, 5.0
    cookies = await sign_in_all(server, unique("o")[:12], readers_count + senders_count)
    room = unique("overload-")
    # Half read with batch=1 (as the web page does), half take a frame per message.
    readers = [
        await open_reader(server, room, cookie, batch=i % 2 == 0) for i, cookie in enumerate(cookies[:readers_count])
    ]
    senders = [await open_reader(server, room, cookie, batch=True) for cookie in cookies[readers_count:]]
    pauses_before = await metric(server, "quartchat_intake_pauses")
    offered = 0
    started = time.monotonic()

    async def send(sender: Reader, index: int) -> None:
        """Open loop: `rate / senders` messages a second, whether or not they are stored."""
        nonlocal offered
        interval = senders_count / rate
        due = time.monotonic()
        n = 0
        while time.monotonic() - started < seconds:
            await sender.ws.send(json.dumps({"type": "chat", "data": f"{index}.{n}", "client_id": f"{index}-{n}"}))
            offered += 1
            n += 1
            due += interval
            await asyncio.sleep(max(0.0, due - time.monotonic()))

    await asyncio.gather(*(send(s, i) for i, s in enumerate(senders)))
    offered_seconds = time.monotonic() - started
    clients = readers + senders
    # Everything offered is stored in the end (slowed, never refused) and reaches everyone.
    for _ in range(240):
        if all(len(c.ids) >= offered for c in clients):
            break
        print(f"{time.monotonic() - started:.0f} s: fewest {min(len(c.ids) for c in clients)} of {offered}", flush=True)
        await asyncio.sleep(1)
    drained = time.monotonic() - started
    pauses = await metric(server, "quartchat_intake_pauses") - pauses_before
    ids = await stored_ids(server, cookies[0], room)
    deliveries = sum(len(c.ids) for c in clients)
    print(
        f"overload: {offered} offered in {offered_seconds:.1f} s ({offered / offered_seconds:.0f}/s) to "
        f"{len(clients)} clients; stored and delivered in {drained:.1f} s: {len(ids) / drained:.0f} stored/s, "
        f"{deliveries / drained:.0f} deliveries/s; intake closed {pauses:.0f} times"
    )
    assert len(ids) == offered, "every offered message was stored"
    assert all(c.close_code is None and not c.task.done() for c in clients), [c.close_code for c in clients]
    assert all(not c.errors for c in clients), [c.errors[:1] for c in clients if c.errors][:3]
    for client in clients:
        assert client.ids == ids, "a client missed a message or saw them out of order"
    assert pauses > 0, "the fan-out fell behind but the intake never slowed"
    assert await metric(server, 'quartchat_websocket_closes_total{code="1013"}') == 0
    for client in clients:
        client.task.cancel()
        await client.ws.close()


async def test_a_client_whose_socket_stays_backed_up_is_closed_1013_after_the_stall_seconds_and_only_it(
    start_server: StartServer,
) -> None:
    # A send queue that never fills: only the time rule can close the stalled client.
    server = start_server(
        rate_limit="100000/1", send_stall_seconds="3", send_queue_size="1000000", max_message_chars="16000"
    )
    cookies = await sign_in_all(server, unique("t")[:12], 3)
    room = unique("stall-")
    healthy = await open_reader(server, room, cookies[0], batch=True)
    sender = await open_reader(server, room, cookies[1], batch=True)
    # It completes the upgrade and never reads again: a small window, a network's MSS.
    stalled = await RawSocket.open(server, f"/ws/chat/{room}", cookies[2], receive_buffer=4096, segment_size=536)
    text = "s" * 15_000  # 0.75 MB/s: the kernel takes megabytes before the socket backs up
    sent = 0
    started = time.monotonic()
    closed_at: float | None = None
    while time.monotonic() - started < 40 and closed_at is None:
        await sender.ws.send(json.dumps({"type": "chat", "data": f"{sent} {text}"}))
        sent += 1
        await asyncio.sleep(0.02)
        if "code=1013" in server.log():
            closed_at = time.monotonic() - started
    assert closed_at is not None, server.log()
    # The kernel and the transport take a few hundred KB before the socket backs up;
    # from then on it has `send_stall_seconds` (3) before it is closed.
    assert closed_at >= 3.0, f"closed after {closed_at:.1f} s: before its stall seconds"
    line = re.findall(r"websocket closed .*code=(\d+)", server.log())
    assert line == ["1013"], line  # the stalled one, and no other
    await until(lambda: len(healthy.ids) == sent and len(sender.ids) == sent, "the others have every message")
    assert healthy.close_code is None and not healthy.task.done()
    assert await metric(server, 'quartchat_websocket_closes_total{code="1013"}') == 1
    code = await asyncio.wait_for(stalled.close_code(), 30)  # it reads what was buffered, then the close
    assert code in (1013, None), code
    for client in (healthy, sender):
        client.task.cancel()
        await client.ws.close()
