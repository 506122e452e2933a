"""Issue 23's page: the search box (Ctrl+K and "/"), results grouped by room with the
match marked as text, a hit in another room opened at that message, and scrolling
from there loads older and newer pages."""

from __future__ import annotations

from playwright.async_api import Browser, expect

from ..conftest import StartServer
from ..support import Chat, unique
from .driver import signed_in_page


async def test_search_opens_a_hit_in_another_room_and_scrolls_both_ways(
    browser: Browser, start_server: StartServer
) -> None:
    server = start_server(rate_limit="100000/1")
    here, there, word = unique("here-"), unique("there-"), unique("needle")
    chat = Chat(server)
    try:
        author = await chat.user()
        conn = await chat.open(author, there)
        texts = [f"line {i:03d}" for i in range(300)]
        texts[150] = f"the {word} is here <img src=x onerror=alert(1)>"
        for text in texts:
            await conn.send_json({"type": "chat", "data": text})
        stored = await conn.chats(len(texts), timeout=30)
        conn2 = await chat.open(author, here)
        await conn2.send_json({"type": "chat", "data": f"a {word.upper()} in this room too"})
        await conn2.chats(1)
    finally:
        await chat.aclose()
    target = stored[150]["id"]

    page = await signed_in_page(browser, server, unique("reader"), f"/r/{here}")
    await page.keyboard.press("Control+k")
    await expect(page.locator("#search-input")).to_be_focused()
    await page.keyboard.type(word)
    await page.keyboard.press("Enter")
    results = page.locator("#search-results")
    await expect(results).to_be_visible()
    await expect(results.locator(".room-group h3")).to_have_text([f"#{here}", f"#{there}"])
    await expect(results.locator("mark")).to_have_text([word.upper(), word])
    # The message's markup is text: no element came from it.
    await expect(results.locator("img")).to_have_count(0)
    await expect(results.locator(".room-group").nth(1).locator(".text")).to_have_text(
        f"the {word} is here <img src=x onerror=alert(1)>"
    )

    # "/" focuses the box too (when not typing elsewhere); Escape closes the results.
    await page.keyboard.press("Escape")
    await expect(results).to_be_hidden()
    await page.locator("#messages").click()
    await page.keyboard.press("/")
    await expect(page.locator("#search-input")).to_be_focused()
    await page.keyboard.type(word)  # Escape in a search box also empties it
    await page.keyboard.press("Enter")
    await expect(results).to_be_visible()

    await results.locator(f'a[data-id="{target}"]').click()
    await page.wait_for_url(f"**/r/{there}**")
    hit = page.locator("#messages li.hit")
    await expect(hit).to_have_count(1)
    await expect(hit).to_have_attribute("data-id", str(target))
    await expect(hit).to_be_in_viewport()
    shown = page.locator("#messages li[data-id]")
    await expect(shown).to_have_count(51)  # 25 either side

    # Up: older pages; down: newer ones, until the newest message.
    for _ in range(20):
        await page.locator("#messages").evaluate("list => { list.scrollTop = 0; }")
        if await page.locator(f'#messages li[data-id="{stored[0]["id"]}"]').count():
            break
        await page.wait_for_timeout(150)
    await expect(page.locator(f'#messages li[data-id="{stored[0]["id"]}"]')).to_have_count(1)
    for _ in range(30):
        await page.locator("#messages").evaluate("list => { list.scrollTop = list.scrollHeight; }")
        if await page.locator(f'#messages li[data-id="{stored[-1]["id"]}"]').count():
            break
        await page.wait_for_timeout(150)
    await expect(page.locator(f'#messages li[data-id="{stored[-1]["id"]}"]')).to_have_count(1)
    ids = [int(i) for i in await shown.evaluate_all("items => items.map(i => i.dataset.id)")]
    assert ids == [m["id"] for m in stored]  # every message once, in order: no gap, no duplicate

    # Back in the present, the list is live again.
    late = Chat(server)
    try:
        conn = await late.open(await late.user(), there)
        await conn.say("live again")
    finally:
        await late.aclose()
    await expect(page.locator("#messages li[data-id] .text").last).to_have_text("live again")

    # A hit in a short room: its context reaches the present at once, and stays marked
    # whenever the socket's first history arrives.
    await page.keyboard.press("Control+k")
    await page.keyboard.type(word)
    await page.keyboard.press("Enter")
    await results.locator(".room-group").first.locator("a").click()
    await page.wait_for_url(f"**/r/{here}")
    await expect(page.locator("#messages li.hit .text")).to_have_text(f"a {word.upper()} in this room too")


async def test_a_hit_that_is_gone_says_so_and_shows_the_room(browser: Browser, start_server: StartServer) -> None:
    server = start_server()
    room = unique("gone-")
    chat = Chat(server)
    try:
        conn = await chat.open(await chat.user(), room)
        await conn.say("still here")
    finally:
        await chat.aclose()
    page = await signed_in_page(browser, server, unique("reader"), f"/r/{room}")
    await page.goto(f"{server.base_url}/r/{room}?at=999999")
    await expect(page.locator("#messages .notice")).to_contain_text(["That message is no longer here."])
    await expect(page.locator("#messages li[data-id] .text")).to_have_text(["still here"])
    await expect(page.locator("#status")).to_have_text("connected")
