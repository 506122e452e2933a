"""An attacker's review of this round's new doors (edit, delete, read, the per-user
stream, mentions): each test is an attack on a real server; a failing test is a finding
(see the attack branch's report), a passing one a door that held."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from quartchat.mentions import candidates

from ..integration.test_edits import send_delete, send_edit
from ..support import PASSWORD, Chat, Server, set_role, unique


async def test_a_demoted_admin_cannot_go_on_deleting_others_messages_over_an_open_socket(chat: Chat) -> None:
    """`admin` is read once, when the socket opens (ws.py `_serve(..., signed_in.role ==
    "admin")`), and `quartchat user role NAME member` ends no session: the demoted
    admin's open socket keeps deleting anyone's messages for as long as it stays open
    (the session's lifetime), while HTTP already refuses it."""
    author, admin = await chat.user(), await chat.user()
    await set_role(chat.server, author.id, "member")
    await set_role(chat.server, admin.id, "admin")
    room = unique("public-")
    writer = await chat.open(author, room)
    first, second = await writer.say("first"), await writer.say("second")
    socket = await chat.open(admin, room)
    await send_delete(socket, first["id"], "while-admin")
    assert (await socket.expect("delete"))["target"] == first["id"]

    await set_role(chat.server, admin.id, "member")
    export = await admin.http.get(f"/api/rooms/{room}/export", params={"include_edits": "1"})
    assert export.status_code == 403, "HTTP reads the role on every request"

    await send_delete(socket, second["id"], "after-demotion")
    try:
        reply = await socket.expect("error", timeout=5)
        assert reply["code"] == "forbidden", reply
    except AssertionError:
        history = (await chat.messages(author, room, limit=5))["messages"]
        gone = [m["id"] for m in history if m.get("deleted")]
        raise AssertionError(f"a member (demoted admin) deleted another's message: deleted ids {gone}") from None


HOSTILE_FRAMES: list[tuple[dict[str, Any], str]] = [
    ({"type": "edit", "id": 1, "data": "\ud800"}, "bad_request"),
    ({"type": "edit", "id": 1, "data": "a\x00b"}, "bad_request"),
    ({"type": "edit", "id": -1, "data": "x"}, "bad_request"),
    ({"type": "edit", "id": 2**63, "data": "x"}, "bad_request"),
    ({"type": "edit", "id": 2**64 + 5, "data": "x"}, "bad_request"),
    ({"type": "edit", "id": 1.5, "data": "x"}, "bad_request"),
    ({"type": "edit", "id": True, "data": "x"}, "bad_request"),
    ({"type": "edit", "id": "1", "data": "x"}, "bad_request"),
    ({"type": "edit", "id": 1, "data": "x" * 70_000}, "too_long"),
    ({"type": "delete", "id": None}, "bad_request"),
    ({"type": "delete", "id": [1]}, "bad_request"),
    ({"type": "delete", "id": 1, "client_id": "\ud800"}, "bad_request"),
    ({"type": "delete", "id": 1, "client_id": "x" * 65}, "bad_request"),
    ({"type": "read", "id": -5}, "bad_request"),
    ({"type": "read", "id": 2**70}, "bad_request"),
    ({"type": "read", "id": "9"}, "bad_request"),
    ({"type": "read", "id": 1e308}, "bad_request"),
]


@pytest.mark.parametrize(("frame", "code"), HOSTILE_FRAMES)
async def test_hostile_edit_delete_and_read_frames_get_a_clear_error_and_lose_nothing(
    chat: Chat, server: Server, frame: dict[str, Any], code: str
) -> None:
    user = await chat.user()
    socket = await chat.open(user, unique("hostile-"))
    mine = await socket.say("kept")
    if frame["type"] in ("edit", "delete") and type(frame.get("id")) is int and frame["id"] == 1:
        frame = {**frame, "id": mine["id"]}
    if len(str(frame.get("data", ""))) > 60_000:  # over the 64 KiB frame: the socket closes 1009
        await socket.send_json(frame)
        assert await socket.close_code() == 1009
    else:
        await socket.send_json(frame)
        if frame["type"] == "read":
            # A read is answered by nothing when it is good; by an error when not.
            try:
                reply = await socket.expect("error", timeout=3)
            except TimeoutError:
                pytest.fail(f"a bad read frame {frame} got no error")
        else:
            reply = await socket.expect("error")
        assert reply["code"] == code, reply
        assert (await socket.say("still here"))["data"] == "still here"
    history = await chat.messages(user, socket.history["room"] if "room" in socket.history else mine["room"])
    assert any(m["id"] == mine["id"] and m["data"] == "kept" for m in history["messages"])
    assert "Traceback" not in server.log()


def test_mentions_cost_per_message_is_bounded_for_hostile_texts() -> None:
    """candidates() runs in the writer's transaction (writes._insert -> find_mentions),
    i.e. under SQLite's write lock: a hostile 4,000-character text should cost about what
    an ordinary one of the same length does."""

    def cost(text: str) -> float:
        start = time.perf_counter()
        for _ in range(20):
            candidates(text)
        return (time.perf_counter() - start) / 20

    ordinary = cost(("hello @bob how are you today? " * 200)[:4000])
    hostile = {
        "long runs, no name": cost(("@" + "a" * 33 + " a" * 47 + "!") * 40),
        "decomposed": cost(("@" + "a\u0301" * 17 + " a\u0301" * 30 + "!") * 40),
        "ligatures": cost(("@" + "\ufdfa" * 128 + " ") * 40),
    }
    worst = max(hostile.values())
    assert worst < 10 * ordinary, f"ordinary {ordinary * 1e3:.2f} ms, hostile {hostile} (s)"


async def _event_reply(conn: Any) -> str:
    while True:
        frame = await conn.recv(timeout=20)
        if frame["type"] == "error" or (frame["type"] == "delete" and frame.get("client_id")):
            return str(frame["type"])


async def test_100_concurrent_deletes_of_one_message_store_one(chat: Chat) -> None:
    """One author, 100 sockets racing to delete one message: exactly one delete event."""
    author = await chat.user()
    room = unique("race-")
    first = await chat.open(author, room)
    target = await first.say("to delete")
    sockets = [first] + [await chat.open(author, room) for _ in range(99)]
    await asyncio.gather(*(send_delete(s, target["id"], f"d-{i}") for i, s in enumerate(sockets)))
    kinds = await asyncio.gather(*(_event_reply(s) for s in sockets))
    assert kinds.count("delete") >= 1
    page = await chat.messages(author, room, after=target["id"] - 1, limit=200)
    deletes = [m for m in page["messages"] if m["type"] == "delete"]
    assert len(deletes) == 1, deletes


async def test_an_edit_cannot_smuggle_a_mention_notify_of_another_room(chat: Chat) -> None:
    """An edit's mentions are stored (messages.mentions) but the stream notifies chats
    only: an edit adding `@victim` sends no notify, and none to a non-member."""
    author, victim = await chat.user(), await chat.user()
    room = unique("priv-")
    assert (await author.http.post("/api/rooms", json={"name": room, "private": True})).status_code == 201
    listener = await chat.open(victim, unique("lobby-"))
    socket = await chat.open(author, room)
    message = await socket.say("hello")
    await send_edit(socket, message["id"], f"hello @{victim.name}")
    await socket.expect("edit")
    await socket.say(f"@{victim.name} secret")
    try:
        frame = await listener.recv(timeout=2.5)
        while frame["type"] in ("join", "left"):
            frame = await listener.recv(timeout=2.5)
        pytest.fail(f"a non-member heard of a private room: {frame}")
    except TimeoutError:
        pass


async def test_a_bot_token_limited_to_one_room_hears_nothing_of_the_users_other_rooms(chat: Chat) -> None:
    """A token made with `quartchat token create NAME --room bots` may read #bots alone
    (access.py: token_rooms). The per-user stream follows the *user* (user_stream.py,
    by connection.user.id): the token's socket in #bots gets `activity` and `notify`
    (a whole message, text included) of the user's private rooms and DMs."""
    owner, friend = await chat.user(), await chat.user()
    private = unique("secret-")
    assert (await owner.http.post("/api/rooms", json={"name": private, "private": True})).status_code == 201
    assert (await owner.http.post(f"/api/rooms/{private}/members", json={"name": friend.name})).status_code == 201
    bots = unique("bots-")
    token = await chat.bot(owner, bots)
    assert (await token.http.get(f"/api/rooms/{private}/messages")).status_code in (403, 404)
    limited = await chat.open(token, bots)
    await asyncio.sleep(1.5)  # the stream has read the user's counts
    speaker = await chat.open(friend, private)
    await speaker.say(f"@{owner.name} the launch code is 0000")
    heard: list[dict[str, Any]] = []
    try:
        while True:
            frame = await limited.recv(timeout=3)
            if frame["type"] not in ("join", "left"):
                heard.append(frame)
    except TimeoutError:
        pass
    leaked = [f for f in heard if f.get("room") == private]
    assert not leaked, f"a token limited to #{bots} heard of #{private}: {leaked}"


async def test_search_finds_neither_an_edited_away_nor_a_deleted_text(chat: Chat) -> None:
    author = await chat.user()
    room = unique("erase-")
    socket = await chat.open(author, room)
    word = unique("zebracorn")
    edited = await socket.say(f"{word} before the edit")
    deleted = await socket.say(f"{word} then deleted")
    await send_edit(socket, edited["id"], "nothing to see")
    await socket.expect("edit")
    await send_delete(socket, deleted["id"])
    await socket.expect("delete")
    found = await author.http.get("/api/search", params={"q": word})
    assert found.status_code == 200, found.text
    assert word not in found.text, found.text
    after = (await chat.messages(author, room, after=0, limit=200))["messages"]
    assert all(word not in str(m.get("data", "")) for m in after), after


@pytest.mark.parametrize(
    "look_alike",
    [
        lambda n: n.translate({ord(c): ord(c) + 0xFEE0 for c in "abcdefghijklmnopqrstuvwxyz0123456789"}),  # fullwidth
        # Cyrillic o, a, e for the Latin ones. (Not Cyrillic u for u: it reads as y, and a name of
        # Cyrillic letters and digits alone would be a name of its own, `yeoa…`; a name
        # mixing the two scripts is refused, tests/test_accounts.py.)
        lambda n: n.replace("o", "\u043e").replace("a", "\u0430").replace("e", "\u0435"),
    ],
    ids=["fullwidth", "cyrillic"],
)
async def test_a_look_alike_name_cannot_be_taken_and_steal_mentions(chat: Chat, look_alike: Any) -> None:
    """Names are the same by NFC + case folding (quartchat/names.py): a fullwidth copy
    of a name, or one with Cyrillic o/a/e/u for the Latin ones, is another account, shown
    alike on the page, and `@` it mentions (notifies) the impostor, not the person meant."""
    victim = await chat.user(unique("ueoa"))
    copy = look_alike(victim.name)
    assert copy != victim.name
    client = chat.http()
    # Another password: sign-up folds the fullwidth copy (NFKC) into the victim's own
    # name, so the victim's password would rightly sign in as the victim, no impostor.
    answer = await client.post("/api/session", json={"name": copy, "password": PASSWORD + " not the victim's"})
    assert answer.status_code != 200, f"{copy!r} was signed up beside {victim.name!r}"
    assert answer.status_code in (401, 422), answer.text
