"""Who may read what (docs/protocol.md §11), at every door, on a real server with real
clients: the identity x door matrix on a private room and a DM, invisibility byte for
byte, removal closing live sockets (one process and two workers), one DM however many
ask, and the room list."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed, InvalidStatus

from ..support import Chat, Server, User, disable, set_role, unique, until

REMOVAL_SECONDS = 2.0


@dataclass
class Scene:
    """A room with history, its members, and everyone else."""

    room: str
    kind: str
    identities: dict[str, User | None]  # None: signed out


async def private_room(chat: Chat, name: str | None = None, messages: int = 3) -> tuple[str, User, User]:
    """A private room made by an owner, with a member, and `messages` messages."""
    room = name or unique("priv-")
    owner, member = await chat.user(), await chat.user()
    made = await owner.http.post("/api/rooms", json={"name": room, "private": True})
    assert made.status_code == 201, made.text
    added = await owner.http.post(f"/api/rooms/{room}/members", json={"name": member.name})
    assert added.status_code == 201, added.text
    if messages:
        conn = await chat.open(owner, room)
        for i in range(messages):
            await conn.say(f"secret {i}")
        await conn.ws.close()
    return room, owner, member


async def dm_room(chat: Chat, messages: int = 3) -> tuple[str, User, User]:
    starter, peer = await chat.user(), await chat.user()
    opened = await starter.http.post("/api/dm", json={"name": peer.name})
    assert opened.status_code == 200, opened.text
    room = str(opened.json()["room"]["name"])
    if messages:
        conn = await chat.open(peer, room)
        for i in range(messages):
            await conn.say(f"between us {i}")
        await conn.ws.close()
    return room, starter, peer


async def scene(chat: Chat, kind: str) -> Scene:
    room, owner, member = await (private_room(chat) if kind == "private" else dm_room(chat))
    outsider, admin = await chat.user(), await chat.user()
    await set_role(chat.server, admin.id, "admin")
    identities: dict[str, User | None] = {
        "owner": owner,
        "member": member,
        "outsider": outsider,
        "admin": admin,
        # The member's own token, limited to another room: the token's limit, not the
        # user's membership, decides.
        "bot token limited to another room": await chat.bot(member, unique("elsewhere-")),
        "signed out": None,
    }
    return Scene(room, kind, identities)


# What each identity may do, and what every door answers for it. One row per identity.
ACCESS = {
    "owner": "allowed",
    "member": "allowed",
    "outsider": "invisible",
    "admin": "invisible",  # admins are outsiders too (only /api/export is theirs)
    "bot token limited to another room": "not allowed",  # 403 / 4003
    "signed out": "signed out",
}
ANSWERS: dict[str, dict[str, Any]] = {
    "allowed": {
        "open socket": "history",
        "send": "stored",
        "post": 201,  # POST /api/rooms/<room>/messages
        "history": 200,
        "paging": 200,
        "users": 200,
        "export": 200,
        "rooms list": "listed",
        "members": 200,
    },
    "invisible": {
        "open socket": 4004,
        "send": 4004,
        "post": 404,  # POST /api/rooms/<room>/messages
        "history": 404,
        "paging": 404,
        "users": 404,
        "export": 404,
        "rooms list": "absent",
        "members": 404,
    },
    "signed out": {
        "open socket": 4001,
        "send": 4001,
        "post": 401,  # POST /api/rooms/<room>/messages
        "history": 401,
        "paging": 401,
        "users": 401,
        "export": 401,
        "rooms list": 401,
        "members": 401,
    },
    "not allowed": {
        "open socket": 4003,
        "send": 4003,
        "post": 403,  # POST /api/rooms/<room>/messages
        "history": 403,
        "paging": 403,
        "users": 403,
        "export": 403,
        "rooms list": "absent",
        "members": 403,
    },
}


async def socket_outcome(chat: Chat, user: User | None, room: str, send: bool) -> object:
    """ "history" (or "stored" after a chat message), or the close code."""
    try:
        conn = await chat.connect(user, room)
        first = await conn.recv()
        if first["type"] != "history":
            return first["type"]
        if not send:
            await conn.ws.close()
            return "history"
        await conn.expect("list")
        text = unique("sent ")
        await conn.send_json({"type": "chat", "data": text})
        echoed = await conn.expect("chat")
        await conn.ws.close()
        return "stored" if echoed["data"] == text else echoed
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None
    except InvalidStatus as refused:
        return refused.response.status_code


async def doors(chat: Chat, user: User | None, room: str) -> dict[str, object]:
    """What each door answers `user` about `room`."""
    client = user.http if user is not None else chat.http()

    async def status(path: str, **params: Any) -> int:
        return (await client.get(path, params=params)).status_code

    listed = await client.get("/api/rooms")
    if listed.status_code == 200:
        names = {r["name"] for r in listed.json()["rooms"]}
        in_list: object = "listed" if room in names else "absent"
    else:
        in_list = listed.status_code
    return {
        "open socket": await socket_outcome(chat, user, room, send=False),
        "send": await socket_outcome(chat, user, room, send=True),
        "post": (await client.post(f"/api/rooms/{room}/messages", json={"data": unique("posted ")})).status_code,
        "history": await status(f"/api/rooms/{room}/messages"),
        "paging": await status(f"/api/rooms/{room}/messages", before=2, limit=1),
        "users": await status(f"/api/rooms/{room}/users"),
        "export": await status(f"/api/rooms/{room}/export", format="ndjson"),
        "rooms list": in_list,
        "members": await status(f"/api/rooms/{room}/members"),
    }


@pytest.mark.parametrize("kind", ["private", "dm"])
@pytest.mark.parametrize("identity", list(ACCESS))
async def test_every_door_answers_every_identity_as_section_11_says(chat: Chat, kind: str, identity: str) -> None:
    setting = await scene(chat, kind)
    seen = await doors(chat, setting.identities[identity], setting.room)
    assert seen == ANSWERS[ACCESS[identity]], f"{identity} on a {kind} room"


async def test_what_outsiders_could_not_send_was_not_stored_and_members_see_their_history(chat: Chat) -> None:
    room, owner, member = await private_room(chat, messages=0)
    outsider, admin = await chat.user(), await chat.user()
    await set_role(chat.server, admin.id, "admin")
    for user in (outsider, admin):
        assert await socket_outcome(chat, user, room, send=True) == 4004
    conn = await chat.open(member, room)
    await conn.say("hello owner")
    texts = [m["data"] for m in (await chat.messages(owner, room))["messages"]]
    assert texts == ["hello owner"]
    members = (await owner.http.get(f"/api/rooms/{room}/members")).json()["members"]
    assert sorted((m["id"], m["role"]) for m in members) == sorted([(owner.id, "owner"), (member.id, "member")])


async def test_an_outsider_cannot_tell_a_private_room_full_of_history_from_an_empty_one(chat: Chat) -> None:
    full, _, _ = await private_room(chat, messages=120)
    empty, _, _ = await private_room(chat, messages=0)
    dm_full, _, _ = await dm_room(chat, messages=50)
    never_made = "dm-" + "0123456789abcdef"  # a DM name no one has
    outsider = await chat.user()

    async def answers(room: str) -> list[tuple[object, ...]]:
        http = outsider.http
        got: list[tuple[object, ...]] = []
        for method, path, body in [
            ("GET", f"/api/rooms/{room}/messages", None),
            ("GET", f"/api/rooms/{room}/messages?before=100&limit=5", None),
            ("GET", f"/api/rooms/{room}/messages?after=1", None),
            ("GET", f"/api/rooms/{room}/users", None),
            ("GET", f"/api/rooms/{room}/members", None),
            ("GET", f"/api/rooms/{room}/export?format=csv", None),
            ("POST", f"/api/rooms/{room}/members", {"name": outsider.name}),
            ("DELETE", f"/api/rooms/{room}/members/{outsider.id}", None),
        ]:
            response = await http.request(method, path, json=body)
            got.append((method, path.replace(room, "ROOM"), response.status_code, response.content))
        try:
            conn = await chat.connect(outsider, room)
            await conn.recv()
            got.append(("socket", "opened"))
        except ConnectionClosed as closed:
            assert closed.rcvd is not None
            got.append(("socket", closed.rcvd.code, closed.rcvd.reason))
        return got

    reference = await answers(empty)
    assert reference[0][2] == 404 and reference[-1] == ("socket", 4004, "Invalid room")
    assert await answers(full) == reference
    assert await answers(dm_full) == reference
    assert await answers(never_made) == reference
    # The name is taken, and that is all an outsider learns.
    taken = await outsider.http.post("/api/rooms", json={"name": full, "private": False})
    assert taken.status_code == 409


async def test_the_room_list_shows_public_rooms_and_the_users_own_private_rooms_and_dms(chat: Chat) -> None:
    public = unique("pub-")
    room, owner, member = await private_room(chat, messages=1)
    dm, starter, peer = await dm_room(chat, messages=1)
    outsider = await chat.user()
    await (await chat.open(outsider, public)).say("public words")

    async def rooms(user: User) -> dict[str, dict[str, Any]]:
        response = await user.http.get("/api/rooms")
        assert response.status_code == 200
        return {r["name"]: r for r in response.json()["rooms"]}

    seen = await rooms(owner)
    assert seen[room]["kind"] == "private" and seen[room]["member"] is True and seen[room]["messages"] == 1
    assert seen[public]["kind"] == "public" and seen[public]["member"] is False
    assert dm not in seen
    assert (await rooms(outsider))[public]["member"] is True  # posting made it a member
    assert room not in await rooms(outsider) and dm not in await rooms(outsider)
    again = await starter.http.post("/api/dm", json={"name": peer.name})
    assert again.json()["room"] == {
        "name": dm,
        "kind": "dm",
        "member": True,
        "messages": 1,
        "last_id": again.json()["room"]["last_id"],
        "peer": peer.ref,
    }
    listed = (await rooms(starter))[dm]
    assert listed["kind"] == "dm" and listed["peer"] == peer.ref
    assert (await rooms(peer))[dm]["peer"] == starter.ref
    assert room in await rooms(member)
    # Opening an existing public room makes a member too, until it leaves.
    assert (await rooms(member))[public]["member"] is False
    watching = await chat.open(member, public)
    assert (await rooms(member))[public]["member"] is True
    assert (await member.http.delete(f"/api/rooms/{public}/members/{member.id}")).status_code == 204
    assert await watching.close_code() == 4003
    assert (await rooms(member))[public]["member"] is False


async def test_room_names_are_checked_and_taken_names_refused(chat: Chat) -> None:
    user = await chat.user()
    public = unique("pub-")
    await (await chat.open(user, public)).say("made by its first message")
    for name, status in [
        (public, 409),  # a public room made by its first message is taken too
        ("dm-0123456789abcdef", 422),  # DM names are POST /api/dm's alone
        ("Bad Name", 422),
        ("a" * 65, 422),
        ("x\x00y", 422),
        (12, 422),
    ]:
        response = await user.http.post("/api/rooms", json={"name": name, "private": True})
        assert response.status_code == status, (name, response.text)
    assert (await user.http.post("/api/rooms", json={"name": unique("p-"), "private": "yes"})).status_code == 422
    lone_surrogate = b'{"name": "x\\ud800y", "private": true}'
    headers = {"Content-Type": "application/json"}
    assert (await user.http.post("/api/rooms", content=lone_surrogate, headers=headers)).status_code == 422
    assert (
        await user.http.post("/api/dm", content=lone_surrogate.replace(b"x", b"y"), headers=headers)
    ).status_code == 404
    refused = await chat.connect(user, "dm-0123456789abcdef")  # no public room of a DM's name either
    with pytest.raises(ConnectionClosed) as closed:
        await refused.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4004
    made = await user.http.post("/api/rooms", json={"name": unique("open-"), "private": False})
    assert made.status_code == 201 and made.json()["room"]["kind"] == "public"


async def test_dm_requests_for_oneself_unknown_or_disabled_names_and_from_outside_are_refused(chat: Chat) -> None:
    user = await chat.user()
    assert (await user.http.post("/api/dm", json={"name": user.name})).status_code == 422
    unknown = await user.http.post("/api/dm", json={"name": unique("nobody-")})
    invalid = await user.http.post("/api/dm", json={"name": "\x00"})
    assert unknown.status_code == invalid.status_code == 404 and unknown.content == invalid.content
    gone = await chat.user()
    await disable(chat.server, gone.id)
    disabled = await user.http.post("/api/dm", json={"name": gone.name})
    assert disabled.status_code == 404 and disabled.content == unknown.content
    assert (await chat.http().post("/api/dm", json={"name": user.name})).status_code == 401
    cross_site = await user.http.post("/api/dm", json={"name": "x"}, headers={"Origin": "https://evil.example"})
    assert cross_site.status_code == 403


async def test_members_may_invite_to_a_private_room_but_not_to_a_dm_or_a_public_room(chat: Chat) -> None:
    room, owner, member = await private_room(chat, messages=0)
    guest = await chat.user()
    assert (await member.http.post(f"/api/rooms/{room}/members", json={"name": guest.name})).status_code == 201
    assert (await owner.http.post(f"/api/rooms/{room}/members", json={"name": guest.name})).status_code == 200
    assert (await chat.open(guest, room)).history["type"] == "history"
    dm, starter, _ = await dm_room(chat, messages=0)
    assert (await starter.http.post(f"/api/rooms/{dm}/members", json={"name": guest.name})).status_code == 403
    public = unique("pub-")
    await (await chat.open(owner, public)).say("hi")
    assert (await owner.http.post(f"/api/rooms/{public}/members", json={"name": guest.name})).status_code == 422
    # Removing others: the owner or an admin; a member may only leave.
    assert (await member.http.delete(f"/api/rooms/{room}/members/{guest.id}")).status_code == 403
    assert (await owner.http.delete(f"/api/rooms/{room}/members/{guest.id}")).status_code == 204
    assert (await owner.http.delete(f"/api/rooms/{room}/members/{guest.id}")).status_code == 404
    assert (await guest.http.get(f"/api/rooms/{room}/messages")).status_code == 404
    assert (await member.http.delete(f"/api/rooms/{room}/members/{member.id}")).status_code == 204
    assert (await member.http.get(f"/api/rooms/{room}/messages")).status_code == 404


async def test_the_whole_server_export_is_the_admins_and_covers_private_rooms(chat: Chat) -> None:
    room, owner, _ = await private_room(chat, messages=2)
    admin = await chat.user()
    await set_role(chat.server, admin.id, "admin")
    assert (await owner.http.get("/api/export", params={"format": "ndjson"})).status_code == 403
    assert (await chat.http().get("/api/export")).status_code == 401
    everything = await admin.http.get("/api/export", params={"format": "ndjson"})
    assert everything.status_code == 200 and f'"room":"{room}"' in everything.text.replace(" ", "")
    assert (await admin.http.get(f"/api/rooms/{room}/export")).status_code == 404


async def send_until_closed(conn: Any, tag: str) -> int:
    sent = 0
    try:
        while True:
            await conn.send_json({"type": "chat", "data": f"{tag} {sent}", "client_id": f"{tag}-{sent}"})
            sent += 1
            await asyncio.sleep(0.02)
    except ConnectionClosed:
        return sent


async def removal_closes_sockets(chat: Chat, remove: Callable[[str, User, User], Awaitable[int]]) -> None:
    """The removed user's sockets of the room close with 4003 within 2 s, its other
    rooms' stay open, and nothing it sent after the removal is stored."""
    room, owner, member = await private_room(chat, messages=0)
    elsewhere = unique("else-")
    conns = [await chat.open(member, room) for _ in range(8)]
    other = await chat.open(member, elsewhere)
    await conns[0].say("before")
    started = time.monotonic()
    assert await remove(room, owner, member) == 204
    late = asyncio.create_task(send_until_closed(conns[0], "after"))
    codes = await asyncio.gather(*(c.close_code(timeout=REMOVAL_SECONDS + 5) for c in conns))
    waited = time.monotonic() - started
    assert codes == [4003] * len(conns)
    assert waited <= REMOVAL_SECONDS, f"closed {waited:.1f} s after the removal"
    await late
    texts = [m["data"] for m in (await chat.messages(owner, room, limit=200))["messages"]]
    assert texts == ["before"], "a message sent after the removal was stored"
    assert (await other.say("still here"))["room"] == elsewhere
    again = await chat.connect(member, room)
    with pytest.raises(ConnectionClosed) as closed:
        await again.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4004


