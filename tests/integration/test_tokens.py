"""Bot tokens and user administration (docs/protocol.md §11, "Bot tokens"): the real CLI
against the server's database, a real server, real HTTP and WebSocket clients."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from websockets.asyncio.client import connect

from tests.conftest import StartServer
from tests.support import PASSWORD, Chat, Conn, Server, run_cli, unique

BOTS_DOC = Path(__file__).resolve().parents[2] / "docs" / "bots.md"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The module's server, on QUARTCHAT_TEST_DATABASE_URL when set (else SQLite)."""
    database_url = os.environ.get("QUARTCHAT_TEST_DATABASE_URL") or None
    instance = Server(tmp_path_factory.mktemp("tokens"), database_url, rate_limit="100000/1").start()
    yield instance
    instance.stop()


@pytest.fixture
async def chat(server: Server) -> AsyncIterator[Chat]:
    driver = Chat(server)
    yield driver
    await driver.aclose()


def cli(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(server.env, server.workdir, *args)


def make_token(server: Server, name: str, *rooms: str) -> tuple[str, str]:
    """`quartchat token create`: (token id, token)."""
    made = cli(server, "token", "create", name, *[arg for room in rooms for arg in ("--room", room)])
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert re.fullmatch(r"qct_[A-Za-z0-9_-]{43}", token), made.stdout
    token_id = re.search(r"token (\S+) for", made.stderr)
    assert token_id is not None, made.stderr
    return token_id.group(1), token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}".strip()}


async def bot_socket(server: Server, token: str, room: str, origin: str | None = None) -> Conn:
    ws = await connect(
        f"{server.ws_url}/ws/chat/{room}",
        additional_headers=bearer(token),
        origin=origin,  # type: ignore[arg-type]
        open_timeout=10,
        close_timeout=2,
        proxy=None,
    )
    return Conn(ws)


async def opened(conn: Conn) -> Conn:
    assert (await conn.recv())["type"] == "history"
    assert (await conn.recv())["type"] == "list"
    return conn


async def query(server: Server, sql: str, **params: Any) -> list[Any]:
    engine = create_async_engine(server.database_url)
    try:
        async with engine.connect() as connection:
            return list((await connection.execute(text(sql), params)).all())
    finally:
        await engine.dispose()


async def stored_texts(chat: Chat, room: str) -> list[str]:
    reader = await chat.user()
    return [m["data"] for m in await chat.all_messages(reader, room)]


# The command line --------------------------------------------------------------


