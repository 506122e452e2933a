"""Hostile input against a real server: arbitrary frames (Hypothesis), caps, traversal,
metacharacters. Each: the right answer, the server keeps serving, nothing stored wrongly."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed, InvalidStatus

from ..conftest import StartServer
from ..support import CONTINUATION, PASSWORD, PING, PONG, TEXT, Chat, RawSocket, Server, unique

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
chat_frames = st.fixed_dictionaries(
    {"type": st.sampled_from(["chat", "ping", "edit", "delete", "dance", ""]) | st.integers() | st.none()},
    optional={
        "data": json_values | st.text(max_size=300),
        "client_id": json_values | st.text(max_size=80),
        # Edits and deletes (docs/protocol.md §17): ids of this run's messages, and worse.
        "id": json_values | st.integers(min_value=-2, max_value=10_000),
    },
).map(json.dumps)
frames = st.lists(
    chat_frames
    | st.text(max_size=300)
    | st.binary(max_size=300)
    | st.integers(min_value=1, max_value=2000).map(lambda depth: "[" * depth + "]" * depth)
    | st.integers(min_value=20, max_value=400).map(
        lambda digits: '{"type":"chat","data":"n","x":' + "9" * digits + "}"
    ),
    min_size=1,
    max_size=15,
)


async def drive(server: Server, sent: list[str | bytes]) -> None:
    chat = Chat(server)
    try:
        room = unique("fuzz-")
        user = await chat.user()
        sender = await chat.open(user, room)
        listener = await chat.open(await chat.user(), room)
        for frame in sent:
            await sender.ws.send(frame)
        await sender.send_json({"type": "ping"})
        await sender.send_json({"type": "chat", "data": "end of the fuzz", "client_id": "fuzz-marker"})
        pongs = 0
        while True:  # replies to earlier frames may still come: read to our marker
            reply = await sender.recv()
            assert reply["type"] in ("chat", "edit", "delete", "error", "join", "left", "pong"), reply
            if reply["type"] == "error":
                assert reply["code"] in (
                    "bad_request", "empty", "too_long", "rate_limited", "unavailable", "not_found", "forbidden",
                )  # fmt: skip
            pongs += reply["type"] == "pong"
            if reply["type"] == "chat" and reply.get("client_id") == "fuzz-marker":
                marker = reply
                break
        assert pongs >= 1, "the connection answered the ping"
        broadcast: list[dict[str, Any]] = []
        while True:
            frame = await listener.recv()
            if frame["type"] in ("chat", "edit", "delete"):
                broadcast.append(frame)
                if frame["id"] == marker["id"]:
                    break
        # Stored == broadcast; a chat message's text may have changed since by an edit.
        stored = await chat.all_messages(user, room)
        assert [as_sent(m) for m in stored] == [as_sent(m) for m in broadcast], "stored == broadcast"
    except ConnectionClosed as closed:
        raise AssertionError(f"the server closed the connection: {closed}") from None
    finally:
        await chat.aclose()


def as_sent(row: dict[str, Any]) -> dict[str, Any]:
    if row["type"] != "chat":
        return {k: v for k, v in row.items() if k != "data"}  # a later delete erases an edit's text
    return {k: v for k, v in row.items() if k not in ("data", "edited", "deleted")}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sent=frames)
def test_arbitrary_frames_never_crash_never_1011_and_stored_equals_broadcast(server: Server, sent: list[Any]) -> None:
    asyncio.run(drive(server, sent))
    assert httpx.get(f"{server.base_url}/healthz", trust_env=False).status_code == 200


async def test_connections_per_address_are_capped(start_server: StartServer) -> None:
    chat = Chat(start_server(max_connections_per_address="3"))
    try:
        user = await chat.user()
        opened = [await chat.open(user, unique("cap-")) for _ in range(3)]
        try:
            await chat.connect(user, unique("cap-"))
        except InvalidStatus as refused:
            assert refused.response.status_code == 429
        else:
            raise AssertionError("a fourth connection from one address was accepted")
        await opened[0].ws.close()
        await asyncio.sleep(0.3)
        assert (await chat.open(user, unique("cap-"))).history["type"] == "history"
    finally:
        await chat.aclose()


async def test_the_connection_cap_holds_when_260_sockets_open_at_once(start_server: StartServer) -> None:
    chat = Chat(start_server(max_connections_per_address="200"))
    try:
        user = await chat.user()
        room = unique("rush-")
        opened = await asyncio.gather(*(chat.connect(user, room) for _ in range(260)), return_exceptions=True)
        refused = [r for r in opened if isinstance(r, InvalidStatus)]
        unexpected = [r for r in opened if isinstance(r, BaseException) and not isinstance(r, InvalidStatus)]
        assert not unexpected, unexpected[:3]
        assert {r.response.status_code for r in refused} == {429}
        assert len(opened) - len(refused) == 200, f"{len(opened) - len(refused)} of 260 opened against a cap of 200"
        for conn in opened:
            if not isinstance(conn, BaseException):
                await conn.ws.close()
        await (await chat.open(user, room)).say("the slots came back")
    finally:
        await chat.aclose()


async def test_an_open_refused_after_the_upgrade_gives_its_slot_back(start_server: StartServer) -> None:
    chat = Chat(start_server(max_connections_per_address="3"))
    try:
        user = await chat.user()
        for _ in range(2):  # each way of failing, past the cap twice over
            assert await (await chat.connect(None, unique("cap-"))).close_code() == 4001
            assert await (await chat.connect(user, "Bad.Room")).close_code() == 4004
            assert await (await chat.connect(user, unique("cap-"), query="after=x")).close_code() == 1008
        opened = [await chat.open(user, unique("cap-")) for _ in range(3)]
        assert all(conn.history["type"] == "history" for conn in opened)
    finally:
        await chat.aclose()


async def test_sign_ups_from_one_address_are_capped_with_429_and_retry_after(start_server: StartServer) -> None:
    chat = Chat(start_server(signup_limit="3/3600"))
    try:
        client = chat.http()
        existing = await chat.user()  # the first of the three
        answers = await asyncio.gather(
            *(client.post("/api/session", json={"name": unique("new"), "password": PASSWORD}) for _ in range(6))
        )
        assert sorted(a.status_code for a in answers) == [200, 200, 429, 429, 429, 429]
        for refused in (a for a in answers if a.status_code == 429):
            assert "new accounts" in refused.json()["error"]
            assert 1 <= int(refused.headers["Retry-After"]) <= 3600
        again = await chat.http().post("/api/session", json={"name": existing.name, "password": PASSWORD})
        assert again.status_code == 200, "signing in to an existing account is not a sign-up"
        form_client = chat.http()
        token = re.search(r'name="csrf_token" value="([^"]+)"', (await form_client.get("/signin")).text)
        assert token is not None
        by_form = await form_client.post(
            "/signin",
            data={"csrf_token": token[1], "name": unique("new"), "password": PASSWORD, "next": "/"},
            headers={"Origin": chat.server.base_url},
        )
        assert by_form.status_code == 429 and int(by_form.headers["Retry-After"]) >= 1
    finally:
        await chat.aclose()


async def raw_get(server: Server, path: str) -> tuple[int, dict[str, str], bytes]:
    """GET `path` exactly as written: an HTTP client would resolve `..` before sending."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        host = f"127.0.0.1:{server.port}"
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in header_lines)}
    return int(status_line.split()[1]), headers, body


