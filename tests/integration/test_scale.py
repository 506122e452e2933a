"""SPEC §7 on real engines: PostgreSQL, Redis pub/sub, several instances and workers."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

from ..conftest import RedisServer, StartServer
from ..support import Chat, Conn, Server, unique


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
        per_sender = 150
        total = per_sender * len(senders)

        async def late_joiner(chat: Chat) -> tuple[list[dict[str, Any]], Conn]:
            await asyncio.sleep(0.3)
            conn = await chat.open(await chat.user(), room)
            return conn.history["messages"], conn

        joining = [asyncio.create_task(late_joiner(chat)) for chat in chats]
        await asyncio.gather(*(send_many(conn, per_sender, f"s{i}") for i, conn in enumerate(senders)))
        views = [await read_chats(reader, total) for reader in readers]
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


async def test_workers_behind_one_bind_share_one_chat(
    tmp_path: Path, postgres_url: str, redis_server: RedisServer
) -> None:
    server = Server(tmp_path, database_url=postgres_url, broker_url=redis_server.url, rate_limit="100000/1")
    server.extra_args = ["--workers", "2"]
    server.start()  # healthy as soon as one worker answers
    server.wait_for_workers(2)
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
        await asyncio.sleep(0.5)
        workers = server.workers_that_closed_websockets()
        assert len(workers) == 2, f"connections landed on workers {workers}"
    finally:
        await chat.aclose()
        server.stop()


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
        a = await one.open(await one.user(), room)
        b = await two.open(await two.user(), room)
        await send_many(a, 20, "before")
        await send_many(b, 20, "before-b")
        redis_server.stop()
        await asyncio.sleep(0.5)
        await send_many(a, 20, "during")  # stored, and delivered on this instance at once
        await send_many(b, 20, "during-b")
        await asyncio.sleep(1.0)
        redis_server.start()
        await send_many(a, 20, "after")
        await send_many(b, 20, "after-b")
        stored = await one.all_messages(await one.user(), room)
        assert len(stored) == 120
        assert await read_chats(a, 120) == stored
        assert await read_chats(b, 120) == stored
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
        await asyncio.sleep(1.0)
        await admin.execute_command("ACL", "SETUSER", "default", "+publish")
        assert await read_chats(a, 5) == mine
        stored = await one.all_messages(await one.user(), room)
        assert stored == mine
    finally:
        await admin.execute_command("ACL", "SETUSER", "default", "+publish")
        await admin.aclose()
        await one.aclose()
        await two.aclose()
