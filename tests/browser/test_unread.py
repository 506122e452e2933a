"""Issue 24 (the page): unread and mention badges in the room list, kept live across
tabs; "New messages" above the first unread message, also when it is older than the
first page; the unread total in the title; desktop notifications asked for on a click
and shown while the tab is hidden; `@` completion; Alt+↑/↓ between rooms
(docs/web-client.md, "Unread and notifications")."""

from __future__ import annotations

import re
from typing import Any

from playwright.async_api import Browser, Page, expect

from ..conftest import StartServer
from ..support import Chat, Server, unique, until
from .driver import PHONE, messages, signed_in_page

# Wraps the browser's own Notification: every permission request and every
# notification made is recorded (and still goes to the browser).
RECORD_NOTIFICATIONS = """
(() => {
  const Real = window.Notification;
  window.__asked = 0;
  window.__shown = [];
  class Recorded extends Real {
    constructor(title, options = {}) {
      window.__shown.push([title, options.body ?? null]);
      super(title, options);
    }
    static get permission() { return Real.permission; }
    static requestPermission(...args) {
      window.__asked += 1;
      return Real.requestPermission(...args);
    }
  }
  window.Notification = Recorded;
})();
"""


async def set_visibility(page: Page, state: str) -> None:
    """What the Page Visibility API reports (a headless tab is always visible)."""
    await page.evaluate(
        """state => {
            Object.defineProperty(document, "visibilityState", { configurable: true, get: () => state });
            document.dispatchEvent(new Event("visibilitychange"));
        }""",
        state,
    )


async def room_started(chat: Chat, room: str) -> Any:
    """A writer in `room`, which it starts with a message: a room is listed, and its
    visitors become members, once it has one (docs/protocol.md §11)."""
    conn = await chat.open(await chat.user(), room)
    await conn.say(f"welcome to {room}")
    return conn


def entry(page: Page, room: str) -> Any:
    return page.locator(f'#rooms li[data-room="{room}"]')


async def open_tab(page: Page, server: Server, room: str) -> Page:
    """Another tab of the same browser profile (the same user) on `room`."""
    tab = await page.context.new_page()
    await tab.goto(f"{server.base_url}/r/{room}")
    await expect(tab.locator("#status")).to_have_text("connected")
    return tab


async def visit(page: Page, server: Server, room: str) -> None:
    await page.goto(f"{server.base_url}/r/{room}")
    await expect(page.locator("#status")).to_have_text("connected")


async def server_unread(page: Page, room: str) -> int:
    listed = await page.request.get(f"{page.url.split('/r/')[0]}/api/rooms")
    assert listed.ok, await listed.text()
    rooms = {item["name"]: item for item in (await listed.json())["rooms"]}
    return int(rooms[room]["unread"]) if room in rooms else -1


async def all_read(page: Page, room: str) -> None:
    """Until the server holds the room as read to its end."""

    async def read() -> bool:
        return await server_unread(page, room) == 0

    await until(read, f"{room} read on the server")


async def test_reading_in_one_tab_clears_the_badge_and_the_title_in_another_tab(
    browser: Browser, start_server: StartServer
) -> None:
    server = start_server(rate_limit="1000/1")
    here, there = unique("here-"), unique("there-")
    chat = Chat(server)
    try:
        conn = await room_started(chat, here)
        reading = await signed_in_page(browser, server, unique("reader"), f"/r/{here}")
        elsewhere = await open_tab(reading, server, there)
        await set_visibility(reading, "hidden")
        for i in range(3):
            await conn.say(f"news {i}")
        await expect(entry(elsewhere, here)).to_have_attribute("data-unread", "3")
        await expect(entry(elsewhere, here).locator(".badge.unread")).to_have_text("3")
        await expect(elsewhere).to_have_title(f"(3) #{there} · quartchat")
        await expect(reading).to_have_title(f"(3) #{here} · quartchat")
        # Arrived while nobody looked: "New messages" above the first of them.
        await expect(reading.locator("#messages li.unread-divider + li.message .text")).to_have_text("news 0")
        assert await server_unread(reading, here) == 3, "on screen in a hidden tab is not read"
        await set_visibility(reading, "visible")
        await expect(entry(elsewhere, here)).to_have_attribute("data-unread", "0")
        await expect(entry(elsewhere, here).locator(".badge")).to_have_count(0)
        await expect(elsewhere).to_have_title(f"#{there} · quartchat")
        await expect(reading).to_have_title(f"#{here} · quartchat")
        await all_read(reading, here)
    finally:
        await chat.aclose()


