"""docs/protocol.md §2-§9 against a real Hypercorn server: opening, fan-out, order, errors, limits."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus

from ..conftest import StartServer
from ..support import Chat, Conn, User, unique, until

TS = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z"


async def flood(conn: Conn, count: int, tag: str, pause: float = 0.0) -> list[dict[str, Any]]:
    """Send `count` messages (`pause` seconds apart) without waiting while reading; the
    sender's own, as stored."""

    async def send() -> None:
        for i in range(count):
            await conn.send_json({"type": "chat", "data": f"{tag} {i}", "client_id": f"{tag}-{i}"})
            if pause:
                await asyncio.sleep(pause)

    async def collect() -> list[dict[str, Any]]:
        own: list[dict[str, Any]] = []
        while len(own) < count:
            frame = await conn.expect("chat", timeout=30)
            if frame.get("client_id", "").startswith(f"{tag}-"):
                own.append(frame)
        return own

    return (await asyncio.gather(send(), collect()))[1]


# Opening -----------------------------------------------------------------------


async def test_opening_sends_history_then_list_then_join_and_nothing_before(chat: Chat) -> None:
    room = unique("open-")
    user = await chat.user()
    conn = await chat.connect(user, room)
    frames = [await conn.recv() for _ in range(3)]
    assert [f["type"] for f in frames] == ["history", "list", "join"]
    assert frames[0] == {
        "type": "history",
        "room": room,
        "messages": [],
        "has_more": False,
        "reset": False,
        "last_read_id": 0,
    }
    assert frames[1] == {"type": "list", "room": room, "data": [user.ref]}
    assert frames[2]["user"] == user.ref and re.fullmatch(TS, frames[2]["ts"])


async def test_foreign_origin_is_refused_with_403_before_the_upgrade(chat: Chat) -> None:
    user = await chat.user()
    with pytest.raises(InvalidStatus) as refused:
        await chat.connect(user, unique("o-"), origin="http://evil.example")
    assert refused.value.response.status_code == 403


async def test_allowed_origins_setting_admits_a_listed_origin(start_server: StartServer) -> None:
    server = start_server(allowed_origins="https://chat.example.org")
    chat = Chat(server)
    try:
        user = await chat.user()
        conn = await chat.connect(user, unique("o-"), origin="https://chat.example.org")
        assert (await conn.recv())["type"] == "history"
        with pytest.raises(InvalidStatus):
            await chat.connect(user, unique("o-"), origin="https://other.example.org")
    finally:
        await chat.aclose()


async def test_no_session_closes_4001_and_session_is_checked_before_room(chat: Chat) -> None:
    conn = await chat.connect(None, "Not_A_Room")
    assert await conn.close_code() == 4001


async def test_invalid_room_closes_4004(chat: Chat) -> None:
    conn = await chat.connect(await chat.user(), "Bad.Room")
    assert await conn.close_code() == 4004


async def test_signed_out_session_can_no_longer_open_a_socket(chat: Chat) -> None:
    user = await chat.user()
    cookie = user.cookie
    assert (await user.http.delete("/api/session")).status_code == 204
    conn = await chat.connect(None, unique("out-"), cookie=cookie)
    assert await conn.close_code() == 4001, "the old cookie must not work after sign-out"


# Fan-out ---------------------------------------------------------------------------


async def test_two_users_chat_and_another_room_sees_nothing(chat: Chat) -> None:
    room, elsewhere = unique("two-"), unique("two-")
    alice, bob, carol = await chat.user(), await chat.user(), await chat.user()
    a = await chat.open(alice, room)
    b = await chat.open(bob, room)
    c = await chat.open(carol, elsewhere)
    hello = await a.say("hello bob")
    assert await b.expect("chat") == hello
    reply = await b.say("hi alice")
    assert await a.expect("chat") == reply
    own = await c.say("anyone?")
    assert own["room"] == elsewhere, "the other room's messages never reached carol"


async def test_concurrent_senders_every_client_sees_one_increasing_sequence(chat: Chat) -> None:
    room = unique("conc-")
    senders = [await chat.open(await chat.user(), room) for _ in range(4)]
    listeners = [await chat.open(await chat.user(), room) for _ in range(2)]
    await asyncio.gather(*(flood(conn, 50, f"s{i}") for i, conn in enumerate(senders)))
    views = [await conn.chats(200) for conn in listeners]
    ids = [m["id"] for m in views[0]]
    assert ids == sorted(ids) and len(set(ids)) == 200
    assert views[1] == views[0]
    assert await chat.all_messages(await chat.user(), room) == views[0]


