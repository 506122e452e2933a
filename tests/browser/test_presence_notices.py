"""Issue 19 item 8: presence without noise. You never see yourself join; a refresh or a
server restart is not a departure; runs of joins read as one line."""

from __future__ import annotations

import asyncio

from playwright.async_api import Browser, expect

from ..conftest import StartServer
from ..support import Chat, unique
from .driver import messages, send, signed_in_page

GRACE_SECONDS = 3.0  # the server's default QUARTCHAT_PRESENCE_GRACE


async def test_no_own_join_no_refresh_or_restart_noise_and_runs_condensed(
    browser: Browser, start_server: StartServer
) -> None:
    server = start_server(rate_limit="1000/1")
    room = unique("quiet-")
    alice = await signed_in_page(browser, server, unique("alice"), f"/r/{room}")
    bob_name = unique("bob")
    bob = await signed_in_page(browser, server, bob_name, f"/r/{room}")
    notices = alice.locator("#messages li.notice[data-presence] .body")
    await expect(notices).to_have_text([f"{bob_name} joined"])
    await expect(bob.locator("#messages li.notice[data-presence] .body")).to_have_text(
        [], timeout=1000
    )  # not "bob joined"

    await bob.reload()
    await expect(bob.locator("#status")).to_have_text("connected")
    await asyncio.sleep(GRACE_SECONDS + 0.5)  # a `left` held for the grace would be out by now
    await send(bob, "refreshed")
    await expect(messages(alice)).to_have_text(["refreshed"])
    await expect(notices).to_have_text([f"{bob_name} joined"])

    server.stop()
    await expect(alice.locator("#status")).not_to_have_text("connected")
    server.start()
    await expect(alice.locator("#status")).to_have_text("connected", timeout=20_000)
    await expect(bob.locator("#status")).to_have_text("connected", timeout=20_000)
    await expect(alice.locator("#users li")).to_have_count(2)
    await send(bob, "after the restart")
    await expect(messages(alice)).to_have_text(["refreshed", "after the restart"])
    await expect(notices).to_have_text([f"{bob_name} joined"])

    chat = Chat(server)
    try:
        names = [unique(n) for n in ("carol", "dave", "erin")]
        for name in names:
            await chat.open(await chat.user(name), room)
        await expect(notices.last).to_have_text(f"3 people joined: {', '.join(names)}")
        await expect(notices).to_have_count(2)
    finally:
        await chat.aclose()
    await expect(notices.last).to_have_text(f"3 people left: {', '.join(names)}", timeout=GRACE_SECONDS * 1000 + 10_000)