async def test_after_a_refresh_the_divider_sits_above_the_first_unread_message(
    browser: Browser, start_server: StartServer
) -> None:
    server = start_server(rate_limit="1000/1")
    room, lobby = unique("divided-"), unique("lobby-")
    chat = Chat(server)
    try:
        conn = await chat.open(await chat.user(), room)
        await conn.say("already seen")
        page = await signed_in_page(browser, server, unique("reader"), f"/r/{room}")
        await expect(messages(page)).to_have_text(["already seen"])
        await all_read(page, room)
        await visit(page, server, lobby)
        for i in range(5):
            await conn.say(f"unseen {i}")
        await visit(page, server, room)
        divider = page.locator("#messages li.unread-divider")
        await expect(divider).to_have_count(1)
        await expect(divider).to_have_text("New messages")
        await expect(divider).to_be_in_viewport()
        assert await divider.evaluate("d => d.nextElementSibling.querySelector('.text').textContent") == "unseen 0"
        assert await divider.evaluate("d => d.previousElementSibling.querySelector('.text').textContent") == (
            "already seen"
        )
        await all_read(page, room)  # they were on screen
        await page.reload()
        await expect(page.locator("#status")).to_have_text("connected")
        await expect(messages(page)).to_have_count(6)
        await expect(page.locator("#messages li.unread-divider")).to_have_count(0)
    finally:
        await chat.aclose()


async def test_a_room_of_hundreds_opens_at_its_first_unread_beyond_the_first_page(
    browser: Browser, start_server: StartServer
) -> None:
    server = start_server(rate_limit="1000/1")
    room, lobby = unique("long-"), unique("lobby-")
    chat = Chat(server)
    try:
        conn = await chat.open(await chat.user(), room)
        for i in range(120):
            await conn.send_json({"type": "chat", "data": f"message {i:03d}"})
        await conn.chats(120, timeout=30)
        page = await signed_in_page(browser, server, unique("reader"), f"/r/{room}")
        await expect(messages(page).last).to_have_text("message 119")
        await all_read(page, room)
        await visit(page, server, lobby)
        for i in range(200):
            await conn.send_json({"type": "chat", "data": f"later {i:03d}"})
        await conn.chats(200, timeout=30)
        await expect(entry(page, room)).to_have_attribute("data-unread", "200")
        await visit(page, server, room)
        divider = page.locator("#messages li.unread-divider")
        await expect(divider).to_be_in_viewport()
        assert await divider.evaluate("d => d.nextElementSibling.querySelector('.text').textContent") == "later 000"
        assert await divider.evaluate("d => d.previousElementSibling.querySelector('.text').textContent") == (
            "message 119"
        )
        assert await page.locator("#messages li[data-id] .text", has_text="later 199").count() == 0

        async def partly_read() -> bool:
            return await server_unread(page, room) < 200

        await until(partly_read, "what is on screen counts as read")
        assert await server_unread(page, room) > 100, "what is not on screen yet is not read"
        # Reading on pages forwards to the newest, and then nothing is unread.
        last = page.locator("#messages li[data-id] .text", has_text="later 199")

        async def at_the_end() -> bool:
            await page.locator("#messages").evaluate("list => { list.scrollTop = list.scrollHeight; }")
            return await last.count() == 1

        await until(at_the_end, "the newest message after paging forwards", timeout=30)
        await expect(last).to_be_in_viewport()
        await all_read(page, room)
        await expect(page).to_have_title(f"#{room} · quartchat")
        ids = await page.locator("#messages li[data-id]").evaluate_all("items => items.map(i => Number(i.dataset.id))")
        assert ids == sorted(set(ids)), "no gap, no duplicate, in order"
    finally:
        await chat.aclose()


