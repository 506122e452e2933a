"""Bad input of every kind against a real server: a 4xx with `{"error": …}` (or an
error frame), never a 500, never a traceback in the log (docs/reliability.md)."""

from __future__ import annotations

import asyncio
import json
import re
from functools import partial
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from ..support import PASSWORD, Chat, Server, unique

# Every character Python's str can hold, lone surrogates included: JSON can carry them.
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)


def assert_no_traceback(server: Server) -> None:
    assert "Traceback" not in server.log(), server.log()


def json_post(body: Any) -> dict[str, Any]:
    # json.dumps escapes lone surrogates as \ud800 (httpx's own encoder cannot take them).
    return {"content": json.dumps(body), "headers": {"Content-Type": "application/json"}}


@pytest.mark.parametrize(
    "path", ["/", "/ws/", "/ws/chat/", "/ws/chat/a/b", "/api/rooms", "/signin", "/healthz", "/nowhere", "/static/x"]
)
async def test_a_websocket_upgrade_where_there_is_no_socket_is_a_4xx(server: Server, path: str) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await connect(server.ws_url + path, open_timeout=10, proxy=None)
    status = refused.value.response.status_code
    assert 400 <= status < 500, status
    assert_no_traceback(server)


@pytest.mark.parametrize(
    "body",
    [
        {"name": unique("s"), "password": "\ud800" * 8},
        {"name": unique("s"), "password": "abc\udfffdefgh"},
        {"name": "\ud800abc", "password": PASSWORD},
        {"name": ["x"], "password": PASSWORD},
        {"name": "ok" + unique(""), "password": {"a": 1}},
    ],
)
async def test_a_lone_surrogate_or_wrong_type_in_a_sign_in_is_422(chat: Chat, server: Server, body: Any) -> None:
    response = await chat.http().post("/api/session", **json_post(body))
    assert response.status_code == 422, response.text
    assert isinstance(response.json()["error"], str)
    assert_no_traceback(server)


async def test_form_sign_in_with_undecodable_or_surrogate_fields_is_a_4xx(chat: Chat, server: Server) -> None:
    client = chat.http()
    page = (await client.get("/signin")).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token
    bodies = [
        f"csrf_token={token[1]}&name=%ED%A0%80bob&password=%ED%A0%80%ED%A0%80%ED%A0%80%ED%A0%80",
        f"csrf_token={token[1]}&name=bob{unique('')}&password=%FF%FE%FD%FC%FB%FA%F9%F8",
        f"csrf_token={token[1]}&name=%00&password=x",
        f"csrf_token={token[1]}&name&password",
        "csrf_token=%ff&name=a&password=b",
    ]
    for body in bodies:
        response = await client.post(
            "/signin",
            content=body,
            headers={"Content-Type": "application/x-www-form-urlencoded", "Origin": server.base_url},
        )
        assert response.status_code < 500, (body, response.status_code)
    assert_no_traceback(server)


async def test_bad_query_strings_headers_paths_and_cookies_are_4xx(chat: Chat, server: Server) -> None:
    user = await chat.user()
    requests: list[tuple[str, str, dict[str, str]]] = [
        ("GET", "/api/rooms/lobby/messages?after=%ff", {}),
        ("GET", "/api/rooms/lobby/messages?before=%ED%A0%80", {}),
        ("GET", "/api/rooms/lobby/messages?limit=" + "9" * 5000, {}),
        ("GET", "/api/rooms/%ED%A0%80/messages", {}),
        ("GET", "/api/rooms/%00/users", {}),
        ("GET", "/api/export?since=%ED%A0%80", {}),
        ("GET", "/api/export?since=0001-01-01T00:00:00%2B14:00", {}),
        ("GET", "/api/export?until=9999-12-31T23:59:59-14:00", {}),
        ("GET", "/api/export?format=%00", {}),
        ("GET", "/api/rooms/lobby/export?since=99999-01-01", {}),
        ("GET", "/r/%ff%fe", {}),
        ("GET", "/r/" + "a" * 5000, {}),
        ("GET", "/signin?next=%ED%A0%80", {}),
        ("GET", "/signin?next=/%0d%0aX:%20y", {}),
        ("POST", "/api/session", {"Content-Type": "application/json; charset=utf-7"}),
        ("POST", "/api/session", {"Content-Type": "application/json", "Origin": "null"}),
        ("DELETE", "/api/session", {"Origin": "http://\udcff"}),
        ("GET", "/api/rooms", {"Cookie": "quartchat_session=%ff%fe; x=\x7f"}),
        ("GET", "/api/rooms", {"Accept-Language": "\x7f" * 300}),
    ]
    for method, path, headers in requests:
        encoded = {k: v.encode("utf-8", "surrogateescape") for k, v in headers.items()}
        response = await user.http.request(method, path, headers=encoded)
        assert 200 <= response.status_code < 500, (method, path, response.status_code, response.text[:200])
        if path.startswith("/api/") and response.status_code >= 400:
            assert isinstance(response.json()["error"], str), (path, response.text[:200])
    assert_no_traceback(server)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=any_text | st.integers() | st.none(), password=any_text | st.lists(st.integers(), max_size=2))
def test_any_name_and_password_get_a_json_answer_below_500(server: Server, name: Any, password: Any) -> None:
    response = httpx.post(
        f"{server.base_url}/api/session", trust_env=False, timeout=30, **json_post({"name": name, "password": password})
    )
    assert response.status_code in (200, 401, 422, 429), response.text
    if response.status_code != 200:
        assert isinstance(response.json()["error"], str)


