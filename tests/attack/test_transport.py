"""Attacks on the WebSocket transport (quartchat/ws_asgi.py, issue 25): a message in
thousands of small fragments, a flood of pings, control frames in a fragmented message."""

from __future__ import annotations

import asyncio
import time

from ..support import CONTINUATION, PING, TEXT, Chat, RawSocket, Server, unique


async def test_a_message_in_small_fragments_past_64_kib_closes_1009(chat: Chat, server: Server) -> None:
    user = await chat.user()
    raw = await RawSocket.open(server, f"/ws/chat/{unique('frag-')}", user.cookie)
    raw.send(TEXT, b'{"type":"chat","data":"', fin=False)
    for _ in range(4000):  # 4 MB in 1 KB fragments, no FIN
        raw.send(CONTINUATION, b"a" * 1000, fin=False)
    try:
        await raw.writer.drain()
    except ConnectionError:
        pass
    assert await raw.close_code() == 1009


async def test_a_ping_flood_is_answered_and_chat_still_flows(chat: Chat, server: Server) -> None:
    """10,000 pings (the server's pongs pile up if the attacker never reads): the server
    keeps serving others without delay."""
    user, other = await chat.user(), await chat.user()
    room = unique("pings-")
    raw = await RawSocket.open(server, f"/ws/chat/{room}", user.cookie, receive_buffer=4096)
    for _ in range(10_000):
        raw.send(PING, b"x" * 100)
    listener = await chat.open(other, room)
    start = time.monotonic()
    said = await listener.say("still fast")
    assert said["data"] == "still fast"
    assert time.monotonic() - start < 2.0
    raw.writer.close()
    await asyncio.sleep(0)