async def removed_by_owner(room: str, owner: User, member: User) -> int:
    return (await owner.http.delete(f"/api/rooms/{room}/members/{member.id}")).status_code


async def left(room: str, owner: User, member: User) -> int:
    return (await member.http.delete(f"/api/rooms/{room}/members/{member.id}")).status_code


@pytest.mark.parametrize("remove", [removed_by_owner, left], ids=["removed", "left"])
async def test_removal_closes_the_rooms_sockets_with_4003_within_2_s_and_stores_nothing_after(
    chat: Chat, remove: Callable[[str, User, User], Awaitable[int]]
) -> None:
    await removal_closes_sockets(chat, remove)


async def test_twenty_concurrent_dm_requests_from_both_users_make_one_room(chat: Chat) -> None:
    await concurrent_dms(chat)


async def concurrent_dms(chat: Chat) -> None:
    alice, bob = await chat.user(), await chat.user()
    requests = [
        (alice if i % 2 else bob).http.post("/api/dm", json={"name": (bob if i % 2 else alice).name}) for i in range(20)
    ]
    answers = await asyncio.gather(*requests)
    assert [a.status_code for a in answers] == [200] * 20, [a.text for a in answers if a.status_code != 200]
    names = {a.json()["room"]["name"] for a in answers}
    assert len(names) == 1
    (name,) = names
    assert len(name) == 19 and name.startswith("dm-") and all(c in "0123456789abcdef" for c in name[3:])
    members = (await alice.http.get(f"/api/rooms/{name}/members")).json()["members"]
    assert sorted(m["id"] for m in members) == sorted([alice.id, bob.id])
    dms = [r for r in (await bob.http.get("/api/rooms")).json()["rooms"] if r["kind"] == "dm"]
    assert [r["name"] for r in dms] == [name]


