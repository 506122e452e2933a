"""Rooms: delivery here at once and to the other processes, order and gap repair,
presence, revocation, shutdown."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any

from sqlalchemy import insert

from quartchat import models
from quartchat.broker import Committed, Event, Presence, Resync, Revoked
from quartchat.broker.memory import MemoryBroker
from quartchat.connection import Connection, PresenceDue
from quartchat.database import Database
from quartchat.hub import PRESENCE_AS_LIST_MIN, Hub
from quartchat.metrics import Metrics
from quartchat.presence import MemoryPresence
from quartchat.protocol import JOIN, CloseCode, StoredMessage, UserRef
from quartchat.store import Page, Store

from .support import add_user, until
from .test_connection import sent_frames
from .test_outbox import RecordingBroker

ALICE, BOB = UserRef("a", "alice"), UserRef("b", "Bob")


def message(message_id: int, room: str = "r") -> StoredMessage:
    return StoredMessage(message_id, room, ALICE, f"m{message_id}", 0)


def queued_ids(connection: Connection) -> list[int]:
    return [item.id for item in connection.queue if isinstance(item, StoredMessage)]


def presence_queued(connection: Connection) -> list[dict[str, Any]]:
    """The presence frames queued for `connection`: its own join (a frame of its own),
    then what the room's presence windows added to its waiting PresenceDue."""
    texts: list[str] = []
    for item in connection.queue:
        if isinstance(item, str):
            texts.append(item)
        elif isinstance(item, PresenceDue):
            texts += ([item.listing] if item.listing else []) + list(item.frames)
    return [json.loads(text) for text in texts]


def joined(connection: Connection) -> list[str]:
    """The ids of the users whose joins are queued for `connection`."""
    return [frame["user"]["id"] for frame in presence_queued(connection) if frame["type"] == "join"]


class NoStore:
    """Hub tests that never reach the database: priming finds an empty room."""

    async def room_last_id(self, room: str) -> int:
        return 0

    async def after(self, room: str, after_id: int, limit: int) -> Page:
        return Page([], False)

    async def room_access(self, room: str, user_id: str) -> None:
        return None  # no room by that name: no membership to check after a Resync


def new_hub(broker: MemoryBroker | None = None, store: NoStore | None = None) -> Hub:
    return Hub(broker or MemoryBroker(), MemoryPresence(), store or NoStore(), Metrics())  # type: ignore[arg-type]


async def open_connection(hub: Hub, user: UserRef, room: str = "r") -> Connection:
    connection = Connection(user, room, "x", False, 100)
    hub.register(connection)
    await hub.join(connection)
    await hub.prime(room)
    return connection


async def _online_is(hub: Hub, users: list[UserRef]) -> bool:
    return await hub.online("r") == users


async def test_presence_is_per_user_and_sorted_by_name() -> None:
    hub = new_hub()
    tabs = [await open_connection(hub, ALICE) for _ in range(2)]
    await open_connection(hub, BOB)
    assert await hub.online("r") == [ALICE, BOB]
    assert joined(tabs[0]) == [ALICE.id], "her own join at once; bob's in the room's presence window"
    await until(lambda: joined(tabs[0]) == [ALICE.id, BOB.id], "her own join, then bob's")
    assert joined(tabs[1]) == [BOB.id], "no join for a second tab"
    hub.unregister(tabs[0])
    await asyncio.sleep(0)
    assert await hub.online("r") == [ALICE, BOB]
    hub.unregister(tabs[1])
    await until(lambda: _online_is(hub, [BOB]), "alice leaves with her last tab")


def test_address_slots_are_counted_when_taken_and_given_back() -> None:
    hub = new_hub()
    assert [hub.take_address_slot("a", 2) for _ in range(3)] == [True, True, False]
    assert hub.take_address_slot("b", 2)
    hub.release_address_slot("a")
    assert hub.take_address_slot("a", 2)
    for address in ("a", "a", "b"):
        hub.release_address_slot(address)
    assert hub.per_address == {}


