"""docs/protocol.md §12 and §13 over real HTTP: pages, headers, export downloads."""

from __future__ import annotations

import asyncio
import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from quartchat import create_app
from quartchat.settings import Settings

from ..conftest import StartServer
from ..support import PASSWORD, SECRET_KEY, Chat, run_cli, set_role, unique, until


async def test_security_headers_on_every_page(chat: Chat) -> None:
    user = await chat.user()
    for path in ("/", "/r/lobby", "/signin", "/api/rooms"):
        response = await user.http.get(path)
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"]


# Every route but the static files (which set their own caching), as a request that
# reaches it; "{room}" is a room with a message.
ROUTES = {
    "pages.lobby": ("GET", "/"),
    "pages.room": ("GET", "/r/{room}"),
    "pages.signin_form": ("GET", "/signin"),
    "pages.signin": ("POST", "/signin"),
    "pages.signout": ("POST", "/signout"),
    "api.sign_in": ("POST", "/api/session"),
    "api.sign_out": ("DELETE", "/api/session"),
    "api.rooms": ("GET", "/api/rooms"),
    "api.messages": ("GET", "/api/rooms/{room}/messages"),
    "bot_api.post_message": ("POST", "/api/rooms/{room}/messages"),
    "api.users": ("GET", "/api/rooms/{room}/users"),
    "api.export_room": ("GET", "/api/rooms/{room}/export?format=csv"),
    "api.export_all": ("GET", "/api/export?format=json"),
    "rooms_api.create_room": ("POST", "/api/rooms"),
    "rooms_api.open_dm": ("POST", "/api/dm"),
    "rooms_api.members": ("GET", "/api/rooms/{room}/members"),
    "rooms_api.add_member": ("POST", "/api/rooms/{room}/members"),
    "rooms_api.remove_member": ("DELETE", "/api/rooms/{room}/members/nobody"),
    "search.search": ("GET", "/api/search?q=hello"),
    "api.metrics": ("GET", "/metrics"),
    "api.healthz": ("GET", "/healthz"),
}


