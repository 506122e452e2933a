"""A connection's bounded send queue, its coalescing sender, the history seam, closing."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from quartchat.connection import Backlog, Connection, PresenceDue
from quartchat.protocol import CloseCode, StoredMessage, UserRef

ALICE = UserRef("a", "alice")


def message(message_id: int, room: str = "r") -> StoredMessage:
    return StoredMessage(message_id, room, ALICE, f"m{message_id}", 0)


async def sent_frames(connection: Connection, finish: bool = True) -> list[str]:
    frames: list[str] = []

    async def send(frame: str) -> None:
        frames.append(frame)

    if finish:
        connection.finish(CloseCode.NORMAL, "done")
    await connection.run_sender(send)
    return frames


async def test_a_full_queue_of_a_backed_up_socket_closes_the_connection_with_1013() -> None:
    backlog = Backlog(limit=1000)
    connection = Connection(ALICE, "r", "127.0.0.1", batch=False, capacity=3, backlog=backlog)
    connection.writing_since = 0.0  # a send has waited on the socket since then
    assert connection.watch(1.0, 1.0) == 1.0 and connection.backed_up
    for i in range(4):
        connection.push(message(i + 1))
    assert connection.close_code == CloseCode.TRY_AGAIN and connection.closed
    assert not connection.queue
    assert (backlog.queued, backlog.excluded) == (0, 0)


async def test_a_full_queue_of_a_socket_that_takes_everything_closes_the_intake_not_the_connection() -> None:
    backlog = Backlog(limit=1000)
    connection = Connection(ALICE, "r", "127.0.0.1", batch=False, capacity=3, backlog=backlog)
    for i in range(5):
        connection.push(message(i + 1))
    assert connection.close_code is None and len(connection.queue) == 5, "nothing dropped"
    assert not backlog.open.is_set() and backlog.pauses == 1
    assert [json.loads(f)["id"] for f in await sent_frames(connection)] == [1, 2, 3, 4, 5]
    assert backlog.open.is_set() and backlog.queued == 0


async def test_the_intake_closes_over_the_backlog_limit_and_reopens_at_half() -> None:
    backlog = Backlog(limit=10)
    connections = [Connection(ALICE, "r", "127.0.0.1", batch=True, capacity=100, backlog=backlog) for _ in range(3)]
    for i in range(4):
        for connection in connections:
            connection.push(message(i + 1))
    assert backlog.queued == 12 and not backlog.open.is_set()
    connections[0].forget()  # unregistered: its 4 no longer count
    assert backlog.queued == 8 and not backlog.open.is_set(), "8 > 5: still closed"
    connections[0].push(message(9))  # a stray push after it went
    assert backlog.queued == 8
    connections[1].abort(CloseCode.NORMAL, "gone")
    assert backlog.queued == 4 and backlog.open.is_set()


async def test_a_backed_up_socket_leaves_the_backlog_and_a_stall_is_timed_by_the_watch() -> None:
    backlog = Backlog(limit=5)
    connection = Connection(ALICE, "r", "127.0.0.1", batch=True, capacity=100, backlog=backlog)
    connection.writing_since = 0.0
    for i in range(8):
        connection.push(message(i + 1))
    assert not backlog.open.is_set()
    for second in range(1, 11):
        assert connection.watch(float(second), 1.0) == second
    assert backlog.pending == 0 and backlog.open.is_set(), "a stalled client slows no one"
    connection.writing_since = None  # the socket took the bytes
    connection.waited = 0.05
    assert connection.watch(11.0, 1.0) == 0.0 and not connection.backed_up
    assert backlog.pending == 8


async def test_a_sender_that_never_waits_on_its_socket_is_never_backed_up() -> None:
    connection = Connection(ALICE, "r", "127.0.0.1", batch=False, capacity=100)
    for i in range(50):
        connection.push(message(i + 1))
    assert len(await sent_frames(connection)) == 50
    assert connection.watch(1.0, 1.0) == 0.0 and connection.waited == 0.0


async def test_queued_chats_coalesce_into_one_batch_frame_with_batch_on() -> None:
    connection = Connection(ALICE, "r", "127.0.0.1", batch=True, capacity=100)
    for i in (1, 2, 3):
        connection.push(message(i))
    connection.push('{"type":"pong"}')
    connection.push(message(4))
    frames = [json.loads(f) for f in await sent_frames(connection)]
    assert frames[0] == {"type": "batch", "messages": [json.loads(message(i).json) for i in (1, 2, 3)]}
    assert frames[1] == {"type": "pong"}
    assert frames[2] == json.loads(message(4).json), "a lone message goes as itself"


async def test_without_batch_each_message_is_a_frame() -> None:
    connection = Connection(ALICE, "r", "127.0.0.1", batch=False, capacity=100)
    for i in (1, 2):
        connection.push(message(i))
    assert [json.loads(f)["id"] for f in await sent_frames(connection)] == [1, 2]


async def test_messages_the_history_held_are_not_sent_again() -> None:
    connection = Connection(ALICE, "r", "127.0.0.1", batch=False, capacity=100)
    for i in (5, 6, 7):
        connection.push(message(i))
    connection.skip_through = 6
    assert [json.loads(f)["id"] for f in await sent_frames(connection)] == [7]


async def test_a_message_queued_as_a_frame_for_its_sender_alone_is_sent_whatever_the_history_held() -> None:
    connection = Connection(ALICE, "r", "127.0.0.1", batch=True, capacity=100)
    connection.skip_through = 6
    connection.push(message(5).json)  # a retried client_id: the stored message, back to its sender
    assert [json.loads(f)["id"] for f in await sent_frames(connection)] == [5]


async def test_finish_sends_everything_queued_before_it_then_closes() -> None:
    connection = Connection(ALICE, "r", "127.0.0.1", batch=True, capacity=100)
    connection.push(message(1))
    connection.push(message(2))
    connection.finish(CloseCode.GOING_AWAY, "server shutting down")
    connection.push(message(3))  # queued after the close: never sent
    frames = [json.loads(f) for f in await sent_frames(connection, finish=False)]
    assert frames == [{"type": "batch", "messages": [json.loads(message(i).json) for i in (1, 2)]}]
    assert (connection.close_code, connection.close_reason) == (CloseCode.GOING_AWAY, "server shutting down")
    assert connection.closed


async def test_a_presence_item_stays_open_to_the_hub_while_a_connection_without_batch_sends_it() -> None:
    connection = Connection(ALICE, "r", "127.0.0.1", batch=False, capacity=10)
    due = PresenceDue()
    due.frames.extend(["join-1", "join-2"])
    connection.push(due)
    sent: list[str] = []

    async def send(frame: str) -> None:
        sent.append(frame)
        if frame == "join-1":
            due.frames.append("join-3")  # the hub adds a window's change while it sends

    connection.finish(CloseCode.NORMAL, "done")
    await connection.run_sender(send)
    assert sent == ["join-1", "join-2", "join-3"], "one frame each, the late one too"
    assert due.taken, "empty: closed to the hub, which starts a new item"


async def test_a_batch_connection_packs_waiting_presence_with_the_chats_beside_it() -> None:
    connection = Connection(ALICE, "r", "127.0.0.1", batch=True, capacity=10)
    due = PresenceDue()
    due.frames.extend(['{"type":"join"}', '{"type":"left"}'])
    connection.push(StoredMessage(1, "r", ALICE, "a", 0))
    connection.push(due)
    frames = await sent_frames(connection)
    assert len(frames) == 1 and frames[0].startswith('{"type":"batch"')
    assert [item["type"] for item in json.loads(frames[0])["messages"]] == ["chat", "join", "left"]


async def test_a_slow_reader_whose_writes_finish_is_backed_up_but_never_stalled() -> None:
    backlog = Backlog(limit=1000)
    connection = Connection(ALICE, "r", "127.0.0.1", batch=False, capacity=1000, backlog=backlog)
    release = asyncio.Event()

    async def slow(frame: str) -> None:  # the kernel takes each frame, a while later
        await asyncio.sleep(0.02)
        await release.wait()

    for i in range(200):
        connection.push(message(i + 1))
    sender = asyncio.create_task(connection.run_sender(slow))
    release.set()
    stalls = []
    for _ in range(10):
        await asyncio.sleep(0.1)
        stalls.append(connection.watch(time.monotonic(), 0.1))
    assert connection.backed_up, "its sender waited on the socket all the time"
    assert stalls == [0.0] * 10, "a reader that reads, however slowly, is never stalled"
    release.clear()  # now the kernel takes nothing more
    await asyncio.sleep(0.05)
    for tick in range(1, 6):
        await asyncio.sleep(0.1)
        assert connection.watch(time.monotonic(), 0.1) == pytest.approx(tick * 0.1)
    sender.cancel()


async def test_a_write_that_waits_while_the_kernel_takes_bytes_is_slow_not_stalled() -> None:
    connection = Connection(ALICE, "r", "127.0.0.1", batch=False, capacity=100)
    unsent = [140_000]
    connection.unsent = lambda: unsent[0]
    connection.writing_since = 0.0  # one big frame's write, waiting all along
    assert connection.watch(1.0, 1.0) == 1.0, "the first look has nothing to compare with"
    for second in range(2, 30):
        unsent[0] -= 4_000  # the client reads 4 KB a second
        assert connection.watch(float(second), 1.0) == 0.0
    assert connection.backed_up
    for second in range(30, 40):  # now it reads nothing
        assert connection.watch(float(second), 1.0) == second - 29
