"""Issue 19 item 11: a typo in a name must not go unnoticed. The sign-in page states
the rules; the first page after a new account says so, with a way back; a wrong
password puts the cursor in the password box."""

from __future__ import annotations

from playwright.async_api import Browser, expect

from ..conftest import StartServer
from ..support import PASSWORD, unique
from .driver import DESKTOP, signed_in_page


async def test_a_new_account_is_announced_with_a_way_back_and_a_wrong_password_focuses_it(
    browser: Browser, start_server: StartServer
) -> None:
    server = start_server()
    name = unique("alice")
    await (await signed_in_page(browser, server, name)).context.close()  # the account exists

    context = await browser.new_context(viewport=DESKTOP)
    page = await context.new_page()
    await page.goto(f"{server.base_url}/signin")
    await expect(page.locator("#name-rules")).to_contain_text("a typo makes a second account")
    await expect(page.locator("#name")).to_be_focused()
    await page.fill("#name", name)
    await page.fill("#password", "not the password")
    await page.click("button[type=submit]")
    await expect(page.locator(".problem")).to_have_text("wrong name or password")
    await expect(page.locator("#name")).to_have_value(name)
    await expect(page.locator("#password")).to_be_focused()

    typo = name.replace("alice", "alcie")
    await page.fill("#name", typo)
    await page.fill("#password", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{server.base_url}/")
    welcome = page.locator("#new-account")
    await expect(welcome).to_contain_text(f"New account “{typo}” created")
    await page.reload()
    await expect(page.locator("#status")).to_have_text("connected")
    await expect(welcome).to_have_count(0)  # said once
    await context.close()

    context = await browser.new_context(viewport=DESKTOP)
    page = await context.new_page()
    await page.goto(f"{server.base_url}/signin")
    await page.fill("#name", unique("bob"))
    await page.fill("#password", PASSWORD)
    await page.click("button[type=submit]")
    await page.get_by_role("button", name="Sign in as someone else").click()
    await page.wait_for_url(f"{server.base_url}/signin")
    await page.fill("#name", name)
    await page.fill("#password", PASSWORD)
    await page.click("button[type=submit]")
    await expect(page.locator("#status")).to_have_text("connected")
    await expect(page.locator("#new-account")).to_have_count(0)  # an existing account: nothing to say
