"""docs/deploy.md: the chat through a real nginx started from the shipped nginx.conf."""

from __future__ import annotations

import asyncio
import json
import re
import resource
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, expect

from ..conftest import RedisServer, StartServer
from ..nginx_support import NGINX, REPOSITORY, Nginx, filled_config
from ..support import CHROMIUM, CHROMIUM_ARGS, PASSWORD, Chat, Server, need_service, unique, until


@pytest.fixture
def proxied(start_server: StartServer, tmp_path: Path) -> Iterator[tuple[Server, Nginx]]:
    server = start_server(trusted_proxy_hops="1", rate_limit="100000/1")
    nginx = Nginx(tmp_path / "nginx", [server.port]).start()
    yield server, nginx
    nginx.stop()


def nginx_test(prefix: Path, config: Path) -> str:
    """`nginx -t` under the file-descriptor limit a stock host gives it (1024); its output."""

    def stock_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))

    result = subprocess.run(
        [NGINX, "-t", "-p", str(prefix), "-c", str(config)], capture_output=True, text=True, preexec_fn=stock_limit
    )
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr and "test is successful" in result.stderr
    return result.stderr


def test_nginx_accepts_the_shipped_config_as_written_with_no_warning(tmp_path: Path) -> None:
    need_service(Path(NGINX).exists(), "nginx")
    config = tmp_path / "nginx.conf"
    config.write_text(filled_config(tmp_path))  # only the documented paths, moved into tmp
    output = nginx_test(tmp_path, config)
    assert "[warn]" not in output, "e.g. worker_connections above the open-file limit (worker_rlimit_nofile)"


def test_the_site_file_works_under_debians_own_nginx_conf(tmp_path: Path) -> None:
    """A host whose nginx serves other sites too keeps Debian's nginx.conf and adds the site."""
    need_service(Path(NGINX).exists() and Path("/etc/nginx/nginx.conf").exists(), "Debian's nginx")
    etc = tmp_path / "etc-nginx"
    shutil.copytree("/etc/nginx", etc, symlinks=True)
    filled_config(tmp_path)  # writes the filled site file beside it
    for enabled in (etc / "sites-enabled").iterdir():
        enabled.unlink()  # Debian's default site listens on port 80, taken on a shared machine
    (etc / "sites-enabled" / "quartchat").symlink_to(tmp_path / "site.conf")
    stock = (etc / "nginx.conf").read_text().replace("/etc/nginx/", f"{etc}/")
    stock = stock.replace("pid /run/nginx.pid;", f"pid {tmp_path / 'nginx.pid'};")
    (etc / "nginx.conf").write_text(stock.replace("/var/log/nginx/", f"{tmp_path / 'logs'}/"))
    nginx_test(Path("/usr/share/nginx"), etc / "nginx.conf")  # Debian's prefix: its modules are there


def test_the_whole_server_config_names_the_pid_file_debians_nginx_service_waits_for() -> None:
    unit = Path("/lib/systemd/system/nginx.service")
    need_service(unit.exists(), "Debian's nginx.service")
    waited_for = re.search(r"^PIDFile=(\S+)$", unit.read_text(), re.MULTILINE)
    assert waited_for is not None
    assert f"pid {waited_for[1]};" in (REPOSITORY / "nginx.conf").read_text()


async def test_pages_and_api_work_through_nginx_which_serves_static_files_itself(
    proxied: tuple[Server, Nginx],
) -> None:
    server, nginx = proxied
    chat = Chat(nginx, Nginx.client_ssl())
    try:
        plain = httpx.get(f"http://127.0.0.1:{nginx.http_port}/signin", trust_env=False)
        assert plain.status_code == 301 and plain.headers["location"].startswith("https://")
        user = await chat.user()
        assert (await user.http.get("/api/rooms")).status_code == 200
        page = await user.http.get("/r/lobby")
        assert page.status_code == 200 and "#lobby" in page.text
        assets = re.findall(r'(?:href|src)="(/static/v/[0-9a-f]+/[^"]+)"', page.text)
        assert len(assets) == 2
        for asset in [*assets, "/static/js/socket.js"]:
            response = await user.http.get(asset)
            assert response.status_code == 200 and response.content
        assert "immutable" in (await user.http.get(assets[0])).headers["cache-control"]
        app_log = server.log()
        assert "path=/r/lobby" in app_log, "the app logs the requests it serves"
        assert "/static/" not in app_log, "nginx served the static files from disk"
    finally:
        await chat.aclose()


