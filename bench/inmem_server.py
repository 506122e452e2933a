"""The `inmem` baseline: a minimal Quart + Hypercorn broadcaster of the same protocol
that stores nothing and sends one frame per message (the framework's ceiling).

    python bench/inmem_server.py --bind 127.0.0.1:8001
"""

from __future__ import annotations

import argparse
import asyncio
import json

from baseline import broadcast, rooms
from hypercorn.asyncio import serve
from hypercorn.config import Config
from quart import Quart, jsonify, request, websocket

app = Quart(__name__)


@app.post("/api/session")
async def session() -> object:
    body = await request.get_json()
    response = jsonify(user={"id": body["name"], "name": body["name"]})
    response.set_cookie("user", body["name"])
    return response


@app.get("/healthz")
async def healthz() -> object:
    return jsonify(status="ok")


@app.websocket("/ws/chat/<room>")
async def chat(room: str) -> None:
    name = websocket.cookies.get("user", "anon")
    queue: asyncio.Queue[str] = asyncio.Queue(maxsize=1000)
    await websocket.accept()
    await websocket.send(json.dumps({"type": "history", "room": room, "messages": [], "has_more": False}))
    await websocket.send(json.dumps({"type": "list", "room": room, "data": []}))
    members = rooms.setdefault(room, set())
    members.add(queue)

    async def sender() -> None:
        while True:
            await websocket.send(await queue.get())

    sending = asyncio.create_task(sender())
    try:
        while True:
            broadcast(room, name, await websocket.receive())
    finally:
        sending.cancel()
        members.discard(queue)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--bind", default="127.0.0.1:8001")
    config = Config()
    config.bind = [parser.parse_args().bind]
    config.accesslog = None
    import uvloop

    uvloop.run(serve(app, config))  # type: ignore[arg-type]
