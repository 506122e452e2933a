"""Issue 19 item 10: the message box is focused on load and after Send, grows with its
text up to a limit, counts down near the length limit instead of cutting a paste, and
keeps a draft per room across reloads."""

from __future__ import annotations

from playwright.async_api import Browser, expect

from ..conftest import StartServer
from ..support import unique
from .driver import messages, send, signed_in_page


async def test_focus_growth_counter_and_drafts(browser: Browser, start_server: StartServer) -> None:
    server = start_server()
    room = unique("compose-")
    page = await signed_in_page(browser, server, unique("writer"), f"/r/{room}")
    box = page.locator("#text")
    await expect(box).to_be_focused()
    await send(page, "hello")
    await expect(messages(page)).to_have_text(["hello"])
    await expect(box).to_be_focused()

    one_line = await box.evaluate("box => box.getBoundingClientRect().height")
    await box.fill("\n".join(["line"] * 4))
    four_lines = await box.evaluate("box => box.getBoundingClientRect().height")
    assert four_lines > one_line * 2, (one_line, four_lines)
    await box.fill("\n".join(["line"] * 60))
    sixty_lines = await box.evaluate("box => box.getBoundingClientRect().height")
    assert four_lines < sixty_lines <= 210, "grows up to a limit, then scrolls"

    counter = page.locator("#text-counter")
    await box.fill("x" * 3000)
    await expect(counter).to_be_hidden()
    await box.fill("x" * 3700)
    await expect(counter).to_have_text("300 characters left")
    await box.fill("y" * 4010)  # a paste past the limit: kept whole, not cut
    await expect(counter).to_have_text("10 characters too long")
    assert len(await box.input_value()) == 4010
    await box.press("Enter")
    await expect(page.locator("#messages li.pending")).to_have_count(0)
    assert len(await box.input_value()) == 4010, "not sent, not cleared"

    await box.fill("half a thought")
    await page.reload()
    await expect(page.locator("#status")).to_have_text("connected")
    await expect(box).to_have_value("half a thought")
    await page.goto(f"{server.base_url}/r/{unique('elsewhere-')}")
    await expect(page.locator("#status")).to_have_text("connected")
    await expect(box).to_have_value("")
    await expect(box).to_be_focused()
    await page.go_back()
    await expect(box).to_have_value("half a thought")
    await box.press("Enter")
    await expect(messages(page)).to_have_text(["hello", "half a thought"])
    await page.reload()
    await expect(page.locator("#status")).to_have_text("connected")
    await expect(box).to_have_value("")
