"""Issue 19 item 2 and the page's other connection states: a frozen server (no close,
no pong) turns the page to reconnecting with a banner and "Retry now"; a resume that
missed too much starts again from the newest; a closed session sends you to sign in."""

from __future__ import annotations

import json
import os
import signal
import time

from playwright.async_api import Browser, expect

from ..conftest import StartServer
from ..support import run_cli, unique
from .driver import messages, send, signed_in_page

# The page's pong deadline is 10 s; the rest is slack for a loaded machine.
NOTICE_TIMEOUT_MS = 20_000


async def test_a_frozen_server_shows_reconnecting_a_banner_and_retry_now_delivers(
    browser: Browser, start_server: StartServer
) -> None:
    server = start_server(rate_limit="1000/1")
    room = unique("frozen-")
    page = await signed_in_page(browser, server, unique("typist"), f"/r/{room}")
    await send(page, "before the freeze")
    await expect(messages(page)).to_have_text(["before the freeze"])
    assert server.process is not None
    os.killpg(server.process.pid, signal.SIGSTOP)
    try:
        frozen_at = time.monotonic()
        await send(page, "sent into the freeze")
        await expect(page.locator("#status")).to_have_text("reconnecting", timeout=NOTICE_TIMEOUT_MS)
        noticed = time.monotonic() - frozen_at
        banner = page.locator("#banner")
        await expect(banner).to_be_visible()
        await expect(banner).to_contain_text("Reconnecting")
        await expect(page.locator("#users-panel")).to_have_class("users-panel stale")
        opacity = await page.locator("#users").evaluate("list => getComputedStyle(list).opacity")
        assert float(opacity) < 1, "the online list is dimmed while offline"
        await expect(page.locator("#messages li.pending")).to_have_count(1)
        # An attempt to a frozen server hangs until its own 10 s deadline; "Retry now"
        # starts another at once.
        async with page.expect_event("websocket", timeout=NOTICE_TIMEOUT_MS):
            pass
        async with page.expect_event("websocket", timeout=2_000):
            await page.click("#retry-now")
    finally:
        os.killpg(server.process.pid, signal.SIGCONT)
    print(f"frozen connection noticed after {noticed:.1f} s")
    await expect(page.locator("#status")).to_have_text("connected", timeout=NOTICE_TIMEOUT_MS)
    await expect(banner).to_be_hidden()
    await expect(messages(page)).to_have_text(["before the freeze", "sent into the freeze"])
    await expect(page.locator("#messages li.pending")).to_have_count(0)
    await expect(page.locator("#users-panel")).to_have_class("users-panel")


async def test_a_resume_past_the_room_end_starts_again_from_the_newest(
    browser: Browser, start_server: StartServer
) -> None:
    """More than 1,000 missed messages (imported while the server was down): the server
    answers `reset: true` and the page drops what it showed."""
    server = start_server(rate_limit="1000/1")
    room = unique("reset-")
    page = await signed_in_page(browser, server, unique("away"), f"/r/{room}")
    await send(page, "seen before")
    await expect(messages(page)).to_have_text(["seen before"])
    server.stop()
    await expect(page.locator("#status")).to_have_text("reconnecting")
    author = {"id": "00000000-0000-4000-8000-000000000001", "name": unique("importer")}
    lines = [
        json.dumps(
            {
                "id": 1_000_000 + i,
                "type": "chat",
                "room": room,
                "user": author,
                "data": f"missed {i:04d}",
                "ts": f"2026-12-04T10:{i // 60 % 60:02d}:{i % 60:02d}.000Z",
            }
        )
        for i in range(1100)
    ]
    export = server.workdir / "missed.ndjson"
    export.write_text("\n".join(lines) + "\n", encoding="utf-8")
    imported = run_cli(server.env, server.workdir, "import", str(export))
    assert imported.returncode == 0, imported.stderr
    server.start()
    await expect(page.locator("#status")).to_have_text("connected", timeout=NOTICE_TIMEOUT_MS)
    await expect(messages(page).last).to_have_text("missed 1099")
    shown = await messages(page).all_text_contents()
    assert shown == [f"missed {i:04d}" for i in range(1050, 1100)], "only the newest page, nothing from before"
    await page.locator("#messages").evaluate("list => { list.scrollTop = 0; }")
    await expect(messages(page)).to_have_count(100)
    assert (await messages(page).all_text_contents())[0] == "missed 1000"


async def test_a_session_ended_elsewhere_sends_the_page_to_sign_in(browser: Browser, start_server: StartServer) -> None:
    """The server closes the socket with 4001 (here: a restart with another signing key,
    so the cookie no longer verifies) and the page goes to sign in, coming back after."""
    server = start_server()
    room = unique("signed-out-")
    page = await signed_in_page(browser, server, unique("gone"), f"/r/{room}")
    closes: list[str] = []
    page.on("websocket", lambda ws: ws.on("close", lambda _: closes.append(ws.url)))
    server.stop()
    server.env["QUARTCHAT_SECRET_KEY"] = "another-secret-key-0123456789abcdef0123456789"
    server.start()
    await page.wait_for_url(f"{server.base_url}/signin?next=%2Fr%2F{room}", timeout=NOTICE_TIMEOUT_MS)
    assert closes, "the page was sent away by its socket's close, not by a page load"
    await expect(page.locator("#name")).to_be_visible()