async def test_token_create_list_revoke_with_the_real_cli(server: Server, chat: Chat) -> None:
    user = await chat.user()
    token_id, token = make_token(server, user.name, "ci", "deploys")

    listed = cli(server, "token", "list")
    assert listed.returncode == 0, listed.stderr
    row = next(line.split("\t") for line in listed.stdout.splitlines() if line.startswith(token_id))
    assert row[1:3] == [user.name, "ci,deploys"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", row[3])
    assert token not in listed.stdout + listed.stderr  # shown once, at creation only

    # Only the SHA-256 is stored: the database holds nothing a caller could present.
    rows = await query(server, "SELECT token_hash, rooms FROM api_tokens WHERE id = :id", id=token_id)
    assert rows[0].token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert json.loads(rows[0].rooms) == ["ci", "deploys"]

    assert (await chat.http().get("/api/rooms/ci/messages", headers=bearer(token))).status_code == 200
    revoked = cli(server, "token", "revoke", token_id)
    assert revoked.returncode == 0 and token_id in revoked.stdout, revoked.stderr
    assert (await chat.http().get("/api/rooms/ci/messages", headers=bearer(token))).status_code == 401
    assert token_id not in cli(server, "token", "list").stdout

    again = cli(server, "token", "revoke", token_id)
    assert again.returncode == 2 and again.stderr.count("\n") == 1 and "no token" in again.stderr
    nobody = cli(server, "token", "create", unique("nobody"))
    assert nobody.returncode == 2 and "no user is named" in nobody.stderr and nobody.stdout == ""
    bad_room = cli(server, "token", "create", user.name, "--room", "Not A Room")
    assert bad_room.returncode == 2 and "not a room name" in bad_room.stderr and bad_room.stdout == ""
    for odd in ("\x01\x7f", "a\u2028b", "x" * 5000, "\udcff"):  # control, separator, huge, a lone surrogate
        refused = cli(server, "token", "create", odd)
        assert refused.returncode == 2 and refused.stdout == "" and refused.stderr.count("\n") == 1, refused


async def test_user_role_sets_admin_and_member(server: Server, chat: Chat) -> None:
    user = await chat.user()
    role_of = "SELECT role FROM users WHERE id = :id"
    assert (await query(server, role_of, id=user.id))[0].role == "member"
    made = cli(server, "user", "role", user.name.upper(), "admin")  # names are found in any case
    assert made.returncode == 0 and "admin" in made.stdout, made.stderr
    assert (await query(server, role_of, id=user.id))[0].role == "admin"
    assert cli(server, "user", "role", user.name, "member").returncode == 0
    assert (await query(server, role_of, id=user.id))[0].role == "member"

    assert cli(server, "user", "role", user.name, "owner").returncode == 2  # not a role
    missing = cli(server, "user", "role", unique("ghost"), "admin")
    assert missing.returncode == 2 and "no user is named" in missing.stderr


async def test_the_first_account_is_the_only_admin_when_twenty_sign_up_at_once(start_server: StartServer) -> None:
    server = start_server()
    async with httpx.AsyncClient(base_url=server.base_url, trust_env=False, timeout=60) as http:
        answers = await asyncio.gather(
            *(http.post("/api/session", json={"name": unique(f"first{n}-"), "password": PASSWORD}) for n in range(20))
        )
    assert [a.status_code for a in answers] == [200] * 20
    roles = await query(server, "SELECT role, created_ms FROM users ORDER BY created_ms")
    assert sorted(r.role for r in roles) == ["admin"] + ["member"] * 19


# Bearer authentication ---------------------------------------------------------


async def test_a_token_authenticates_the_api_and_the_websocket_without_cookie_or_origin(
    server: Server, chat: Chat
) -> None:
    user = await chat.user()
    room = unique("bot-")
    _, token = make_token(server, user.name)
    http = chat.http()
    posted = await http.post(f"/api/rooms/{room}/messages", json={"data": "hello from a bot"}, headers=bearer(token))
    assert posted.status_code == 201, posted.text
    assert posted.json()["user"] == user.ref
    page = await http.get(f"/api/rooms/{room}/messages", headers=bearer(token))
    assert [m["data"] for m in page.json()["messages"]] == ["hello from a bot"]
    assert not http.cookies  # nothing was signed in by a cookie

    # A WebSocket with the header and no Origin, and one from any Origin: the header is
    # nothing a page on another site can make a browser send.
    for origin in (None, "https://elsewhere.example"):
        conn = await opened(await bot_socket(server, token, room, origin))
        await conn.say(f"over the socket from {origin}")
        await conn.ws.close()
    assert await stored_texts(chat, room) == [
        "hello from a bot",
        "over the socket from None",
        "over the socket from https://elsewhere.example",
    ]


async def test_a_request_with_a_token_is_the_tokens_user_whatever_cookie_rides_along(
    server: Server, chat: Chat
) -> None:
    browser_user, bot_user = await chat.user(), await chat.user()
    room = unique("both-")
    _, token = make_token(server, bot_user.name)
    posted = await browser_user.http.post(f"/api/rooms/{room}/messages", json={"data": "who?"}, headers=bearer(token))
    assert posted.status_code == 201 and posted.json()["user"] == bot_user.ref
    # A bad token is not rescued by a good cookie: the header decides.
    refused = await browser_user.http.get(f"/api/rooms/{room}/messages", headers=bearer("qct_" + "A" * 43))
    assert refused.status_code == 401
    # Another scheme is no bot token: the cookie signs the request in as before.
    basic = await browser_user.http.get(f"/api/rooms/{room}/messages", headers={"Authorization": "Basic eDp5"})
    assert basic.status_code == 200


async def test_bad_forged_and_revoked_tokens_are_refused_alike(server: Server, chat: Chat) -> None:
    user = await chat.user()
    token_id, revoked = make_token(server, user.name)
    assert cli(server, "token", "revoke", token_id).returncode == 0
    forged = "qct_" + secrets.token_urlsafe(32)  # the right shape, never made
    candidates = {
        "revoked": revoked,
        "forged": forged,
        "malformed": "not a token",
        "empty": "",
        "non-ASCII": "qct_\u00e9t\u00e9",
        "huge": "qct_" + "A" * 6000,
    }
    http = chat.http()
    answers = {}
    for what, token in candidates.items():
        headers = {"Authorization": f"Bearer {token}".strip().encode()}  # bytes: httpx sends them as they are
        response = await http.get("/api/rooms/lobby/messages", headers=headers)
        posted = await http.post("/api/rooms/lobby/messages", json={"data": "x"}, headers=headers)
        answers[what] = (response.status_code, response.content, posted.status_code, posted.content)
    # Nothing tells a revoked token from one never made: the same status and bytes.
    assert len(set(answers.values())) == 1, answers
    status, body, post_status, _ = answers["revoked"]
    assert (status, post_status) == (401, 401) and forged.encode() not in body

    # Control characters in the header: refused by the HTTP parser, or as any bad token.
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(
        b"GET /api/rooms/lobby/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer qct_\x01\x7f\r\n\r\n"
    )
    status_line = await asyncio.wait_for(reader.readline(), 10)
    writer.close()
    assert status_line.split()[1] in (b"400", b"401"), status_line

    for token in (revoked, forged):
        conn = await bot_socket(server, token, "lobby")
        assert await conn.close_code() == 4001
        assert conn.ws.close_reason == "Invalid user"


async def test_a_token_limited_to_a_room_is_refused_elsewhere(server: Server, chat: Chat) -> None:
    user = await chat.user()
    room_a, room_b = unique("a-"), unique("b-")
    _, token = make_token(server, user.name, room_a)
    http = chat.http()
    assert (
        await http.post(f"/api/rooms/{room_a}/messages", json={"data": "in a"}, headers=bearer(token))
    ).status_code == 201
    assert (await http.get(f"/api/rooms/{room_a}/messages", headers=bearer(token))).status_code == 200
    for method, path in (
        ("POST", f"/api/rooms/{room_b}/messages"),
        ("GET", f"/api/rooms/{room_b}/messages"),
        ("GET", f"/api/rooms/{room_b}/users"),
        ("GET", f"/api/rooms/{room_b}/export"),
        ("GET", "/api/export"),
    ):
        refused = await http.request(method, path, json={"data": "in b"}, headers=bearer(token))
        assert refused.status_code == 403, (method, path, refused.text)
    listed = await http.get("/api/rooms", headers=bearer(token))
    assert [r["name"] for r in listed.json()["rooms"]] == [room_a]  # its rooms only
    conn = await bot_socket(server, token, room_b)
    assert await conn.close_code() == 4003
    await opened(await bot_socket(server, token, room_a))
    assert await stored_texts(chat, room_b) == []
    # The same user signed in with its password is not limited by its token.
    assert (await user.http.get(f"/api/rooms/{room_b}/messages")).status_code == 200


# POST /api/rooms/<room>/messages ---------------------------------------------------


async def test_a_posted_message_is_stored_broadcast_and_idempotent(server: Server, chat: Chat) -> None:
    user, listener = await chat.user(), await chat.user()
    room = unique("post-")
    _, token = make_token(server, user.name)
    watching = await chat.open(listener, room)
    http = chat.http()

    first = await http.post(
        f"/api/rooms/{room}/messages", json={"data": "deploy done", "client_id": "deploy-7"}, headers=bearer(token)
    )
    assert first.status_code == 201, first.text
    message = first.json()
    assert message["type"] == "chat" and message["room"] == room and message["data"] == "deploy done"
    assert message["client_id"] == "deploy-7" and message["user"] == user.ref
    assert await watching.expect("chat") == message  # the same object the socket gets

    retry = await http.post(
        f"/api/rooms/{room}/messages", json={"data": "deploy done", "client_id": "deploy-7"}, headers=bearer(token)
    )
    assert retry.status_code == 200 and retry.json() == message
    with pytest.raises(TimeoutError):  # a retry broadcasts nothing
        await watching.expect("chat", timeout=0.5)
    assert await stored_texts(chat, room) == ["deploy done"]

    # A signed-in browser may post too, with the cross-site checks of every JSON post.
    from_page = await user.http.post(
        f"/api/rooms/{room}/messages", json={"data": "by cookie"}, headers={"Origin": server.base_url}
    )
    assert from_page.status_code == 201
    cross_site = await user.http.post(
        f"/api/rooms/{room}/messages", json={"data": "forged"}, headers={"Origin": "https://evil.example"}
    )
    assert cross_site.status_code == 403
    as_form = await user.http.post(f"/api/rooms/{room}/messages", content=b'{"data": "form"}')
    assert as_form.status_code == 415
    assert (await chat.http().post(f"/api/rooms/{room}/messages", json={"data": "anonymous"})).status_code == 401
    assert await stored_texts(chat, room) == ["deploy done", "by cookie"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"data": "nul \\u0000 inside"}', "bad_request"),
        (b'{"data": "lone \\ud800 surrogate"}', "bad_request"),
        (b'{"data": "ok", "client_id": "bad \\udc00"}', "bad_request"),
        (json.dumps({"data": "x" * 4001}).encode(), "too_long"),
        (b'{"data": "   \\u200b "}', "empty"),
        (b'{"data": 5}', "bad_request"),
        (json.dumps({"data": "x", "client_id": "c" * 65}).encode(), "bad_request"),
        (b'{"data": "x", "client_id": ""}', "bad_request"),
    ],
)
async def test_text_the_websocket_refuses_is_refused_with_422(
    server: Server, chat: Chat, body: bytes, code: str
) -> None:
    user = await chat.user()
    room = unique("bad-")
    _, token = make_token(server, user.name)
    headers = bearer(token) | {"Content-Type": "application/json"}
    response = await chat.http().post(f"/api/rooms/{room}/messages", content=body, headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == code
    assert await stored_texts(chat, room) == []


async def test_bodies_that_are_no_message_are_refused(server: Server, chat: Chat) -> None:
    user = await chat.user()
    _, token = make_token(server, user.name)
    http = chat.http()
    for body in (b"", b"not json", b"[1, 2]", b'"text"', b"\xff\xfe"):
        response = await http.post("/api/rooms/lobby/messages", content=body, headers=bearer(token))
        assert response.status_code == 422, (body, response.text)
    # A body past the 64 KiB request limit: 413, without the server reading it all.
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    head = (
        "POST /api/rooms/lobby/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\nContent-Length: 2000000\r\n\r\n"
    )
    writer.write(head.encode() + b'{"data": "' + b"x" * 100_000)
    status_line = await asyncio.wait_for(reader.readline(), 10)
    writer.close()
    assert status_line.split()[1] == b"413", status_line
    bad_room = await http.post("/api/rooms/No%20Room/messages", json={"data": "x"}, headers=bearer(token))
    assert bad_room.status_code == 404


async def test_posting_too_fast_answers_429_with_retry_after(start_server: StartServer) -> None:
    server = start_server(rate_limit="3/30")
    chat = Chat(server)
    try:
        user = await chat.user()
        _, token = make_token(server, user.name)
        http = chat.http()
        answers = [
            await http.post("/api/rooms/fast/messages", json={"data": f"m{n}"}, headers=bearer(token)) for n in range(5)
        ]
        assert [a.status_code for a in answers] == [201, 201, 201, 429, 429]
        assert answers[3].json()["code"] == "rate_limited"
        assert 1 <= int(answers[3].headers["Retry-After"]) <= 30
        # The limit is the user's in the room, whichever door: its socket is limited too.
        conn = await chat.open(user, "fast")
        await conn.send_json({"type": "chat", "data": "over the socket"})
        refused = await conn.expect("error")
        assert refused["code"] == "rate_limited"
        assert await stored_texts(chat, "fast") == ["m0", "m1", "m2"]
    finally:
        await chat.aclose()


async def test_a_hundred_concurrent_posts_are_each_stored_exactly_once(server: Server, chat: Chat) -> None:
    user = await chat.user()
    room = unique("burst-")
    _, token = make_token(server, user.name)
    http = chat.http()

    async def post(n: int) -> httpx.Response:
        return await http.post(
            f"/api/rooms/{room}/messages", json={"data": f"post {n}", "client_id": f"c{n}"}, headers=bearer(token)
        )

    started = time.perf_counter()
    first = await asyncio.gather(*(post(n) for n in range(100)))
    seconds = time.perf_counter() - started
    assert [r.status_code for r in first] == [201] * 100
    retried = await asyncio.gather(*(post(n) for n in range(100)))  # every one retried at once
    assert [r.status_code for r in retried] == [200] * 100
    assert [r.json()["id"] for r in retried] == [r.json()["id"] for r in first]
    stored = await stored_texts(chat, room)
    assert sorted(stored) == sorted(f"post {n}" for n in range(100))
    print(f"100 concurrent posts stored in {seconds:.2f} s")


# Ending access from the command line -------------------------------------------------


async def test_revoking_a_token_closes_its_sockets_within_10_s_and_stores_nothing_after(
    server: Server, chat: Chat
) -> None:
    user = await chat.user()
    room = unique("revoke-")
    token_id, token = make_token(server, user.name)
    sockets = [await opened(await bot_socket(server, token, room)) for _ in range(3)]
    await sockets[0].say("before")
    assert cli(server, "token", "revoke", token_id).returncode == 0
    revoked_at = time.monotonic()
    # Sent after the revocation: the writer refuses it and closes that socket at once.
    await sockets[0].send_json({"type": "chat", "data": "after"})
    assert await sockets[0].close_code(timeout=12) == 4001
    # The idle ones hear of it from the session watch (every 5 s).
    codes = await asyncio.gather(*(conn.close_code(timeout=12) for conn in sockets[1:]))
    assert codes == [4001] * 2
    idle_closed = time.monotonic() - revoked_at
    assert idle_closed < 10
    print(f"a revoked token's idle sockets closed {idle_closed:.1f} s after the command returned")
    assert await stored_texts(chat, room) == ["before"]


async def test_disabling_a_user_ends_its_sessions_tokens_and_sockets(server: Server, chat: Chat) -> None:
    user = await chat.user()
    room = unique("disable-")
    _, token = make_token(server, user.name)
    by_cookie = await chat.open(user, room)
    by_token = await opened(await bot_socket(server, token, room))
    idle = [await chat.open(user, room), await opened(await bot_socket(server, token, room))]
    await by_cookie.say("before")

    disabled = cli(server, "user", "disable", user.name)
    assert disabled.returncode == 0, disabled.stderr
    assert "1 sessions and 1 tokens ended" in disabled.stdout
    disabled_at = time.monotonic()
    await by_cookie.send_json({"type": "chat", "data": "after by cookie"})
    await by_token.send_json({"type": "chat", "data": "after by token"})
    assert await asyncio.gather(by_cookie.close_code(timeout=12), by_token.close_code(timeout=12)) == [4001, 4001]
    assert await asyncio.gather(*(conn.close_code(timeout=12) for conn in idle)) == [4001, 4001]
    idle_closed = time.monotonic() - disabled_at
    assert idle_closed < 10
    print(f"a disabled user's idle sockets closed {idle_closed:.1f} s after the command returned")
    assert await stored_texts(chat, room) == ["before"]

    # It cannot sign in (a clear refusal, for whoever knows the password), nor use its cookie or token.
    signin = await chat.http().post("/api/session", json={"name": user.name, "password": PASSWORD})
    assert signin.status_code == 403 and "disabled" in signin.json()["error"]
    wrong = await chat.http().post("/api/session", json={"name": user.name, "password": "wrong password"})
    assert wrong.status_code == 401  # nothing said of the account to whoever does not
    assert (await user.http.get(f"/api/rooms/{room}/messages")).status_code == 401
    assert (await chat.http().get(f"/api/rooms/{room}/messages", headers=bearer(token))).status_code == 401
    refused = await chat.connect(user, room)
    assert await refused.close_code() == 4001
    made = cli(server, "token", "create", user.name)
    assert made.returncode == 2 and "disabled" in made.stderr

    assert cli(server, "user", "enable", user.name).returncode == 0
    again = await chat.user(user.name)
    await (await chat.open(again, room)).say("back")
    assert (await chat.http().get(f"/api/rooms/{room}/messages", headers=bearer(token))).status_code == 401


# docs/bots.md ------------------------------------------------------------------------------


async def test_the_bots_doc_python_example_posts_and_reads(server: Server, chat: Chat, tmp_path: Path) -> None:
    section = BOTS_DOC.read_text(encoding="utf-8").split("\n## Post from a script\n", 1)[1].split("\n## ", 1)[0]
    example = section.split("```python\n", 1)[1].split("```", 1)[0]
    script = tmp_path / "bot.py"
    script.write_text(example, encoding="utf-8")
    user = await chat.user()
    _, token = make_token(server, user.name, "ci")
    env = {**os.environ, "QUARTCHAT_URL": server.base_url, "QUARTCHAT_TOKEN": token, "NO_PROXY": "*"}
    ran = await asyncio.to_thread(
        subprocess.run, [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60
    )
    assert ran.returncode == 0, ran.stderr
    stored_id = re.search(r"stored as message (\d+)", ran.stdout)
    assert stored_id is not None, ran.stdout
    assert f"{user.name}: build 1234 passed" in ran.stdout
    messages = await chat.messages(user, "ci")
    ours = [m for m in messages["messages"] if m["user"]["id"] == user.id]
    assert [(m["id"], m["data"]) for m in ours] == [(int(stored_id.group(1)), "build 1234 passed")]


# PostgreSQL + Redis + 2 workers ---------------------------------------------------


async def test_on_two_workers_first_admin_posts_and_cli_revocations_reach_every_worker(two_workers: Server) -> None:
    server = two_workers
    chat = Chat(server)
    try:
        # A fresh database: twenty first sign-ups at once, across both workers, make one admin.
        users = await asyncio.gather(*(chat.user() for _ in range(20)))
        roles = await query(server, "SELECT role FROM users")
        assert sorted(r.role for r in roles) == ["admin"] + ["member"] * 19

        # A hundred concurrent posts (and their retries), spread over both workers: each stored once.
        poster, disabled = users[0], users[1]
        room = unique("pg-")
        _, token = make_token(server, poster.name)
        http = chat.http()

        async def post(n: int) -> httpx.Response:
            # A new connection each: the kernel spreads them over the two workers.
            async with httpx.AsyncClient(base_url=server.base_url, trust_env=False, timeout=30) as client:
                return await client.post(
                    f"/api/rooms/{room}/messages", json={"data": f"p{n}", "client_id": f"c{n}"}, headers=bearer(token)
                )

        assert [r.status_code for r in await asyncio.gather(*(post(n) for n in range(100)))] == [201] * 100
        assert [r.status_code for r in await asyncio.gather(*(post(n) for n in range(100)))] == [200] * 100
        assert sorted(await stored_texts(chat, room)) == sorted(f"p{n}" for n in range(100))

        # Sockets on both workers: a token revoked and a user disabled from the command line.
        token_id, revoked = make_token(server, poster.name)
        bots = [await opened(await bot_socket(server, revoked, room)) for _ in range(6)]
        people = [await chat.open(disabled, room) for _ in range(6)]
        assert cli(server, "token", "revoke", token_id).returncode == 0
        assert cli(server, "user", "disable", disabled.name).returncode == 0
        ended_at = time.monotonic()
        # Half of them send (the writer refuses and closes them), half stay idle (the watch closes them).
        for conn in bots[:3] + people[:3]:
            await conn.send_json({"type": "chat", "data": "after"})
        codes = await asyncio.gather(*(conn.close_code(timeout=12) for conn in bots + people))
        assert codes == [4001] * 12
        idle_closed = time.monotonic() - ended_at
        assert idle_closed < 10
        print(f"2 workers: 12 sockets closed {idle_closed:.1f} s after the commands returned")
        closing = set(re.findall(r"\[(\d+)\] quartchat\.ws: websocket closed .* code=4001", server.log()))
        assert len(closing) == 2, f"the sockets were all on one worker ({closing})"
        assert "after" not in await stored_texts(chat, room)
        assert (await http.get(f"/api/rooms/{room}/messages", headers=bearer(revoked))).status_code == 401
    finally:
        await chat.aclose()