def test_the_cache_walk_below_covers_every_route_of_the_app(tmp_path: Path) -> None:
    app = create_app(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/routes.db", secret_key=SECRET_KEY))
    endpoints = {r.endpoint for r in app.url_map.iter_rules() if not r.websocket}
    assert endpoints - {"static", "versioned_static"} == set(ROUTES), "a new route: add it to ROUTES"


@pytest.mark.parametrize("signed_in", [True, False])
async def test_no_cache_may_keep_a_page_api_answer_or_export(chat: Chat, signed_in: bool) -> None:
    room = unique("cache-")
    author = await chat.user()
    await (await chat.open(author, room)).say("cached nowhere")
    for endpoint, (method, path) in ROUTES.items():
        ends_the_session = endpoint in ("pages.signout", "api.sign_out")
        user = await chat.user() if ends_the_session else author
        client = user.http if signed_in else chat.http()
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', (await client.get("/signin")).text)
        assert csrf is not None
        form = {"csrf_token": csrf[1], "name": user.name, "password": PASSWORD, "next": "/"}
        response = await client.request(
            method,
            path.format(room=room),
            data=form if endpoint.startswith("pages.") and method == "POST" else None,
            json={"name": user.name, "password": PASSWORD} if endpoint == "api.sign_in" else None,
            headers={"Origin": str(chat.server.base_url)},
        )
        assert response.status_code < 500, (endpoint, response.status_code)
        assert response.headers.get("cache-control") == "no-store", (endpoint, response.status_code)


async def test_an_unknown_api_path_answers_json_and_a_bad_page_room_404s(chat: Chat) -> None:
    user = await chat.user()
    missing = await user.http.get("/api/nothing-here")
    assert missing.status_code == 404 and "error" in missing.json()
    assert (await user.http.get("/r/Not_A_Room")).status_code == 404


@pytest.mark.parametrize(
    "fmt, media",
    [
        ("ndjson", "application/x-ndjson"),
        ("json", "application/json"),
        ("csv", "text/csv"),
        ("txt", "text/plain"),
        ("html", "text/html"),
    ],
)
async def test_export_downloads_are_attachments_named_by_room_and_day(chat: Chat, fmt: str, media: str) -> None:
    room = unique("dl-")
    user = await chat.user()
    await set_role(chat.server, user.id, "admin")  # the export of every room is the admins'
    await (await chat.open(user, room)).say("exported")
    response = await user.http.get(f"/api/rooms/{room}/export", params={"format": fmt})
    assert response.status_code == 200 and response.headers["content-type"].startswith(media)
    today = datetime.now(UTC).strftime("%Y%m%d")
    assert response.headers["content-disposition"] == f'attachment; filename="quartchat-{room}-{today}.{fmt}"'
    everything = await user.http.get("/api/export", params={"format": fmt})
    assert f'filename="quartchat-all-{today}.{fmt}"' in everything.headers["content-disposition"]


async def test_an_export_stopped_halfway_does_not_hurt_the_server(start_server: StartServer, tmp_path: Path) -> None:
    server = start_server()
    dump = tmp_path / "big.ndjson"
    with dump.open("w") as out:
        for i in range(1, 30_001):
            message = {
                "id": i,
                "type": "chat",
                "room": "big",
                "user": {"id": "u-big", "name": "big"},
                "data": f"message {i} " + "x" * 100,
                "ts": "2026-11-24T10:00:00.000Z",
            }
            out.write(json.dumps(message) + "\n")
    assert run_cli(server.env, tmp_path, "import", str(dump)).returncode == 0  # while the server runs
    chat = Chat(server)
    try:
        user = await chat.user()
        for _ in range(3):
            async with user.http.stream("GET", "/api/rooms/big/export", params={"format": "csv"}) as response:
                async for _chunk in response.aiter_bytes():
                    break  # the reader goes away after the first piece
        async with httpx.AsyncClient(base_url=server.base_url, trust_env=False) as client:
            assert (await client.get("/healthz")).status_code == 200
        whole = await user.http.get("/api/rooms/big/export", params={"format": "ndjson"})
        lines = whole.text.splitlines()
        assert len(lines) == 30_000 and json.loads(lines[-1])["id"] == 30_000
        assert (await (await chat.open(user, "big")).say("still chatting"))["id"] == 30_001
        assert not re.search(r"Traceback", server.log()), server.log()
    finally:
        await chat.aclose()


async def test_repeated_wrong_passwords_are_throttled_but_never_for_good(chat: Chat) -> None:
    name = unique("victim")
    await chat.user(name)
    attacker = chat.http()
    for _ in range(5):
        wrong = await attacker.post("/api/session", json={"name": name, "password": "not the password"})
        assert wrong.status_code == 401
    throttled = await attacker.post("/api/session", json={"name": name, "password": PASSWORD})
    assert throttled.status_code == 429 and throttled.headers["retry-after"] == "1"
    await asyncio.sleep(1.1)
    owner = await chat.http().post("/api/session", json={"name": name, "password": PASSWORD})
    assert owner.status_code == 200, "the owner gets in once the short wait is over"


async def metric_samples(client: httpx.AsyncClient) -> dict[str, float]:
    response = await client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    samples = {}
    for line in response.text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            samples[key] = float(value)
    return samples


async def test_metrics_count_connections_messages_broadcasts_errors_and_commits(start_server: StartServer) -> None:
    # A server of its own: nothing but this test moves its counters, so each must move
    # by exactly what the test did (counts earlier tests left behind prove nothing).
    server = start_server(database_url=os.environ.get("QUARTCHAT_TEST_DATABASE_URL") or None)
    chat = Chat(server)
    try:
        client = chat.http()
        room = unique("metrics-")
        sender_user, listener_user = await chat.user(), await chat.user()
        before = await metric_samples(client)
        sender = await chat.open(sender_user, room)
        listener = await chat.open(listener_user, room)
        await sender.say("counted")
        assert (await listener.expect("chat"))["data"] == "counted"
        await sender.ws.send('{"type": "dance"}')
        assert (await sender.expect("error"))["code"] == "bad_request"
        after = await metric_samples(client)

        def moved(key: str) -> float:
            return after.get(key, 0.0) - before.get(key, 0.0)

        assert moved("quartchat_connections") == 2
        assert moved("quartchat_messages_stored_total") == 1
        assert moved("quartchat_broadcasts_total") == 2, "one message queued for each of two connections"
        assert moved('quartchat_errors_total{code="bad_request"}') == 1
        assert moved("quartchat_commit_seconds_count") == 1
        assert "quartchat_send_queue_drops_total" in after and moved("quartchat_send_queue_drops_total") == 0
        await listener.ws.close()
        await until(
            lambda: _connections_now(client, before["quartchat_connections"] + 1),
            "the closed socket leaves quartchat_connections",
        )
    finally:
        await chat.aclose()


async def _connections_now(client: httpx.AsyncClient, expected: float) -> bool:
    return (await metric_samples(client))["quartchat_connections"] == expected


async def test_log_lines_name_address_user_room_duration_and_close_code_never_secrets(
    start_server: StartServer,
) -> None:
    server = start_server()
    chat = Chat(server)
    try:
        user = await chat.user()
        room = unique("log-")
        # Query strings may carry what a log must not keep (a token, a search): a
        # marker in every one, on the API, a page, a refused request and the socket.
        secret = unique("querymarker")
        assert (await user.http.get(f"/api/rooms/{room}/messages", params={"limit": 5, "q": secret})).status_code == 200
        assert (await user.http.get(f"/r/{room}", params={"token": secret})).status_code == 200
        assert (await user.http.get(f"/api/rooms/{room}/messages", params={"limit": secret})).status_code == 422
        conn = await chat.open(user, room, query=f"after=0&batch=1&token={secret}")
        await conn.say("logged")
        await conn.ws.close()
        cookie = user.cookie
        # The session's line is written when the server sees the close.
        await until(lambda: "websocket closed" in server.log(), "the WebSocket session's log line")
    finally:
        await chat.aclose()
    log = server.log()
    request_line = re.search(
        rf"request address=127\.0\.0\.1 method=GET path=/api/rooms/{room}/messages status=200 "
        rf"user={user.id} room={room} ms=\d+\.\d",
        log,
    )
    assert request_line, log
    assert re.search(r"request address=127\.0\.0\.1 method=POST path=/api/session status=200 user=\S+ room=- ms=", log)
    ws_line = re.search(
        rf"websocket closed address=127\.0\.0\.1 user={user.id} room={room} seconds=\d+\.\d code=\S+", log
    )
    assert ws_line, log
    assert PASSWORD not in log and cookie.split("=", 1)[1] not in log
    assert re.search(rf"path=/r/{room} status=200 ", log) and re.search(
        rf"path=/api/rooms/{room}/messages status=422 ", log
    )
    assert secret not in server.log_path.read_text(errors="replace"), "a query string reached the log"