async def test_nginx_serves_each_published_version_from_disk_and_passes_unknown_ones_to_a_404(
    proxied: tuple[Server, Nginx],
) -> None:
    server, nginx = proxied
    # What `quartchat static` leaves from the previous deploy: that version's own files.
    previous = nginx.prefix / "static" / "v" / "0123456789ab"
    previous.mkdir()
    (previous / "style.css").write_text("/* the previous version */\n")
    async with httpx.AsyncClient(base_url=nginx.base_url, verify=Nginx.client_ssl(), trust_env=False) as client:
        page = await client.get("/signin")
        current = re.search(r'href="(/static/v/[0-9a-f]+/style.css)"', page.text)
        assert current is not None
        today = await client.get(current[1])
        assert today.status_code == 200 and today.text == (REPOSITORY / "static" / "style.css").read_text()
        assert today.headers["cache-control"] == "public, max-age=31536000, immutable"
        old = await client.get("/static/v/0123456789ab/style.css")
        assert old.status_code == 200 and old.text == "/* the previous version */\n"
        unknown = await client.get("/static/v/000000000000/style.css")
        assert unknown.status_code == 404
        assert unknown.headers["cache-control"] == "no-store" and "expires" not in unknown.headers
    app_log = server.log()
    assert "path=/static/v/000000000000/style.css status=404" in app_log, "nginx passed the unknown version on"
    assert "0123456789ab" not in app_log and current[1] not in app_log, "nginx served what it has from disk"


async def test_websocket_through_nginx_chats_with_a_client_connected_directly(
    proxied: tuple[Server, Nginx],
) -> None:
    server, nginx = proxied
    via_nginx, direct = Chat(nginx, Nginx.client_ssl()), Chat(server)
    try:
        room = unique("px-")
        alice = await via_nginx.user()
        bob = await direct.user()
        a = await via_nginx.open(alice, room)
        b = await direct.open(bob, room)
        assert b.online == sorted([alice.ref, bob.ref], key=lambda u: u["name"].casefold())
        hello = await a.say("through nginx")
        assert await b.expect("chat") == hello
        reply = await b.say("directly")
        assert await a.expect("chat") == reply
        again = await via_nginx.open(alice, room, query=f"after={hello['id']}")
        assert again.history["messages"] == [reply]
    finally:
        await via_nginx.aclose()
        await direct.aclose()


async def test_an_idle_websocket_outlives_nginx_read_timeout_thanks_to_pings(
    start_server: StartServer, tmp_path: Path
) -> None:
    toml = (
        (REPOSITORY / "hypercorn.toml")
        .read_text()
        .replace("websocket_ping_interval = 20.0", "websocket_ping_interval = 1.0")
    )
    (tmp_path / "fast-ping.toml").write_text(toml)
    server = Server(tmp_path, trusted_proxy_hops="1")
    server.extra_args = ["--config", str(tmp_path / "fast-ping.toml")]
    server.start()
    nginx = Nginx(tmp_path / "nginx", [server.port], ws_read_timeout=3).start()
    chat = Chat(nginx, Nginx.client_ssl())
    try:
        conn = await chat.open(await chat.user(), unique("idle-"))
        await asyncio.sleep(7)  # more than twice nginx's read timeout, in silence
        message = await conn.say("still connected")
        assert message["data"] == "still connected"
    finally:
        await chat.aclose()
        nginx.stop()
        server.stop()


async def test_the_app_logs_the_address_nginx_saw_and_ignores_forged_headers_when_direct(
    proxied: tuple[Server, Nginx], start_server: StartServer, tmp_path: Path
) -> None:
    server, nginx = proxied
    transport = httpx.AsyncHTTPTransport(local_address="127.0.0.5", verify=Nginx.client_ssl())
    async with httpx.AsyncClient(transport=transport, base_url=nginx.base_url, trust_env=False) as client:
        response = await client.get("/signin?via=nginx", headers={"X-Forwarded-For": "198.51.100.9"})
        assert response.status_code == 200
    assert "address=127.0.0.5 method=GET path=/signin" in server.log()
    assert "198.51.100.9" not in server.log(), "only the hop nginx added is believed"

    direct_dir = tmp_path / "direct"
    direct_dir.mkdir()
    direct = start_server(workdir=direct_dir)  # QUARTCHAT_TRUSTED_PROXY_HOPS=0
    forged = httpx.get(
        f"{direct.base_url}/signin",
        headers={"X-Forwarded-For": "203.0.113.66", "X-Forwarded-Proto": "https"},
        trust_env=False,
    )
    assert forged.status_code == 200
    assert "address=127.0.0.1 method=GET path=/signin" in direct.log()
    assert "203.0.113.66" not in direct.log()
    signed_in = httpx.post(
        f"{direct.base_url}/api/session",
        json={"name": unique("f"), "password": PASSWORD},
        headers={"X-Forwarded-Proto": "https"},
        trust_env=False,
    )
    assert "Secure" not in signed_in.headers["set-cookie"], "a forged scheme changed the cookie"


