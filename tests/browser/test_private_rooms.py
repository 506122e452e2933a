"""Issue 21 (the page): private rooms and direct messages as people use them, in
headless Chromium against a real server: create a private room, invite, chat, a third
user who never sees it, a DM from the online list and from the "Message someone" box,
leaving, and removal by the owner (docs/web-client.md, "Private rooms and DMs")."""

from __future__ import annotations

import asyncio
import re

from playwright.async_api import Browser, Locator, Page, expect

from ..conftest import StartServer
from ..support import Server, unique
from .driver import PHONE, messages, send, signed_in_page

DM_PATH = re.compile(r"/r/dm-[0-9a-f]{16}$")
NO_RECONNECT_SECONDS = 2.0  # longer than the first reconnect back-off (0.5 s) twice over


async def refresh_rooms(page: Page) -> None:
    """What the tab does when it regains focus (and every 30 s): fetch the room list;
    returns once a list fetched after this call is shown."""
    before = int(await page.locator("#rooms").get_attribute("data-fetched") or 0)
    await page.evaluate("window.dispatchEvent(new Event('focus'))")
    await page.wait_for_function(
        "before => Number(document.querySelector('#rooms').dataset.fetched || 0) > before", arg=before
    )


def room_entry(page: Page, room: str) -> Locator:
    return page.locator(f'#rooms li[data-room="{room}"]')


async def create_private_room(page: Page, server: Server, room: str) -> None:
    await page.fill("#new-room-name", room)
    await page.check("#new-room-private")
    await page.click("#new-room button[type=submit]")
    await page.wait_for_url(f"{server.base_url}/r/{room}")
    await expect(page.locator("#status")).to_have_text("connected")


async def invite(page: Page, name: str) -> None:
    await page.fill("#invite-name", name)
    await page.press("#invite-name", "Enter")
    await expect(page.locator("#members li .name").filter(has_text=name)).to_have_count(1)


async def test_a_private_room_is_shared_by_invitation_and_a_third_user_never_sees_it(
    browser: Browser, start_server: StartServer
) -> None:
    server = start_server(rate_limit="1000/1")
    alice_name, bob_name, carol_name = unique("alice"), unique("bob"), unique("carol")
    alice = await signed_in_page(browser, server, alice_name)
    bob = await signed_in_page(browser, server, bob_name)
    carol = await signed_in_page(browser, server, carol_name)
    room = unique("secret-")

    await create_private_room(alice, server, room)
    await expect(alice.locator("#room-name")).to_have_text(f"#{room}")
    await expect(alice.locator("#room-name svg.lock")).to_have_attribute("aria-label", "private room")
    await expect(room_entry(alice, room)).to_have_attribute("data-kind", "private")
    await expect(room_entry(alice, room).locator("svg.lock")).to_have_count(1)
    await expect(alice.locator("#members-section")).to_be_visible()
    await expect(alice.locator("#members li .name")).to_have_text([alice_name])
    await expect(alice.locator("#members li .role")).to_have_text(["owner"])

    nobody = unique("nobody")
    await alice.fill("#invite-name", nobody)
    await alice.press("#invite-name", "Enter")
    await expect(alice.locator("#invite-problem")).to_have_text(f"No one is called “{nobody}”.")
    await invite(alice, bob_name)
    await expect(alice.locator("#invite-problem")).to_be_hidden()

    await expect(room_entry(bob, room)).to_have_count(0)  # before the list is fetched again
    await refresh_rooms(bob)
    await expect(room_entry(bob, room)).to_have_attribute("data-kind", "private")
    await room_entry(bob, room).locator("a").click()
    await bob.wait_for_url(f"{server.base_url}/r/{room}")
    await expect(bob.locator("#status")).to_have_text("connected")
    await send(alice, "only for bob")
    await expect(messages(bob)).to_have_text(["only for bob"])
    await send(bob, "only for alice")
    await expect(messages(alice)).to_have_text(["only for bob", "only for alice"])
    await expect(bob.locator("#members li .name")).to_have_count(2)
    assert set(await bob.locator("#members li .name").all_text_contents()) == {alice_name, bob_name}
    await expect(bob.locator("#members button.remove")).to_have_count(0)  # bob is no owner

    await refresh_rooms(carol)
    await expect(room_entry(carol, room)).to_have_count(0)
    listed = await carol.request.get(f"{server.base_url}/api/rooms")
    assert room not in [entry["name"] for entry in (await listed.json())["rooms"]]
    await carol.goto(f"{server.base_url}/r/{room}")
    await expect(carol.locator("#status")).to_have_text("not found")
    await expect(carol.locator("#banner-text")).to_have_text(
        f"Room not found: #{room} does not exist or is not shared with you."
    )
    await expect(carol.locator("#retry-now")).to_be_hidden()
    await expect(carol.locator("#text")).to_be_disabled()
    await expect(messages(carol)).to_have_count(0)
    await expect(carol.locator("#members-section")).to_be_hidden()
    await asyncio.sleep(NO_RECONNECT_SECONDS)
    await expect(carol.locator("#status")).to_have_text("not found")  # it did not try again