async def test_on_two_workers_removal_closes_the_sockets_on_both_and_dms_stay_one(two_workers: Server) -> None:
    chat = Chat(two_workers)
    try:
        await removal_closes_sockets(chat, removed_by_owner)
        closes = set(re.findall(r"\[(\d+)\] quartchat\.ws: websocket closed .* code=4003", two_workers.log()))
        assert len(closes) == 2, f"the sockets were all on one worker ({closes}): nothing crossed the broker"
        await concurrent_dms(chat)
    finally:
        await chat.aclose()


# Random sequences of invitations, departures, removals and messages -----------------

# Disabling is rarer: its sockets close within the 5 s of the periodic session check.
KINDS = ["invite"] * 3 + ["leave", "remove"] + ["send"] * 4 + ["disable"]
ACTIONS = st.lists(
    st.tuples(st.sampled_from(KINDS), st.integers(0, 2), st.integers(0, 2)),
    min_size=1,
    max_size=12,
)


@dataclass
class Listener:
    """One user's socket of the room: the ids of the chat messages it received live."""

    conn: Any
    received: list[int]
    task: asyncio.Task[int | None]


async def listen(chat: Chat, user: User, room: str) -> Listener:
    conn = await chat.open(user, room)
    received: list[int] = []

    async def read() -> int | None:
        try:
            while True:
                frame = await conn.recv(timeout=60)
                if frame["type"] == "chat":
                    received.append(frame["id"])
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None

    return Listener(conn, received, asyncio.create_task(read()))


