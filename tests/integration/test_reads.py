"""Read positions, unread and mention counts, mentions (docs/protocol.md §18), on real
servers with real sockets: one user's tabs hear each other's reads (in one process and
across two instances on PostgreSQL and Redis), positions survive a restart and never
move back, GET /api/rooms counts what a user has not read, and mentions find the
longest name, in any case, even a name made a moment ago on another instance."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from ..conftest import RedisServer, StartServer
from ..support import Chat, Conn, Server, User, unique
from .test_scale import instances


async def sql(server: Server, statement: str, **params: Any) -> None:
    """Change the server's database behind its back (a retention purge, a delete)."""
    engine = create_async_engine(server.database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text(statement), params)
    finally:
        await engine.dispose()


async def rooms(user: User) -> dict[str, dict[str, Any]]:
    response = await user.http.get("/api/rooms")
    assert response.status_code == 200, response.text
    return {r["name"]: r for r in response.json()["rooms"]}


async def next_read(conn: Conn, timeout: float = 5.0) -> dict[str, Any]:
    """The next `read` frame, skipping chat messages and presence."""
    while True:
        frame = await conn.recv(timeout)
        if frame["type"] == "read":
            return frame
        assert frame["type"] in ("chat", "join", "left", "list", "activity", "notify"), frame


async def no_read_before_pong(conn: Conn) -> None:
    """Nothing but chats and presence until the answer to a ping (sent after the flush)."""
    await asyncio.sleep(0.6)  # past the flush of read positions (0.25 s)
    await conn.send_json({"type": "ping"})
    while (frame := await conn.recv(5))["type"] != "pong":
        assert frame["type"] in ("chat", "join", "left", "list", "activity", "notify"), f"unexpected {frame}"


async def test_a_read_reaches_the_users_other_tabs_moves_only_forward_and_survives_a_restart(
    start_server: StartServer, tmp_path: Path
) -> None:
    server = start_server(rate_limit="100000/1")
    chat = Chat(server)
    try:
        room, elsewhere = unique("reads-"), unique("else-")
        alice, bob = await chat.user(), await chat.user()
        talk = await chat.open(bob, room)
        said = [await talk.say(f"m{i}") for i in range(5)]
        tab = await chat.open(alice, room)
        assert tab.history["last_read_id"] == 0
        other_tab = await chat.open(alice, elsewhere)  # another room: it hears all the same
        bobs_tab = await chat.open(bob, elsewhere)

        await tab.send_json({"type": "read", "id": said[2]["id"]})
        assert await next_read(other_tab) == {"type": "read", "room": room, "id": said[2]["id"]}
        await no_read_before_pong(tab)  # the tab that read hears nothing back
        await no_read_before_pong(bobs_tab)  # nor does anyone else

        await tab.send_json({"type": "read", "id": said[0]["id"]})  # back: no change
        await no_read_before_pong(other_tab)
        await tab.send_json({"type": "read", "id": 10**15})  # past the room's end: its last id
        assert await next_read(other_tab) == {"type": "read", "room": room, "id": said[4]["id"]}
        listed = (await rooms(alice))[room]
        assert listed["last_read_id"] == said[4]["id"] and listed["unread"] == 0

        await chat.aclose()
        server.stop()
        server.start()
        chat = Chat(server)
        alice = chat.again(alice)
        again = await chat.open(alice, room)
        assert again.history["last_read_id"] == said[4]["id"], "stored, not just told"
        assert (await rooms(alice))[room]["last_read_id"] == said[4]["id"]
    finally:
        await chat.aclose()


async def test_unread_counts_chats_by_others_not_ones_own_deleted_or_purged(chat: Chat, server: Server) -> None:
    room, quiet = unique("unread-"), unique("quiet-")
    alice, bob, outsider = await chat.user(), await chat.user(), await chat.user()
    await (await chat.open(outsider, quiet)).say("elsewhere, earlier")
    mine = await chat.open(alice, room)
    first = await mine.say("before anything")
    await mine.send_json({"type": "read", "id": first["id"]})
    theirs = await chat.open(bob, room)
    said = [await theirs.say(f"news {i}") for i in range(3)]
    mention = await theirs.say(f"hey @{alice.name.upper()}, look")
    assert mention["mentions"] == [alice.id]
    assert [m["id"] for m in await mine.chats(4)] == [m["id"] for m in [*said, mention]]
    for i in range(2):
        await mine.say(f"my own {i}")  # never unread

    listed = await rooms(alice)
    assert listed[room]["member"] is True and listed[room]["last_read_id"] == first["id"]
    assert (listed[room]["unread"], listed[room]["mentions"]) == (4, 1)
    assert listed[quiet]["member"] is False and (listed[quiet]["unread"], listed[quiet]["mentions"]) == (0, 0)
    order = list(listed)
    assert order.index(room) < order.index(quiet), "the latest activity first"

    # A deleted message is no longer unread (its row stays, empty); a purged one is gone.
    await sql(server, "UPDATE messages SET deleted = true, text = '', mentions = NULL WHERE id = :id", id=mention["id"])
    assert ((await rooms(alice))[room]["unread"], (await rooms(alice))[room]["mentions"]) == (3, 0)
    await sql(server, "DELETE FROM messages WHERE id = :id", id=said[0]["id"])
    assert (await rooms(alice))[room]["unread"] == 2

    # The GET right after a read counts it: what is pending is flushed first.
    await mine.send_json({"type": "read", "id": said[2]["id"]})
    await mine.send_json({"type": "ping"})
    await mine.expect("pong")
    assert (await rooms(alice))[room]["unread"] == 0 and (await rooms(alice))[room]["last_read_id"] == said[2]["id"]
    assert (await rooms(bob))[room]["unread"] == 3, "alice's three messages are bob's unread"