async def test_revoked_closes_exactly_the_named_sessions_users_and_room() -> None:
    hub = new_hub()
    tabs = {}
    for name, user, room, session in [
        ("a1", ALICE, "r", "s-a1"),
        ("a1-other-room", ALICE, "s", "s-a1"),
        ("a2", ALICE, "r", "s-a2"),
        ("b", BOB, "r", "s-b"),
        ("b-other-room", BOB, "s", "s-b"),
    ]:
        tabs[name] = Connection(user, room, "x", False, 100, session_id=session)
        hub.register(tabs[name])
    assert hub.close_revoked(Revoked(session_ids=("s-a1",))) == 2
    assert hub.close_revoked(Revoked(user_ids=(BOB.id,), room="s", code=4003, reason="Not a member")) == 1
    closed = {name: tab.close_code for name, tab in tabs.items() if tab.close_code is not None}
    assert closed == {"a1": 4001, "a1-other-room": 4001, "b-other-room": 4003}
    assert hub.close_revoked(Revoked(room="r", code=4004, reason="Invalid room", all_but=(ALICE.id,))) == 1
    assert tabs["b"].close_code == 4004 and tabs["a2"].close_code is None


async def test_a_revoked_event_from_another_process_closes_here_and_ours_is_not_applied_twice() -> None:
    hub = new_hub()
    tab = Connection(ALICE, "r", "x", False, 100, session_id="s-a")
    hub.register(tab)
    hub.receive(Revoked(session_ids=("s-a",), origin="another process"))
    assert tab.close_code == 4001
    other = Connection(BOB, "r", "x", False, 100, session_id="s-b")
    hub.register(other)
    hub.receive(Revoked(session_ids=("s-b",), origin=hub.origin))
    assert other.close_code is None, "the origin closed its own sockets when it revoked"


async def test_delivery_reaches_only_the_messages_room() -> None:
    hub = new_hub()
    here, there = await open_connection(hub, ALICE, "r"), await open_connection(hub, BOB, "s")
    here.queue.clear()
    there.queue.clear()
    await hub.on_commit([message(1, "r")])
    assert queued_ids(here) == [1] and not there.queue


def chained(message_id: int, prev_id: int) -> StoredMessage:
    return StoredMessage(message_id, "r", ALICE, f"m{message_id}", 0, prev_id=prev_id)


async def test_messages_from_several_processes_are_delivered_in_room_order() -> None:
    hub = new_hub()
    connection = await open_connection(hub, ALICE)
    connection.queue.clear()
    # One process published 12 and 14 before another's 11 and 13 arrived.
    for stored in (chained(12, 11), chained(14, 13), chained(11, 0), chained(13, 12), chained(12, 11)):
        hub.receive(Committed((stored,), "elsewhere"))
    assert queued_ids(connection) == [11, 12, 13, 14]


async def test_our_own_message_waits_for_its_predecessor_from_another_process() -> None:
    hub = new_hub()
    connection = await open_connection(hub, ALICE)
    connection.queue.clear()
    await hub.on_commit([chained(12, 11)])  # committed here just after another process's 11
    assert not connection.queue, "12 waits for 11"
    hub.receive(Committed((chained(11, 0),), "elsewhere"))
    assert queued_ids(connection) == [11, 12]


class StoreWithHistory(NoStore):
    def __init__(self, messages: list[StoredMessage]) -> None:
        self.messages = messages

    async def after(self, room: str, after_id: int, limit: int) -> Page:
        return Page([m for m in self.messages if m.id > after_id][:limit], False)


async def test_a_gap_that_does_not_close_is_repaired_from_the_database() -> None:
    lost = StoredMessage(21, "r", BOB, "published by a process that died", 0)
    hub = new_hub(store=StoreWithHistory([lost, chained(22, 21)]))
    connection = await open_connection(hub, ALICE)
    connection.queue.clear()
    hub.receive(Committed((chained(22, 21),), "elsewhere"))  # 21 never comes
    assert not connection.queue
    await until(lambda: queued_ids(connection) == [21, 22], "the repair delivers 21, then 22")
    assert hub.repairs == 1


