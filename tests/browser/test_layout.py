"""Issue 19 item 1: at phone and desktop widths the message box stays on screen, the
newest message shows, one page of history loads until the reader scrolls up, and on a
phone the user list is a drawer."""

from __future__ import annotations

import asyncio

import pytest
from playwright.async_api import Browser, Page, expect

from ..conftest import StartServer
from ..support import unique
from .driver import DESKTOP, PHONE, fill_room, messages, signed_in_page

SETTLE_SECONDS = 1.0  # time for a page that loads more than it should to do so


# Whether the last element that `selector` matches is wholly on screen.
INSIDE = """selector => {
    const box = [...document.querySelectorAll(selector)].at(-1).getBoundingClientRect();
    return box.height > 0 && box.top >= 0 && box.bottom <= window.innerHeight
        && box.left >= 0 && box.right <= window.innerWidth;
}"""


async def inside_viewport(page: Page, selector: str) -> bool:
    return bool(await page.evaluate(INSIDE, selector))


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
async def test_a_300_message_room_opens_at_the_newest_with_the_box_on_screen_and_one_page_loaded(
    browser: Browser, start_server: StartServer, viewport: dict[str, int]
) -> None:
    server = start_server(rate_limit="1000/1")
    room = unique("big-")
    await fill_room(server, room, 300)
    page = await signed_in_page(browser, server, unique("reader"), f"/r/{room}", viewport=viewport)
    await expect(messages(page).last).to_have_text("message 299")
    await asyncio.sleep(SETTLE_SECONDS)
    assert await messages(page).count() == 50, "only the first page, until the reader scrolls up"
    assert await inside_viewport(page, "#text"), "the message box is on screen"
    assert await inside_viewport(page, "#messages li[data-id]"), "the newest message is on screen"
    assert await page.evaluate("document.documentElement.scrollHeight <= window.innerHeight"), (
        "the page itself does not scroll"
    )
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    await page.locator("#messages").evaluate("list => { list.scrollTop = 0; }")
    await expect(messages(page)).to_have_count(100)


async def test_on_a_phone_the_user_list_is_a_drawer(browser: Browser, start_server: StartServer) -> None:
    server = start_server()
    name = unique("phone")
    page = await signed_in_page(browser, server, name, viewport=PHONE)
    panel = page.locator("#users-panel")
    await expect(panel).to_be_hidden()
    toggle = page.locator("#users-toggle")
    await expect(toggle).to_have_text("Online 1")
    await toggle.click()
    await expect(panel).to_be_visible()
    await expect(toggle).to_have_attribute("aria-expanded", "true")
    await expect(page.locator("#users li")).to_have_text([name])
    width = await panel.evaluate("panel => panel.getBoundingClientRect().width")
    assert width >= 200, f"the drawer is {width} px wide"
    await page.wait_for_function(INSIDE, arg="#users-panel")  # the drawer slides in
    await page.keyboard.press("Escape")
    await expect(panel).to_be_hidden()
    await expect(toggle).to_be_focused()


async def test_on_a_desktop_the_user_list_is_a_column(browser: Browser, start_server: StartServer) -> None:
    server = start_server()
    page = await signed_in_page(browser, server, unique("desk"), viewport=DESKTOP)
    await expect(page.locator("#users-panel")).to_be_visible()
    await expect(page.locator("#users-toggle")).to_be_hidden()
    assert await inside_viewport(page, "#text")
