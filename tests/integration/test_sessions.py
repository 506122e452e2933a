"""Ending a session ends its sockets (docs/protocol.md, "Closing codes"): sign-out by
the API and by the form, a password set from the command line, expiry; on one process
and across workers; and nothing a socket sends after its session ended is stored."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time

from websockets.exceptions import ConnectionClosed

from ..conftest import StartServer
from ..support import PASSWORD, Chat, Conn, Server, User, run_cli, unique

IN_PROCESS_SECONDS = 2.0  # a change made in the server's process
ELSEWHERE_SECONDS = 10.0  # a change made in another process (the command line)


async def second_session(chat: Chat, user: User) -> User:
    """The same user signed in again: another session, another cookie."""
    client = chat.http()
    response = await client.post("/api/session", json={"name": user.name, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return User(user.id, user.name, client)


async def closed_within(conns: list[Conn], seconds: float, since: float) -> list[int | None]:
    """Each socket's close code, failing unless every one closed within `seconds` of `since`."""
    codes = await asyncio.gather(*(conn.close_code(timeout=seconds + 5) for conn in conns))
    waited = time.monotonic() - since
    assert waited <= seconds, f"the sockets closed {waited:.1f} s after the session ended (bound {seconds} s)"
    return list(codes)


async def send_until_closed(conn: Conn, tag: str) -> int:
    """Send a chat message every 20 ms until the socket is closed; how many were sent."""
    sent = 0
    try:
        while True:
            await conn.send_json({"type": "chat", "data": f"{tag} {sent}", "client_id": f"{tag}-{sent}"})
            sent += 1
            await asyncio.sleep(0.02)
    except ConnectionClosed:
        return sent


async def stored_texts(chat: Chat, room: str) -> list[str]:
    reader = await chat.user()
    return [m["data"] for m in await chat.all_messages(reader, room)]


async def test_signing_out_through_the_api_closes_that_sessions_sockets_within_2_s(chat: Chat) -> None:
    room, elsewhere = unique("out-"), unique("out-")
    user = await chat.user()
    other_session = await second_session(chat, user)
    ended = [await chat.open(user, room), await chat.open(user, elsewhere)]
    kept = await chat.open(other_session, room)
    before = await ended[0].say("before")
    assert await kept.expect("chat") == before
    started = time.monotonic()
    assert (await user.http.delete("/api/session")).status_code == 204
    late = asyncio.create_task(send_until_closed(ended[0], "after"))
    assert await closed_within(ended, IN_PROCESS_SECONDS, started) == [4001, 4001]
    await late
    assert await stored_texts(chat, room) == ["before"], "a message sent after the sign-out was stored"
    assert (await kept.say("the other session goes on"))["room"] == room
    assert (await other_session.http.get("/api/rooms")).status_code == 200


async def test_the_signout_form_closes_the_sessions_sockets_within_2_s(chat: Chat) -> None:
    room = unique("form-")
    user = await chat.user()
    conn = await chat.open(user, room)
    page = await user.http.get(f"/r/{room}")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None
    started = time.monotonic()
    response = await user.http.post("/signout", data={"csrf_token": token[1]}, headers={"Origin": chat.server.base_url})
    assert response.status_code == 303, response.text
    late = asyncio.create_task(send_until_closed(conn, "after"))
    assert await closed_within([conn], IN_PROCESS_SECONDS, started) == [4001]
    await late
    assert await stored_texts(chat, room) == []


async def test_a_password_set_from_the_command_line_closes_every_socket_of_the_user_within_10_s(
    start_server: StartServer,
) -> None:
    server = start_server(rate_limit="100000/1")
    chat = Chat(server)
    try:
        room = unique("cli-")
        user = await chat.user()
        # One socket keeps talking (the store-time check refuses its first message), the
        # other stays silent (only the periodic check can find it).
        talking, silent = await chat.open(user, room), await chat.open(await second_session(chat, user), room)
        done = await asyncio.to_thread(
            run_cli, server.env, server.workdir, "user", "password", user.name, stdin="a new password 123\n"
        )
        assert done.returncode == 0, done.stderr
        started = time.monotonic()
        late = asyncio.create_task(send_until_closed(talking, "after"))
        assert await closed_within([talking, silent], ELSEWHERE_SECONDS, started) == [4001, 4001]
        assert await late > 0
        assert await stored_texts(chat, room) == [], "a message sent after the password change was stored"
    finally:
        await chat.aclose()


