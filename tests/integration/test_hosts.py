"""QUARTCHAT_ALLOWED_HOSTS against a real server: a foreign `Host` (DNS rebinding) gets
400 before anything runs, pages, API and the WebSocket handshake alike."""

from __future__ import annotations

import asyncio
import base64
import os
from pathlib import Path

import httpx

from ..conftest import StartServer
from ..support import PASSWORD, Chat, Server, free_port, quartchat_env, run_cli, unique


async def handshake_status(server: Server, host: str, cookie: str = "") -> bytes:
    """The status line the server answers a WebSocket upgrade for `host` with."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /ws/chat HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nCookie: {cookie}\r\n\r\n"
        ).encode()
    )
    try:
        return (await asyncio.wait_for(reader.readuntil(b"\r\n"), 10)).strip()
    finally:
        writer.close()


async def test_a_foreign_host_is_refused_with_400_before_anything_runs(start_server: StartServer) -> None:
    server = start_server()
    chat = Chat(server)
    try:
        user = await chat.user()
        await chat.open(user, "lobby")
        client = chat.http()
        for host in ("attacker.example", "attacker.example:8000", "127.0.0.1.attacker.example", "localhost.evil"):
            name = unique("rebind")
            signed_up = await client.post(
                "/api/session", json={"name": name, "password": PASSWORD}, headers={"Host": host}
            )
            assert signed_up.status_code == 400, (host, signed_up.text)
            assert isinstance(signed_up.json()["error"], str)
            assert "set-cookie" not in signed_up.headers
            for path in ("/", "/api/export", "/api/rooms", "/signin", "/healthz", "/static/js/socket.js"):
                response = await user.http.get(path, headers={"Host": host})
                assert response.status_code == 400, (host, path, response.status_code)
            assert await handshake_status(server, host, user.cookie) == b"HTTP/1.1 400", host
        # Nothing ran for them: no account was made under any of those names.
        taken = await client.post("/api/session", json={"name": "rebind-x", "password": PASSWORD})
        assert taken.status_code == 200
        for host in (f"127.0.0.1:{server.port}", f"localhost:{server.port}", "LOCALHOST", "[::1]:1"):
            assert (await user.http.get("/api/rooms", headers={"Host": host})).status_code == 200, host
        assert await handshake_status(server, f"localhost:{server.port}", user.cookie) == b"HTTP/1.1 101"
        assert "refused a request for an unknown Host" in server.log()
    finally:
        await chat.aclose()


def test_the_setting_names_the_hosts_and_subdomains(start_server: StartServer) -> None:
    server = start_server(allowed_hosts="chat.example.org, .example.net, 127.0.0.1")  # the last for start()
    for host, status in (
        ("chat.example.org", 200),
        ("chat.example.org.:443", 200),
        ("example.net", 200),
        ("a.b.example.net", 200),
        ("example.org", 400),
        ("evilexample.net", 400),
        (f"localhost:{server.port}", 400),  # the setting replaces the loopback defaults
    ):
        response = httpx.get(f"{server.base_url}/healthz", headers={"Host": host}, trust_env=False)
        assert response.status_code == status, host


def test_a_public_bind_without_the_setting_stops_start_up_naming_it(tmp_path: Path) -> None:
    env = quartchat_env(f"sqlite+aiosqlite:///{tmp_path}/h.db")
    refused = run_cli(env, tmp_path, "serve", "--bind", f"0.0.0.0:{free_port()}")
    assert refused.returncode == 2
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("quartchat: QUARTCHAT_ALLOWED_HOSTS: required"), refused.stderr
    bad = run_cli({**env, "QUARTCHAT_ALLOWED_HOSTS": "https://chat.example.org"}, tmp_path, "serve")
    assert bad.returncode == 2 and "QUARTCHAT_ALLOWED_HOSTS" in bad.stderr


async def test_behind_nginx_the_host_it_passes_is_checked(start_server: StartServer, tmp_path: Path) -> None:
    from ..nginx_support import Nginx

    server = start_server(trusted_proxy_hops="1", allowed_hosts="chat.example.org, 127.0.0.1")
    nginx = Nginx(tmp_path / "nginx", [server.port]).start()
    try:
        async with httpx.AsyncClient(base_url=nginx.base_url, verify=Nginx.client_ssl(), trust_env=False) as client:
            for headers, expected in (
                ({"Host": "chat.example.org"}, 401),  # past the Host check: not signed in
                ({"Host": f"127.0.0.1:{nginx.https_port}", "X-Forwarded-Host": "attacker.example"}, 401),
                ({"Host": "attacker.example"}, 400),
                ({"Host": "attacker.example", "X-Forwarded-Host": "chat.example.org"}, 400),
            ):
                response = await client.get("/api/rooms", headers=headers)
                assert response.status_code == expected, (headers, response.status_code, response.text[:200])
    finally:
        nginx.stop()