async def test_a_dm_started_from_the_online_list_reaches_the_other_user(
    browser: Browser, start_server: StartServer
) -> None:
    server = start_server(rate_limit="1000/1")
    alice_name, bob_name = unique("alice"), unique("bob")
    meeting = unique("meet-")
    alice = await signed_in_page(browser, server, alice_name, f"/r/{meeting}")
    bob = await signed_in_page(browser, server, bob_name, f"/r/{meeting}")
    await expect(alice.locator("#users li")).to_have_count(2)
    await expect(alice.locator("#users li").filter(has_text=alice_name).locator("button")).to_have_count(0)

    await alice.locator("#users button.person", has_text=bob_name).click()
    await alice.locator("#user-message").click()
    await alice.wait_for_url(DM_PATH)
    dm = alice.url.rsplit("/", 1)[1]
    await expect(alice.locator("#status")).to_have_text("connected")
    await expect(alice.locator("#room-name")).to_have_text(bob_name)
    assert bob_name in await alice.title()
    await expect(room_entry(alice, dm)).to_have_attribute("data-kind", "dm")
    await expect(room_entry(alice, dm).locator(".label")).to_have_text(bob_name)
    await expect(alice.locator("#members-section")).to_be_hidden()  # no invitations in a DM
    await expect(alice.locator("#messages li.notice .body")).to_have_text(["Nothing has been said here yet."])
    await expect(alice.locator("#room-name svg")).to_have_count(0)
    await send(alice, "just between us")

    # Bob finds it in his list, named after alice, and the box leads to the same room.
    await refresh_rooms(bob)
    await expect(room_entry(bob, dm).locator(".label")).to_have_text(alice_name)
    await bob.fill("#dm-name", alice_name.upper())  # names are compared without case
    await bob.press("#dm-name", "Enter")
    await bob.wait_for_url(f"{server.base_url}/r/{dm}")
    await expect(bob.locator("#room-name")).to_have_text(alice_name)
    await expect(messages(bob)).to_have_text(["just between us"])
    await send(bob, "agreed")
    await expect(messages(alice)).to_have_text(["just between us", "agreed"])

    nobody = unique("nobody")
    await bob.fill("#dm-name", nobody)
    await bob.press("#dm-name", "Enter")
    await expect(bob.locator("#dm-problem")).to_have_text(f"No one is called “{nobody}”.")
    assert bob.url == f"{server.base_url}/r/{dm}"


async def test_leaving_a_room_closes_its_socket_and_drops_it_from_the_list(
    browser: Browser, start_server: StartServer
) -> None:
    server = start_server()
    alice_name, bob_name = unique("alice"), unique("bob")
    alice = await signed_in_page(browser, server, alice_name)
    bob = await signed_in_page(browser, server, bob_name)
    room = unique("club-")
    await create_private_room(alice, server, room)
    await invite(alice, bob_name)
    await bob.goto(f"{server.base_url}/r/{room}")
    await expect(bob.locator("#status")).to_have_text("connected")
    await expect(room_entry(bob, room)).to_have_count(1)

    await bob.click("#leave")
    await expect(bob.locator("#leave-confirm")).to_be_visible()
    await bob.click("#leave-no")  # changed his mind: nothing happens
    await expect(bob.locator("#leave-confirm")).to_be_hidden()
    await expect(bob.locator("#status")).to_have_text("connected")
    await bob.click("#leave")
    await bob.click("#leave-yes")
    await expect(bob.locator("#banner-text")).to_have_text(f"You left #{room}.")
    await expect(bob.locator("#status")).to_have_text("not a member")
    await expect(bob.locator("#text")).to_be_disabled()
    await expect(room_entry(bob, room)).to_have_count(0)
    await expect(bob.locator("#members-section")).to_be_hidden()
    await refresh_rooms(alice)
    await expect(alice.locator("#members li .name")).to_have_text([alice_name])


