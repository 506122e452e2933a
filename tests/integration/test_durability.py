"""Stored before broadcast, across restarts, crashes, stalls, shutdowns and a locked database."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sqlite3
import stat
import time
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from ..conftest import StartServer
from ..support import Chat, Conn, unique


async def test_restart_keeps_history_and_sessions(start_server: StartServer, tmp_path: Path) -> None:
    server = start_server(secret_key=None)  # the server makes and keeps its own key
    chat = Chat(server)
    room = unique("restart-")
    user = await chat.user()
    sent = [await (await chat.open(user, room)).say(f"before {i}") for i in range(3)]
    await chat.aclose()
    server.stop()
    key_files = [p for p in tmp_path.iterdir() if p.name.endswith(".secret")]
    assert len(key_files) == 1 and stat.S_IMODE(os.stat(key_files[0]).st_mode) == 0o600

    server.start()
    chat = Chat(server)
    try:
        response = await chat.again(user).http.get(f"/api/rooms/{room}/messages")
        assert response.status_code == 200, "a restart signed the user out"
        assert response.json()["messages"] == sent
    finally:
        await chat.aclose()


async def test_kill_9_mid_stream_loses_nothing_any_client_saw(start_server: StartServer) -> None:
    server = start_server(rate_limit="100000/1")
    chat = Chat(server)
    room = unique("crash-")
    senders = [(await chat.user(), f"s{i}") for i in range(4)]
    conns = [await chat.open(user, room) for user, _ in senders]
    listener = await chat.open(await chat.user(), room)
    seen: dict[str, list[dict[str, Any]]] = {"listener": []}
    client_ids: dict[str, list[str]] = {}

    async def send_forever(conn: Conn, tag: str) -> None:
        client_ids[tag] = []
        i = 0
        try:
            while True:
                client_id = f"{tag}-{i}"
                client_ids[tag].append(client_id)
                await conn.send_json({"type": "chat", "data": f"{tag} {i}", "client_id": client_id})
                i += 1
                await asyncio.sleep(0.002)
        except ConnectionClosed:
            return

    async def read_forever(conn: Conn, name: str) -> None:
        seen[name] = []
        try:
            while True:
                frame = await conn.recv(timeout=30)
                if frame["type"] == "chat":
                    seen[name].append(frame)
        except ConnectionClosed:
            return

    tasks = [asyncio.create_task(send_forever(c, tag)) for c, (_, tag) in zip(conns, senders, strict=True)]
    tasks += [asyncio.create_task(read_forever(c, tag)) for c, (_, tag) in zip(conns, senders, strict=True)]
    tasks.append(asyncio.create_task(read_forever(listener, "listener")))
    await asyncio.sleep(1.5)
    server.stop(signal.SIGKILL)
    await asyncio.gather(*tasks)
    await chat.aclose()
    assert len(seen["listener"]) > 50, "the test should kill the server mid-stream"

    server.start()
    chat = Chat(server)
    try:
        reader = await chat.user()
        stored = await chat.all_messages(reader, room)
        by_id = {m["id"]: m for m in stored}
        for name, messages in seen.items():
            ids = [m["id"] for m in messages]
            assert ids == sorted(ids), f"{name} saw messages out of order"
            for message in messages:
                assert by_id.get(message["id"]) == message, f"{name} saw a message that was not stored"
        # Every sender retries all it sent, with the same client_ids: nothing is stored twice.
        for user, tag in senders:
            conn = await chat.open(chat.again(user), room)
            for client_id in client_ids[tag]:
                await conn.say(f"{tag} {client_id.split('-')[1]}", client_id=client_id)
        final = await chat.all_messages(reader, room)
        assert len(final) == sum(len(ids) for ids in client_ids.values())
        assert len({m["client_id"] for m in final}) == len(final), "a retry was stored twice"
    finally:
        await chat.aclose()


async def test_stalled_reader_never_delays_the_others_and_is_closed_1013(start_server: StartServer) -> None:
    server = start_server(rate_limit="100000/1", send_queue_size="32", max_message_chars="16000")
    chat = Chat(server)
    try:
        room = unique("stall-")
        sender_user = await chat.user()
        sender = await chat.open(sender_user, room)
        healthy = await chat.open(await chat.user(), room)
        stalled_user = await chat.user()
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        # A network's MSS, not loopback's 64 KiB: the server's kernel sizes its send buffer
        # from it, and on loopback takes all 9 MB before its socket backs up (only a
        # backed-up socket earns 1013: docs/protocol.md §9).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
        sock.connect(("127.0.0.1", server.port))
        stalled_ws = await connect(
            f"{server.ws_url}/ws/chat/{room}",
            sock=sock,
            origin=server.base_url,  # type: ignore[arg-type]
            additional_headers={"Cookie": stalled_user.cookie},
            max_queue=1,
            compression=None,
            close_timeout=2,
            proxy=None,
        )
        stalled = Conn(stalled_ws)  # it never reads until the end
        count, text = 600, "z" * 15_000

        received: list[dict[str, Any]] = []
        window = 16  # the sender stays at most this far ahead of the healthy reader, half its queue:
        # a healthy reader is one that keeps up (this test process also does the sending,
        # and on a slow day it could fall 32 messages behind a sender that never waits)

        progress = asyncio.Condition()

        async def send_all() -> None:
            for i in range(count):
                async with progress:
                    await progress.wait_for(lambda: i - len(received) < window)  # noqa: B023 (waited on at once)
                await sender.send_json({"type": "chat", "data": f"{i} {text}"})

        async def read_own_echoes() -> None:
            # The sender reads what comes back to it, as every client does: 600 frames
            # of 15 KB left unread would back its own socket up and earn it a 1013.
            while True:
                await sender.ws.recv()

        sending = asyncio.create_task(send_all())
        echoes = asyncio.create_task(read_own_echoes())
        for _ in range(count):
            message = await healthy.expect("chat", timeout=10)
            async with progress:
                received.append(message)
                progress.notify_all()
        await sending
        echoes.cancel()
        assert [int(m["data"].split()[0]) for m in received] == list(range(count))
        # The close frame waits behind everything the stalled reader never read: it gets
        # 1013 if it reads again within the server's close timeout (5 s), else the
        # server drops the connection. On a slow day the healthy reader's 600 messages
        # can outlast that; either way the server closed it, and for a full queue.
        code = await stalled.close_code(timeout=30)
        for _ in range(50):
            if f"user={stalled_user.id} room={room}" in server.log():
                break
            await asyncio.sleep(0.1)
        closed_line = re.search(
            rf"websocket closed address=\S+ user={stalled_user.id} room={room} .*code=(\d+)", server.log()
        )
        assert closed_line and closed_line.group(1) == "1013", server.log()
        assert code in (1013, None), code
        stored = await chat.all_messages(sender_user, room)
        assert len(stored) == count
    finally:
        await chat.aclose()


async def test_sigterm_stores_what_was_taken_closes_1001_and_resume_has_no_gap(start_server: StartServer) -> None:
    server = start_server(rate_limit="100000/1")
    chat = Chat(server)
    room = unique("term-")
    users = [await chat.user() for _ in range(3)]
    conns = [await chat.open(u, room) for u in users]
    views: list[list[dict[str, Any]]] = [[] for _ in conns]
    codes: list[int | None] = [None] * len(conns)

    async def chat_until_closed(index: int) -> None:
        conn = conns[index]

        async def send() -> None:
            for i in range(10_000):
                await conn.send_json({"type": "chat", "data": f"{index}:{i}", "client_id": f"{index}-{i}"})
                await asyncio.sleep(0.003)

        sending = asyncio.create_task(send())
        try:
            while True:
                frame = await conn.recv(timeout=30)
                if frame["type"] == "chat":
                    views[index].append(frame)
        except ConnectionClosed as closed:
            codes[index] = closed.rcvd.code if closed.rcvd else None
        finally:
            sending.cancel()

    readers = [asyncio.create_task(chat_until_closed(i)) for i in range(len(conns))]
    await asyncio.sleep(1.0)
    assert server.stop(signal.SIGTERM) == 0
    await asyncio.gather(*readers, return_exceptions=True)
    await chat.aclose()
    assert codes == [1001] * len(conns)

    server.start()
    chat = Chat(server)
    try:
        user = chat.again(users[0])
        stored = await chat.all_messages(user, room)
        for view in views:
            assert view == [m for m in stored if m["id"] <= view[-1]["id"]], "a seen message is missing"
            resumed = await chat.open(user, room, query=f"after={view[-1]['id']}")
            assert view + resumed.history["messages"] == stored
    finally:
        await chat.aclose()


async def test_locked_database_answers_unavailable_broadcasts_nothing_and_recovers(
    start_server: StartServer, tmp_path: Path
) -> None:
    server = start_server()
    chat = Chat(server)
    try:
        room = unique("locked-")
        sender_user = await chat.user()
        sender, listener = await chat.open(sender_user, room), await chat.open(await chat.user(), room)
        blocker = sqlite3.connect(tmp_path / "chat.db", isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")  # another writer holds the lock past the busy timeout
        try:
            await sender.send_json({"type": "chat", "data": "while locked", "client_id": "L1"})
            error = await sender.expect("error", timeout=20)
            assert (error["code"], error["client_id"]) == ("unavailable", "L1")
            async with httpx.AsyncClient(base_url=server.base_url, trust_env=False, timeout=30) as client:
                assert (await client.get("/healthz")).status_code == 503
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        stored = await sender.say("while locked", client_id="L1")
        assert await listener.expect("chat") == stored, "the first, failed attempt was never broadcast"
        assert (await chat.messages(sender_user, room))["messages"] == [stored]
        async with httpx.AsyncClient(base_url=server.base_url, trust_env=False) as client:
            assert (await client.get("/healthz")).status_code == 200
    finally:
        await chat.aclose()


async def test_db_backup_copies_a_live_database_consistently(start_server: StartServer, tmp_path: Path) -> None:
    from ..support import run_cli

    server = start_server(rate_limit="100000/1")
    chat = Chat(server)
    try:
        room = unique("backup-")
        user = await chat.user()
        conn = await chat.open(user, room)
        confirmed = [await conn.say(f"before {i}") for i in range(50)]  # committed before the copy starts

        async def send_while_backing_up() -> None:
            for i in range(300):
                await conn.send_json({"type": "chat", "data": f"m{i}"})
                await asyncio.sleep(0.002)

        sending = asyncio.create_task(send_while_backing_up())
        result = await asyncio.to_thread(run_cli, server.env, tmp_path, "db", "backup", str(tmp_path / "copy.db"))
        await sending
        assert result.returncode == 0, result.stderr
        assert "integrity check ok" in result.stderr
        stored = await chat.all_messages(user, room)
        assert len(stored) == 350
        copy = sqlite3.connect(tmp_path / "copy.db")
        copied = [(row[0], row[1]) for row in copy.execute("SELECT id, text FROM messages ORDER BY id")]
        copy.close()
        # A prefix of what the server stored, id for id and text for text, holding at
        # least every message confirmed before the backup began (an empty copy is no backup).
        assert len(copied) >= len(confirmed), f"the copy holds {len(copied)} messages"
        assert copied == [(m["id"], m["data"]) for m in stored[: len(copied)]], "a consistent prefix of the history"
        again = await asyncio.to_thread(run_cli, server.env, tmp_path, "db", "backup", str(tmp_path / "copy.db"))
        assert again.returncode == 2 and "exists" in again.stderr
    finally:
        await chat.aclose()


async def test_the_server_copies_the_wal_into_the_database_in_the_background(
    start_server: StartServer, tmp_path: Path
) -> None:
    """Commits never checkpoint (a stall for everyone); the server's own task does."""
    server = start_server(rate_limit="100000/1")
    chat = Chat(server)
    try:
        user = await chat.user()
        conn = await chat.open(user, unique("wal-"))
        size_before = (tmp_path / "chat.db").stat().st_size
        for i in range(400):
            await conn.say(f"{i} " + "x" * 3000)
        deadline = time.monotonic() + 10
        while (tmp_path / "chat.db").stat().st_size < size_before + 400 * 3000:
            assert time.monotonic() < deadline, "the WAL was not copied into the database within 10 s"
            await asyncio.sleep(0.2)
    finally:
        await chat.aclose()
