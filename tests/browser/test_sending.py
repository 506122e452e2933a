"""Issue 19 item 3: a message the server refuses says why and offers Retry and Delete;
unconfirmed and failed messages keep the order they were typed in."""

from __future__ import annotations

import asyncio

from playwright.async_api import Browser, expect

from ..conftest import StartServer
from ..support import Chat, unique
from .driver import messages, send, signed_in_page

RATE_WINDOW_SECONDS = 3


async def test_a_rate_limited_message_offers_retry_and_delete_and_retry_stores_it_once(
    browser: Browser, start_server: StartServer
) -> None:
    server = start_server(rate_limit=f"2/{RATE_WINDOW_SECONDS}")
    room = unique("limited-")
    page = await signed_in_page(browser, server, unique("fast"), f"/r/{room}")
    for text in ("one", "two", "three", "four"):
        await send(page, text)
    failed = page.locator("#messages li.failed")
    await expect(failed).to_have_count(2)
    await expect(messages(page)).to_have_text(["one", "two"])
    await expect(failed.locator(".text")).to_have_text(["three", "four"])  # in the order typed
    await expect(failed.first.locator(".problem")).to_contain_text("Not sent: at most 2 messages in 3 seconds")
    await expect(failed.first.get_by_role("button", name="Retry")).to_be_visible()
    await expect(failed.first.get_by_role("button", name="Delete")).to_be_visible()
    assert await page.locator("#messages li").last.locator(".text").text_content() == "four"

    await failed.last.get_by_role("button", name="Delete").click()
    await expect(failed).to_have_count(1)
    await expect(page.locator("#text")).to_be_focused()

    await asyncio.sleep(RATE_WINDOW_SECONDS)  # the server's rate window, not a wait for the page
    await failed.first.get_by_role("button", name="Retry").click()
    await expect(messages(page)).to_have_text(["one", "two", "three"])
    await expect(page.locator("#messages li.pending, #messages li.failed")).to_have_count(0)

    chat = Chat(server)
    try:
        stored = await chat.all_messages(await chat.user(), room)
    finally:
        await chat.aclose()
    assert [m["data"] for m in stored] == ["one", "two", "three"], "retried once, the deleted one never sent"
