"""Edit and delete (docs/protocol.md §17) on a real server with real clients: events in
the room's id sequence, live and on resume with `after` (SQLite, and two workers on
PostgreSQL + Redis), history in the current state, who may edit or delete, the errors,
the text rules, the shared rate limit and client_id idempotency."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from orjson import loads as orjson_loads

from ..support import Chat, Conn, Server, User, set_role, unique

ROOM_SIZE = 300  # messages in the room before the edits: a real room, more than a history page


async def send_edit(conn: Conn, target: int, text: str, client_id: str | None = None) -> None:
    frame: dict[str, Any] = {"type": "edit", "id": target, "data": text}
    if client_id is not None:
        frame["client_id"] = client_id
    await conn.send_json(frame)


async def send_delete(conn: Conn, target: int, client_id: str | None = None) -> None:
    frame: dict[str, Any] = {"type": "delete", "id": target}
    if client_id is not None:
        frame["client_id"] = client_id
    await conn.send_json(frame)


async def fill(conn: Conn, count: int, prefix: str = "message") -> list[dict[str, Any]]:
    """`count` chat messages, sent in one go, as their senders saw them come back."""
    for i in range(count):
        await conn.send_json({"type": "chat", "data": f"{prefix} {i}", "client_id": f"{prefix}-{i}"})
    return await conn.chats(count, timeout=30)


async def edits_and_deletes_reach_a_resuming_client(chat: Chat, listeners: int = 1) -> None:
    """Alice edits and deletes while Carol is away; Bob (and the other listeners) see
    the events live, in id order; Carol comes back with `after` and sees exactly them;
    a new socket without `after` sees the room as it is now."""
    room = unique("edits-")
    alice, bob, carol = await chat.user(), await chat.user(), await chat.user()
    author = await chat.open(alice, room, query="batch=1")
    messages = await fill(author, ROOM_SIZE)
    watchers = [await chat.open(bob, room, query="batch=1") for _ in range(listeners)]
    away = await chat.open(carol, room)
    last_seen = away.history["messages"][-1]["id"]
    assert last_seen == messages[-1]["id"]
    await away.ws.close()

    edited, deleted, untouched = messages[10], messages[20], messages[30]
    await send_edit(author, edited["id"], "first edit", "e-1")
    await send_edit(author, edited["id"], "second edit", "e-2")
    await send_delete(author, deleted["id"], "d-1")
    events = [await author.expect(kind) for kind in ("edit", "edit", "delete")]
    first, second, gone = events
    assert first["target"] == second["target"] == edited["id"]
    assert (first["data"], second["data"], first["client_id"]) == ("first edit", "second edit", "e-1")
    assert gone["target"] == deleted["id"] and "data" not in gone
    assert first["user"] == gone["user"] == alice.ref
    assert messages[-1]["id"] < first["id"] < second["id"] < gone["id"]
    for watcher in watchers:
        assert [await watcher.expect(kind) for kind in ("edit", "edit", "delete")] == events

    back = await chat.open(carol, room, query=f"after={last_seen}")
    assert back.history["reset"] is False
    assert back.history["messages"] == events

    fresh = await chat.open(carol, room, query="batch=1")
    shown = fresh.history["messages"]
    assert all(m["type"] == "chat" for m in shown), "history without after holds chat messages only"
    assert shown[-1]["id"] == messages[-1]["id"]
    # Older pages and `around` are current too.
    page = await chat.messages(carol, room, before=messages[40]["id"], limit=40)
    by_id = {m["id"]: m for m in page["messages"]}
    assert by_id[edited["id"]]["data"] == "second edit" and by_id[edited["id"]]["edited"] == second["ts"]
    assert by_id[deleted["id"]]["data"] == "" and by_id[deleted["id"]]["deleted"] is True
    assert "edited" not in by_id[untouched["id"]] and "deleted" not in by_id[untouched["id"]]
    assert [m["type"] for m in page["messages"]] == ["chat"] * 40
    around = await chat.messages(carol, room, around=edited["id"], limit=10)
    assert [m["id"] for m in around["messages"]] == [m["id"] for m in messages[5:16]]
    assert around["messages"][5]["data"] == "second edit"
    # `after` brings the chat rows in their current state and the events, oldest first.
    rows = [m for m in await chat.all_messages(carol, room) if m["id"] > messages[9]["id"]]
    assert [m["id"] for m in rows] == [m["id"] for m in messages[10:]] + [e["id"] for e in events]
    assert rows[0]["data"] == "second edit" and rows[10]["deleted"] is True


async def test_edits_and_deletes_reach_a_client_that_resumes_with_after(chat: Chat) -> None:
    await edits_and_deletes_reach_a_resuming_client(chat)


async def test_on_two_workers_edits_and_deletes_cross_the_broker(two_workers: Server) -> None:
    chat = Chat(two_workers)
    try:
        await edits_and_deletes_reach_a_resuming_client(chat, listeners=6)
    finally:
        await chat.aclose()
    await asyncio.sleep(0.5)
    assert len(two_workers.workers_that_closed_websockets()) == 2, "every socket was on one worker"


async def test_only_current_chat_messages_count_in_the_history_page(chat: Chat) -> None:
    """A room whose newest rows are all events still shows its newest chat messages."""
    room = unique("events-only-")
    alice = await chat.user()
    conn = await chat.open(alice, room, query="batch=1")
    messages = await fill(conn, 60)
    for i in range(120):
        await send_edit(conn, messages[-1]["id"], f"edit {i}")
    for _ in range(120):
        await conn.expect("edit")
    fresh = await chat.open(alice, room)
    shown = fresh.history["messages"]
    assert [m["id"] for m in shown] == [m["id"] for m in messages[-len(shown) :]]
    assert shown[-1]["data"] == "edit 119"
    assert fresh.history["has_more"] is True


# Who may edit and delete --------------------------------------------------------------

# (identity, may edit, may delete) another user's message in a public room; "author" is
# the message's own author, signed in with a cookie or with its bot token.
MATRIX = [
    ("author", True, True),
    ("author's bot token", True, True),
    ("other member", False, False),
    ("other member's bot token", False, False),
    ("owner", False, True),
    ("admin", False, True),
]


async def private_room_with(chat: Chat) -> tuple[str, dict[str, User]]:
    owner, author, other, admin = [await chat.user() for _ in range(4)]
    room = unique("matrix-")
    assert (await owner.http.post("/api/rooms", json={"name": room, "private": True})).status_code == 201
    for user in (author, other):
        assert (await owner.http.post(f"/api/rooms/{room}/members", json={"name": user.name})).status_code == 201
    for user in (owner, author, other):  # whichever is the server's first account
        await set_role(chat.server, user.id, "member")
    await set_role(chat.server, admin.id, "admin")
    people = {
        "author": author,
        "author's bot token": await chat.bot(author),
        "other member": other,
        "other member's bot token": await chat.bot(other),
        "owner": owner,
        "admin": admin,
    }
    return room, people


@pytest.mark.parametrize(("identity", "may_edit", "may_delete"), MATRIX)
async def test_who_may_edit_and_delete(chat: Chat, identity: str, may_edit: bool, may_delete: bool) -> None:
    room, people = await private_room_with(chat)
    if identity == "admin":
        # An admin is no member of a private room, so it cannot read it (docs/protocol.md
        # §11): a public room is where it may delete.
        room = unique("public-")
    author = await chat.open(people["author"], room)
    original = await author.say("the original")
    actor = author if identity == "author" else await chat.open(people[identity], room)

    await send_edit(actor, original["id"], "changed by " + identity, "try-edit")
    reply = await actor.expect("edit" if may_edit else "error")
    if not may_edit:
        assert (reply["code"], reply["client_id"]) == ("forbidden", "try-edit"), reply
    await send_delete(actor, original["id"], "try-delete")
    reply = await actor.expect("delete" if may_delete else "error")
    if not may_delete:
        assert (reply["code"], reply["client_id"]) == ("forbidden", "try-delete"), reply
    history = (await chat.messages(people["author"], room, limit=5))["messages"]
    assert history[-1]["id"] == original["id"]
    assert history[-1].get("deleted", False) is may_delete
    expected = "" if may_delete else ("changed by " + identity if may_edit else "the original")
    assert history[-1]["data"] == expected


async def test_an_outsider_cannot_reach_a_private_room_to_edit(chat: Chat) -> None:
    room, _ = await private_room_with(chat)
    outsider = await chat.user()
    conn = await chat.connect(outsider, room)
    assert await conn.close_code() == 4004


# Errors -------------------------------------------------------------------------------


async def test_not_found_for_another_room_an_event_a_deleted_message_and_no_message(chat: Chat) -> None:
    alice = await chat.user()
    here, there = unique("here-"), unique("there-")
    elsewhere = await chat.open(alice, there)
    theirs = await elsewhere.say("in another room")
    conn = await chat.open(alice, here)
    mine = await conn.say("mine")
    await send_edit(conn, mine["id"], "edited")
    event = await conn.expect("edit")
    doomed = await conn.say("doomed")
    await send_delete(conn, doomed["id"])
    await conn.expect("delete")
    for target in (theirs["id"], event["id"], doomed["id"], 10**15):
        await send_edit(conn, target, "again", f"edit-{target}")
        reply = await conn.expect("error")
        assert (reply["code"], reply["client_id"]) == ("not_found", f"edit-{target}"), reply
        await send_delete(conn, target)
        assert (await conn.expect("error"))["code"] == "not_found"
    # Nothing was stored: the other room and this one are as they were.
    assert [m["data"] for m in (await chat.messages(alice, there))["messages"]] == ["in another room"]
    resumed = (await chat.messages(alice, here, after=0))["messages"]
    assert [m["type"] for m in resumed] == ["chat", "edit", "chat", "delete"]


TARGET = object()  # stands for the id of a message of the test's own


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ({"type": "edit", "id": TARGET, "data": "   "}, "empty"),
        ({"type": "edit", "id": TARGET, "data": "\u200b\u200b"}, "empty"),
        ({"type": "edit", "id": TARGET, "data": "x" * 5000}, "too_long"),
        ({"type": "edit", "id": TARGET, "data": "a\x00b"}, "bad_request"),
        ({"type": "edit", "id": TARGET, "data": "\ud800"}, "bad_request"),
        ({"type": "edit", "id": 1}, "bad_request"),
        ({"type": "edit", "id": "1", "data": "x"}, "bad_request"),
        ({"type": "edit", "id": True, "data": "x"}, "bad_request"),
        ({"type": "edit", "id": -1, "data": "x"}, "bad_request"),
        ({"type": "edit", "id": 2**63, "data": "x"}, "bad_request"),
        ({"type": "delete"}, "bad_request"),
        ({"type": "delete", "id": 1.5}, "bad_request"),
        ({"type": "delete", "id": TARGET, "client_id": "x" * 65}, "bad_request"),
    ],
)
async def test_edit_text_rules_are_those_of_chat(chat: Chat, frame: dict[str, Any], code: str) -> None:
    alice = await chat.user()
    room = unique("rules-")
    conn = await chat.open(alice, room)
    original = await conn.say("original")
    if frame.get("id") is TARGET:
        frame = {**frame, "id": original["id"]}
    # json.dumps writes a lone surrogate as an escape: the server decodes it.
    await conn.send_json(frame)
    reply = await conn.expect("error")
    assert reply["code"] == code, reply
    await send_edit(conn, original["id"], "still open")
    assert (await conn.expect("edit"))["data"] == "still open"
    history = (await chat.messages(alice, room))["messages"]
    assert [m["data"] for m in history] == ["still open"]


async def test_edits_share_the_rate_limit_of_chat(start_server: Any) -> None:
    server = start_server(rate_limit="5/60")
    chat = Chat(server)
    try:
        alice = await chat.user()
        conn = await chat.open(alice, unique("limited-"))
        first = await conn.say("one")
        for i in range(4):
            await send_edit(conn, first["id"], f"edit {i}")
            await conn.expect("edit")
        await send_delete(conn, first["id"], "d")
        reply = await conn.expect("error")
        assert (reply["code"], reply["client_id"]) == ("rate_limited", "d"), reply
        await conn.send_json({"type": "chat", "data": "two"})
        assert (await conn.expect("error"))["code"] == "rate_limited"
    finally:
        await chat.aclose()


async def test_a_repeated_client_id_gives_the_stored_event_back_and_stores_nothing(chat: Chat) -> None:
    alice, bob = await chat.user(), await chat.user()
    room = unique("idem-")
    conn = await chat.open(alice, room)
    watcher = await chat.open(bob, room)
    original = await conn.say("original")
    await watcher.expect("chat")
    await send_edit(conn, original["id"], "edited once", "edit-1")
    stored_edit = await conn.expect("edit")
    await send_delete(conn, original["id"], "delete-1")
    stored_delete = await conn.expect("delete")
    # The retries after a reconnect: the same events back, to the sender alone.
    again = await chat.open(alice, room, query=f"after={stored_delete['id']}")
    await send_edit(again, original["id"], "edited twice?", "edit-1")
    assert await again.expect("edit") == stored_edit | {"data": ""}  # the delete erased its text
    await send_delete(again, original["id"], "delete-1")
    assert await again.expect("delete") == stored_delete
    # Many at once with the same client_id: one event.
    second = await conn.say("second")
    assert await again.expect("chat") == second
    for _ in range(20):
        await send_edit(again, second["id"], "concurrent", "edit-2")
    replies = [await again.expect("edit") for _ in range(20)]
    assert len({r["id"] for r in replies}) == 1
    seen = [await watcher.expect(kind) for kind in ("edit", "delete", "chat", "edit")]
    assert [f["type"] for f in seen] == ["edit", "delete", "chat", "edit"]
    resumed = (await chat.messages(alice, room, after=0))["messages"]
    assert [m["type"] for m in resumed] == ["chat", "edit", "delete", "chat", "edit"]
    with pytest.raises(TimeoutError):
        await watcher.recv(timeout=0.5)


# Exports ----------------------------------------------------------------------------------


async def test_exports_show_the_current_state_and_only_admins_add_the_edits(chat: Chat) -> None:
    room = unique("export-")
    alice, admin = await chat.user(), await chat.user()
    await set_role(chat.server, admin.id, "admin")
    await set_role(chat.server, alice.id, "member")  # the module's first account is an admin
    conn = await chat.open(alice, room, query="batch=1")
    messages = await fill(conn, 200)
    await send_edit(conn, messages[0]["id"], "the first, edited")
    await send_edit(conn, messages[1]["id"], "erased with the message")
    await send_delete(conn, messages[1]["id"])
    edit, _, delete = [await conn.expect(kind) for kind in ("edit", "edit", "delete")]

    plain = await alice.http.get(f"/api/rooms/{room}/export", params={"format": "ndjson"})
    assert plain.status_code == 200
    lines = [orjson_loads(line) for line in plain.text.splitlines()]
    assert len(lines) == 200 and all(m["type"] == "chat" for m in lines)
    assert (lines[0]["data"], lines[0]["edited"]) == ("the first, edited", edit["ts"])
    assert (lines[1]["data"], lines[1]["deleted"]) == ("", True)
    assert "erased with the message" not in plain.text
    text = (await alice.http.get(f"/api/rooms/{room}/export", params={"format": "txt"})).text
    assert "the first, edited (edited)\n" in text and ": (deleted)\n" in text

    for who, path in ((alice, f"/api/rooms/{room}/export"), (alice, "/api/export")):
        refused = await who.http.get(path, params={"include_edits": "1"})
        assert refused.status_code == 403, refused.text
    bot = await chat.bot(admin, room)  # an admin's token limited to rooms is no admin's export
    assert (await bot.http.get(f"/api/rooms/{room}/export", params={"include_edits": "1"})).status_code == 403
    full = await admin.http.get(f"/api/rooms/{room}/export", params={"include_edits": "1"})
    assert full.status_code == 200
    rows = [orjson_loads(line) for line in full.text.splitlines()]
    assert [m["type"] for m in rows] == ["chat"] * 200 + ["edit", "edit"]
    assert rows[-2] == edit
    assert rows[-1]["data"] == "" and delete["id"] not in [m["id"] for m in rows]
    everything = await admin.http.get("/api/export", params={"include_edits": "1", "format": "csv"})
    assert everything.status_code == 200 and "(edit of " in everything.text


async def test_concurrent_deletes_and_edits_of_one_message_store_one_delete_and_nothing_after_it(chat: Chat) -> None:
    await race_for_one_message(chat, strangers_count=30)


async def test_on_two_workers_a_race_for_one_message_stores_one_delete(two_workers: Server) -> None:
    """The same race with the sockets spread over two processes, each with its own
    writer: PostgreSQL's room lock orders their transactions."""
    chat = Chat(two_workers)
    try:
        await race_for_one_message(chat, strangers_count=10)
    finally:
        await chat.aclose()
    await asyncio.sleep(0.5)
    assert len(two_workers.workers_that_closed_websockets()) == 2, "every socket was on one worker"


