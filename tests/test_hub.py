"""Connections' bounded queues, coalescing, the history seam, and presence."""

from __future__ import annotations

import json

from quartchat.broker.memory import MemoryBroker
from quartchat.hub import CHAT_ITEM, FRAME_ITEM, Connection, Hub
from quartchat.protocol import CloseCode, StoredMessage, UserRef

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


async def test_presence_is_per_user_and_sorted_by_name() -> None:
    hub = Hub(MemoryBroker())
    tabs = [Connection(ALICE, "r", "x", False, 10) for _ in range(2)]
    bob = Connection(BOB, "r", "x", False, 10)
    for connection in [*tabs, bob]:
        hub.register(connection)
    assert hub.online("r") == [ALICE, BOB]
    assert [json.loads(t)["type"] for _, _, t in tabs[0].queue] == ["join"]
    assert not tabs[1].queue, "no join for a second tab"
    hub.unregister(tabs[0])
    assert hub.online("r") == [ALICE, BOB]
    hub.unregister(tabs[1])
    assert hub.online("r") == [BOB]
    assert hub.per_address == {"x": 1}


async def test_delivery_reaches_only_the_messages_room() -> None:
    hub = Hub(MemoryBroker())
    here, there = Connection(ALICE, "r", "x", False, 10), Connection(BOB, "s", "x", False, 10)
    hub.register(here)
    hub.register(there)
    here.queue.clear()
    there.queue.clear()
    await hub.publish_committed([message(1, "r")])
    hub.deliver(await hub.broker.next_published())
    assert [item[1] for item in here.queue] == [1] and not there.queue