# Files outside static/ (the project, sources, migrations, templates),
# asked for through every spelling of "the folder above" under both static routes.
OUTSIDE = ("pyproject.toml", "quartchat/settings.py", "migrations/env.py", "templates/chat.html")
CLIMBS = (
    "/static/../",
    "/static/../../",
    "/static/%2e%2e/",
    "/static/%2E%2E/",
    "/static/.%2e/",
    "/static/..%2f",
    "/static/..%2F..%2F",
    "/static/..%5c",
    "/static/%2e%2e%2f",
    "/static/%252e%252e/",
    "/static/js/../../",
    "/static/js/..%2f..%2f",
    "/static/v/abc/../../",
    "/static/v/abc/..%2f..%2f",
    "/static/v/abc/%2e%2e/%2e%2e/",
    "/static/v/000000000000/..%2f..%2f..%2f",
    "/static/v/%2e%2e/%2e%2e/",
    "/static/v/x/js/../../../",
    "/static//",
    "/static/%2f",
    "/static/v/x/%2f",
)


async def test_no_path_under_static_serves_a_file_from_outside_the_static_folder(server: Server) -> None:
    # A 404 for every one; a redirect (Werkzeug merges `//`) must stay on the site and
    # lead to a 404 too. No version, right or wrong, reaches outside static/ (a wrong
    # version is a 404 of its own: tests/test_static.py).
    served = []
    for climb in CLIMBS:
        for target in OUTSIDE:
            path = climb + target
            status, headers, _ = await raw_get(server, path)
            for _ in range(3):
                if status not in (301, 302, 303, 307, 308):
                    break
                location = httpx.URL(headers["location"])
                assert location.host in ("", "127.0.0.1") and location.port in (None, server.port), location
                status, headers, _ = await raw_get(server, location.raw_path.decode())
            if status != 404:
                served.append((path, status))
    assert served == [], f"answered other than 404: {served}"
    # The same files' own static URLs do answer, so the 404s above are not a dead route.
    assert (await raw_get(server, "/static/style.css"))[0] == 200
    assert (await raw_get(server, "/static/js/app.js"))[0] == 200