async def test_a_resync_during_a_pending_gap_repair_still_reads_the_database() -> None:
    # 13 was published while this process's broker was cut off: only the database has it.
    history = [chained(11, 0), chained(12, 11), chained(13, 12)]
    hub = new_hub(store=StoreWithHistory(history))
    connection = await open_connection(hub, ALICE)
    connection.queue.clear()
    hub.receive(Committed((chained(12, 11),), "elsewhere"))  # early: a gap repair is now pending
    hub.receive(Resync())  # the broker is back
    hub.receive(Committed((chained(11, 0),), "elsewhere"))  # the gap closes by itself
    assert queued_ids(connection) == [11, 12]
    await until(lambda: queued_ids(connection) == [11, 12, 13], "the Resync's repair delivers 13")


class SlowStore(StoreWithHistory):
    """A database read that takes until the test lets it finish, from a snapshot."""

    def __init__(self, messages: list[StoredMessage]) -> None:
        super().__init__(messages)
        self.reading = asyncio.Event()
        self.finish = asyncio.Event()

    async def after(self, room: str, after_id: int, limit: int) -> Page:
        snapshot = [m for m in self.messages if m.id > after_id][:limit]
        self.reading.set()
        await self.finish.wait()
        return Page(snapshot, False)


async def test_a_resync_during_a_repairs_read_reads_again_afterwards() -> None:
    store = SlowStore([chained(11, 0)])
    hub = new_hub(store=store)
    connection = await open_connection(hub, ALICE)
    connection.queue.clear()
    hub.receive(Resync())
    await asyncio.wait_for(store.reading.wait(), 1)
    # While the repair reads, 12 is committed and published into the outage of a
    # second cut-off; the broker reconnects again and says so.
    store.messages.append(chained(12, 11))
    hub.receive(Resync())
    store.finish.set()
    await until(lambda: len(connection.queue) == 2, "the second read delivers 12")
    assert queued_ids(connection) == [11, 12]


async def test_a_room_whose_gap_closed_by_itself_can_still_be_repaired_later() -> None:
    history = [chained(11, 0), chained(12, 11), chained(13, 12), chained(14, 13)]
    hub = new_hub(store=StoreWithHistory(history))
    connection = await open_connection(hub, ALICE)
    connection.queue.clear()
    hub.receive(Committed((chained(12, 11),), "elsewhere"))
    hub.receive(Committed((chained(11, 0),), "elsewhere"))  # that gap closed by itself
    assert hub.rooms["r"].repairing, "a repair is pending"
    await until(lambda: not hub.rooms["r"].repairing, "its repair woke and found nothing to do")
    hub.receive(Committed((chained(14, 13),), "elsewhere"))  # 13 is lost this time
    await until(lambda: len(connection.queue) == 4, "the repair delivers 13, then 14")
    assert queued_ids(connection) == [11, 12, 13, 14]
    assert hub.repairs == 1


async def test_a_committed_batch_reaches_our_connections_at_once_and_the_others_through_the_broker() -> None:
    broker = RecordingBroker()
    hub = new_hub(broker)
    connection = await open_connection(hub, ALICE)
    connection.queue.clear()
    await hub.on_commit([chained(1, 0), chained(2, 1)])
    assert queued_ids(connection) == [1, 2], "delivered here at once, before any broker"
    assert broker.sent == [Committed((chained(1, 0), chained(2, 1)), hub.origin)]
    other = new_hub()
    elsewhere = await open_connection(other, BOB)
    elsewhere.queue.clear()
    other.receive(broker.sent[0])
    assert queued_ids(elsewhere) == [1, 2], "another process gets it"
    hub.receive(broker.sent[0])  # the broker hands our own batch back to us too
    assert queued_ids(connection) == [1, 2], "and here it is not delivered twice"