async def test_an_expired_session_closes_its_sockets_and_no_longer_signs_in(start_server: StartServer) -> None:
    lifetime = 4.0
    chat = Chat(start_server(session_lifetime=f"{lifetime:.0f}s"))
    try:
        room = unique("exp-")
        signed_in = time.monotonic()
        user = await chat.user()
        conn = await chat.open(user, room)
        await conn.say("while it lasts")
        code = await conn.close_code(timeout=lifetime + 5)
        closed = time.monotonic() - signed_in
        assert code == 4001
        assert lifetime - 0.5 <= closed <= lifetime + IN_PROCESS_SECONDS, f"closed {closed:.1f} s after sign-in"
        assert (await user.http.get("/api/rooms")).status_code == 401
        assert await stored_texts(chat, room) == ["while it lasts"]
    finally:
        await chat.aclose()


async def test_expired_sessions_are_purged_from_the_database(start_server: StartServer) -> None:
    server = start_server(session_lifetime="2s")
    chat = Chat(server)
    try:
        for _ in range(3):
            await chat.user()

        def sessions() -> int:
            with sqlite3.connect(server.workdir / "chat.db") as database:
                count: int = database.execute("SELECT count(*) FROM sessions").fetchone()[0]
                return count

        assert sessions() == 3
        deadline = time.monotonic() + 15
        left = sessions()
        while left and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            left = sessions()
        assert left == 0, "expired sessions were left in the database"
    finally:
        await chat.aclose()


async def closes_seen_on_workers(server: Server, count: int, timeout: float = 5.0) -> set[str]:
    """The worker pids that logged closing a socket with 4001, once `count` have (or the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        closes = re.findall(r"\[(\d+)\] quartchat\.ws: websocket closed .* code=4001", server.log())
        if len(closes) >= count or time.monotonic() > deadline:
            return set(closes)
        await asyncio.sleep(0.1)


async def test_signing_out_on_one_worker_closes_the_sessions_sockets_on_the_other_within_2_s(
    two_workers: Server,
) -> None:
    chat = Chat(two_workers)
    try:
        room = unique("workers-")
        user = await chat.user()
        conns = [await chat.open(user, room) for _ in range(8)]
        started = time.monotonic()
        assert (await user.http.delete("/api/session")).status_code == 204
        assert await closed_within(conns, IN_PROCESS_SECONDS, started) == [4001] * 8
        workers = await closes_seen_on_workers(two_workers, 8)
        assert len(workers) == 2, f"the sockets were all on one worker ({workers}): nothing crossed the broker"
    finally:
        await chat.aclose()


async def test_a_password_set_from_the_command_line_closes_the_users_sockets_on_every_worker(
    two_workers: Server,
) -> None:
    chat = Chat(two_workers)
    try:
        room = unique("workers-cli-")
        user = await chat.user()
        conns = [await chat.open(user, room) for _ in range(8)]
        done = await asyncio.to_thread(
            run_cli, two_workers.env, two_workers.workdir, "user", "password", user.name, stdin="a new password 123\n"
        )
        assert done.returncode == 0, done.stderr
        started = time.monotonic()
        late = asyncio.create_task(send_until_closed(conns[0], "after"))
        assert await closed_within(conns, ELSEWHERE_SECONDS, started) == [4001] * 8
        await late
        assert len(await closes_seen_on_workers(two_workers, 8)) == 2, "the sockets were all on one worker"
        assert await stored_texts(chat, room) == [], "a message sent after the password change was stored"
    finally:
        await chat.aclose()