async def play(server: Server, actions: list[tuple[str, int, int]]) -> None:
    """Play `actions` against the server and a model of who is a member; in the end each
    user must have received exactly the messages stored while it was a member (and not
    disabled: a disabled user's sockets close with 4001, its membership stays)."""
    chat = Chat(server)
    try:
        users = [await chat.user() for _ in range(3)]
        auditor = await chat.user()
        await set_role(server, auditor.id, "admin")
        room = unique("prop-")
        assert (await users[0].http.post("/api/rooms", json={"name": room, "private": True})).status_code == 201
        members: dict[int, str] = {0: "owner"}
        disabled: set[int] = set()
        listeners = {0: await listen(chat, users[0], room)}
        expected: dict[int, list[int]] = {0: [], 1: [], 2: []}
        received: dict[int, list[int]] = {0: [], 1: [], 2: []}
        stored: list[int] = []

        async def cut_off(user: int, code: int = 4003) -> None:
            listener = listeners.pop(user, None)
            if listener is not None:
                assert await asyncio.wait_for(listener.task, 12) == code
                received[user].extend(listener.received)

        for action, actor, target in actions:
            http = users[actor].http
            if action == "disable":
                if target not in disabled:
                    disabled.add(target)
                    await disable(server, users[target].id)
                    await cut_off(target, 4001)  # within 10 s (the periodic check)
            elif actor in disabled:
                answer = await http.get(f"/api/rooms/{room}/members")
                assert answer.status_code == 401
            elif action == "invite":
                answer = await http.post(f"/api/rooms/{room}/members", json={"name": users[target].name})
                if actor not in members or target in disabled:  # a disabled user is no one to invite
                    assert answer.status_code == 404
                else:
                    assert answer.status_code == (200 if target in members else 201), answer.text
                    if target not in members:
                        members[target] = "member"
                        listeners[target] = await listen(chat, users[target], room)
            elif action in ("leave", "remove"):
                removed = actor if action == "leave" else target
                answer = await http.delete(f"/api/rooms/{room}/members/{users[removed].id}")
                if actor not in members:
                    assert answer.status_code == 404
                elif removed != actor and members[actor] != "owner":
                    assert answer.status_code == 403
                elif removed not in members:
                    assert answer.status_code == 404
                else:
                    assert answer.status_code == 204, answer.text
                    await cut_off(removed)
                    del members[removed]
            elif actor in members:
                listener = listeners[actor]
                before = len(listener.received)
                await listener.conn.send_json({"type": "chat", "data": f"from {actor}"})
                await until(lambda: len(listener.received) > before, "the author's echo")  # noqa: B023
                message_id = listener.received[-1]
                stored.append(message_id)
                for member in members:
                    if member not in disabled:
                        expected[member].append(message_id)
            else:
                outsider = await chat.connect(users[actor], room)
                with pytest.raises(ConnectionClosed) as closed:
                    await outsider.recv()
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 4004

        for member, listener in listeners.items():
            await until(lambda: len(listener.received) >= len(expected[member]) - len(received[member]), "delivery")  # noqa: B023
            await listener.conn.ws.close()
            await listener.task
            received[member].extend(listener.received)
        assert received == expected
        export = await auditor.http.get("/api/export", params={"format": "ndjson"})
        lines = [json.loads(line) for line in export.text.splitlines()]
        assert [m["id"] for m in lines if m["room"] == room] == stored
    finally:
        await chat.aclose()