async def test_badges_rise_live_for_rooms_mentions_and_dms_and_clear_on_reading(
    browser: Browser, start_server: StartServer
) -> None:
    server = start_server(rate_limit="1000/1")
    busy, quiet = unique("busy-"), unique("quiet-")
    me = unique("reader")
    chat = Chat(server)
    try:
        await room_started(chat, busy)
        writer = await chat.user()
        page = await signed_in_page(browser, server, me, f"/r/{busy}")  # now a member of busy
        await visit(page, server, quiet)
        conn = await chat.open(writer, busy)
        await conn.say("hello all")
        await conn.say(f"hey @{me}, a question")
        busy_entry = entry(page, busy)
        await expect(busy_entry).to_have_attribute("data-unread", "2")
        await expect(busy_entry).to_have_attribute("data-mentions", "1")
        await expect(busy_entry.locator(".badge")).to_have_text(["@1", "2"])
        await expect(busy_entry.locator("a")).to_have_attribute("aria-label", f"#{busy}, 2 unread, 1 mention")
        await expect(busy_entry).to_have_class(re.compile(r"\bhas-unread\b"))
        await expect(page).to_have_title(f"(2) #{quiet} · quartchat")
        started = await writer.http.post("/api/dm", json={"name": me})
        assert started.status_code in (200, 201), started.text
        dm = started.json()["room"]["name"]
        direct = await chat.open(writer, dm)
        await direct.say("psst")
        await expect(entry(page, dm).locator(".label")).to_have_text(writer.name)  # never dm-…
        await expect(entry(page, dm)).to_have_attribute("data-unread", "1")
        await expect(page).to_have_title(f"(3) #{quiet} · quartchat")
        await busy_entry.locator("a").click()
        await page.wait_for_url(f"{server.base_url}/r/{busy}")
        await expect(page.locator("#status")).to_have_text("connected")
        await expect(entry(page, busy)).to_have_attribute("data-unread", "0")
        await expect(entry(page, busy).locator(".badge")).to_have_count(0)
        await expect(page).to_have_title(f"(1) #{busy} · quartchat")
        await all_read(page, busy)
    finally:
        await chat.aclose()


async def test_notifications_are_asked_for_on_a_click_and_shown_while_hidden(
    browser: Browser, start_server: StartServer
) -> None:
    server = start_server(rate_limit="1000/1")
    loud, quiet = unique("loud-"), unique("quiet-")
    me = unique("reader")
    chat = Chat(server)
    try:
        await room_started(chat, loud)
        writer = await chat.user()
        page = await signed_in_page(browser, server, me, f"/r/{loud}")
        await page.context.add_init_script(RECORD_NOTIFICATIONS)
        await visit(page, server, quiet)
        enable = page.locator("#notify-enable")
        await expect(enable).to_be_visible()
        await expect(enable).to_have_text("Enable notifications")
        conn = await chat.open(writer, loud)
        await set_visibility(page, "hidden")
        await conn.say(f"@{me} before you allowed it")
        await expect(entry(page, loud)).to_have_attribute("data-mentions", "1")
        assert await page.evaluate("() => [window.__asked, window.__shown]") == [0, []], "never asked unprompted"
        await set_visibility(page, "visible")
        await page.context.grant_permissions(["notifications"], origin=server.base_url)
        await enable.click()
        await expect(enable).to_be_hidden()
        await expect(page.locator("#notify-state")).to_have_text(
            "Notifications are on for mentions and direct messages."
        )
        assert await page.evaluate("() => window.__asked") == 1
        await set_visibility(page, "hidden")
        await conn.say(f"hey @{me}, look <b>here</b>")
        await page.wait_for_function("() => window.__shown.length === 1")
        await set_visibility(page, "visible")
        await conn.say(f"@{me} while you look")
        await conn.say("nobody mentioned")  # and not a DM: no notification either
        await expect(entry(page, loud)).to_have_attribute("data-mentions", "3")
        await set_visibility(page, "hidden")
        started = await writer.http.post("/api/dm", json={"name": me})
        direct = await chat.open(writer, started.json()["room"]["name"])
        await direct.say("x" * 300)
        await page.wait_for_function("() => window.__shown.length === 2")
        shown = await page.evaluate("() => window.__shown")
        assert shown == [
            [f"{writer.name} in #{loud}", f"hey @{me}, look <b>here</b>"],
            [writer.name, "x" * 199 + "…"],
        ], shown
    finally:
        await chat.aclose()


