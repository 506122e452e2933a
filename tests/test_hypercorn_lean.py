"""hypercorn_lean.py: the bounded hand-over queue Hypercorn uses under `quartchat serve`."""

from __future__ import annotations

import asyncio
import collections
import inspect
from types import SimpleNamespace
from typing import Any

import pytest
from hypercorn.asyncio import task_group, tcp_server

from quartchat.hypercorn_lean import AppQueue, LeanTaskGroup, install, slim


def event(n: int) -> Any:
    return {"type": "websocket.receive", "text": str(n)}


async def test_put_waits_while_full_and_get_takes_in_order() -> None:
    queue = AppQueue(3)
    for n in range(3):
        await queue.put(event(n))
    late = asyncio.create_task(queue.put(event(3)))
    await asyncio.sleep(0.01)
    assert not late.done()  # full: Hypercorn's reader waits, and stops reading the socket
    assert [(await queue.get())["text"] for _ in range(2)] == ["0", "1"]
    await late
    assert [(await queue.get())["text"] for _ in range(2)] == ["2", "3"]
    assert queue.empty()
    with pytest.raises(asyncio.QueueEmpty):
        queue.get_nowait()
    assert queue._getters is None and queue._putters is None  # nothing held while idle


async def test_get_waits_for_a_put() -> None:
    queue = AppQueue(10)
    getter = asyncio.create_task(queue.get())
    await asyncio.sleep(0.01)
    assert not getter.done()
    await queue.put(event(7))
    assert (await getter)["text"] == "7"


async def test_a_cancelled_woken_getter_passes_the_event_on() -> None:
    queue = AppQueue(10)
    first = asyncio.create_task(queue.get())
    second = asyncio.create_task(queue.get())
    await asyncio.sleep(0.01)
    await queue.put(event(1))  # wakes the first...
    first.cancel()  # ...which is cancelled before it runs: the second gets the event
    assert (await second)["text"] == "1"
    assert first.cancelled()
    assert queue.empty()


async def test_a_cancelled_putter_leaves_no_event_and_the_next_goes_in() -> None:
    queue = AppQueue(1)
    await queue.put(event(0))
    cancelled = asyncio.create_task(queue.put(event(1)))
    waiting = asyncio.create_task(queue.put(event(2)))
    await asyncio.sleep(0.01)
    cancelled.cancel()
    assert (await queue.get())["text"] == "0"
    await waiting
    assert (await queue.get())["text"] == "2"
    assert queue.empty()


async def test_unbounded_like_asyncio_queue() -> None:
    queue = AppQueue(0)
    for n in range(100):
        await queue.put(event(n))
    assert (await queue.get())["text"] == "0"


async def test_hung_up_is_called_as_the_disconnect_is_delivered() -> None:
    queue = AppQueue(1)
    seen: list[bool] = []
    queue.hung_up = lambda: seen.append(queue.empty())
    await queue.put(event(0))
    assert seen == []
    putter = asyncio.create_task(queue.put({"type": "websocket.disconnect", "code": 1000}))
    await asyncio.sleep(0.01)
    assert seen == []  # still waiting for room
    await queue.get()
    await putter
    assert seen == [True]  # told before it was queued
    assert (await queue.get())["type"] == "websocket.disconnect"


def test_install_replaces_hypercorns_task_group_with_the_same_signature() -> None:
    # A Hypercorn upgrade that changes spawn_app fails here, not in production.
    assert inspect.signature(LeanTaskGroup.spawn_app) == inspect.signature(task_group.TaskGroup.spawn_app)
    source = inspect.getsource(task_group.TaskGroup.spawn_app)
    assert "asyncio.Queue(config.max_app_queue_size)" in source and "return app_queue.put" in source
    original = tcp_server.TaskGroup  # type: ignore[attr-defined]
    try:
        install()
        assert tcp_server.TaskGroup is LeanTaskGroup  # type: ignore[attr-defined]
    finally:
        tcp_server.TaskGroup = original  # type: ignore[attr-defined]


class _TCPServer:  # Hypercorn's shapes, as far as slim() reads them
    def __init__(self, stream_protocol: Any) -> None:
        self.writer = SimpleNamespace(_protocol=stream_protocol)

    async def protocol_send(self) -> None:  # pragma: no cover - only bound
        pass


class _H11Protocol:
    def __init__(self, tcp_server: _TCPServer, event: asyncio.Event) -> None:
        self.can_read = SimpleNamespace(_event=event)
        self.send = tcp_server.protocol_send

    async def stream_send(self) -> None:  # pragma: no cover - only bound
        pass


class _WSStream:
    def __init__(self, protocol: _H11Protocol) -> None:
        self.send = protocol.stream_send

    async def app_send(self) -> None:  # pragma: no cover - only bound
        pass


def test_slim_swaps_only_empty_deques_along_hypercorns_chain() -> None:
    event = asyncio.Event()
    stream_protocol = SimpleNamespace(_drain_waiters=collections.deque(["a write draining"]))
    slim(_WSStream(_H11Protocol(_TCPServer(stream_protocol), event)).app_send)
    assert type(event._waiters) is list  # type: ignore[attr-defined]
    assert type(stream_protocol._drain_waiters) is collections.deque  # in use: left alone
    assert list(stream_protocol._drain_waiters) == ["a write draining"]
    slim(print)  # any other server's send: nothing changed, no error
