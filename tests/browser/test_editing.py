"""Issue 22 (the page): editing and deleting messages in headless Chromium against a
real server — ↑ edits your last message, the message menu (Edit on your own, Delete on
your own or as the room's owner), a confirmation before a delete, "(edited)" and
"message deleted" seen live by another user, after a refresh and after a reconnect, and
the server's refusals in words (docs/web-client.md, "Editing and deleting")."""

from __future__ import annotations

import re
from typing import Any

from playwright.async_api import Browser, Locator, Page, WebSocketRoute, expect

from ..conftest import StartServer
from ..support import Chat, Server, unique
from .driver import PHONE, fill_room, messages, send, signed_in_page

JUMP_ROOM_SIZE = 200
ROOM_SIZE = 300  # a room of hundreds of messages: only the newest 50 are on the page


def by_id(page: Page, message_id: str) -> Locator:
    return page.locator(f'#messages li[data-id="{message_id}"]')


async def sent(page: Page, text: str) -> str:
    """Send `text` and return its id once the server's broadcast has confirmed it."""
    await send(page, text)
    item = page.locator("#messages li[data-id]").filter(
        has=page.locator(".text", has_text=re.compile(f"^{re.escape(text)}$"))
    )
    await expect(item).to_have_count(1)
    message_id = await item.get_attribute("data-id")
    assert message_id is not None
    return message_id


async def open_menu(page: Page, item: Locator) -> None:
    await item.hover()
    await item.locator(".more").click()
    await expect(page.locator("#message-menu")).to_be_visible()


async def stored(page: Page, server: Server, room: str, message_id: str) -> dict[str, Any]:
    """The message as the history API gives it now (its current state)."""
    answer = await page.request.get(f"{server.base_url}/api/rooms/{room}/messages?around={message_id}&limit=2")
    assert answer.ok, await answer.text()
    (found,) = [m for m in (await answer.json())["messages"] if str(m["id"]) == message_id]
    return dict(found)


async def admin_first(server: Server) -> None:
    """The first account on a new database is its admin: make it someone else's."""
    chat = Chat(server)
    try:
        await chat.user()
    finally:
        await chat.aclose()


async def test_up_arrow_edits_your_last_message_seen_live_by_another_user_and_after_a_refresh(
    browser: Browser, start_server: StartServer
) -> None:
    server = start_server(rate_limit="1000/1")
    room = unique("edit-")
    await fill_room(server, room, ROOM_SIZE)  # by the first account: the admin
    alice = await signed_in_page(browser, server, unique("alice"), f"/r/{room}")
    bob = await signed_in_page(browser, server, unique("bob"), f"/r/{room}")
    first = await sent(alice, "first of mine")
    typo = await sent(alice, "helo wrold")
    await expect(by_id(bob, typo).locator(".text")).to_have_text("helo wrold")

    await alice.press("#text", "ArrowUp")
    await expect(alice.locator("#text")).to_have_value("helo wrold")
    await expect(alice.locator("#edit-bar")).to_be_visible()
    await expect(by_id(alice, typo)).to_have_class(re.compile(r"\bediting\b"))
    await alice.fill("#text", "hello world")
    await alice.press("#text", "Enter")
    await expect(alice.locator("#text")).to_have_value("")
    await expect(alice.locator("#edit-bar")).to_be_hidden()

    for page in (alice, bob):
        item = by_id(page, typo)
        await expect(item.locator(".text")).to_have_text("hello world")
        await expect(item.locator(".edited")).to_have_text("(edited)")
        await expect(item.locator(".edited")).to_have_attribute("title", re.compile(r"^edited \S"))
        await expect(item).not_to_have_class(re.compile(r"\b(saving|editing)\b"))
        await expect(by_id(page, first).locator(".text")).to_have_text("first of mine")
        await expect(page.locator("#messages .edited")).to_have_count(1)
    await expect(messages(bob)).to_have_count(52)  # an edit is no new line
    await expect(messages(bob).first).to_have_text(f"message {ROOM_SIZE - 50:03d}")

    await bob.reload()
    await expect(bob.locator("#status")).to_have_text("connected")
    await expect(by_id(bob, typo).locator(".text")).to_have_text("hello world")
    await expect(by_id(bob, typo).locator(".edited")).to_have_text("(edited)")
    await expect(bob.locator("#messages .edited")).to_have_count(1)
    now = await stored(bob, server, room, typo)
    assert now["data"] == "hello world" and "edited" in now, now

    # An edit to nothing is no delete: the page says how to delete, the box stays in edit.
    await alice.press("#text", "ArrowUp")
    await alice.fill("#text", "   ")
    await alice.press("#text", "Enter")
    await expect(alice.locator("#edit-problem")).to_contain_text("choose Delete in its menu")
    await expect(alice.locator("#edit-bar")).to_be_visible()
    await alice.press("#text", "Escape")
    await expect(by_id(alice, typo).locator(".text")).to_have_text("hello world")

    # From the menu, with a draft in the box: Esc cancels and the draft comes back.
    await alice.fill("#text", "a draft")
    await open_menu(alice, by_id(alice, first))
    await alice.get_by_role("menuitem", name="Edit").click()
    await expect(alice.locator("#text")).to_have_value("first of mine")
    await alice.fill("#text", "first of mine, changed my mind")
    await alice.press("#text", "Escape")
    await expect(alice.locator("#text")).to_have_value("a draft")
    await expect(alice.locator("#edit-bar")).to_be_hidden()
    await expect(by_id(alice, first)).not_to_have_class(re.compile(r"\bediting\b"))
    await expect(by_id(alice, first).locator(".edited")).to_have_count(0)
    await alice.reload()  # the draft survives a reload; the text of the edit was never a draft
    await expect(alice.locator("#status")).to_have_text("connected")
    await expect(alice.locator("#text")).to_have_value("a draft")
    assert (await stored(alice, server, room, first))["data"] == "first of mine"

    # ↑ in a box that holds text moves the caret, it does not edit.
    await alice.press("#text", "ArrowUp")
    await expect(alice.locator("#edit-bar")).to_be_hidden()
    await expect(alice.locator("#text")).to_have_value("a draft")


