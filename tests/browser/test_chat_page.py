"""docs/web-client.md: the chat page as people use it, in headless Chromium."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from ..conftest import StartServer
from ..support import PASSWORD, Chat, unique
from .driver import messages, send, signed_in_page

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


async def test_two_users_chat_both_ways_see_each_other_and_a_left_notice(
    browser: Browser, start_server: StartServer
) -> None:
    server = start_server(rate_limit="1000/1")
    room = unique("b-")
    alice = await signed_in_page(browser, server, unique("alice"), f"/r/{room}")
    bob_name = unique("bob")
    bob = await signed_in_page(browser, server, bob_name, f"/r/{room}")
    await send(alice, "hello bob")
    await expect(messages(bob)).to_have_text(["hello bob"])
    await send(bob, "hi alice\nsecond line")
    await expect(messages(alice)).to_have_text(["hello bob", "hi alice\nsecond line"])
    await expect(alice.locator("#users li")).to_have_count(2)
    await expect(bob.locator("#users li")).to_have_count(2)
    ARTIFACTS.mkdir(exist_ok=True)
    await alice.screenshot(path=str(ARTIFACTS / "chat-two-users.png"))
    await bob.context.close()
    # After the server's presence grace (3 s by default).
    await expect(alice.locator("#messages li.notice .body").last).to_have_text(f"{bob_name} left", timeout=15_000)
    await expect(alice.locator("#users li")).to_have_count(1)


async def test_refresh_keeps_scrollback_and_the_top_loads_all_older_pages(
    browser: Browser, start_server: StartServer
) -> None:
    server = start_server(rate_limit="1000/1")
    room = unique("scroll-")
    chat = Chat(server)
    try:
        conn = await chat.open(await chat.user(), room)
        for i in range(300):
            await conn.send_json({"type": "chat", "data": f"message {i:03d}"})
        await conn.chats(300)
    finally:
        await chat.aclose()
    page = await signed_in_page(browser, server, unique("reader"), f"/r/{room}")
    await expect(messages(page)).to_have_count(50)
    await page.reload()
    await expect(page.locator("#status")).to_have_text("connected")
    await expect(messages(page).last).to_have_text("message 299")
    for _ in range(30):
        await page.locator("#messages").evaluate("list => { list.scrollTop = 0; }")
        if await messages(page).count() == 300:
            break
        await asyncio.sleep(0.2)
    texts = await messages(page).all_text_contents()
    assert texts == [f"message {i:03d}" for i in range(300)], "older pages in order, no duplicates"


async def test_a_restart_while_sending_reconnects_stores_once_and_keeps_order(
    browser: Browser, start_server: StartServer
) -> None:
    server = start_server(rate_limit="1000/1")
    room = unique("restart-")
    page = await signed_in_page(browser, server, unique("typist"), f"/r/{room}")
    await send(page, "before the restart")
    await expect(messages(page)).to_have_text(["before the restart"])
    server.stop()
    await expect(page.locator("#status")).to_have_text("reconnecting")
    await send(page, "sent while the server was down")
    await expect(page.locator("#messages li.pending")).to_have_count(1)
    server.start()
    chat = Chat(server)
    try:
        other = await chat.open(await chat.user(), room)
        meanwhile = [await other.say(f"meanwhile {i}") for i in range(3)]
        await expect(page.locator("#status")).to_have_text("connected", timeout=20_000)
        await expect(page.locator("#messages li.pending")).to_have_count(0)
        await expect(messages(page)).to_have_count(5)
        shown = await messages(page).all_text_contents()
        assert shown[0] == "before the restart"
        assert shown.count("sent while the server was down") == 1
        assert [t for t in shown if t.startswith("meanwhile")] == [m["data"] for m in meanwhile]
        stored = await chat.all_messages(await chat.user(), room)
        assert [m["data"] for m in stored].count("sent while the server was down") == 1
        ids = [
            int(i)
            for i in await page.locator("#messages li[data-id]").evaluate_all(
                "items => items.map(item => item.dataset.id)"
            )
        ]
        assert ids == sorted(ids)
    finally:
        await chat.aclose()


@pytest.mark.parametrize(
    "text",
    ["<img src=x onerror=alert(1)>", "<script>alert(2)</script>", "x" * 3000],
    ids=["img-onerror", "script", "long-word"],
)
async def test_messages_render_as_text_never_as_markup(browser: Browser, start_server: StartServer, text: str) -> None:
    server = start_server(rate_limit="1000/1")
    page = await signed_in_page(browser, server, unique("xss"), f"/r/{unique('xss-')}")
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    await send(page, text)
    await expect(messages(page)).to_have_text([text])
    await asyncio.sleep(0.3)
    assert dialogs == []
    assert await page.locator("#messages img, #messages script").count() == 0
    overflow = await page.locator("#messages").evaluate("list => list.scrollWidth - list.clientWidth")
    assert overflow <= 0, "a long word broke the layout"


async def test_the_page_talks_to_no_host_but_its_own(browser: Browser, start_server: StartServer) -> None:
    server = start_server()
    context = await browser.new_context()
    page = await context.new_page()
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    page.on("websocket", lambda ws: urls.append(ws.url))
    await page.goto(f"{server.base_url}/signin")
    await page.fill("#name", unique("own"))
    await page.fill("#password", PASSWORD)
    await page.click("button[type=submit]")
    await expect(page.locator("#status")).to_have_text("connected")
    own = (server.base_url, server.ws_url)
    assert urls and all(url.startswith(own) for url in urls), [u for u in urls if not u.startswith(own)]
    assert any(url.startswith(f"{server.ws_url}/ws/chat") and "batch=1" in url for url in urls)


async def test_invalid_session_sends_the_page_to_sign_in(browser: Browser, start_server: StartServer) -> None:
    server = start_server()
    page = await signed_in_page(browser, server, unique("gone"), "/r/lobby")
    await page.context.clear_cookies()
    await page.reload()
    await page.wait_for_url(f"{server.base_url}/signin?next=%2Fr%2Flobby")


async def test_rooms_can_be_switched_from_the_page(browser: Browser, start_server: StartServer) -> None:
    server = start_server()
    page = await signed_in_page(browser, server, unique("walker"))
    room = unique("new-")
    await page.fill("#room-input", room)
    await page.press("#room-input", "Enter")
    await page.wait_for_url(f"{server.base_url}/r/{room}")
    await expect(page.locator("#room-name")).to_have_text(f"#{room}")
    await expect(page.locator("#status")).to_have_text("connected")


async def test_the_export_menu_downloads_the_rooms_history(browser: Browser, start_server: StartServer) -> None:
    server = start_server()
    room = unique("exp-")
    page = await signed_in_page(browser, server, unique("exporter"), f"/r/{room}")
    await send(page, "to be exported")
    await expect(messages(page)).to_have_text(["to be exported"])
    await page.click(".export summary")
    async with page.expect_download() as waiting:
        await page.click("text=Plain text")
    download = await waiting.value
    assert download.suggested_filename.startswith(f"quartchat-{room}-") and download.suggested_filename.endswith(".txt")
    assert "to be exported" in Path(await download.path()).read_text(encoding="utf-8")


async def test_phone_width_shows_both_panels_without_sideways_scrolling(
    browser: Browser, start_server: StartServer
) -> None:
    server = start_server()
    context = await browser.new_context(viewport={"width": 375, "height": 700})
    page = await context.new_page()
    await page.goto(f"{server.base_url}/signin")
    await page.fill("#name", unique("phone"))
    await page.fill("#password", PASSWORD)
    await page.click("button[type=submit]")
    await expect(page.locator("#status")).to_have_text("connected")
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    await expect(page.locator("#users li")).to_have_count(1)
    await expect(page.locator("#text")).to_be_visible()
