"""Driving the chat page: a signed-in Chromium page, sending, reading the list."""

from __future__ import annotations

from typing import Any

from playwright.async_api import Browser, Page, expect

from ..support import PASSWORD, Chat, Server

DESKTOP = {"width": 1100, "height": 700}
PHONE = {"width": 390, "height": 844}


async def signed_in_page(
    browser: Browser, server: Server, name: str, path: str = "/", viewport: dict[str, int] | None = None, **options: Any
) -> Page:
    context = await browser.new_context(viewport=viewport or DESKTOP, **options)
    page = await context.new_page()
    await page.goto(f"{server.base_url}/signin?next={path}")
    await page.fill("#name", name)
    await page.fill("#password", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{server.base_url}{path}")
    await expect(page.locator("#status")).to_have_text("connected")
    return page


async def send(page: Page, text: str) -> None:
    await page.fill("#text", text)
    await page.press("#text", "Enter")


def messages(page: Page) -> Any:
    """The texts of the stored messages the page shows."""
    return page.locator("#messages li[data-id] .text")


async def fill_room(server: Server, room: str, count: int) -> None:
    """`count` messages "message 000" … in `room`, sent by one other user."""
    chat = Chat(server)
    try:
        conn = await chat.open(await chat.user(), room)
        for i in range(count):
            await conn.send_json({"type": "chat", "data": f"message {i:03d}"})
        await conn.chats(count, timeout=30)
    finally:
        await chat.aclose()
