"""docs/scaling.md on real engines: PostgreSQL, Redis pub/sub, several instances and workers."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import redis.asyncio as redis

from ..conftest import RedisServer, StartServer
from ..support import Chat, Conn, Server, User, sqlite_url, unique, until


def instances(
    start_server: StartServer, tmp_path: Path, postgres_url: str, redis_url: str, count: int = 2, **settings: str
) -> list[Server]:
    started = []
    for index in range(count):
        workdir = tmp_path / f"instance-{index}"
        workdir.mkdir()
        started.append(
            start_server(
                workdir=workdir, database_url=postgres_url, broker_url=redis_url, rate_limit="100000/1", **settings
            )
        )
    return started


async def send_many(conn: Conn, count: int, tag: str) -> None:
    for i in range(count):
        await conn.send_json({"type": "chat", "data": f"{tag} {i}", "client_id": f"{tag}-{i}"})


async def read_chats(conn: Conn, count: int) -> list[dict[str, Any]]:
    return [await conn.expect("chat", timeout=30) for _ in range(count)]


async def test_two_instances_share_one_chat_order_users_and_resume(
    start_server: StartServer, tmp_path: Path, postgres_url: str, redis_server: RedisServer
) -> None:
    first, second = instances(start_server, tmp_path, postgres_url, redis_server.url)
    one, two = Chat(first), Chat(second)
    try:
        room = unique("two-")
        alice, bob = await one.user(), await two.user()
        a = await one.open(alice, room)
        b = await two.open(bob, room)
        assert (await one.open(alice, room)).online == (await two.open(bob, room)).online
        assert sorted(u["id"] for u in b.online) == sorted([alice.id, bob.id])
        await asyncio.gather(send_many(a, 100, "a"), send_many(b, 100, "b"))
        seen_a, seen_b = await read_chats(a, 200), await read_chats(b, 200)
        assert seen_a == seen_b, "both instances deliver the same sequence"
        ids = [m["id"] for m in seen_a]
        assert ids == sorted(ids) and len(set(ids)) == 200
        users_one = (await alice.http.get(f"/api/rooms/{room}/users")).json()["users"]
        users_two = (await bob.http.get(f"/api/rooms/{room}/users")).json()["users"]
        assert users_one == users_two and len(users_one) == 2
        middle = ids[99]
        resumed = await two.open(await two.user(), room, query=f"after={middle}")
        assert resumed.history["messages"] == seen_a[100:], "after= resumes on the other instance"
    finally:
        await one.aclose()
        await two.aclose()


async def test_ids_follow_commit_order_when_many_processes_hammer_one_room(
    start_server: StartServer, tmp_path: Path, postgres_url: str, redis_server: RedisServer
) -> None:
    servers = instances(start_server, tmp_path, postgres_url, redis_server.url, count=3)
    chats = [Chat(server) for server in servers]
    try:
        room = unique("hammer-")
        readers = [await chat.open(await chat.user(), room) for chat in chats]
        senders = [await chat.open(await chat.user(), room) for chat in chats for _ in range(2)]
        late_users = [await chat.user() for chat in chats]  # signed up before the burst
        per_sender = 150
        total = per_sender * len(senders)
        views: list[list[dict[str, Any]]] = [[] for _ in readers]

        async def read_all(reader: Conn, view: list[dict[str, Any]]) -> None:
            while len(view) < total:
                view.append(await reader.expect("chat", timeout=30))

        async def late_joiner(chat: Chat, user: User, number: int) -> tuple[list[dict[str, Any]], Conn]:
            # Joins while the burst is on: once a reader has seen a quarter, half, ...
            await until(lambda: len(views[0]) >= total * number // 4, "the burst going on", timeout=30)
            conn = await chat.open(user, room)
            return conn.history["messages"], conn

        joining = [
            asyncio.create_task(late_joiner(chat, user, number))
            for number, (chat, user) in enumerate(zip(chats, late_users, strict=True), start=1)
        ]
        await asyncio.gather(
            *(read_all(reader, view) for reader, view in zip(readers, views, strict=True)),
            *(send_many(conn, per_sender, f"s{i}") for i, conn in enumerate(senders)),
        )
        stored = await chats[0].all_messages(await chats[0].user(), room)
        assert len(stored) == total
        for view in views:
            assert view == stored, "every client sees exactly the committed sequence"
        for history, conn in [await task for task in joining]:
            start = history[0]["id"] if history else stored[0]["id"]
            expected = [m for m in stored if m["id"] >= start]
            live = await read_chats(conn, len(expected) - len(history))
            assert history + live == expected, "no seam and no skip for a client that joined mid-burst"
        for cut in (stored[10]["id"], stored[total // 2]["id"], stored[-2]["id"]):
            resumed = await chats[1].open(await chats[1].user(), room, query=f"after={cut}")
            assert resumed.history["messages"] == [m for m in stored if m["id"] > cut][:1000]
    finally:
        for chat in chats:
            await chat.aclose()


async def test_workers_behind_one_bind_share_one_chat(two_workers: Server) -> None:
    server = two_workers
    chat = Chat(server)
    try:
        room = unique("workers-")
        conns = [await chat.open(await chat.user(), room) for _ in range(8)]
        await send_many(conns[0], 20, "w")
        views = [await read_chats(conn, 20) for conn in conns]
        assert all(view == views[0] for view in views)
        online = (await chat.user()).http
        listed = (await online.get(f"/api/rooms/{room}/users")).json()["users"]
        assert len(listed) == 8
        for conn in conns:
            await conn.ws.close()
        await until(lambda: server.log().count("websocket closed") == 8, "the server closed all 8")
        workers = server.workers_that_closed_websockets()
        assert len(workers) == 2, f"connections landed on workers {workers}"
    finally:
        await chat.aclose()


async def test_an_instance_killed_with_sigkill_its_users_leave_and_nothing_committed_is_lost(
    start_server: StartServer, tmp_path: Path, postgres_url: str, redis_server: RedisServer
) -> None:
    survivor_server, doomed_server = instances(start_server, tmp_path, postgres_url, redis_server.url, presence_ttl="3")
    survivor, doomed = Chat(survivor_server), Chat(doomed_server)
    try:
        room = unique("kill-")
        watcher_user, victim = await survivor.user(), await doomed.user()
        watcher = await survivor.open(watcher_user, room)
        victim_conn = await doomed.open(victim, room)
        assert (await watcher.expect("join"))["user"] == watcher_user.ref
        assert (await watcher.expect("join"))["user"] == victim.ref
        sent = [await victim_conn.say(f"before the crash {i}") for i in range(5)]
        assert await read_chats(watcher, 5) == sent
        doomed_server.stop(signal.SIGKILL)
        left = await watcher.expect("left", timeout=60)
        assert left["user"] == victim.ref
        users = (await watcher_user.http.get(f"/api/rooms/{room}/users")).json()["users"]
        assert users == [watcher_user.ref]
        stored = await survivor.all_messages(watcher_user, room)
        assert stored == sent
    finally:
        await survivor.aclose()
        await doomed.aclose()


async def test_redis_stopped_and_started_clients_end_with_exactly_the_committed_sequence(
    start_server: StartServer, tmp_path: Path, postgres_url: str, redis_server: RedisServer
) -> None:
    first, second = instances(start_server, tmp_path, postgres_url, redis_server.url)
    one, two = Chat(first), Chat(second)
    try:
        room = unique("redis-down-")
        a, a_reader = await one.open(await one.user(), room), await one.open(await one.user(), room)
        b, b_reader = await two.open(await two.user(), room), await two.open(await two.user(), room)
        seen: dict[int, list[dict[str, Any]]] = {id(conn): [] for conn in (a, a_reader, b, b_reader)}

        async def read(conn: Conn, count: int) -> list[dict[str, Any]]:
            seen[id(conn)] += await read_chats(conn, count)
            return seen[id(conn)][-count:]

        await send_many(a, 20, "before")
        await send_many(b, 20, "before-b")
        for conn in (a, a_reader, b, b_reader):
            await read(conn, 40)

        redis_server.stop()  # returns once the redis-server process has exited

        # During the outage each instance stores its senders' messages and delivers them
        # at once to its own clients, the sender and another reader (in id order: what
        # the other instance committed before them comes first, from the database).
        async def read_through(conn: Conn, tag: str) -> None:
            while sum(m["data"].startswith(f"{tag} ") for m in seen[id(conn)]) < 20:
                await read(conn, 1)

        await send_many(a, 20, "during")
        for conn in (a, a_reader):
            await read_through(conn, "during")
        await send_many(b, 20, "during-b")
        for conn in (b, b_reader):
            await read_through(conn, "during-b")
        stored_during = await one.all_messages(await one.user(), room)
        assert len(stored_during) == 80, "stored while Redis was down"
        for conn in (a, a_reader, b, b_reader):
            assert seen[id(conn)] == stored_during[: len(seen[id(conn)])], "in id order, none missing, none twice"
        assert redis_server.process is not None and redis_server.process.poll() is not None, "Redis was down"

        redis_server.start()
        await send_many(a, 20, "after")
        await send_many(b, 20, "after-b")
        stored = await one.all_messages(await one.user(), room)
        assert len(stored) == 120
        for conn in (a, a_reader, b, b_reader):  # whatever of the outage it lacked, then the 40 after
            await read(conn, 120 - len(seen[id(conn)]))
            assert seen[id(conn)] == stored, "every client ends with exactly the committed sequence"
    finally:
        await one.aclose()
        await two.aclose()


async def test_a_batch_whose_publish_failed_reaches_the_other_instance_when_redis_takes_it_again(
    start_server: StartServer, tmp_path: Path, postgres_url: str, redis_server: RedisServer
) -> None:
    """The other instance's subscription never broke, so it has no reason to resync:
    only publishing the batch again (once Redis takes publishes) brings it there."""
    import redis.asyncio as aioredis

    first, second = instances(start_server, tmp_path, postgres_url, redis_server.url)
    one, two = Chat(first), Chat(second)
    admin = aioredis.from_url(redis_server.url)
    try:
        room = unique("refused-")
        a = await one.open(await one.user(), room)
        b = await two.open(await two.user(), room)
        await a.expect("join", timeout=10)  # b's join, through Redis
        await admin.execute_command("ACL", "SETUSER", "default", "-publish")
        await send_many(b, 5, "refused")
        mine = await read_chats(b, 5)  # stored, and delivered on b's instance at once
        assert [m["data"] for m in mine] == [f"refused {i}" for i in range(5)]
        await until(lambda: "broker unavailable" in second.log(), "b's instance failed to publish")
        await admin.execute_command("ACL", "SETUSER", "default", "+publish")
        assert await read_chats(a, 5) == mine
        stored = await one.all_messages(await one.user(), room)
        assert stored == mine
    finally:
        await admin.execute_command("ACL", "SETUSER", "default", "+publish")
        await admin.aclose()
        await one.aclose()
        await two.aclose()


async def test_two_deployments_on_one_redis_hear_nothing_of_each_other(
    start_server: StartServer, tmp_path: Path, redis_server: RedisServer
) -> None:
    """Each deployment its own SQLite database and signing key (the key file beside it),
    so its own default Redis namespace: chat, presence and user lists stay inside it."""
    deployments: list[list[Server]] = []
    for name, count in (("alpha", 2), ("beta", 1)):
        folder = tmp_path / name
        folder.mkdir()
        url = sqlite_url(folder / "chat.db")
        deployments.append(
            [
                start_server(workdir=folder, database_url=url, broker_url=redis_server.url, secret_key=None)
                for _ in range(count)
            ]
        )
    (alpha_1, alpha_2), (beta,) = deployments
    one, two, other = Chat(alpha_1), Chat(alpha_2), Chat(beta)
    try:
        room = unique("same-name-")  # the same room name in both deployments
        carol = await other.user()
        c = await other.open(carol, room)
        alice, bob = await one.user(), await two.user()
        a = await one.open(alice, room)
        b = await two.open(bob, room)
        assert {u["id"] for u in b.online} == {alice.id, bob.id}, "one deployment's instances share presence"
        hello = await a.say("alpha only")
        assert await b.expect("chat") == hello, "and chat"

        await c.send_json({"type": "chat", "data": "beta only"})
        heard = []
        while not heard or heard[-1].get("data") != "beta only":
            heard.append(await c.recv())
        assert all(frame["user"]["id"] == carol.id for frame in heard), f"alpha's joins or chat crossed: {heard}"
        assert (await carol.http.get(f"/api/rooms/{room}/users")).json()["users"] == [carol.ref]
        assert await a.say("alpha again") == await b.expect("chat"), "beta's message never reached alpha"
        users = (await alice.http.get(f"/api/rooms/{room}/users")).json()["users"]
        assert {u["id"] for u in users} == {alice.id, bob.id}

        client = redis.Redis.from_url(redis_server.url)
        try:
            namespaces = {key.split(b":")[0] for key in await client.keys("*")}
        finally:
            await client.aclose()
        assert len(namespaces) == 2 and all(ns.startswith(b"qc-") for ns in namespaces), namespaces
    finally:
        await one.aclose()
        await two.aclose()
        await other.aclose()