async def race_for_one_message(chat: Chat, strangers_count: int) -> None:
    """Ten sockets of the author race to edit and delete the same message while other
    users try to delete it: one delete is stored, no edit after it, every other frame
    answered with an error, the message erased."""
    room = unique("race-")
    alice = await chat.user()
    others = [await chat.user() for _ in range(strangers_count)]
    for other in others:
        await set_role(chat.server, other.id, "member")
    author = await chat.open(alice, room)
    target = await author.say("contested")
    sockets = [await chat.open(alice, room) for _ in range(10)]
    strangers = [await chat.open(other, room) for other in others]

    async def race(conn: Conn, i: int) -> list[dict[str, Any]]:
        mine = {f"e{i}", f"d{i}"}
        await send_edit(conn, target["id"], f"edit {i}", f"e{i}")
        await send_delete(conn, target["id"], f"d{i}")
        replies: list[dict[str, Any]] = []
        while len(replies) < 2:
            frame = await conn.recv()
            if frame.get("client_id") in mine:
                replies.append(frame)
        return replies

    async def stranger(conn: Conn) -> dict[str, Any]:
        await send_delete(conn, target["id"], "mine")
        while (frame := await conn.recv())["type"] != "error":
            pass
        return frame

    results = await asyncio.gather(*(race(c, i) for i, c in enumerate(sockets)), *(stranger(c) for c in strangers))
    refusals = results[len(sockets) :]
    assert all(r["code"] in ("forbidden", "not_found") for r in refusals)  # type: ignore[call-overload]
    answers = [reply for replies in results[: len(sockets)] for reply in replies]  # type: ignore[union-attr]
    assert sum(a["type"] == "delete" for a in answers) == 1
    assert all(a["type"] != "error" or a["code"] == "not_found" for a in answers)
    rows = [m for m in await chat.all_messages(alice, room) if m["id"] > target["id"]]
    deletes = [m for m in rows if m["type"] == "delete"]
    assert len(deletes) == 1 and deletes[0]["user"] == alice.ref
    assert all(m["id"] < deletes[0]["id"] for m in rows if m["type"] == "edit"), "an edit stored after the delete"
    assert all(m["data"] == "" for m in rows if m["type"] == "edit")
    current = (await chat.messages(alice, room))["messages"][-1]
    assert (current["id"], current["data"], current["deleted"]) == (target["id"], "", True)