async def test_a_delete_asks_first_and_is_seen_live_and_after_a_refresh_as_message_deleted(
    browser: Browser, start_server: StartServer
) -> None:
    server = start_server(rate_limit="1000/1")
    await admin_first(server)
    room = unique("delete-")
    alice = await signed_in_page(browser, server, unique("alice"), f"/r/{room}")
    bob = await signed_in_page(browser, server, unique("bob"), f"/r/{room}")
    oops = await sent(alice, "oops, wrong room https://example.com/x")
    kept = await sent(alice, "this one stays")
    await expect(by_id(bob, oops)).to_have_count(1)

    # With the keyboard: Enter opens the menu on its first item, arrows move, Esc closes.
    toggle = by_id(alice, oops).locator(".more")
    await toggle.focus()
    await alice.keyboard.press("Enter")
    await expect(alice.locator("#message-menu")).to_be_visible()
    await expect(toggle).to_have_attribute("aria-expanded", "true")
    await expect(alice.get_by_role("menuitem", name="Edit")).to_be_focused()
    await alice.keyboard.press("ArrowDown")
    await expect(alice.get_by_role("menuitem", name="Delete")).to_be_focused()
    await alice.keyboard.press("Escape")
    await expect(alice.locator("#message-menu")).to_be_hidden()
    await expect(toggle).to_be_focused()

    await open_menu(alice, by_id(alice, oops))
    await alice.get_by_role("menuitem", name="Delete").click()
    await expect(alice.get_by_role("alertdialog")).to_contain_text("Delete this message for everyone?")
    await alice.locator("#delete-no").click()
    await expect(alice.locator("#message-menu")).to_be_hidden()
    await open_menu(alice, by_id(alice, kept))  # the other message's menu: nothing was sent
    await alice.keyboard.press("Escape")
    assert (await stored(alice, server, room, oops))["data"].startswith("oops")

    await open_menu(alice, by_id(alice, oops))
    await alice.get_by_role("menuitem", name="Delete").click()
    await alice.locator("#delete-yes").click()
    for page in (alice, bob):
        item = by_id(page, oops)
        await expect(item.locator(".text")).to_have_text("message deleted")
        await expect(item).to_have_class(re.compile(r"\bdeleted\b"))
        await expect(item.locator(".more, a, .edited")).to_have_count(0)
        await expect(by_id(page, kept).locator(".text")).to_have_text("this one stays")
    style = await by_id(bob, oops).locator(".text").evaluate("e => getComputedStyle(e).fontStyle")
    assert style == "italic", "a deleted message is shown muted"

    await bob.reload()
    await expect(bob.locator("#status")).to_have_text("connected")
    await expect(by_id(bob, oops).locator(".text")).to_have_text("message deleted")
    await expect(by_id(bob, oops).locator(".more")).to_have_count(0)
    now = await stored(bob, server, room, oops)
    assert now["data"] == "" and now["deleted"] is True, now

    # ↑ skips a deleted message: it edits the newest one still there.
    await alice.press("#text", "ArrowUp")
    await expect(alice.locator("#text")).to_have_value("this one stays")
    await alice.press("#text", "Escape")


