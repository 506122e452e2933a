"""What docs/deploy/rehearse.sh checks between the guide's steps, as a chat user would.

`python rehearse_check.py STATE ACTION [ARGS]`: STATE is a JSON file that keeps the
signed-in user's cookie between calls. Actions:

  signin NAME                sign in through nginx (https://chat.example.org), keep the cookie
  signed-in                  the kept cookie still opens a session (a move kept the key)
  say ROOM TEXT              send TEXT over wss:// through nginx; it comes back stored
  history ROOM TEXT...       the room's texts are exactly TEXT... (in order)
  static                     the page's fingerprinted files come from nginx, cached a year;
                             an unknown version is a 404 nothing caches
  across ROOM PORT PORT      a message sent to one instance reaches a socket on the other

Every request goes to chat.example.org (the rehearsal's /etc/hosts) and trusts the
rehearsal's certificate ($CURL_CA_BUNDLE). Exits non-zero with a message on any failure.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import ssl
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect

SITE = "https://chat.example.org"
PASSWORD = "correct horse battery staple"


class CheckFailed(Exception):
    pass


def tls() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=os.environ["CURL_CA_BUNDLE"])


def client(state: dict[str, Any]) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=SITE, verify=tls(), trust_env=False, timeout=30, cookies=state.get("cookies", {}))


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


async def signin(state: dict[str, Any], name: str) -> None:
    async with client(state) as http:
        response = await http.post("/api/session", json={"name": name, "password": PASSWORD})
        expect(response.status_code == 200, f"sign-in through nginx: {response.status_code} {response.text}")
        state["cookies"] = dict(http.cookies)
        expect("Secure" in response.headers["set-cookie"], "the cookie is Secure behind nginx (trusted proxy hop)")


async def signed_in(state: dict[str, Any]) -> None:
    async with client(state) as http:
        response = await http.get("/api/rooms")
    expect(response.status_code == 200, f"the kept session cookie was refused: {response.status_code}")


def cookie_header(state: dict[str, Any]) -> str:
    return "; ".join(f"{name}={value}" for name, value in state["cookies"].items())


async def frames_until(ws: Any, kind: str, text: str | None = None) -> dict[str, Any]:
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 15))
        for message in frame["messages"] if frame["type"] == "batch" else [frame]:
            if message["type"] == kind and (text is None or message.get("data") == text):
                return dict(message)


async def say(state: dict[str, Any], room: str, text: str) -> None:
    url = f"wss://chat.example.org/ws/chat/{room}?batch=1"
    async with connect(url, ssl=tls(), origin=SITE, additional_headers={"Cookie": cookie_header(state)}) as ws:  # type: ignore[arg-type]
        await frames_until(ws, "list")
        await ws.send(json.dumps({"type": "chat", "data": text, "client_id": uuid.uuid4().hex}))
        stored = await frames_until(ws, "chat", text)
    expect(isinstance(stored["id"], int), f"no stored message came back: {stored}")


async def history(state: dict[str, Any], room: str, texts: list[str]) -> None:
    async with client(state) as http:
        response = await http.get(f"/api/rooms/{room}/messages", params={"limit": 200})
    found = [m["data"] for m in response.json()["messages"]]
    expect(found == texts, f"room {room} holds {found}, expected {texts}")


async def static(state: dict[str, Any]) -> None:
    async with client(state) as http:
        page = await http.get("/signin")
        assets = re.findall(r'(?:href|src)="(/static/v/[0-9a-f]+/[^"]+)"', page.text)
        expect(bool(assets), "the page names fingerprinted static files")
        for asset in assets:
            response = await http.get(asset)
            expect(response.status_code == 200, f"{asset}: {response.status_code}")
            expect(response.headers.get("cache-control") == "public, max-age=31536000, immutable", asset)
        unknown = await http.get("/static/v/000000000000/style.css")
    expect(unknown.status_code == 404, f"an unknown static version answered {unknown.status_code}")
    expect(unknown.headers.get("cache-control") == "no-store", "the 404 is not cached")


async def across(state: dict[str, Any], room: str, first: int, second: int) -> None:
    """Straight to two instances (not through nginx), to know which one each socket is on."""
    headers = {"Cookie": cookie_header(state)}
    sockets = [
        connect(f"ws://chat.example.org:{port}/ws/chat/{room}", additional_headers=headers, proxy=None)
        for port in (first, second)
    ]
    async with sockets[0] as sender, sockets[1] as listener:
        await frames_until(sender, "list")
        await frames_until(listener, "list")
        text = f"from {first} to {second}"
        await sender.send(json.dumps({"type": "chat", "data": text}))
        heard = await frames_until(listener, "chat", text)
    expect(heard["data"] == text, "the other instance delivered it (Redis)")


async def run(action: str, rest: list[str], state: dict[str, Any]) -> None:
    if action == "signin":
        await signin(state, rest[0])
    elif action == "signed-in":
        await signed_in(state)
    elif action == "say":
        await say(state, rest[0], rest[1])
    elif action == "history":
        await history(state, rest[0], rest[1:])
    elif action == "static":
        await static(state)
    elif action == "across":
        await across(state, rest[0], int(rest[1]), int(rest[2]))
    else:
        raise CheckFailed(f"unknown action {action!r}")


def main(arguments: list[str]) -> None:
    state_path, action, *rest = arguments
    path = Path(state_path)
    state: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    asyncio.run(run(action, rest, state))
    path.write_text(json.dumps(state))


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except CheckFailed as failed:
        print(f"check failed: {failed}", file=sys.stderr)
        sys.exit(1)
    print(f"check ok: {' '.join(sys.argv[2:])}")
