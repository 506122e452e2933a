"""The `rawasgi` baseline: the `inmem` broadcaster written as a bare ASGI app, with no
Quart at all, on the same Hypercorn. Whatever it cannot beat is Hypercorn's own cost
per frame (wsproto's framing, the stream, the transport), not Quart's.

    python bench/rawasgi_server.py --bind 127.0.0.1:8002
"""

from __future__ import annotations

import argparse
import asyncio
import json
from http.cookies import SimpleCookie
from typing import Any

from baseline import broadcast, rooms
from hypercorn.asyncio import serve
from hypercorn.config import Config

Scope = dict[str, Any]
Receive = Any
Send = Any


async def http(scope: Scope, receive: Receive, send: Send) -> None:
    body = b""
    while True:
        event = await receive()
        body += event.get("body", b"")
        if not event.get("more_body"):
            break
    headers = [(b"content-type", b"application/json")]
    if scope["path"] == "/api/session":
        name = json.loads(body)["name"]
        payload = json.dumps({"user": {"id": name, "name": name}}).encode()
        headers.append((b"set-cookie", f"user={name}; Path=/".encode()))
    else:
        payload = b'{"status":"ok"}'
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


async def chat(scope: Scope, receive: Receive, send: Send) -> None:
    room = scope["path"].rsplit("/", 1)[-1]
    cookies = SimpleCookie(dict(scope["headers"]).get(b"cookie", b"").decode())
    name = cookies["user"].value if "user" in cookies else "anon"
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": json.dumps({"type": "history", "room": room, "messages": []})})
    await send({"type": "websocket.send", "text": json.dumps({"type": "list", "room": room, "data": []})})
    queue: asyncio.Queue[str] = asyncio.Queue(maxsize=1000)
    members = rooms.setdefault(room, set())
    members.add(queue)

    async def sender() -> None:
        while True:
            await send({"type": "websocket.send", "text": await queue.get()})

    sending = asyncio.create_task(sender())
    try:
        while True:
            event = await receive()
            if event["type"] == "websocket.disconnect":
                return
            broadcast(room, name, event.get("text") or event.get("bytes") or b"{}")
    finally:
        sending.cancel()
        members.discard(queue)


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "http":
        await http(scope, receive, send)
    elif scope["type"] == "websocket":
        await chat(scope, receive, send)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--bind", default="127.0.0.1:8002")
    config = Config()
    config.bind = [parser.parse_args().bind]
    config.accesslog = None
    import uvloop

    uvloop.run(serve(app, config))