async def test_https_through_nginx_secure_cookie_and_the_browser_chats_over_wss(
    proxied: tuple[Server, Nginx], browser: Browser
) -> None:
    _, nginx = proxied
    # Playwright's ignore_https_errors covers page loads but not the WebSocket's own
    # connection: this browser is told to accept the test's self-signed certificate.
    browser = await browser.browser_type.launch(
        executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, "--ignore-certificate-errors"]
    )
    chat = Chat(nginx, Nginx.client_ssl())
    try:
        response = await chat.http().post("/api/session", json={"name": unique("tls"), "password": PASSWORD})
        cookie = response.headers["set-cookie"]
        assert "Secure" in cookie and "HttpOnly" in cookie
        context = await browser.new_context(ignore_https_errors=True)
        page = await context.new_page()
        sockets: list[str] = []
        page.on("websocket", lambda ws: sockets.append(ws.url))
        room = unique("tls-")
        await page.goto(f"{nginx.base_url}/signin?next=/r/{room}")
        await page.fill("#name", unique("browser"))
        await page.fill("#password", PASSWORD)
        await page.click("button[type=submit]")
        await expect(page.locator("#status")).to_have_text("connected")
        assert sockets and all(url.startswith(f"{nginx.ws_url}/ws/chat/{room}") for url in sockets)
        listener = await chat.open(await chat.user(), room)
        await page.fill("#text", "over wss")
        await page.press("#text", "Enter")
        assert (await listener.expect("chat"))["data"] == "over wss"
        await listener.say("back at you")
        await expect(page.locator("#messages li[data-id] .text")).to_have_text(["over wss", "back at you"])
    finally:
        await chat.aclose()
        await browser.close()


async def test_an_export_of_100000_messages_streams_through_nginx_whole(
    proxied: tuple[Server, Nginx], tmp_path: Path
) -> None:
    server, nginx = proxied
    dump = tmp_path / "seed.ndjson"
    with dump.open("w") as out:
        for i in range(1, 100_001):
            out.write(
                json.dumps(
                    {
                        "id": i,
                        "type": "chat",
                        "room": "huge",
                        "user": {"id": "u-h", "name": "h"},
                        "data": f"line {i}",
                        "ts": "2026-11-24T10:00:00.000Z",
                    }
                )
                + "\n"
            )
    from ..support import run_cli

    assert run_cli(server.env, tmp_path, "import", str(dump)).returncode == 0
    chat = Chat(nginx, Nginx.client_ssl())
    try:
        user = await chat.user()
        count, last = 0, ""
        async with user.http.stream("GET", "/api/rooms/huge/export", params={"format": "ndjson"}) as response:
            assert response.status_code == 200
            assert response.headers["content-disposition"].startswith("attachment")
            async for line in response.aiter_lines():
                if line:
                    count, last = count + 1, line
        assert count == 100_000 and json.loads(last)["id"] == 100_000
    finally:
        await chat.aclose()


async def test_nginx_balances_two_instances_without_sticky_sessions(
    start_server: StartServer, tmp_path: Path, postgres_url: str, redis_server: RedisServer
) -> None:
    servers = []
    for index in range(2):
        workdir = tmp_path / f"instance-{index}"
        workdir.mkdir()
        servers.append(
            start_server(
                workdir=workdir,
                database_url=postgres_url,
                broker_url=redis_server.url,
                trusted_proxy_hops="1",
                rate_limit="100000/1",
            )
        )
    nginx = Nginx(tmp_path / "nginx", [s.port for s in servers], workers=1).start()
    chat = Chat(nginx, Nginx.client_ssl())
    try:
        room = unique("lb-")
        users = [await chat.user() for _ in range(6)]  # sign-ins first: the upgrades then alternate
        conns = [await chat.open(user, room) for user in users]
        views: list[list[str]] = [[] for _ in conns]
        for i, conn in enumerate(conns):  # each message reaches everyone before the next is sent
            await conn.send_json({"type": "chat", "data": f"from {i}", "client_id": f"lb-{i}"})
            for view, reader in zip(views, conns, strict=True):
                view.append((await reader.expect("chat"))["data"])
        assert all(view == [f"from {i}" for i in range(6)] for view in views), views
        for conn in conns:
            await conn.ws.close()
        await until(
            lambda: sum(s.log().count("websocket closed") for s in servers) == 6, "both instances closed all six"
        )
        landed = [len(re.findall(r"websocket closed", s.log())) for s in servers]
        assert sum(landed) == 6 and all(count > 0 for count in landed), f"sockets per instance: {landed}"
    finally:
        await chat.aclose()
        nginx.stop()