async def test_the_room_owner_may_delete_any_message_and_a_member_sees_no_edit_on_others(
    browser: Browser, start_server: StartServer
) -> None:
    server = start_server(rate_limit="1000/1")
    await admin_first(server)
    room = unique("owned-")
    owner = await signed_in_page(browser, server, unique("owner"))
    await owner.fill("#new-room-name", room)
    await owner.click("#new-room button[type=submit]")
    await owner.wait_for_url(f"{server.base_url}/r/{room}")
    await expect(owner.locator("#status")).to_have_text("connected")
    bob = await signed_in_page(browser, server, unique("bob"), f"/r/{room}")
    carol = await signed_in_page(browser, server, unique("carol"), f"/r/{room}")
    owners = await sent(owner, "house rules")
    bobs = await sent(bob, "spam spam spam")
    carols = await sent(carol, "hello all")
    await expect(by_id(carol, bobs)).to_have_count(1)

    # A member: no menu at all on the others' messages; Edit and Delete on its own.
    for other in (owners, bobs):
        await by_id(carol, other).hover()
        await expect(by_id(carol, other).locator(".more")).to_be_hidden()
    await open_menu(carol, by_id(carol, carols))
    await expect(carol.get_by_role("menuitem")).to_have_text(["Edit", "Delete"])
    await carol.keyboard.press("Escape")

    # The owner: Delete, and no Edit, on someone else's message.
    await expect(owner.locator("#app")).to_have_class(re.compile(r"\bmoderator\b"))
    await open_menu(owner, by_id(owner, bobs))
    await expect(owner.get_by_role("menuitem", name="Edit")).to_be_hidden()
    await owner.get_by_role("menuitem", name="Delete").click()
    await owner.locator("#delete-yes").click()
    for page in (owner, bob, carol):
        await expect(by_id(page, bobs).locator(".text")).to_have_text("message deleted")

    # A member who forces the menu open on the owner's message: the server refuses, the
    # page says so in words and the message stays as it was.
    await carol.locator("#app").evaluate("app => app.classList.add('moderator')")
    await open_menu(carol, by_id(carol, owners))
    await carol.get_by_role("menuitem", name="Delete").click()
    await carol.locator("#delete-yes").click()
    await expect(carol.locator("#edit-problem")).to_have_text("You may not change that message.")
    await expect(by_id(carol, owners).locator(".text")).to_have_text("house rules")
    await expect(by_id(carol, owners)).not_to_have_class(re.compile(r"\b(saving|deleted)\b"))
    assert (await stored(carol, server, room, owners))["data"] == "house rules"


