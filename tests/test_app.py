"""docs/protocol.md §10 sessions and CSRF, §11 pages and API, through Quart's test app (fast)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from quartchat import create_app, migrate
from quartchat.settings import Settings

PASSWORD = "correct horse battery staple"


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[Quart]:
    url = f"sqlite+aiosqlite:///{tmp_path}/h.db"
    await asyncio.to_thread(migrate.upgrade, url)
    application = create_app(Settings(database_url=url, secret_key="s" * 32))
    async with application.test_app():
        yield application


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found
    return found[1]


async def sign_in(client: Client, name: str = "alice") -> dict[str, Any]:
    response = await client.post("/api/session", json={"name": name, "password": PASSWORD})
    assert response.status_code == 200
    body: dict[str, Any] = await response.get_json()
    return body


async def test_session_cookie_is_signed_httponly_lax_and_secure_only_over_https(app: Quart) -> None:
    client = app.test_client()
    response = await client.post("/api/session", json={"name": "alice", "password": PASSWORD})
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("quartchat_session=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie
    secure = await app.test_client().post("/api/session", json={"name": "alice", "password": PASSWORD}, scheme="https")
    assert "Secure" in secure.headers["set-cookie"]


def session_cookie(set_cookie: str) -> str:
    return set_cookie.split(";", 1)[0]


async def test_a_new_session_at_every_sign_in_and_sign_out_ends_it_for_copies_too(app: Quart) -> None:
    client = app.test_client()
    first = await client.post("/api/session", json={"name": "alice", "password": PASSWORD})
    second = await client.post("/api/session", json={"name": "alice", "password": PASSWORD})
    copied = session_cookie(second.headers["set-cookie"])
    assert copied != session_cookie(first.headers["set-cookie"]), "session fixation: the session was reused"
    assert (await app.test_client().get("/api/rooms", headers={"Cookie": copied})).status_code == 200
    assert (await client.delete("/api/session")).status_code == 204
    assert (await app.test_client().get("/api/rooms", headers={"Cookie": copied})).status_code == 401
    older = session_cookie(first.headers["set-cookie"])
    assert (await app.test_client().get("/api/rooms", headers={"Cookie": older})).status_code == 200


async def test_form_sign_in_needs_the_csrf_token(app: Quart) -> None:
    client = app.test_client()
    page = await (await client.get("/signin?next=/r/x")).get_data(as_text=True)
    refused = await client.post("/signin", form={"name": "bob", "password": PASSWORD, "next": "/r/x"})
    assert refused.status_code == 403
    accepted = await client.post(
        "/signin", form={"name": "bob", "password": PASSWORD, "next": "/r/x", "csrf_token": csrf_of(page)}
    )
    assert accepted.status_code == 303 and accepted.headers["location"] == "/r/x"
    assert (await client.get("/api/rooms")).status_code == 200


async def test_form_sign_in_with_a_foreign_origin_is_refused_even_with_the_token(app: Quart) -> None:
    client = app.test_client()
    page = await (await client.get("/signin")).get_data(as_text=True)
    form = {"name": "bob", "password": PASSWORD, "next": "/", "csrf_token": csrf_of(page)}
    refused = await client.post("/signin", form=form, headers={"Origin": "http://evil.example"})
    assert refused.status_code == 403


async def test_wrong_password_on_the_form_shows_the_form_again_with_401(app: Quart) -> None:
    await sign_in(app.test_client(), "carol")
    client = app.test_client()
    page = await (await client.get("/signin")).get_data(as_text=True)
    response = await client.post(
        "/signin", form={"name": "carol", "password": "wrong password", "csrf_token": csrf_of(page)}
    )
    assert response.status_code == 401
    assert "wrong name or password" in await response.get_data(as_text=True)


async def test_sign_out_form_ends_the_session_server_side(app: Quart) -> None:
    client = app.test_client()
    await sign_in(client)
    page = await (await client.get("/")).get_data(as_text=True)
    response = await client.post("/signout", form={"csrf_token": csrf_of(page)})
    assert response.status_code == 303 and response.headers["location"] == "/signin"
    assert (await client.get("/api/rooms")).status_code == 401


async def test_json_posts_need_the_json_content_type(app: Quart) -> None:
    client = app.test_client()
    response = await client.post(
        "/api/session", data='{"name": "x1", "password": "password1"}', headers={"Content-Type": "text/plain"}
    )
    assert response.status_code == 415 and "error" in await response.get_json()


@pytest.mark.parametrize("query", ["limit=0", "limit=201", "before=1&after=2", "before=-1", "after=x"])
async def test_history_api_bad_parameters_are_422(app: Quart, query: str) -> None:
    client = app.test_client()
    await sign_in(client)
    response = await client.get(f"/api/rooms/lobby/messages?{query}")
    assert response.status_code == 422 and isinstance((await response.get_json())["error"], str)


async def test_a_page_without_session_redirects_303_with_next(app: Quart) -> None:
    response = await app.test_client().get("/r/dev-room?x=1")
    assert response.status_code == 303
    assert response.headers["location"] == "/signin?next=%2Fr%2Fdev-room%3Fx%3D1"


async def test_healthz(app: Quart) -> None:
    response = await app.test_client().get("/healthz")
    assert response.status_code == 200 and await response.get_json() == {"status": "ok"}


async def test_a_session_older_than_its_lifetime_counts_as_no_session(app: Quart, tmp_path: Path) -> None:
    import sqlite3

    from quartchat.settings import Settings

    client = app.test_client()
    await sign_in(client, "old-timer")
    assert (await client.get("/api/rooms")).status_code == 200
    expired_ms = Settings().session_lifetime * 1000 + 60_000
    with sqlite3.connect(tmp_path / "h.db") as database:  # the session row is a month and a minute old
        database.execute("UPDATE sessions SET created_ms = created_ms - ?", (expired_ms,))
    assert (await client.get("/api/rooms")).status_code == 401
