"""Connections' bounded queues, coalescing, the history seam, and presence."""

from __future__ import annotations

import asyncio
import json

from quartchat.broker import Committed
from quartchat.broker.memory import MemoryBroker
from quartchat.hub import CHAT_ITEM, FRAME_ITEM, Connection, Hub
from quartchat.presence import MemoryPresence
from quartchat.protocol import CloseCode, StoredMessage, UserRef
from quartchat.store import Page

ALICE, BOB = UserRef("a", "alice"), UserRef("b", "Bob")


def message(message_id: int, room: str = "r") -> StoredMessage:
    return StoredMessage(message_id, room, ALICE, f"m{message_id}", 0)


async def sent_frames(connection: Connection) -> list[str]:
    frames: list[str] = []

    async def send(frame: str) -> None:
        frames.append(frame)

    connection.finish(CloseCode.NORMAL, "done")
    await connection.run_sender(send)
    return frames


async def test_a_full_queue_closes_the_connection_with_1013() -> None:
    connection = Connection(ALICE, "r", "127.0.0.1", batch=False, capacity=3)
    for i in range(4):
        connection.push(CHAT_ITEM, message(i + 1).json, i + 1)
    assert connection.close_code == CloseCode.TRY_AGAIN and connection.closed.is_set()
    assert not connection.queue


async def test_queued_chats_coalesce_into_one_batch_frame_with_batch_on() -> None:
    connection = Connection(ALICE, "r", "127.0.0.1", batch=True, capacity=100)
    for i in (1, 2, 3):
        connection.push(CHAT_ITEM, message(i).json, i)
    connection.push(FRAME_ITEM, '{"type":"pong"}')
    connection.push(CHAT_ITEM, message(4).json, 4)
    frames = [json.loads(f) for f in await sent_frames(connection)]
    assert frames[0] == {"type": "batch", "messages": [json.loads(message(i).json) for i in (1, 2, 3)]}
    assert frames[1] == {"type": "pong"}
    assert frames[2] == json.loads(message(4).json), "a lone message goes as itself"


async def test_without_batch_each_message_is_a_frame() -> None:
    connection = Connection(ALICE, "r", "127.0.0.1", batch=False, capacity=100)
    for i in (1, 2):
        connection.push(CHAT_ITEM, message(i).json, i)
    assert [json.loads(f)["id"] for f in await sent_frames(connection)] == [1, 2]


async def test_messages_the_history_held_are_not_sent_again() -> None:
    connection = Connection(ALICE, "r", "127.0.0.1", batch=False, capacity=100)
    for i in (5, 6, 7):
        connection.push(CHAT_ITEM, message(i).json, i)
    connection.skip_through = 6
    assert [json.loads(f)["id"] for f in await sent_frames(connection)] == [7]


class NoStore:
    """Hub tests that never reach the database: priming finds an empty room."""

    async def room_last_id(self, room: str) -> int:
        return 0

    async def after(self, room: str, after_id: int, limit: int) -> Page:
        return Page([], False)


def new_hub() -> Hub:
    return Hub(MemoryBroker(), MemoryPresence(), NoStore())  # type: ignore[arg-type]


async def open_connection(hub: Hub, user: UserRef, room: str = "r") -> Connection:
    connection = Connection(user, room, "x", False, 100)
    hub.register(connection)
    await hub.join(connection)
    await hub.prime(room)
    return connection


async def test_presence_is_per_user_and_sorted_by_name() -> None:
    hub = new_hub()
    tabs = [await open_connection(hub, ALICE) for _ in range(2)]
    await open_connection(hub, BOB)
    assert await hub.online("r") == [ALICE, BOB]
    assert [json.loads(t)["type"] for _, _, t in tabs[0].queue] == ["join"]
    assert not tabs[1].queue, "no join for a second tab"
    hub.unregister(tabs[0])
    await asyncio.sleep(0)
    assert await hub.online("r") == [ALICE, BOB]
    hub.unregister(tabs[1])
    await asyncio.sleep(0.01)
    assert await hub.online("r") == [BOB]
    assert hub.per_address == {"x": 1}


async def test_delivery_reaches_only_the_messages_room() -> None:
    hub = new_hub()
    here, there = await open_connection(hub, ALICE, "r"), await open_connection(hub, BOB, "s")
    here.queue.clear()
    there.queue.clear()
    await hub.publish_committed([message(1, "r")])
    hub.deliver(await hub.broker.next_published())
    assert [item[1] for item in here.queue] == [1] and not there.queue


def chained(message_id: int, prev_id: int) -> StoredMessage:
    return StoredMessage(message_id, "r", ALICE, f"m{message_id}", 0, prev_id=prev_id)


async def test_messages_from_several_processes_are_delivered_in_room_order() -> None:
    hub = new_hub()
    connection = await open_connection(hub, ALICE)
    connection.queue.clear()
    # Another process published 12 and 14 before this one's 11 and 13 arrived.
    for stored in (chained(12, 11), chained(14, 13), chained(11, 0), chained(13, 12), chained(12, 11)):
        hub.deliver(Committed((stored,), "elsewhere"))
    assert [item[1] for item in connection.queue] == [11, 12, 13, 14]


class StoreWithHistory(NoStore):
    def __init__(self, messages: list[StoredMessage]) -> None:
        self.messages = messages

    async def after(self, room: str, after_id: int, limit: int) -> Page:
        return Page([m for m in self.messages if m.id > after_id][:limit], False)


async def test_a_gap_that_does_not_close_is_repaired_from_the_database() -> None:
    lost = StoredMessage(21, "r", BOB, "published by a process that died", 0)
    hub = Hub(MemoryBroker(), MemoryPresence(), StoreWithHistory([lost, chained(22, 21)]))  # type: ignore[arg-type]
    connection = await open_connection(hub, ALICE)
    connection.queue.clear()
    hub.deliver(Committed((chained(22, 21),), "elsewhere"))  # 21 never comes
    assert not connection.queue
    await asyncio.sleep(0.8)
    assert [item[1] for item in connection.queue] == [21, 22]
    assert hub.repairs == 1