async def test_a_batch_whose_publish_failed_is_delivered_locally_and_published_again() -> None:
    broker = RecordingBroker(failures=3)  # the first publish and two retries fail
    hub = new_hub(broker)
    await hub.start()
    try:
        connection = await open_connection(hub, ALICE)
        connection.queue.clear()
        await hub.on_commit([chained(1, 0)])
        assert queued_ids(connection) == [1], "delivered here at once"
        await until(lambda: broker.sent, "published again (retries after 0.2, 0.4 and 0.8 s)")
        [event] = broker.sent
        assert isinstance(event, Committed) and event.messages == (chained(1, 0),)
        other = new_hub()
        elsewhere = await open_connection(other, BOB)
        elsewhere.queue.clear()
        other.receive(event)
        assert queued_ids(elsewhere) == [1], "another process gets it"
        hub.receive(event)  # our own, handed back
        assert queued_ids(connection) == [1], "and here it is not delivered twice"
    finally:
        await hub.stop()


async def test_presence_reaches_our_connections_within_a_window_and_the_others_through_the_broker() -> None:
    broker = RecordingBroker()
    hub = new_hub(broker)
    await hub.start()
    try:
        alice = await open_connection(hub, ALICE)
        bob = await open_connection(hub, BOB)
        assert joined(bob) == [BOB.id], "bob hears his own join at once"
        await until(lambda: joined(alice) == [ALICE.id, BOB.id], "alice's own join, then bob's, in the window")
        await until(lambda: len(broker.sent) == 2, "both joins are published")
        assert [(e.kind, e.user, e.origin) for e in broker.sent if isinstance(e, Presence)] == [
            (JOIN, ALICE, hub.origin),
            (JOIN, BOB, hub.origin),
        ]
        for event in broker.sent:  # handed back to us: ignored
            hub.receive(event)
        assert joined(alice) == [ALICE.id, BOB.id] and joined(bob) == [BOB.id]
        other = new_hub()
        carol = await open_connection(other, UserRef("c", "carol"))
        carol.queue.clear()
        other.receive(broker.sent[1])
        await until(lambda: joined(carol) == [BOB.id], "another process's join, in the window")
    finally:
        await hub.stop()


class SwallowingBroker(MemoryBroker):
    """Takes every publish and hands nothing back: a subscription cut after the publish."""

    async def publish(self, event: Event) -> None:
        pass


async def test_shutdown_sends_our_own_committed_messages_whatever_the_broker_does() -> None:
    hub = new_hub(SwallowingBroker(), StoreWithHistory([chained(1, 0)]))
    await hub.start()
    try:
        connection = await open_connection(hub, ALICE)
        connection.queue.clear()
        await hub.on_commit([chained(1, 0)])
        loop = asyncio.get_running_loop()
        started = loop.time()
        closing = asyncio.ensure_future(hub.close_all(CloseCode.GOING_AWAY, "bye", grace=10))
        frames = [json.loads(f) for f in await asyncio.wait_for(sent_frames(connection, finish=False), 5)]
        hub.unregister(connection)
        await closing
        assert loop.time() - started < 8, "waited for the broker the whole grace"
        assert [f["id"] for f in frames] == [1]
        assert connection.close_code == CloseCode.GOING_AWAY
    finally:
        await hub.stop()


async def test_a_socket_registering_just_after_its_session_was_revoked_is_closed() -> None:
    hub = new_hub()
    hub.close_revoked(Revoked(session_ids=("s-a",)))  # between the opening's session check and its register
    late = Connection(ALICE, "r", "x", False, 100, session_id="s-a")
    hub.register(late)
    assert late.close_code == 4001
    other = Connection(ALICE, "r", "x", False, 100, session_id="s-b")
    hub.register(other)
    assert other.close_code is None


