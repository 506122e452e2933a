"""Compressed-frame bombs against a real server (docs/reliability.md): the server refuses
permessage-deflate, so a 61 KB frame that would inflate to 60 MiB costs it nothing."""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import time
import zlib
from pathlib import Path

from websockets.asyncio.client import connect

from ..conftest import StartServer
from ..support import Chat, Conn, RawSocket, Server, unique

BOMBS = 8
INFLATED_BYTES = 60 * 1024 * 1024


def deflate_bomb() -> bytes:
    """One permessage-deflate payload (RFC 7692 §7.2.1: raw deflate, the trailing
    00 00 ff ff removed) that inflates to 60 MiB."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    payload = compressor.compress(b"a" * INFLATED_BYTES) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert payload.endswith(b"\x00\x00\xff\xff")
    return payload[:-4]


def compressed_text_frame(payload: bytes) -> bytes:
    """A masked, final text frame with RSV1 set: "this payload is deflated"."""
    mask = os.urandom(4)
    assert len(payload) < 65536
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | 0x40 | 0x1, 0x80 | 126]) + len(payload).to_bytes(2, "big") + mask + masked


OFFER_DEFLATE = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"


async def detonate(bomber: RawSocket, frame: bytes) -> None:
    """Send the bomb; return once the server has ended the connection."""
    bomber.writer.write(frame)
    try:
        await bomber.writer.drain()
        await asyncio.wait_for(bomber.close_code(), 30)
    except ConnectionError:
        pass  # dropped while we were still writing: ended too
    finally:
        bomber.writer.close()


def worker_rss_bytes(server: Server) -> int:
    """Resident memory of the process that runs the app (a child, if Hypercorn made one)."""
    assert server.process is not None
    children = subprocess.run(
        ["ps", "--ppid", str(server.process.pid), "-o", "pid="], capture_output=True, text=True, check=False
    ).stdout.split()
    pid = int(children[0]) if children else server.process.pid
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))) * 1024


async def ping_round_trip(conn: Conn) -> float:
    started = time.perf_counter()
    await conn.send_json({"type": "ping"})
    await conn.expect("pong", timeout=10)
    return time.perf_counter() - started


async def test_compressed_frame_bombs_are_refused_and_cost_the_server_nothing(start_server: StartServer) -> None:
    server = start_server()
    chat = Chat(server)
    try:
        user = await chat.user()
        bystander = await chat.open(await chat.user(), unique("calm-"))
        # A real client offering deflate (the websockets library does by default).
        offering = await connect(
            server.ws_url + "/ws/chat", additional_headers={"Cookie": user.cookie}, origin=server.base_url, proxy=None
        )  # type: ignore[arg-type]
        assert offering.response.headers.get("Sec-WebSocket-Extensions") is None, "deflate was negotiated"
        await offering.close()

        payload = deflate_bomb()
        frames = [compressed_text_frame(payload) for _ in range(BOMBS)]
        bombers = [
            await RawSocket.open(server, f"/ws/chat/{unique('bomb-')}", user.cookie, extra_headers=OFFER_DEFLATE)
            for _ in range(BOMBS)
        ]
        idle = [await ping_round_trip(bystander) for _ in range(50)]  # with the bombers connected
        rss_before = worker_rss_bytes(server)

        bombs = asyncio.gather(*(detonate(bomber, frame) for bomber, frame in zip(bombers, frames, strict=True)))
        during: list[float] = []
        while not bombs.done():
            during.append(await ping_round_trip(bystander))
        await bombs
        heads = [bomber.head for bomber in bombers]
        rss_after = worker_rss_bytes(server)
        print(  # the figures for docs/reliability.md (pytest -s)
            f"\nbombs: {BOMBS} x {len(payload)} B compressed, {INFLATED_BYTES >> 20} MiB inflated; "
            f"bystander ping idle median {statistics.median(idle) * 1000:.2f} ms, "
            f"during median {statistics.median(during) * 1000:.2f} ms max {max(during) * 1000:.2f} ms "
            f"({len(during)} pings); worker RSS {rss_before >> 20} -> {rss_after >> 20} MiB"
        )
        assert all(b"sec-websocket-extensions" not in head.lower() for head in heads), heads[0]
        assert rss_after - rss_before < 64 * 1024 * 1024, (rss_before, rss_after)
        assert max(during) < 1.0, "another client's ping stalled while the bombs arrived"
        assert (await bystander.say("still here"))["data"] == "still here"
    finally:
        await chat.aclose()