async def test_batch_frames_carry_queued_messages_in_id_order(chat: Chat) -> None:
    room = unique("batch-")
    sender = await chat.open(await chat.user(), room)
    reader = await chat.open(await chat.user(), room, query="batch=1")
    await flood(sender, 300, "b")
    raw_frames = []
    seen: list[int] = []
    while len(seen) < 300:
        frame = json.loads(await asyncio.wait_for(reader.ws.recv(), 10))
        raw_frames.append(frame["type"])
        if frame["type"] == "batch":
            seen.extend(m["id"] for m in frame["messages"])
        elif frame["type"] == "chat":
            seen.append(frame["id"])
    assert seen == sorted(seen) and len(set(seen)) == 300
    assert "batch" in raw_frames, "300 queued messages were sent one frame each"


async def test_without_batch_every_message_is_its_own_frame(chat: Chat) -> None:
    room = unique("nobatch-")
    sender = await chat.open(await chat.user(), room)
    reader = await chat.open(await chat.user(), room)
    await flood(sender, 100, "n")
    kinds = set()
    count = 0
    while count < 100:
        frame = json.loads(await asyncio.wait_for(reader.ws.recv(), 10))
        kinds.add(frame["type"])
        count += frame["type"] == "chat"
    assert "batch" not in kinds


# Resume and joining ------------------------------------------------------------


async def test_refresh_gets_history_then_list_and_after_gets_exactly_the_missed(chat: Chat) -> None:
    room = unique("refresh-")
    user = await chat.user()
    first = await chat.open(user, room)
    seen = [await first.say(f"m{i}") for i in range(3)]
    await first.ws.close()
    other = await chat.open(await chat.user(), room)
    missed = [await other.say(f"missed {i}") for i in range(4)]
    refreshed = await chat.open(user, room)
    assert refreshed.history["messages"] == seen + missed
    resumed = await chat.open(user, room, query=f"after={seen[-1]['id']}")
    assert resumed.history["messages"] == missed and resumed.history["reset"] is False


@pytest.mark.parametrize("said", [3, 0])
async def test_a_resume_past_the_rooms_end_resets_to_the_newest_and_then_delivers_new_messages(
    chat: Chat, said: int
) -> None:
    room = unique("past-")
    alice, bob = await chat.user(), await chat.user()
    speaker = await chat.open(alice, room)
    kept = [await speaker.say(f"kept {i}") for i in range(said)]
    beyond = (kept[-1]["id"] if kept else 0) + 1000  # e.g. a view from before a backup was restored
    resumed = await chat.open(bob, room, query=f"after={beyond}")
    assert resumed.history["reset"] is True, resumed.history
    assert resumed.history["messages"] == kept
    new = await speaker.say("after the restore")
    assert new["id"] <= beyond, "the case that went silent: a new id at or below the client's"
    assert await resumed.expect("chat") == new


async def test_a_resume_that_missed_more_than_a_thousand_resets_to_the_newest(chat: Chat) -> None:
    room = unique("reset-")
    reader, writer = await chat.user(), await chat.user()
    away = await chat.open(reader, room)
    last_seen = await away.say("the last one the reader saw")
    await away.ws.close()
    talker = await chat.open(writer, room)
    missed = await flood(talker, 1001, "gone")
    assert [m["id"] for m in missed] == sorted(m["id"] for m in missed)
    # 1,001 missed: more than a resume replays, so the client starts again from the newest.
    resumed = await chat.open(reader, room, query=f"after={last_seen['id']}")
    assert resumed.history["reset"] is True and resumed.history["has_more"] is True
    assert resumed.history["messages"] == missed[-50:], "the newest HISTORY_LIMIT (50), oldest first"
    # Exactly 1,000 missed: still a plain resume, every one of them.
    exact = await chat.open(reader, room, query=f"after={missed[0]['id']}")
    assert exact.history["reset"] is False and exact.history["messages"] == missed[1:]