async def test_edits_and_deletes_made_while_a_page_was_disconnected_arrive_with_its_resume(
    browser: Browser, start_server: StartServer
) -> None:
    server = start_server(rate_limit="1000/1")
    room = unique("resume-")
    await fill_room(server, room, ROOM_SIZE)
    alice = await signed_in_page(browser, server, unique("alice"), f"/r/{room}")
    bob = await signed_in_page(browser, server, unique("bob"), f"/r/{room}")
    edited = await sent(alice, "to be edited")
    deleted = await sent(alice, "to be deleted")

    # Bob's socket goes through a relay the test can cut: the server stays the real one.
    cut = False
    urls: list[str] = []
    relays: list[WebSocketRoute] = []

    async def relay(ws: WebSocketRoute) -> None:
        urls.append(ws.url)
        if cut:
            await ws.close(code=1011, reason="cut by the test")
            return
        ws.connect_to_server()
        relays.append(ws)

    await bob.route_web_socket(re.compile(r"/ws/"), relay)
    await bob.reload()
    await expect(bob.locator("#status")).to_have_text("connected")
    await expect(by_id(bob, deleted).locator(".text")).to_have_text("to be deleted")
    cut = True
    await relays[-1].close(code=1011, reason="cut by the test")
    await expect(bob.locator("#status")).to_have_text("reconnecting")

    await open_menu(alice, by_id(alice, edited))
    await alice.get_by_role("menuitem", name="Edit").click()
    await alice.fill("#text", "edited while bob was away")
    await alice.press("#text", "Enter")
    await open_menu(alice, by_id(alice, deleted))
    await alice.get_by_role("menuitem", name="Delete").click()
    await alice.locator("#delete-yes").click()
    await expect(by_id(alice, deleted).locator(".text")).to_have_text("message deleted")
    await expect(by_id(alice, edited).locator(".text")).to_have_text("edited while bob was away")
    await expect(by_id(bob, edited).locator(".text")).to_have_text("to be edited")  # not yet

    cut = False
    await bob.click("#retry-now")
    await expect(bob.locator("#status")).to_have_text("connected")
    assert "after=" in urls[-1], urls[-1]
    await expect(by_id(bob, edited).locator(".text")).to_have_text("edited while bob was away")
    await expect(by_id(bob, edited).locator(".edited")).to_have_text("(edited)")
    await expect(by_id(bob, deleted).locator(".text")).to_have_text("message deleted")
    await expect(messages(bob)).to_have_count(50)  # the page after the reload: the events added no line


async def test_at_phone_width_the_menu_fits_and_an_edit_saves(browser: Browser, start_server: StartServer) -> None:
    server = start_server(rate_limit="1000/1")
    await admin_first(server)
    room = unique("phone-")
    page = await signed_in_page(browser, server, unique("thumbs"), f"/r/{room}", viewport=PHONE, has_touch=True)
    mine = await sent(page, "typed with thumbs " + "long " * 40)
    toggle = by_id(page, mine).locator(".more")
    opacity = await toggle.evaluate("e => getComputedStyle(e).opacity")
    assert float(opacity) > 0.5, "on a touch screen the menu button shows without hovering"
    await toggle.tap()
    menu = page.locator("#message-menu")
    await expect(menu).to_be_visible()
    box = await menu.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], box
    assert box["y"] >= 0 and box["y"] + box["height"] <= PHONE["height"], box
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    await page.get_by_role("menuitem", name="Edit").tap()
    await expect(page.locator("#edit-bar")).to_be_visible()
    assert await page.evaluate("document.documentElement.scrollHeight <= window.innerHeight")
    await page.fill("#text", "fixed on a phone <img src=x onerror=alert(1)>")
    await page.get_by_role("button", name="Send").tap()
    await expect(by_id(page, mine).locator(".text")).to_have_text("fixed on a phone <img src=x onerror=alert(1)>")
    await expect(by_id(page, mine).locator(".edited")).to_be_visible()
    await expect(page.locator("#messages img")).to_have_count(0)  # an edit's text is text too