async def test_sql_metacharacters_and_markup_in_names_rooms_and_texts_are_just_text(chat: Chat) -> None:
    # Whole, as an attacker sends it: refused as a name (quote, parenthesis, semicolon
    # and markup are not name characters), and nothing else in the database changes.
    witness = await chat.user()
    for hostile in ("Robert'); DROP TABLE users;--", "x' OR '1'='1", "<b>mallory</b>", "<script>alert(1)</script>"):
        refused = await chat.http().post("/api/session", json={"name": hostile, "password": PASSWORD})
        assert refused.status_code == 422 and "name" in refused.json()["error"], (hostile, refused.text)
    again = await chat.http().post("/api/session", json={"name": witness.name, "password": PASSWORD})
    assert again.status_code == 200 and again.json()["user"]["id"] == witness.id, "the users table is intact"
    # A name made only of allowed characters may still read like SQL: stored and shown as is.
    name = "Robert. DROP TABLE users --" + unique("")[:4]
    user = await chat.user(name)
    assert user.name == name
    room = unique("x-")
    conn = await chat.open(user, room)
    assert {"id": user.id, "name": name} in conn.online
    texts = [
        "Robert'); DROP TABLE users;--",
        "'; DROP TABLE messages; --",
        '" OR 1=1 --',
        "<b>bold</b> & <i>",
        "<script>alert(1)</script>",
        "%s %d {0} \\x00",
        "😀 ' \" \\",
    ]
    for text in texts:
        said = await conn.say(text)
        assert said["data"] == text and said["user"] == {"id": user.id, "name": name}
    await conn.send_json({"type": "chat", "data": "a\u0000b"})
    assert (await conn.expect("error"))["code"] == "bad_request"
    assert [m["data"] for m in await chat.all_messages(witness, room)] == texts
    bad = await user.http.get("/api/rooms/x'%20OR%201=1/messages")
    assert bad.status_code in (404, 422) and "error" in bad.json()


async def test_split_messages_invalid_utf8_and_stray_continuations(chat: Chat, server: Server) -> None:
    room = unique("frames-")
    user = await chat.user()
    watcher = await chat.open(await chat.user(), room)

    raw = await RawSocket.open(server, f"/ws/chat/{room}", user.cookie)
    await raw.message("list")
    # A message in three fragments, split inside a UTF-8 character, a ping between them.
    whole = json.dumps({"type": "chat", "data": "拆开的消息", "client_id": "split-1"}, ensure_ascii=False).encode()
    cut = whole.index("开".encode()) + 1
    raw.send(TEXT, whole[:10], fin=False)
    raw.send(CONTINUATION, whole[10:cut], fin=False)
    raw.send(PING, b"still there?")
    raw.send(CONTINUATION, whole[cut:])
    texts = []
    while (received := await raw.frame())[0] != PONG:  # presence frames may come first
        texts.append(json.loads(received[1]))
    assert received[1] == b"still there?"
    chats = [t for t in texts if t["type"] == "chat"] or [await raw.message("chat")]
    assert chats[0]["data"] == "拆开的消息"
    assert (await watcher.expect("chat"))["client_id"] == "split-1"

    # A protocol failure fails the connection (RFC 6455 §7.1.7). Hypercorn drops it
    # without the close frame the RFC says it SHOULD send (1007 here, 1002 below):
    # wsproto reports the failure, and Hypercorn answers a close only in the closing
    # state. Either way the socket is gone at once and nothing of it is stored.
    raw.send(TEXT, b'{"type":"chat","data":"\xff\xfe not UTF-8"}')
    assert await raw.close_code() in (1007, None)

    stray = await RawSocket.open(server, f"/ws/chat/{room}", user.cookie)
    await stray.message("list")
    stray.send(CONTINUATION, b'"data":"a continuation of nothing"}')
    assert await stray.close_code() in (1002, None)

    unfinished = await RawSocket.open(server, f"/ws/chat/{room}", user.cookie)
    await unfinished.message("list")
    unfinished.send(TEXT, b'{"type":"chat",', fin=False)
    unfinished.send(TEXT, b'"data":"a new message before the last ended"}')
    assert await unfinished.close_code() in (1002, None)

    # Nothing of the broken ones was stored or broadcast; the room goes on.
    said = await watcher.say("still serving")
    assert [m["data"] for m in await chat.all_messages(user, room)] == ["拆开的消息", said["data"]]