query_values = st.text(st.characters(codec="utf-8"), max_size=30).map(partial(quote, safe="")) | st.binary(
    max_size=12
).map(lambda raw: "".join(f"%{byte:02X}" for byte in raw))


@pytest.fixture(scope="module")
def signed_in(server: Server) -> httpx.Cookies:
    response = httpx.post(
        f"{server.base_url}/api/session", json={"name": unique("q"), "password": PASSWORD}, trust_env=False
    )
    assert response.status_code == 200, response.text
    return response.cookies


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=st.sampled_from(["/api/rooms/lobby/messages", "/api/export", "/api/rooms/lobby/export", "/signin", "/"]),
    params=st.dictionaries(
        st.sampled_from(["after", "before", "limit", "since", "until", "format", "next"]), query_values, max_size=3
    ),
)
def test_any_query_string_gets_an_answer_below_500(
    server: Server, signed_in: httpx.Cookies, path: str, params: dict[str, str]
) -> None:
    query = "&".join(f"{key}={value}" for key, value in params.items())
    response = httpx.get(f"{server.base_url}{path}?{query}", cookies=signed_in, trust_env=False, timeout=30)
    assert response.status_code < 500, (path, query, response.status_code)
    if path.startswith("/api/") and response.status_code >= 400:
        assert isinstance(response.json()["error"], str)
    assert_no_traceback(server)


async def test_no_request_path_can_forge_a_log_line_or_reach_a_terminal(chat: Chat, server: Server) -> None:
    forged = "2026-12-04 09:00:00,000 INFO [1] quartchat.access: request address=10.6.6.6 forged"
    client = chat.http()
    for path in (
        "/r/x%0D%0A" + quote(forged),
        "/r/x%0D" + quote(forged),
        "/r/x%E2%80%A8" + quote(forged),
        "/r/x%C2%85" + quote(forged),
        "/api/rooms/x%0B%0C%1B[2J%1B]0;pwned%07/messages",
    ):
        assert (await client.get(path)).status_code < 500
    log = server.log()
    assert "\x1b" not in log and "\x07" not in log and "\x0b" not in log and "\x0c" not in log
    assert "\u2028" not in log and "\x85" not in log
    for line in log.splitlines():
        assert not line.startswith("2026-12-04 09:00:00,000"), line
    assert "path=/r/x\\x0d\\x0a2026-12-04 09:00:00,000 INFO" in log
    assert "path=/api/rooms/x\\x0b\\x0c\\x1b[2J\\x1b]0;pwned\\x07/messages" in log


# Characters that show nothing, and two that do.
SHOW_NOTHING = "\u200b\u200c\u200d\u2060\ufeff\u3164\u115f\u1160\u2800\u00a0\u3000 \t\n\u180e\u034f\ufe0f"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(st.text(st.sampled_from(SHOW_NOTHING + "a😀"), min_size=1, max_size=8), min_size=1, max_size=6))
def test_texts_of_nothing_visible_are_empty_and_the_rest_stored_exactly(
    server: Server, signed_in: httpx.Cookies, texts: list[str]
) -> None:
    asyncio.run(_say_all(server, signed_in, texts))


async def _say_all(server: Server, signed_in: httpx.Cookies, texts: list[str]) -> None:
    chat = Chat(server)
    try:
        room = unique("blank-")
        cookie = "; ".join(f"{name}={value}" for name, value in signed_in.items())
        conn = await chat.connect(None, room, cookie=cookie)
        assert (await conn.recv())["type"] == "history"
        await conn.expect("list")
        stored = []
        for index, text in enumerate(texts):
            await conn.send_json({"type": "chat", "data": text, "client_id": f"{room}-{index}"})
            reply = await conn.recv()
            while reply["type"] in ("join", "left"):
                reply = await conn.recv()
            visible = any(char not in SHOW_NOTHING for char in text)
            if visible:
                assert reply["type"] == "chat" and reply["data"] == text, (text, reply)
                stored.append(text)
            else:
                assert reply == {
                    "type": "error",
                    "code": "empty",
                    "message": reply["message"],
                    "client_id": f"{room}-{index}",
                }
        page = httpx.get(
            f"{server.base_url}/api/rooms/{room}/messages", cookies=signed_in, trust_env=False, params={"limit": 200}
        )
        assert [m["data"] for m in page.json()["messages"]] == stored
    finally:
        await chat.aclose()


header_values = st.binary(max_size=60).map(lambda raw: raw.replace(b"\r", b"").replace(b"\n", b"").replace(b"\0", b""))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    method_path=st.sampled_from(
        [("GET", "/"), ("GET", "/api/rooms"), ("POST", "/api/session"), ("DELETE", "/api/session"), ("GET", "/metrics")]
    ),
    headers=st.dictionaries(
        st.sampled_from(["Origin", "Cookie", "Content-Type", "Accept", "Authorization", "X-Forwarded-For", "Range"]),
        header_values,
        max_size=4,
    ),
)
def test_any_header_values_get_an_answer_below_500(
    server: Server, method_path: tuple[str, str], headers: dict[str, bytes]
) -> None:
    method, path = method_path
    try:
        response = httpx.request(
            method, f"{server.base_url}{path}", headers=headers, content=b"{}", trust_env=False, timeout=30
        )
    except httpx.LocalProtocolError:
        return  # the client library itself refused to send it
    assert response.status_code < 500, (method, path, headers, response.status_code)
    assert_no_traceback(server)