async def test_joining_during_a_burst_sees_every_message_exactly_once(chat: Chat) -> None:
    room = unique("seam-")
    senders = [await chat.open(await chat.user(), room) for _ in range(3)]
    # Everything a join needs is ready before the burst (a sign-up hashes a password
    # for long enough that the burst would be over), and each join waits for the burst
    # to reach its point: 8 joins spread over it.
    joining_users = [await chat.user() for _ in range(8)]
    observer_user = await chat.user()
    observer = await chat.open(observer_user, room)
    total = 3 * 150
    observed: list[dict[str, Any]] = []
    joiners: list[tuple[Conn, list[dict[str, Any]]]] = []

    async def observe() -> None:
        while len(observed) < total:
            observed.append(await observer.expect("chat", timeout=30))

    async def join_during_the_burst(number: int, user: User) -> None:
        await until(lambda: len(observed) >= number * total // 10, "the burst going on", timeout=30)
        conn = await chat.open(user, room)
        joiners.append((conn, list(conn.history["messages"])))

    await asyncio.gather(
        observe(),
        *(join_during_the_burst(number, user) for number, user in enumerate(joining_users, start=1)),
        *(flood(c, total // 3, f"j{i}", pause=0.005) for i, c in enumerate(senders)),
    )
    stored = await chat.all_messages(observer_user, room)
    assert len(stored) == total and observed == stored
    landed_mid_burst = 0
    for conn, history in joiners:
        start = history[0]["id"] if history else stored[0]["id"]
        expected = [m for m in stored if m["id"] >= start]
        live = await conn.chats(len(expected) - len(history))
        assert history + live == expected, "a seam between history and live messages"
        await conn.send_json({"type": "ping"})
        assert await conn.expect("pong") == {"type": "pong"}, "a message came twice"
        landed_mid_burst += bool(history) and bool(live)
    print(f"{landed_mid_burst} of {len(joiners)} joins landed mid-burst")
    assert landed_mid_burst >= 2, f"only {landed_mid_burst} of 8 joins landed mid-burst: the test proves no seam"


# Errors, limits, idempotency ---------------------------------------------------------


@pytest.mark.parametrize(
    "raw, code",
    [
        ("{not json", "bad_request"),
        ("[1, 2]", "bad_request"),
        ('{"type": "dance"}', "bad_request"),
        ('{"type": "chat", "data": 5}', "bad_request"),
        ('{"type": "chat", "data": "x", "client_id": ""}', "bad_request"),
        ('{"type": "chat", "data": "x", "client_id": "' + "c" * 65 + '"}', "bad_request"),
        ('{"type": "chat", "data": "nul \\u0000 byte"}', "bad_request"),
        ('{"type": "chat", "data": "' + "[" * 5000 + '"}', "too_long"),
        ("[" * 3000 + "]" * 3000, "bad_request"),
        ('{"type": "chat", "data": "x", "n": 1' + "0" * 400 + "}", "bad_request"),
        ('{"type": "chat", "data": "   \\n "}', "empty"),
        ('{"type": "chat", "data": "' + "y" * 4001 + '"}', "too_long"),
    ],
    ids=[
        "not-json",
        "array",
        "unknown-type",
        "data-int",
        "empty-client-id",
        "client-id-65",
        "nul",
        "long",
        "deep-nesting",
        "huge-number",
        "blank",
        "too-long",
    ],
)
async def test_every_error_code_goes_to_the_sender_alone_and_the_connection_stays_usable(
    chat: Chat, raw: str, code: str
) -> None:
    room = unique("err-")
    sender, listener = await chat.open(await chat.user(), room), await chat.open(await chat.user(), room)
    await sender.ws.send(raw)
    error = await sender.expect("error")
    assert error["code"] == code and isinstance(error["message"], str)
    marker = await sender.say("still usable")
    assert await listener.expect("chat") == marker
    assert [m["data"] for m in (await chat.messages((await chat.user()), room))["messages"]] == ["still usable"]


async def test_binary_frame_is_bad_request(chat: Chat) -> None:
    conn = await chat.open(await chat.user(), unique("bin-"))
    await conn.ws.send(b'{"type": "ping"}')
    assert (await conn.expect("error"))["code"] == "bad_request"
    await conn.ws.send(b"")  # empty: Quart hands it over as None (found by Hypothesis)
    assert (await conn.expect("error"))["code"] == "bad_request"
    await conn.send_json({"type": "ping"})
    assert await conn.expect("pong") == {"type": "pong"}


async def test_frame_over_64_kib_closes_1009(chat: Chat) -> None:
    conn = await chat.open(await chat.user(), unique("big-"), compression=None)
    await conn.ws.send(json.dumps({"type": "chat", "data": "x" * 66_000}))
    assert await conn.close_code() == 1009


async def test_same_client_id_is_stored_once_and_returned_to_the_sender_alone(chat: Chat) -> None:
    room = unique("idem-")
    alice, bob = await chat.user(), await chat.user()
    sender, listener = await chat.open(alice, room), await chat.open(bob, room)
    stored = await sender.say("once", client_id="k1")
    assert await listener.expect("chat") == stored
    again = await sender.say("once", client_id="k1")
    assert again == stored
    marker = await sender.say("next")
    assert await listener.expect("chat") == marker, "the retry was broadcast again"
    assert len((await chat.messages(alice, room))["messages"]) == 2


async def test_a_client_id_is_scoped_per_user_and_room(chat: Chat) -> None:
    here, there = unique("cid-"), unique("cid-")
    alice, bob = await chat.user(), await chat.user()
    a_here, a_there, b_there = await chat.open(alice, here), await chat.open(alice, there), await chat.open(bob, there)
    first = await a_here.say("in the first room", client_id="1")
    second = await a_there.say("in the second room", client_id="1")
    assert (second["room"], second["data"]) == (there, "in the second room"), "the other room's message came back"
    assert second["id"] != first["id"]
    assert await b_there.expect("chat") == second, "the new message was broadcast in its room"
    await a_there.send_json({"type": "chat", "data": "in the second room", "client_id": "1"})
    assert await a_there.expect("chat") == second, "a retry in the same room is still idempotent"
    marker = await a_here.say("marker")
    assert [m["data"] for m in (await chat.messages(alice, here))["messages"]] == ["in the first room", "marker"]
    assert [m["data"] for m in (await chat.messages(alice, there))["messages"]] == ["in the second room"]
    assert marker["room"] == here


async def test_rate_limit_is_per_user_and_room_and_a_flood_closes_1008(start_server: StartServer) -> None:
    chat = Chat(start_server(rate_limit="3/60"))
    try:
        room = unique("rate-")
        user = await chat.user()
        conn = await chat.open(user, room)
        for i in range(3):
            await conn.say(f"ok {i}")
        await conn.send_json({"type": "chat", "data": "too many", "client_id": "r4"})
        refused = await conn.expect("error")
        assert (refused["code"], refused["client_id"]) == ("rate_limited", "r4")
        second_tab = await chat.open(user, room)
        await second_tab.send_json({"type": "chat", "data": "other tab, same window"})
        assert (await second_tab.expect("error"))["code"] == "rate_limited"
        assert (await (await chat.open(user, unique("rate-"))).say("another room"))["data"] == "another room"
        for i in range(40):
            await conn.send_json({"type": "chat", "data": f"flood {i}"})
        assert await conn.close_code() == 1008
        assert len((await chat.messages(user, room))["messages"]) == 3
    finally:
        await chat.aclose()


async def test_ping_is_answered_with_pong(chat: Chat) -> None:
    conn = await chat.open(await chat.user(), unique("ping-"))
    await conn.send_json({"type": "ping"})
    assert await conn.expect("pong") == {"type": "pong"}


async def test_presence_join_first_tab_only_left_last_tab_only(chat: Chat) -> None:
    room = unique("pres-")
    watcher = await chat.open(await chat.user(), room)
    assert (await watcher.recv())["type"] == "join"
    user = await chat.user()
    first = await chat.open(user, room)
    assert (await watcher.recv())["type"] == "join"
    second = await chat.open(user, room)
    assert second.online == sorted([watcher.online[0], user.ref], key=lambda u: u["name"].casefold())
    await second.ws.close()
    # Once the server has let the second tab go, a wrong `left` would already be queued
    # for the watcher, ahead of the marker.
    await until(
        lambda: chat.server.log_path.read_text().count(f"websocket closed address=127.0.0.1 user={user.id} ") == 1,
        "the server closed the second tab",
    )
    marker = await first.say("still here")
    assert await watcher.recv() == marker
    await first.ws.close()
    left = await watcher.recv()
    assert (left["type"], left["user"]) == ("left", user.ref)