async def test_a_storm_waits_as_one_item_per_connection_and_a_list_replaces_too_many_changes() -> None:
    hub = new_hub()
    watcher = await open_connection(hub, ALICE)
    users = [UserRef(f"u{i}", f"user{i:03}") for i in range(PRESENCE_AS_LIST_MIN + 20)]
    for user in users[:10]:
        await open_connection(hub, user)
    await until(lambda: len(joined(watcher)) == 11, "her own join, then ten in the window")
    assert sum(isinstance(item, PresenceDue) for item in watcher.queue) == 1, "one item holds the ten"
    for user in users[10:]:
        await open_connection(hub, user)
    await until(lambda: any(isinstance(item, PresenceDue) and item.listing for item in watcher.queue), "a list instead")
    dues = [item for item in watcher.queue if isinstance(item, PresenceDue)]
    assert len(dues) == 1, "still one item"
    assert dues[0].listing is not None
    listed = [user["id"] for user in json.loads(dues[0].listing)["data"]]
    assert sorted(listed) == sorted([ALICE.id, *(u.id for u in users)]), "the list has everyone"


async def test_a_batch_connection_gets_its_waiting_presence_in_one_batch_frame() -> None:
    hub = new_hub()
    watcher = Connection(ALICE, "r", "x", True, 100)
    hub.register(watcher)
    await hub.join(watcher)
    for index in range(5):
        await open_connection(hub, UserRef(f"u{index}", f"user{index}"))
    await until(lambda: len(joined(watcher)) == 6, "five joins in the window")
    frames = [json.loads(frame) for frame in await sent_frames(watcher)]
    assert [frame["type"] for frame in frames] == ["join", "batch"], "her own join (§3), then one frame for five"
    assert [item["user"]["id"] for item in frames[1]["messages"]] == [f"u{i}" for i in range(5)]


async def test_after_a_resync_the_sockets_of_members_removed_meanwhile_close(database: Database) -> None:
    """A removal's Revoked published while this process's broker was cut off is lost:
    after the Resync the hub asks the database who is still a member of each private
    room with sockets here, and closes the others' with 4003 (public rooms, and names
    with no room yet, need no membership to be heard)."""
    CAROL, DAVE = UserRef("u-carol", "carol"), UserRef("u-dave", "dave")
    await add_user(database, CAROL)
    await add_user(database, DAVE)
    async with database.writer.begin() as connection:
        for room, kind in (("priv", "private"), ("pub", "public")):
            await connection.execute(insert(models.Room).values(name=room, message_count=0, last_id=0, kind=kind))
        await connection.execute(insert(models.Membership).values(room="priv", user_id=CAROL.id, joined_ms=0))
    hub = Hub(MemoryBroker(), MemoryPresence(), Store(database), Metrics(), user_stream=False)
    users, rooms = (CAROL, DAVE), ("priv", "pub", "none")
    tabs = {(user.name, room): Connection(user, room, "x", False, 100) for user in users for room in rooms}
    for tab in tabs.values():
        hub.register(tab)
    hub.receive(Resync())
    await until(lambda: tabs[DAVE.name, "priv"].closed, "the removed member's socket closed")
    assert tabs[DAVE.name, "priv"].close_code == CloseCode.NOT_MEMBER
    assert [key for key, tab in tabs.items() if tab.closed] == [(DAVE.name, "priv")]
    await hub.stop()


async def test_a_removal_is_answered_once_the_broker_has_taken_its_revoked_event() -> None:
    """hub.revoke_published (rooms_api's removal): the sockets here close at once and the
    event is published before it returns, not queued for later; a broker that refuses
    it costs the event (the others' Resync makes up for it), never an error."""
    broker = RecordingBroker()
    hub = new_hub(broker)
    tab = Connection(BOB, "r", "x", False, 100)
    hub.register(tab)
    event = Revoked(user_ids=(BOB.id,), room="r", code=CloseCode.NOT_MEMBER, reason="Not a member")
    await hub.revoke_published(event)
    assert tab.close_code == CloseCode.NOT_MEMBER
    assert broker.sent == [replace(event, origin=hub.origin)]
    broker.failures = 1
    await hub.revoke_published(replace(event, user_ids=(ALICE.id,)))
    assert len(broker.sent) == 1
