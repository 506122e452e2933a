"""The per-user stream (docs/protocol.md, "The per-user stream") on a real server with
real clients: `notify` for mentions and DMs whatever room a socket is on, `activity`
coalesced to one a second per room and connection with the right counts, across two
instances with Redis, and nothing for the removed, for outsiders or for one's own
messages."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

from ..conftest import RedisServer, StartServer
from ..support import Chat, Conn, User, unique
from .test_access import dm_room, private_room
from .test_scale import instances

STREAM = ("activity", "notify")


async def stream_frames(conn: Conn, seconds: float) -> list[dict[str, Any]]:
    """Every activity and notify frame the socket receives in the next `seconds`."""
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            frame = await conn.recv(timeout=left)
        except TimeoutError:
            break
        if frame["type"] in STREAM:
            found.append(frame)
    return found


async def next_stream_frame(conn: Conn, timeout: float = 10.0) -> dict[str, Any]:
    """The next activity or notify frame (others skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        frame = await conn.recv(timeout=max(0.01, deadline - time.monotonic()))
        if frame["type"] in STREAM:
            return frame


async def until_stream(conn: Conn, kind: str, room: str, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Stream frames up to and including the first `kind` frame of `room`."""
    seen: list[dict[str, Any]] = []
    while True:
        frame = await next_stream_frame(conn, timeout)
        seen.append(frame)
        if frame["type"] == kind and frame["room"] == room:
            return seen


async def activity_through(conn: Conn, room: str, last_id: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Stream frames up to the first activity of `room` that has seen `last_id`."""
    seen: list[dict[str, Any]] = []
    while True:
        seen += await until_stream(conn, "activity", room, timeout)
        if seen[-1]["last_id"] >= last_id:
            return seen


async def member_of(chat: Chat, user: User, *rooms: str) -> None:
    """Say something in each public room: that makes it, and the user a member of it
    (one's own message is never unread)."""
    for room in rooms:
        conn = await chat.open(user, room)
        await conn.say("hello")
        await conn.ws.close()


async def test_a_dm_message_reaches_the_peers_socket_in_another_room_as_notify_and_activity(chat: Chat) -> None:
    dm, starter, peer = await dm_room(chat, messages=0)
    elsewhere = unique("else-")
    watching = await chat.open(peer, elsewhere)
    talking = await chat.open(starter, dm)
    sent = await talking.say("are you there?")
    frames = await until_stream(watching, "activity", dm)
    notify = next(f for f in frames if f["type"] == "notify")
    assert notify == {"type": "notify", "room": dm, "message": sent}
    assert frames[-1] == {"type": "activity", "room": dm, "last_id": sent["id"], "unread": 1, "mentions": 0}


async def test_a_mention_in_room_b_reaches_the_users_socket_in_room_a_as_notify(chat: Chat) -> None:
    reader, writer = await chat.user(), await chat.user()
    room_a, room_b = unique("a-"), unique("b-")
    await member_of(chat, reader, room_b)
    in_a = await chat.open(reader, room_a)
    in_b = await chat.open(writer, room_b)
    plain = await in_b.say("nobody in particular")
    mention = await in_b.say(f"hey @{reader.name.upper()}, look")
    assert mention["mentions"] == [reader.id]
    frames = await activity_through(in_a, room_b, mention["id"])
    assert [f for f in frames if f["type"] == "notify"] == [{"type": "notify", "room": room_b, "message": mention}]
    assert frames[-1] == {"type": "activity", "room": room_b, "last_id": mention["id"], "unread": 2, "mentions": 1}
    assert plain["id"] < mention["id"]


async def test_one_s_own_message_gives_no_notify_and_no_activity(chat: Chat) -> None:
    dm, starter, peer = await dm_room(chat, messages=0)
    elsewhere = unique("else-")
    watching = await chat.open(starter, elsewhere)
    mine = await chat.open(starter, dm)
    await mine.say(f"my own words, and I mention myself: @{starter.name}")
    theirs = await chat.open(peer, dm)
    reply = await theirs.say("the reply")
    # The peer's reply is the first news the starter's other socket hears: nothing of its own.
    first = await next_stream_frame(watching)
    assert first == {"type": "notify", "room": dm, "message": reply}
    activity = await next_stream_frame(watching)
    assert activity == {"type": "activity", "room": dm, "last_id": reply["id"], "unread": 1, "mentions": 0}


async def test_a_public_room_one_opens_oneself_is_announced_by_no_frame_but_then_counted(chat: Chat) -> None:
    """A Part I client (one socket a room, knowing nothing of the stream) that opens a
    second room and writes there hears nothing new on its first socket; another user's
    message there is news as usual."""
    user, other = await chat.user(), await chat.user()
    first, second = unique("first-"), unique("second-")
    there = await chat.open(user, first)
    here = await chat.open(user, second)
    await here.say("my own room now")
    assert await stream_frames(there, 2.0) == []
    reply = await (await chat.open(other, second)).say("and mine")
    activity = await next_stream_frame(there)
    assert activity == {"type": "activity", "room": second, "last_id": reply["id"], "unread": 1, "mentions": 0}


async def test_a_burst_of_20_messages_gives_at_most_2_activity_frames_per_connection_and_the_last_is_right(
    chat: Chat,
) -> None:
    reader, writer = await chat.user(), await chat.user()
    busy, quiet = unique("busy-"), unique("quiet-")
    await member_of(chat, reader, busy)
    sockets = [
        await chat.open(reader, quiet),
        await chat.open(reader, quiet, query="batch=1"),
        await chat.open(reader, unique("third-")),
    ]
    talking = await chat.open(writer, busy)
    started = time.monotonic()
    said = [await talking.say(f"burst {i}" + (f" @{reader.name}" if i % 5 == 0 else "")) for i in range(20)]
    burst = time.monotonic() - started
    assert burst < 1.0, f"the burst took {burst:.2f} s: not one second's worth"
    mentioning = [m for m in said if m.get("mentions") == [reader.id]]
    assert len(mentioning) == 4
    for conn in sockets:
        frames = await stream_frames(conn, 2.5)
        activity = [f for f in frames if f["type"] == "activity" and f["room"] == busy]
        assert 1 <= len(activity) <= 2, activity
        last = {"type": "activity", "room": busy, "last_id": said[-1]["id"], "unread": 20, "mentions": 4}
        assert activity[-1] == last
        assert [f for f in frames if f["type"] == "notify"] == [
            {"type": "notify", "room": busy, "message": m} for m in mentioning
        ], "a notify for each mention, none for the rest"
    listed = {r["name"]: r for r in (await reader.http.get("/api/rooms")).json()["rooms"]}
    assert (listed[busy]["last_id"], listed[busy]["unread"], listed[busy]["mentions"]) == (said[-1]["id"], 20, 4)


async def test_a_socket_hears_no_activity_of_its_own_room(chat: Chat) -> None:
    reader, writer = await chat.user(), await chat.user()
    room, other = unique("own-"), unique("other-")
    await member_of(chat, reader, room, other)
    inside = await chat.open(reader, room)
    talking = await chat.open(writer, room)
    await talking.say("in the room you have open")
    elsewhere = await chat.open(writer, other)
    await elsewhere.say("in another of your rooms")
    # The other room's activity comes, and nothing of its own room with it or before.
    heard = await until_stream(inside, "activity", other)
    heard += await stream_frames(inside, 1.5)
    assert [f["room"] for f in heard] == [other], heard


async def test_an_invited_member_hears_the_room_and_a_removed_one_nothing_more(chat: Chat) -> None:
    room, owner, _ = await private_room(chat, messages=0)
    invited = await chat.user()
    sentinel = unique("sentinel-")
    await member_of(chat, invited, sentinel)
    watching = await chat.open(invited, unique("else-"))
    added = await owner.http.post(f"/api/rooms/{room}/members", json={"name": invited.name})
    assert added.status_code == 201, added.text
    inside = await chat.open(owner, room)
    first = await inside.say("welcome")
    frames = await activity_through(watching, room, first["id"])
    assert frames[-1] == {"type": "activity", "room": room, "last_id": first["id"], "unread": 1, "mentions": 0}

    removed = await owner.http.delete(f"/api/rooms/{room}/members/{invited.id}")
    assert removed.status_code == 204
    for i in range(5):
        await inside.say(f"after the removal {i}")
    talking = await chat.open(owner, sentinel)
    await talking.say("the sentinel")
    # The private room's activity would leave with the sentinel room's or before it.
    heard = await until_stream(watching, "activity", sentinel)
    heard += await stream_frames(watching, 1.5)
    assert [f for f in heard if f["room"] == room] == [], heard


async def test_an_outsider_never_hears_a_private_rooms_activity(chat: Chat) -> None:
    room, owner, member = await private_room(chat, messages=0)
    outsider = await chat.user()
    sentinel = unique("sentinel-")
    await member_of(chat, outsider, sentinel)
    member_socket = await chat.open(member, unique("else-"))
    outsider_socket = await chat.open(outsider, unique("else-"))
    inside = await chat.open(owner, room)
    for i in range(5):
        await inside.say(f"members only {i} @{outsider.name}")
    talking = await chat.open(owner, sentinel)
    await talking.say("the sentinel")
    heard_by_member = [f for f in await stream_frames(member_socket, 2.5) if f["room"] == room]
    assert heard_by_member[-1]["unread"] == 5, heard_by_member
    heard = await until_stream(outsider_socket, "activity", sentinel)
    heard += await stream_frames(outsider_socket, 1.5)
    assert [f for f in heard if f["room"] == room] == [], "mentioned or not, an outsider hears nothing"


async def test_on_two_instances_with_redis_the_socket_on_the_other_one_gets_activity_and_notify(
    start_server: StartServer, tmp_path: Path, postgres_url: str, redis_server: RedisServer
) -> None:
    first, second = instances(start_server, tmp_path, postgres_url, redis_server.url)
    one, two = Chat(first), Chat(second)
    try:
        dm, starter, peer = await dm_room(one, messages=0)
        room = unique("public-")
        await member_of(one, peer, room)
        watching = await two.open(two.again(peer), unique("else-"))
        talking = await one.open(starter, room)
        said = [await talking.say(f"public {i}") for i in range(3)]
        assert (await activity_through(watching, room, said[-1]["id"]))[-1] == {
            "type": "activity",
            "room": room,
            "last_id": said[-1]["id"],
            "unread": 3,
            "mentions": 0,
        }
        direct = await one.open(starter, dm)
        sent = await direct.say("across instances")
        frames = await until_stream(watching, "notify", dm)
        assert frames[-1] == {"type": "notify", "room": dm, "message": sent}
        mention = await talking.say(f"and a mention of @{peer.name}")
        frames = await until_stream(watching, "notify", room)
        assert frames[-1] == {"type": "notify", "room": room, "message": mention}
        assert mention["mentions"] == [peer.id]
        frames = await activity_through(watching, room, mention["id"])
        assert frames[-1]["unread"] == 4 and frames[-1]["mentions"] == 1
        # A membership made on the first instance reaches the second's stream too.
        private, owner, _ = await private_room(one, messages=0)
        added = await owner.http.post(f"/api/rooms/{private}/members", json={"name": peer.name})
        assert added.status_code == 201
        inside = await one.open(owner, private)
        secret = await inside.say("invited across instances")
        frames = await activity_through(watching, private, secret["id"])
        assert frames[-1]["last_id"] == secret["id"] and frames[-1]["unread"] == 1
    finally:
        await asyncio.gather(one.aclose(), two.aclose())


async def test_reading_part_of_a_room_in_one_tab_gives_the_other_tabs_the_count_left(chat: Chat) -> None:
    reader, writer = await chat.user(), await chat.user()
    room = unique("read-")
    await member_of(chat, reader, room)
    other_tab = await chat.open(reader, unique("else-"))
    talking = await chat.open(writer, room)
    said = [await talking.say(f"line {i}" + (f" @{reader.name}" if i == 4 else "")) for i in range(5)]
    last = (await activity_through(other_tab, room, said[-1]["id"]))[-1]
    assert (last["unread"], last["mentions"]) == (5, 1)
    reading_tab = await chat.open(reader, room)
    await reading_tab.send_json({"type": "read", "id": said[2]["id"]})
    frames = await activity_through(other_tab, room, said[-1]["id"])
    while (frames[-1]["unread"], frames[-1]["mentions"]) == (5, 1):
        frames = await activity_through(other_tab, room, said[-1]["id"])
    assert frames[-1] == {"type": "activity", "room": room, "last_id": said[-1]["id"], "unread": 2, "mentions": 1}
    await reading_tab.send_json({"type": "read", "id": said[-1]["id"]})
    frames = await activity_through(other_tab, room, said[-1]["id"])
    assert frames[-1]["unread"] == 0 and frames[-1]["mentions"] == 0


async def test_a_bot_token_limited_to_rooms_hears_the_stream_of_those_rooms_alone(chat: Chat) -> None:
    """A token made with `--room` may use its rooms alone (access.py): its socket hears
    activity, notify and read of its other allowed room, and nothing — no activity, no
    notify, no read — of the user's private room or DM (security.md, "bot tokens")."""
    owner, friend = await chat.user(), await chat.user()
    private = unique("secret-")
    assert (await owner.http.post("/api/rooms", json={"name": private, "private": True})).status_code == 201
    assert (await owner.http.post(f"/api/rooms/{private}/members", json={"name": friend.name})).status_code == 201
    opened = await friend.http.post("/api/dm", json={"name": owner.name})
    assert opened.status_code == 200, opened.text
    dm = str(opened.json()["room"]["name"])
    bots, allowed = unique("bots-"), unique("allowed-")
    await member_of(chat, owner, bots, allowed)
    token = await chat.bot(owner, bots, allowed)
    limited = await chat.open(token, bots)
    tab = await chat.open(owner, unique("tab-"))  # the same user on a session: hears it all
    await asyncio.sleep(1.5)  # both streams have read the user's counts
    speaker = await chat.open(friend, private)
    secret = await speaker.say(f"@{owner.name} the launch code is 0000")
    in_dm = await (await chat.open(friend, dm)).say("between us")
    in_allowed = await (await chat.open(friend, allowed)).say(f"@{owner.name} for the bot")
    # The session's tab hears all three rooms; the token's socket, its allowed room alone.
    wanted = {private: secret["id"], dm: in_dm["id"], allowed: in_allowed["id"]}
    while wanted:  # in whatever order they come
        frame = await next_stream_frame(tab)
        if frame["type"] == "activity" and frame["last_id"] >= wanted.get(frame["room"], 1 << 62):
            del wanted[frame["room"]]
    reading = await chat.open(owner, private)
    await reading.send_json({"type": "read", "id": secret["id"]})
    reading_allowed = await chat.open(owner, allowed)
    await reading_allowed.send_json({"type": "read", "id": in_allowed["id"]})
    heard: list[dict[str, Any]] = []
    try:
        while not any(f["type"] == "read" and f["room"] == allowed for f in heard):
            frame = await limited.recv(timeout=5)
            if frame["type"] not in ("join", "left", "list"):
                heard.append(frame)
        heard += await stream_frames(limited, 1.5)
    except TimeoutError:
        pass
    kinds = {(f["type"], f["room"]) for f in heard}
    assert {("notify", allowed), ("activity", allowed), ("read", allowed)} <= kinds, heard
    assert not [f for f in heard if f.get("room") in (private, dm)], heard


async def test_a_member_removed_while_redis_was_down_hears_nothing_more_on_the_other_instance(
    start_server: StartServer, tmp_path: Path, postgres_url: str, redis_server: RedisServer
) -> None:
    """The removal's Revoked cannot be published while Redis is down (the outbox drops
    it), so the second instance never hears of it: its Resync, once Redis is back,
    reads the private room's members and closes the removed member's socket there with
    4003; its other socket hears nothing more of the room."""
    first, second = instances(start_server, tmp_path, postgres_url, redis_server.url)
    one, two = Chat(first), Chat(second)
    try:
        private, owner, member = await private_room(one, messages=0)
        removed = two.again(member)
        inside = await two.open(removed, private)
        elsewhere = await two.open(removed, unique("else-"))
        talking = await one.open(owner, private)
        first_said = await talking.say(f"before, @{member.name}")
        assert (await inside.expect("chat"))["id"] == first_said["id"]
        await until_stream(elsewhere, "notify", private)
        await activity_through(elsewhere, private, first_said["id"])  # all it hears before
        redis_server.stop()
        answer = await owner.http.delete(f"/api/rooms/{private}/members/{member.id}")
        assert answer.status_code == 204, answer.text
        redis_server.start()
        closed = None
        deadline = time.monotonic() + 20
        while closed is None and time.monotonic() < deadline:
            try:
                frame = await inside.recv(timeout=1)
            except TimeoutError:
                continue
            except Exception:  # the close
                closed = inside.ws.close_code
                break
            assert frame["type"] in ("join", "left", "list"), f"the removed member heard {frame}"
        assert closed == 4003, "the removed member's socket stayed open on the other instance"
        later = await talking.say(f"after, @{member.name}")
        heard = await stream_frames(elsewhere, 2.0)
        assert not [f for f in heard if f.get("room") == private], (later, heard)
    finally:
        await asyncio.gather(one.aclose(), two.aclose())


async def test_a_message_sent_once_a_removal_is_answered_never_reaches_the_removed_on_the_other_instance(
    start_server: StartServer, tmp_path: Path, postgres_url: str, redis_server: RedisServer
) -> None:
    """The removal is answered once Redis has its Revoked (hub.revoke_published), so a
    message the owner sends after the answer, committed on the first instance, reaches
    the second after the Revoked: the removed member's sockets there, on the room and
    elsewhere, get nothing of it. Five members removed in turn, each followed at once
    by a mention of them."""
    first, second = instances(start_server, tmp_path, postgres_url, redis_server.url)
    one, two = Chat(first), Chat(second)
    try:
        private, owner, _ = await private_room(one, messages=0)
        members = [await one.user() for _ in range(5)]
        for member in members:
            added = await owner.http.post(f"/api/rooms/{private}/members", json={"name": member.name})
            assert added.status_code == 201, added.text
        sockets = []
        for member in members:
            again = two.again(member)
            sockets.append((await two.open(again, private), await two.open(again, unique("else-"))))
        talking = await one.open(owner, private)
        await asyncio.sleep(1.5)  # every stream has read its counts
        for member, (inside, elsewhere) in zip(members, sockets, strict=True):
            answer = await owner.http.delete(f"/api/rooms/{private}/members/{member.id}")
            assert answer.status_code == 204, answer.text
            after = await talking.say(f"after the removal, @{member.name}")
            heard: list[dict[str, Any]] = []
            with contextlib.suppress(Exception):  # the close ends it
                while True:
                    heard.append(await inside.recv(timeout=3))
            assert inside.ws.close_code == 4003
            assert not [f for f in heard if f.get("id") == after["id"]], heard
            late = await stream_frames(elsewhere, 0.5)
            assert not [f for f in late if f["type"] == "notify" and f["message"]["id"] == after["id"]], late
    finally:
        await asyncio.gather(one.aclose(), two.aclose())