async def test_at_completes_the_names_of_the_rooms_people(browser: Browser, start_server: StartServer) -> None:
    server = start_server()
    room = unique("names-")
    page = await signed_in_page(browser, server, unique("carol"), f"/r/{room}")
    chat = Chat(server)
    try:
        alice, albert, bob = [await chat.user(unique(prefix)) for prefix in ("alice", "albert", "bob")]
        for user in (alice, albert, bob):
            await chat.open(user, room)
        await expect(page.locator("#users li")).to_have_count(4)
        await page.click("#text")
        await page.keyboard.type("hi @AL")
        options = page.locator("#mention-list [role=option]")
        await expect(options).to_have_text([f"@{albert.name}", f"@{alice.name}"])
        await expect(options.first).to_have_attribute("aria-selected", "true")
        await page.keyboard.press("ArrowDown")
        await expect(options.nth(1)).to_have_attribute("aria-selected", "true")
        await page.keyboard.press("Enter")  # completes, does not send
        await expect(page.locator("#mention-list")).to_be_hidden()
        await expect(page.locator("#text")).to_have_value(f"hi @{alice.name} ")
        assert await messages(page).count() == 0
        await page.keyboard.type("and @b")
        await expect(options).to_have_text([f"@{bob.name}"])
        await page.keyboard.press("Escape")
        await expect(page.locator("#mention-list")).to_be_hidden()
        await page.keyboard.press("Enter")  # closed: Enter sends what is typed
        await expect(messages(page)).to_have_text([f"hi @{alice.name} and @b"])
        await expect(page.locator("#text")).to_have_value("")
        await page.keyboard.type("@zz")  # no one: no list
        await expect(page.locator("#mention-list")).to_be_hidden()
    finally:
        await chat.aclose()


async def test_alt_arrows_move_between_rooms_and_alt_shift_between_unread_ones(
    browser: Browser, start_server: StartServer
) -> None:
    server = start_server()
    rooms = [unique(f"k{i}-") for i in range(3)]
    chat = Chat(server)
    try:
        writer = await chat.user()
        conns = [await chat.open(writer, room) for room in rooms]
        for conn, room in zip(conns, rooms, strict=True):
            await conn.say(f"welcome to {room}")  # a room with a message is listed
        page = await signed_in_page(browser, server, unique("reader"), f"/r/{rooms[0]}")
        for room in rooms[1:]:
            await visit(page, server, room)
        listed = page.locator("#rooms li")
        await expect(listed).to_have_count(3)
        order = await listed.evaluate_all("items => items.map(i => i.dataset.room)")
        assert order == rooms, order
        await visit(page, server, rooms[1])
        await page.keyboard.press("Alt+ArrowDown")
        await page.wait_for_url(f"{server.base_url}/r/{rooms[2]}")
        await expect(page.locator("#rooms li[data-room] a[aria-current=page]")).to_have_count(1)
        await page.keyboard.press("Alt+ArrowDown")  # the last room: nowhere further
        await page.keyboard.press("Alt+ArrowUp")
        await page.wait_for_url(f"{server.base_url}/r/{rooms[1]}")
        await conns[0].say("over here")
        await expect(entry(page, rooms[0])).to_have_attribute("data-unread", "1")
        await page.keyboard.press("Alt+Shift+ArrowDown")  # past the end, round to the first
        await page.wait_for_url(f"{server.base_url}/r/{rooms[0]}")
        await expect(messages(page).last).to_have_text("over here")
    finally:
        await chat.aclose()


async def test_on_a_phone_the_badges_and_the_name_list_fit(browser: Browser, start_server: StartServer) -> None:
    server = start_server()
    room, other = unique("phone-"), unique("busy-")
    me = unique("reader")
    chat = Chat(server)
    try:
        await room_started(chat, other)
        writer = await chat.user()
        page = await signed_in_page(browser, server, me, f"/r/{other}", viewport=PHONE)
        await visit(page, server, room)
        conn = await chat.open(writer, other)
        await conn.say(f"@{me} on the move")
        await chat.open(writer, room)
        await page.click("#rooms-toggle")
        badges = entry(page, other).locator(".badge")
        await expect(badges).to_have_text(["@1", "1"])
        panel = await page.locator("#rooms-panel").bounding_box()
        for badge in await badges.all():
            box = await badge.bounding_box()
            assert panel and box and box["x"] + box["width"] <= panel["x"] + panel["width"], (box, panel)
        await page.click("#rooms-close")
        await page.click("#text")
        await page.keyboard.type("@")
        await expect(page.locator("#mention-list [role=option]")).to_have_text([f"@{writer.name}"])
        listed = await page.locator("#mention-list").bounding_box()
        assert listed and listed["x"] >= 0 and listed["x"] + listed["width"] <= PHONE["width"], listed
        assert await page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
        await page.press("#text", "Enter")  # completes, does not send
        await expect(page.locator("#text")).to_have_value(f"@{writer.name} ")
    finally:
        await chat.aclose()
