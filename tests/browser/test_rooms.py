"""Issue 19 item 4: the room box states the naming rule where the user types, refuses
an invalid name with it, says when a name makes a new room, and /r/Bad_Room explains."""

from __future__ import annotations

from playwright.async_api import Browser, expect

from ..conftest import StartServer
from ..support import unique
from .driver import signed_in_page


async def test_the_room_box_explains_the_rule_and_refuses_an_invalid_name(
    browser: Browser, start_server: StartServer
) -> None:
    server = start_server()
    console: list[str] = []
    page = await signed_in_page(browser, server, unique("walker"))
    page.on("console", lambda message: console.append(message.text))
    await page.reload()  # the console listener sees the page compile its pattern
    await expect(page.locator("#status")).to_have_text("connected")
    box = page.locator("#room-input")
    await box.focus()
    await expect(page.locator("#room-rule")).to_be_visible()
    await expect(page.locator("#room-rule")).to_contain_text("lowercase letters, digits or “-”")
    await box.fill("Bad_Room")
    await box.press("Enter")
    problem = page.locator("#room-problem")
    await expect(problem).to_be_visible()
    await expect(problem).to_contain_text("“Bad_Room” is not a room name")
    await expect(problem).to_contain_text("“bad-room”")
    await expect(box).to_have_attribute("aria-invalid", "true")
    assert page.url == f"{server.base_url}/", "an invalid name goes nowhere"
    assert await box.evaluate("box => box.validity.patternMismatch"), "the pattern is compiled and applied"
    assert not [text for text in console if "pattern" in text.lower()], console
    await box.fill("Good-Room")  # capitals are lowered, not refused
    await expect(problem).to_be_hidden()
    await box.press("Enter")
    await page.wait_for_url(f"{server.base_url}/r/good-room")
    notice = page.locator("#messages li.notice")
    await expect(notice).to_contain_text("#good-room is a new room: nothing has been said here yet.")


async def test_an_invalid_room_address_explains_the_rule_and_suggests_one(
    browser: Browser, start_server: StartServer
) -> None:
    server = start_server()
    page = await signed_in_page(browser, server, unique("typo"))
    response = await page.goto(f"{server.base_url}/r/Bad_Room")
    assert response is not None and response.status == 404
    await expect(page.locator("h1")).to_have_text("“Bad_Room” is not a room name")
    await expect(page.locator("main")).to_contain_text("lowercase letters (a\N{EN DASH}z), digits")
    await page.get_by_role("link", name="#bad-room").click()
    await page.wait_for_url(f"{server.base_url}/r/bad-room")
    await expect(page.locator("#status")).to_have_text("connected")