async def test_a_member_removed_by_the_owner_sees_the_notice_and_does_not_reconnect(
    browser: Browser, start_server: StartServer
) -> None:
    server = start_server()
    alice_name, bob_name = unique("alice"), unique("bob")
    alice = await signed_in_page(browser, server, alice_name)
    bob = await signed_in_page(browser, server, bob_name)
    room = unique("team-")
    await create_private_room(alice, server, room)
    await invite(alice, bob_name)
    await bob.goto(f"{server.base_url}/r/{room}")
    await expect(bob.locator("#status")).to_have_text("connected")

    remove = alice.locator("#members li", has_text=bob_name).locator("button.remove")
    await expect(remove).to_have_attribute("aria-label", f"Remove {bob_name} from #{room}")
    await remove.click()
    await expect(alice.locator("#members li .name")).to_have_text([alice_name])
    await expect(bob.locator("#banner-text")).to_have_text("You are no longer a member of this room.", timeout=2_000)
    await expect(bob.locator("#status")).to_have_text("not a member")
    await expect(bob.locator("#text")).to_be_disabled()
    await expect(room_entry(bob, room)).to_have_count(0)
    await asyncio.sleep(NO_RECONNECT_SECONDS)
    await expect(bob.locator("#status")).to_have_text("not a member")


async def test_on_a_phone_rooms_and_members_are_drawers_and_nothing_overflows(
    browser: Browser, start_server: StartServer
) -> None:
    server = start_server()
    page = await signed_in_page(browser, server, unique("phone"), viewport={**PHONE, "width": 375})
    await expect(page.locator("#rooms-panel")).to_be_hidden()
    await page.click("#rooms-toggle")
    await expect(page.locator("#rooms-panel")).to_be_visible()
    room = unique("pocket-")
    await create_private_room(page, server, room)
    await expect(page.locator("#rooms-panel")).to_be_hidden()
    await expect(page.locator("#room-name")).to_have_text(f"#{room}")
    await page.click("#users-toggle")
    await expect(page.locator("#members-section")).to_be_visible()
    await expect(page.locator("#invite-name")).to_be_in_viewport()
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    await page.click("#users-close")
    await page.click("#rooms-toggle")
    await expect(room_entry(page, room)).to_be_in_viewport()
    await page.keyboard.press("Escape")
    await expect(page.locator("#rooms-panel")).to_be_hidden()


async def test_odd_input_gets_an_answer_in_words_and_a_double_click_makes_one_room(
    browser: Browser, start_server: StartServer
) -> None:
    server = start_server()
    name = unique("alice")
    page = await signed_in_page(browser, server, name)
    posts: list[str] = []
    page.on("request", lambda request: posts.append(request.url) if request.method == "POST" else None)
    room = unique("twice-")
    await page.fill("#new-room-name", room)
    await page.check("#new-room-private")
    await page.dblclick("#new-room button[type=submit]")
    await page.wait_for_url(f"{server.base_url}/r/{room}")
    await expect(page.locator("#status")).to_have_text("connected")
    assert posts.count(f"{server.base_url}/api/rooms") == 1, posts

    problem = page.locator("#new-room-problem")
    await page.fill("#new-room-name", room)
    await page.press("#new-room-name", "Enter")
    await expect(problem).to_have_text(f"The name “{room}” is taken: choose another.")
    await page.fill("#new-room-name", "dm-0123456789abcdef")
    await page.press("#new-room-name", "Enter")
    await expect(problem).to_contain_text("does not start with 'dm-'")  # the server's own words
    await page.fill("#new-room-name", "Not A Room!")
    await page.press("#new-room-name", "Enter")
    await expect(problem).to_have_text("Room names are 1\N{EN DASH}64 lowercase letters, digits or “-”.")

    for odd in ["bob\u0000", "\ud800", "<b>bob</b>"]:
        await page.locator("#invite-name").evaluate("(box, value) => { box.value = value; }", odd)
        await page.press("#invite-name", "Enter")
        await expect(page.locator("#invite-problem")).to_have_text(f"No one is called “{odd}”.")
    await expect(page.locator("#invite-problem b")).to_have_count(0)  # text, never markup
    await page.fill("#invite-name", "x" * 500)
    assert len(await page.locator("#invite-name").input_value()) == 64, "the box takes a name's length"

    await page.fill("#dm-name", name)
    await page.press("#dm-name", "Enter")
    await expect(page.locator("#dm-problem")).to_have_text("a direct message needs another user")
    assert page.url == f"{server.base_url}/r/{room}"