async def test_read_frames_are_checked_and_a_flood_of_them_is_one_write(chat: Chat, server: Server) -> None:
    room = unique("flood-")
    alice, bob = await chat.user(), await chat.user()
    talk = await chat.open(bob, room)
    said = [await talk.say(f"m{i}") for i in range(200)]
    tab = await chat.open(alice, room)
    watcher = await chat.open(alice, unique("watch-"))
    for bad in ({"type": "read"}, {"type": "read", "id": "7"}, {"type": "read", "id": True},
                {"type": "read", "id": -1}, {"type": "read", "id": 2**63}, {"type": "read", "id": 1.5}):  # fmt: skip
        await tab.send_json(bad)
        error = await tab.expect("error")
        assert error["code"] == "bad_request" and '"id"' in error["message"], error
    # A read for every message, and again and again: the other tab hears the end of it,
    # once or a few times (one a flush), never a step back.
    for _ in range(3):
        for message in said:
            await tab.send_json({"type": "read", "id": message["id"]})
    heard = [await next_read(watcher)]
    while heard[-1]["id"] != said[-1]["id"]:
        heard.append(await next_read(watcher))
    assert len(heard) <= 10, f"{len(heard)} read frames for 600 reads: not coalesced"
    assert [f["id"] for f in heard] == sorted(f["id"] for f in heard)
    # A socket on a public room's name with no room yet is no member: its read is ignored.
    nowhere = await chat.open(alice, unique("nowhere-"))
    await nowhere.send_json({"type": "read", "id": said[-1]["id"]})
    await no_read_before_pong(watcher)


async def test_rooms_list_dms_under_their_peer_and_private_rooms_only_to_members(chat: Chat) -> None:
    alice, bob, outsider = await chat.user(), await chat.user(), await chat.user()
    opened = await alice.http.post("/api/dm", json={"name": bob.name})
    dm = opened.json()["room"]["name"]
    bobs = await chat.open(bob, dm)
    await bobs.say("psst")
    await bobs.say(f"@{alice.name} you there?")
    listed = (await rooms(alice))[dm]
    assert listed["peer"] == bob.ref and listed["kind"] == "dm"
    assert (listed["unread"], listed["mentions"], listed["last_read_id"]) == (2, 1, 0)
    assert dm not in await rooms(outsider)


async def test_across_two_instances_a_read_reaches_the_other_and_a_new_name_is_mentioned_at_once(
    start_server: StartServer, tmp_path: Path, postgres_url: str, redis_server: RedisServer
) -> None:
    first, second = instances(start_server, tmp_path, postgres_url, redis_server.url)
    one, two = Chat(first), Chat(second)
    try:
        room = unique("across-")
        alice, bob = await one.user(), await one.user()
        here = await one.open(alice, room)
        there = await two.open(two.again(alice), unique("there-"))
        talk = await one.open(bob, room)
        said = [await talk.say(f"m{i}") for i in range(3)]
        await here.send_json({"type": "read", "id": said[1]["id"]})
        assert await next_read(there) == {"type": "read", "room": room, "id": said[1]["id"]}

        # A name made on the second instance after both started: the first finds it at once.
        newcomer = await two.user(unique("Late Comer "))
        listening = await two.open(newcomer, room)
        mention = await talk.say(f"welcome @{newcomer.name.lower()}!")
        assert mention["mentions"] == [newcomer.id]
        heard = await listening.expect("chat")
        assert heard["id"] == mention["id"] and heard["mentions"] == [newcomer.id], "mentions cross Redis"
    finally:
        await one.aclose()
        await two.aclose()


async def test_mentions_on_the_wire_in_history_and_pages_and_hostile_texts_stay_cheap(chat: Chat) -> None:
    room = unique("mention-")
    base = unique("Mary")
    spaced, short = await chat.user(f"{base} Ann"), await chat.user(base)  # one name a prefix of the other
    author = await chat.user()
    conn = await chat.open(author, room)
    longest = await conn.say(f"@{spaced.name.upper()} and @{short.name}, and mail {short.name}@example.com")
    assert longest["mentions"] == [spaced.id, short.id]
    nobody = await conn.say("@nobody-at-all here")
    assert "mentions" not in nobody
    hostile = ["@" * 4000, "@a " * 1333, f"@{short.name} " * 200, "@\u0301" * 2000]
    for words in hostile:
        started = asyncio.get_running_loop().time()
        stored = await conn.say(words)
        assert asyncio.get_running_loop().time() - started < 2.0
        assert stored.get("mentions", []) == ([short.id] if short.name in words else [])
    reopened = await chat.open(author, room)
    by_id = {m["id"]: m for m in reopened.history["messages"]}
    assert by_id[longest["id"]]["mentions"] == [spaced.id, short.id], "read back from the database"
    page = {m["id"]: m for m in (await chat.messages(author, room))["messages"]}
    assert page[longest["id"]] == longest and "mentions" not in page[nobody["id"]]