@settings(max_examples=15, deadline=None)
@given(actions=ACTIONS)
def test_random_membership_changes_and_disabling_keep_who_received_what_equal_to_who_was_a_member(
    server: Server, actions: list[tuple[str, int, int]]
) -> None:
    asyncio.run(play(server, actions))


async def test_a_hundred_concurrent_creations_of_one_name_make_one_room_with_one_owner(chat: Chat) -> None:
    name = unique("race-")
    users = [await chat.user() for _ in range(4)]
    answers = await asyncio.gather(
        *(users[i % 4].http.post("/api/rooms", json={"name": name, "private": i % 2 == 0}) for i in range(100))
    )
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201] + [409] * 99
    (made,) = [a for a in answers if a.status_code == 201]
    kind = made.json()["room"]["kind"]
    owners = [u for u in users if (await u.http.get(f"/api/rooms/{name}/members")).status_code == 200]
    if kind == "private":
        assert len(owners) == 1
        members = (await owners[0].http.get(f"/api/rooms/{name}/members")).json()["members"]
        assert members == [{"id": owners[0].id, "name": owners[0].name, "role": "owner"}]


async def test_a_socket_waiting_on_a_name_is_closed_when_someone_makes_it_a_private_room(chat: Chat) -> None:
    """An outsider who opened a name before it became a private room learns nothing of
    it: its socket closes with 4004 (as any invisible room's) and receives no message."""
    alice, mallory = await chat.user(), await chat.user()
    room = unique("plans-")
    waiting = await chat.open(mallory, room)
    early = await chat.open(alice, room)  # the creator's own socket stays open
    started = time.monotonic()
    created = await alice.http.post("/api/rooms", json={"name": room, "private": True})
    assert created.status_code == 201, created.text
    assert await waiting.close_code(timeout=5) == 4004
    assert time.monotonic() - started <= REMOVAL_SECONDS
    assert (await early.say("the launch code is 1234"))["room"] == room
    again = await chat.connect(mallory, room)
    with pytest.raises(ConnectionClosed) as closed:
        await again.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4004


async def test_json_nested_past_any_sense_gets_422_not_a_server_error(chat: Chat) -> None:
    alice = await chat.user()
    deep = '{"name":' + "[" * 30000 + "]" * 30000 + "}"
    headers = {"Content-Type": "application/json"}
    for path in ("/api/rooms", "/api/dm", "/api/session"):
        answer = await alice.http.post(path, content=deep, headers=headers)
        assert answer.status_code == 422, (path, answer.status_code, answer.text)
