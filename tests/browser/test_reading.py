"""Issue 19 items 5, 6, 7 and 9: a conversation you can read. Day dividers and full
dates (a three-day history made with `quartchat import`), one header per run of an
author, text aligned with its first line, a colour per name, `name: text` for copying
and screen readers, links built with DOM methods, and "new messages below"."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

from playwright.async_api import Browser, expect

from ..conftest import StartServer
from ..support import Chat, Server, run_cli, unique
from .driver import PHONE, fill_room, messages, send, signed_in_page

ALICE = {"id": "00000000-0000-4000-8000-00000000000a", "name": "alice"}
BOB = {"id": "00000000-0000-4000-8000-00000000000b", "name": "bob"}
# The page formats dates in the browser's own zone and language: fix both.
UTC_ENGLISH = {"timezone_id": "UTC", "locale": "en-GB"}


def import_messages(server: Server, room: str, rows: list[tuple[dict[str, str], datetime, str]]) -> None:
    lines = [
        json.dumps(
            {
                "id": 1000 + index,
                "type": "chat",
                "room": room,
                "user": user,
                "data": text,
                "ts": moment.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            }
        )
        for index, (user, moment, text) in enumerate(rows)
    ]
    path = server.workdir / f"{room}.ndjson"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    done = run_cli(server.env, server.workdir, "import", str(path))
    assert done.returncode == 0, done.stderr


def three_days() -> tuple[datetime, datetime, datetime]:
    now = datetime.now(UTC).replace(microsecond=0)
    today = max(now - timedelta(minutes=20), now.replace(hour=0, minute=0, second=1))
    return today - timedelta(days=2), today - timedelta(days=1), today


async def test_a_three_day_history_has_day_dividers_and_full_dates_on_hover(
    browser: Browser, start_server: StartServer
) -> None:
    server = start_server()
    room = unique("days-")
    before_yesterday, yesterday, today = three_days()
    import_messages(
        server,
        room,
        [
            (ALICE, before_yesterday, "two days ago"),
            (BOB, yesterday, "yesterday"),
            (ALICE, today, "today"),
        ],
    )
    page = await signed_in_page(browser, server, unique("reader"), f"/r/{room}", **UTC_ENGLISH)
    await expect(messages(page)).to_have_text(["two days ago", "yesterday", "today"])
    dividers = await page.locator("#messages li.day").all_text_contents()
    assert dividers[1:] == ["Yesterday", "Today"], dividers
    day = before_yesterday
    assert re.fullmatch(rf"{day:%A},? {day.day} {day:%B}", dividers[0]), dividers[0]
    items = page.locator("#messages li[data-id]")
    assert [await item.evaluate("li => li.previousElementSibling.className") for item in await items.all()] == [
        "day",
        "day",
        "day",
    ]
    first_time = page.locator("#messages li[data-id] time").first
    title = await first_time.get_attribute("title")
    assert title is not None and f"{day:%A}" in title and f"{day.day} {day:%B} {day.year}" in title, title
    assert await first_time.text_content() == f"{day:%H:%M}"
    await send(page, "a new one")  # a message of today joins today's divider, no new one
    await expect(messages(page)).to_have_count(4)
    await expect(page.locator("#messages li.day")).to_have_count(3)
    chat = Chat(server)  # someone joins: notices carry their time too
    try:
        await chat.open(await chat.user(), room)
        notice_time = page.locator("#messages li.notice time")
        await expect(notice_time).to_have_attribute("title", re.compile(f"{today.day} {today:%B} {today.year}"))
    finally:
        await chat.aclose()


async def test_runs_of_one_author_share_a_header_and_text_aligns_with_its_first_line(
    browser: Browser, start_server: StartServer
) -> None:
    server = start_server()
    room = unique("runs-")
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    long_text = "wrapping " * 40
    import_messages(
        server,
        room,
        [
            (ALICE, start, "first\nsecond line"),
            (ALICE, start + timedelta(minutes=1), long_text),
            (BOB, start + timedelta(minutes=2), "hello alice"),
            (BOB, start + timedelta(minutes=20), "much later"),
        ],
    )
    page = await signed_in_page(browser, server, unique("reader"), f"/r/{room}", viewport=PHONE, **UTC_ENGLISH)
    await expect(messages(page)).to_have_count(4)
    items = page.locator("#messages li[data-id]")
    continued = [await item.evaluate("li => li.classList.contains('continued')") for item in await items.all()]
    assert continued == [False, True, False, False], "one header per run; 18 minutes apart is a new run"
    assert await items.nth(0).locator(".body").text_content() == "alice: first\nsecond line"
    separator_display = await items.nth(0).locator(".separator").evaluate("s => getComputedStyle(s).display")
    assert separator_display != "none", "the separator is there for copying and screen readers"
    for index in (0, 1):
        geometry = await items.nth(index).evaluate(
            """li => {
                const text = li.querySelector('.text');
                const range = document.createRange();
                range.selectNodeContents(text);
                const starts = new Map(); // line top -> where the line starts
                for (const r of range.getClientRects()) {
                    const top = Math.round(r.top);
                    if (r.width > 1) starts.set(top, Math.min(starts.get(top) ?? Infinity, Math.round(r.left)));
                }
                const lines = [...starts.values()];
                return {lines, time: li.querySelector('time').getBoundingClientRect().right};
            }"""
        )
        lines = geometry["lines"]
        assert len(lines) >= 2, geometry
        assert len(set(lines)) == 1, f"every line starts at one edge: {lines}"
        assert lines[0] > geometry["time"], "not under the time"
    colours = {
        name: await page.locator(f"#messages li:not(.continued) .author:text-is('{name}')").evaluate_all(
            "authors => authors.map(a => getComputedStyle(a).color)"
        )
        for name in ("alice", "bob")
    }
    text_colour = await page.locator("body").evaluate("b => getComputedStyle(b).color")
    assert len(set(colours["bob"])) == 1, "one colour per name"
    assert colours["alice"][0] != colours["bob"][0] != text_colour, colours


async def test_addresses_become_safe_links_and_nothing_else_becomes_markup(
    browser: Browser, start_server: StartServer
) -> None:
    server = start_server()
    page = await signed_in_page(browser, server, unique("linker"), f"/r/{unique('links-')}")
    text = (
        "see https://example.org/wiki/Foo_(bar) and <a href='https://evil.test'>x</a> "
        "or javascript:alert(1), then http://127.0.0.1:9/path?q=1."
    )
    await send(page, text)
    await expect(messages(page)).to_have_text([text])
    links = page.locator("#messages li[data-id] .text a")
    await expect(links).to_have_count(3)
    hrefs = await links.evaluate_all("links => links.map(a => [a.href, a.textContent, a.target, a.rel])")
    assert hrefs == [
        ["https://example.org/wiki/Foo_(bar)", "https://example.org/wiki/Foo_(bar)", "_blank", "noopener noreferrer"],
        ["https://evil.test/", "https://evil.test", "_blank", "noopener noreferrer"],
        ["http://127.0.0.1:9/path?q=1", "http://127.0.0.1:9/path?q=1", "_blank", "noopener noreferrer"],
    ], hrefs
    assert await page.locator("#messages li[data-id] .text *:not(a)").count() == 0


async def test_a_reader_scrolled_up_is_told_of_new_messages_below(browser: Browser, start_server: StartServer) -> None:
    server = start_server(rate_limit="1000/1")
    room = unique("below-")
    await fill_room(server, room, 60)
    page = await signed_in_page(browser, server, unique("reader"), f"/r/{room}")
    await expect(messages(page).last).to_have_text("message 059")
    await page.locator("#messages").evaluate("list => { list.scrollTop = list.scrollHeight / 2; }")
    below = page.locator("#new-below")
    await expect(below).to_be_hidden()
    other = await signed_in_page(browser, server, unique("writer"), f"/r/{room}")
    await send(other, "while you read")
    await send(other, "and another")
    await expect(below).to_have_text("2 new messages below")
    assert not await page.locator("#messages").evaluate(
        "list => list.scrollHeight - list.scrollTop - list.clientHeight < 40"
    ), "the reader's place is kept"
    await below.click()
    await expect(below).to_be_hidden()
    await expect(messages(page).last).to_be_in_viewport()
