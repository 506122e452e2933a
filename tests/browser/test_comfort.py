"""Issue 19 items 12 and 13: a dark theme from prefers-color-scheme, WCAG AA contrast
for timestamps and failed-message text, an export menu that closes like a menu, new
messages announced (older pages not), unread counts in the tab title, @mentions."""

from __future__ import annotations

import re
from typing import Literal

import pytest
from playwright.async_api import Browser, Page, expect

from ..conftest import StartServer
from ..support import Chat, unique
from .driver import fill_room, messages, send, signed_in_page

# The contrast ratio (WCAG 2) of an element's text against the first opaque background
# behind it.
CONTRAST = """element => {
    const rgb = (colour) => colour.match(/[\\d.]+/g).map(Number);
    const luminance = ([r, g, b]) => {
        const linear = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
        return 0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b);
    };
    let node = element;
    let background = null;
    while (node && node.nodeType === 1) {
        const value = rgb(getComputedStyle(node).backgroundColor);
        if (value.length === 3 || value[3] === 1) { background = value; break; }
        node = node.parentElement;
    }
    background = background || [255, 255, 255];
    const [a, b] = [luminance(rgb(getComputedStyle(element).color)), luminance(background)];
    return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
}"""


async def contrast(page: Page, selector: str) -> float:
    return float(await page.locator(selector).first.evaluate(CONTRAST))


@pytest.mark.parametrize("scheme", ["light", "dark"])
async def test_both_themes_keep_times_and_failed_messages_readable(
    browser: Browser, start_server: StartServer, scheme: Literal["light", "dark"]
) -> None:
    server = start_server(rate_limit="1/60")
    page = await signed_in_page(browser, server, unique("eyes"), f"/r/{unique('theme-')}", color_scheme=scheme)
    await send(page, "sent")
    await send(page, "refused")
    await expect(page.locator("#messages li.failed")).to_have_count(1)
    background = await page.locator("body").evaluate(
        "body => getComputedStyle(body).backgroundColor.match(/\\d+/g).slice(0, 3).map(Number)"
    )
    if scheme == "dark":
        assert max(background) < 60, f"a dark page, not {background}"
    else:
        assert min(background) > 200, background
    for selector in ("#messages li[data-id] time", "#messages li.failed .problem", "#messages li.failed .text"):
        ratio = await contrast(page, selector)
        assert ratio >= 4.5, f"{selector}: contrast {ratio:.2f} in the {scheme} theme"


async def test_the_export_menu_closes_on_escape_outside_click_and_after_a_download(
    browser: Browser, start_server: StartServer
) -> None:
    server = start_server()
    page = await signed_in_page(browser, server, unique("menu"), f"/r/{unique('menu-')}")
    menu = page.locator("details.export")
    await page.click(".export summary")
    await expect(menu).to_have_attribute("open", "")
    await page.keyboard.press("Escape")
    await expect(menu).not_to_have_attribute("open", "")
    await expect(page.locator(".export summary")).to_be_focused()
    await page.click(".export summary")
    await page.click("#messages")
    await expect(menu).not_to_have_attribute("open", "")
    await page.click(".export summary")
    async with page.expect_download():
        await page.click("text=Plain text")
    await expect(menu).not_to_have_attribute("open", "")


async def test_new_messages_are_announced_and_older_pages_are_not(browser: Browser, start_server: StartServer) -> None:
    server = start_server(rate_limit="1000/1")
    room = unique("announce-")
    await fill_room(server, room, 120)
    page = await signed_in_page(browser, server, unique("listener"), f"/r/{room}")
    await expect(messages(page).last).to_have_text("message 119")
    announcer = page.locator("#announcer")
    assert await page.locator("#messages").get_attribute("aria-live") is None, "the list itself is not live"
    await expect(announcer).to_have_attribute("aria-live", "polite")
    await expect(announcer).to_have_text("")
    await page.locator("#messages").evaluate("list => { list.scrollTop = 0; }")
    await expect(messages(page)).to_have_count(100)
    await expect(announcer).to_have_text("")
    chat = Chat(server)
    try:
        user = await chat.user()
        conn = await chat.open(user, room)
        await conn.say("something new")
        await expect(announcer).to_have_text(f"{user.name}: something new")
    finally:
        await chat.aclose()


async def test_the_tab_title_counts_what_arrived_while_hidden_and_mentions_stand_out(
    browser: Browser, start_server: StartServer
) -> None:
    server = start_server(rate_limit="1000/1")
    room = unique("title-")
    me = unique("reader")
    page = await signed_in_page(browser, server, me, f"/r/{room}")
    await expect(page).to_have_title(f"#{room} · quartchat")
    await page.evaluate(
        """() => {
            Object.defineProperty(document, "visibilityState", { configurable: true, get: () => "hidden" });
            document.dispatchEvent(new Event("visibilitychange"));
        }"""
    )
    chat = Chat(server)
    try:
        conn = await chat.open(await chat.user(), room)
        await conn.say("one")
        await conn.say("two")
        await conn.say(f"hey @{me}, look")
        await expect(page).to_have_title(f"(3) #{room} · quartchat")
    finally:
        await chat.aclose()
    mention = page.locator("#messages li[data-id]").last
    await expect(mention).to_have_class(re.compile(r"\bmention\b"))
    assert await page.locator("#messages li.mention").count() == 1
    await page.evaluate(
        """() => {
            Object.defineProperty(document, "visibilityState", { configurable: true, get: () => "visible" });
            document.dispatchEvent(new Event("visibilitychange"));
        }"""
    )
    await expect(page).to_have_title(f"#{room} · quartchat")
