"""Hypercorn's hand-over queue, leaner: memory per idle connection (docs/performance.md, issue 25).

Hypercorn hands every ASGI event of a connection to the app through an `asyncio.Queue`
of `max_app_queue_size` (hypercorn/asyncio/task_group.py, `TaskGroup.spawn_app`). An
asyncio.Queue holds three deques and an Event (a fourth deque) from the start: four
64-slot blocks, ~2.9 KiB for every idle WebSocket, whose queue is empty nearly always.
`AppQueue` is the same bounded hand-over (put waits while it is full, so a paused intake
still stops Hypercorn reading the socket: ws_asgi.py) with a list and waiters made only
while someone waits. `install()` (server.run) makes Hypercorn's asyncio worker use it.

It also tells ws_asgi.py of a WebSocket's disconnect as Hypercorn delivers it
(`hung_up`), which before took a wrapper around the stream's `app_put`.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from hypercorn.asyncio import task_group, tcp_server
from hypercorn.config import Config
from hypercorn.typing import AppWrapper, ASGIReceiveEvent, ASGISendEvent, Scope


class AppQueue:
    """asyncio.Queue's `put`, `get`, `get_nowait` and `empty`, for one app's events."""

    __slots__ = ("_getters", "_items", "_maxsize", "_putters", "hung_up")

    def __init__(self, maxsize: int) -> None:
        self._items: list[ASGIReceiveEvent] = []
        self._maxsize = maxsize
        self._getters: list[asyncio.Future[None]] | None = None  # made while someone waits
        self._putters: list[asyncio.Future[None]] | None = None
        # Called when Hypercorn delivers a WebSocket's disconnect, before it is queued.
        self.hung_up: Callable[[], None] | None = None

    def empty(self) -> bool:
        return not self._items

    def full(self) -> bool:
        return 0 < self._maxsize <= len(self._items)

    async def put(self, event: ASGIReceiveEvent) -> None:
        while self.full():
            # Inline, not a helper coroutine: a waiting frame less on every idle socket.
            putter = asyncio.get_running_loop().create_future()
            if self._putters is None:
                self._putters = []
            self._putters.append(putter)
            try:
                await putter
            except BaseException:
                _forget(self._putters, putter)
                if not self.full() and not putter.cancelled():
                    self._wake_putter()  # woken, then cancelled: the next one goes
                raise
        if self.hung_up is not None and event["type"] == "websocket.disconnect":
            self.hung_up()
        self._items.append(event)
        self._wake_getter()

    async def get(self) -> ASGIReceiveEvent:
        while not self._items:
            getter = asyncio.get_running_loop().create_future()
            if self._getters is None:
                self._getters = []
            self._getters.append(getter)
            try:
                await getter
            except BaseException:
                _forget(self._getters, getter)
                if self._items and not getter.cancelled():
                    self._wake_getter()  # woken, then cancelled: the next one takes it
                raise
        return self.get_nowait()

    def get_nowait(self) -> ASGIReceiveEvent:
        if not self._items:
            raise asyncio.QueueEmpty
        event = self._items.pop(0)
        self._wake_putter()
        return event

    def _wake_getter(self) -> None:
        self._getters = _wake_next(self._getters)

    def _wake_putter(self) -> None:
        self._putters = _wake_next(self._putters)


def _forget(waiters: list[asyncio.Future[None]] | None, waiter: asyncio.Future[None]) -> None:
    waiter.cancel()
    if waiters is not None and waiter in waiters:
        waiters.remove(waiter)


def _wake_next(waiters: list[asyncio.Future[None]] | None) -> list[asyncio.Future[None]] | None:
    """Wake the first waiter still waiting (as asyncio.Queue does); the list, or None
    once nobody waits."""
    while waiters:
        waiter = waiters.pop(0)
        if not waiter.done():
            waiter.set_result(None)
            break
    return waiters or None


class LeanTaskGroup(task_group.TaskGroup):
    """Hypercorn's per-connection task group, handing events over through an AppQueue."""

    async def spawn_app(
        self,
        app: AppWrapper,
        config: Config,
        scope: Scope,
        send: Callable[[ASGISendEvent | None], Awaitable[None]],
    ) -> Callable[[ASGIReceiveEvent], Awaitable[None]]:
        queue = AppQueue(config.max_app_queue_size)
        sync_spawn, call_soon = _helpers(self._loop)
        self.spawn(task_group._handle, app, config, scope, queue.get, send, sync_spawn, call_soon)
        return queue.put


_loop_helpers: dict[asyncio.AbstractEventLoop, tuple[Callable[..., Any], Callable[..., Any]]] = {}


def _helpers(loop: asyncio.AbstractEventLoop) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """Hypercorn's `sync_spawn` and `call_soon` for an app (made per connection by
    Hypercorn; they depend on the loop alone): one pair per loop."""
    helpers = _loop_helpers.get(loop)
    if helpers is None:
        helpers = _loop_helpers[loop] = (partial(loop.run_in_executor, None), partial(_call_soon, loop))
    return helpers


def _call_soon(loop: asyncio.AbstractEventLoop, func: Callable[..., Any], *args: Any) -> Any:
    return asyncio.run_coroutine_threadsafe(func(*args), loop).result()


def slim(send: Any) -> None:
    """Swap two empty deques of an open WebSocket for lists (0.7 KiB each: a deque holds a
    64-slot block from the start): Hypercorn's `H11Protocol.can_read` Event, which
    nothing waits on once the connection is a WebSocket, and asyncio's stream protocol's
    `_drain_waiters`, waited on only while a write drains. Both are only appended to,
    removed from and iterated, which a list does as well. Reached as asgi_send.py reaches
    the TCP server; under any other server, nothing is changed."""
    try:
        protocol: Any = send.__self__.send.__self__
        stream_protocol: Any = protocol.send.__self__.writer._protocol
        can_read = protocol.can_read._event  # Hypercorn's EventWrapper around an asyncio.Event
        owners = ((can_read, "_waiters"), (stream_protocol, "_drain_waiters"))
    except AttributeError:
        return
    for owner, name in owners:
        waiters = getattr(owner, name, None)
        if type(waiters) is collections.deque and not waiters:
            setattr(owner, name, [])


def install() -> None:
    """Make Hypercorn's asyncio TCP server use LeanTaskGroup (the worker of `quartchat serve`)."""
    tcp_server.TaskGroup = LeanTaskGroup  # type: ignore[attr-defined]