async def test_an_edit_and_a_delete_the_network_lost_are_sent_again_after_the_reconnect(
    browser: Browser, start_server: StartServer
) -> None:
    server = start_server(rate_limit="1000/1")
    await admin_first(server)
    room = unique("lost-")
    alice = await signed_in_page(browser, server, unique("alice"), f"/r/{room}")
    bob = await signed_in_page(browser, server, unique("bob"), f"/r/{room}")
    edited = await sent(bob, "said on a train")
    deleted = await sent(bob, "said in a tunnel")
    await expect(by_id(alice, deleted)).to_have_count(1)

    # Bob's frames go through a relay that can lose them, as a dying network does: the
    # page believes they were sent.
    lose = False
    relays: list[WebSocketRoute] = []

    def relay(ws: WebSocketRoute) -> None:
        upstream = ws.connect_to_server()
        ws.on_message(lambda frame: None if lose else upstream.send(frame))
        relays.append(ws)

    await bob.route_web_socket(re.compile(r"/ws/"), relay)
    await bob.reload()
    await expect(bob.locator("#status")).to_have_text("connected")
    lose = True
    await bob.press("#text", "ArrowUp")
    await expect(bob.locator("#text")).to_have_value("said in a tunnel")
    await bob.press("#text", "Escape")
    await open_menu(bob, by_id(bob, edited))
    await bob.get_by_role("menuitem", name="Edit").click()
    await bob.fill("#text", "said on a train, then fixed")
    await bob.press("#text", "Enter")
    await open_menu(bob, by_id(bob, deleted))
    await bob.get_by_role("menuitem", name="Delete").click()
    await bob.locator("#delete-yes").click()
    await expect(by_id(bob, edited)).to_have_class(re.compile(r"\bsaving\b"))  # shown, not confirmed
    await expect(by_id(bob, edited).locator(".text")).to_have_text("said on a train, then fixed")
    await expect(by_id(bob, deleted)).to_have_class(re.compile(r"\bsaving\b"))
    assert (await stored(alice, server, room, edited))["data"] == "said on a train"

    lose = False
    await relays[-1].close(code=1011, reason="the network came back as a new connection")
    await expect(by_id(alice, edited).locator(".text")).to_have_text("said on a train, then fixed")
    await expect(by_id(alice, deleted).locator(".text")).to_have_text("message deleted")
    await expect(bob.locator("#status")).to_have_text("connected")
    await expect(by_id(bob, edited)).not_to_have_class(re.compile(r"\bsaving\b"))
    await expect(by_id(bob, deleted).locator(".text")).to_have_text("message deleted")
    await expect(bob.locator("#edit-problem")).to_be_hidden()
    await expect(alice.locator("#messages .edited")).to_have_count(1)


async def test_a_page_opened_at_an_old_message_applies_the_events_it_pages_through(
    browser: Browser, start_server: StartServer
) -> None:
    server = start_server(rate_limit="1000/1")
    room = unique("jump-")
    chat = Chat(server)
    try:
        conn = await chat.open(await chat.user(), room)  # the first account: the admin
        half = JUMP_ROOM_SIZE * 3 // 4
        for i in range(JUMP_ROOM_SIZE):
            if i == half:  # events between chat messages, far after the ones they change
                chats = await conn.chats(half, timeout=30)
                await conn.send_json({"type": "edit", "id": chats[40]["id"], "data": "message 040, reworded"})
                assert (await conn.expect("edit"))["target"] == chats[40]["id"]
                await conn.send_json({"type": "delete", "id": chats[41]["id"]})
                assert (await conn.expect("delete"))["target"] == chats[41]["id"]
            await conn.send_json({"type": "chat", "data": f"message {i:03d}"})
        chats += await conn.chats(JUMP_ROOM_SIZE - half, timeout=30)
        page = await signed_in_page(browser, server, unique("reader"))
        await page.goto(f"{server.base_url}/r/{room}?at={chats[40]['id']}")
        await expect(page.locator("#messages li.hit")).to_have_attribute("data-id", str(chats[40]["id"]))
        hit = by_id(page, str(chats[40]["id"]))
        await expect(hit.locator(".text")).to_have_text("message 040, reworded")  # around: the current state
        await expect(hit.locator(".edited")).to_have_text("(edited)")
        await expect(by_id(page, str(chats[41]["id"])).locator(".text")).to_have_text("message deleted")

        # Meanwhile, live: an edit of a message not shown yet waits with the socket's news.
        await conn.send_json({"type": "edit", "id": chats[-1]["id"], "data": "the newest, edited live"})
        assert (await conn.expect("edit"))["target"] == chats[-1]["id"]
        newest = by_id(page, str(chats[-1]["id"]))
        for _ in range(30):
            await page.locator("#messages").evaluate("list => { list.scrollTop = list.scrollHeight; }")
            if await newest.count():
                break
            await page.wait_for_timeout(150)
        await expect(newest.locator(".text")).to_have_text("the newest, edited live")
        shown = page.locator("#messages li[data-id]")
        ids = [int(i) for i in await shown.evaluate_all("items => items.map(i => i.dataset.id)")]
        assert ids == [m["id"] for m in chats[15:]], "every chat message once, in order, and no line for an event"
        await expect(hit.locator(".text")).to_have_text("message 040, reworded")
        await expect(page.locator("#messages .edited")).to_have_count(2)
        await expect(page.locator("#messages .deleted")).to_have_count(1)
    finally:
        await chat.aclose()
