"""The WebSocket transport: Quart's routing and context, without Quart's receiver task.

Quart serves each WebSocket with three tasks and an unbounded queue: its own task
(waiting on the other two), a receiver task that reads every frame Hypercorn delivers
into the queue, and the handler's task. The queue is where a sender's frames piled up
while the intake was paused (docs/reliability.md, "Overload"), and the tasks are a
good part of the memory an idle connection costs (docs/performance.md, issue 25).

`DirectWebsocket` (app.py sets it as Quart's `asgi_websocket_class`) runs the handler
in Hypercorn's own task for the socket and reads a frame from Hypercorn only when the
handler asks for one. Hypercorn hands frames over through a queue of
`max_app_queue_size` (10): once it is full, Hypercorn stops reading the socket, its
stream reader pauses the transport, and the kernel's receive buffer fills until the
sender's TCP window closes. A paused intake then costs the server a few frames per
connection, not whatever the sender cares to send.

Everything else is Quart's: routing, the websocket context (`websocket`, `session`,
`g`), the refusals before the upgrade (a Response becomes an HTTP answer), the close.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from quart.asgi import ASGIWebsocketConnection

from .hypercorn_lean import AppQueue, slim

# After the handler has closed the socket, how long to read on for the client's close
# (and any frames it sent before it) so that Hypercorn's delivery never waits on a
# queue no one reads.
DRAIN_SECONDS = 2.0


class Disconnected(asyncio.CancelledError):
    """The client went (or the server closed the stream): the handler's receive ends
    as Quart's would, by cancellation (ws.py lets an outside cancellation pass)."""


class DirectWebsocket(ASGIWebsocketConnection):
    """One WebSocket, served in the task Hypercorn started for it."""

    def __init__(self, app: Any, scope: Any) -> None:  # Quart's, less its queue
        self.app = app
        self.scope = scope
        self._accepted = False
        self._closed = False
        # Where Quart's websocket takes its frames from (`self.queue.get`): Hypercorn, not
        # a queue of ours. Methods, not closures: memory per idle connection (issue 25).
        self.queue = self  # type: ignore[assignment]
        self._receive: Any = None
        self._task: asyncio.Task[Any] | None = None
        self._gone = False  # the client went: Hypercorn delivered (or is delivering) the disconnect
        self._reading = False

    async def __call__(self, receive: Any, send: Any) -> None:
        self._task = asyncio.current_task()
        assert self._task is not None
        self._receive = receive
        _on_disconnect(receive, send, self._hung_up)
        slim(send)
        websocket = self._create_websocket_from_scope(send)
        try:
            await self.handle_websocket(websocket, send)
        except asyncio.CancelledError:
            if not self._gone or self._task.uncancel() > 0:  # not the client's going: the server's
                raise
        finally:
            self._gone = True  # handled: a disconnect from here on cancels nothing
        if self._accepted:
            await _drain(receive)

    async def get(self) -> str | bytes:
        """The next frame from Hypercorn, as Quart hands it over (`bytes or text`)."""
        if self._gone:
            raise Disconnected()
        self._reading = True
        try:
            while True:
                event = await self._receive()
                if event["type"] == "websocket.receive":
                    message: str | bytes = event.get("bytes") or event["text"]
                    return message
                if event["type"] == "websocket.disconnect":
                    self._gone = True
                    raise Disconnected()
                # websocket.connect, Hypercorn's first: the handshake Quart answers
        finally:
            self._reading = False

    def _hung_up(self) -> None:
        """The client went while the handler was not reading (opening, or its intake
        paused): stop it now, as Quart's receiver task did, not at its next read."""
        if not self._gone and not self._reading and self._task is not None:
            self._gone = True
            self._task.cancel()


def _on_disconnect(receive: Any, send: Any, callback: Callable[[], None]) -> None:
    """Call `callback` when Hypercorn delivers this socket's disconnect (before it is
    queued). Under `quartchat serve` `receive` is the AppQueue's (hypercorn_lean.py),
    which calls it; under Hypercorn's own queue, `send` is its stream's bound method, and
    the stream delivers every event through `app_put` (as compression.py reaches the
    handshake); under any other server the disconnect is seen at the next read."""
    queue = getattr(receive, "__self__", None)
    if isinstance(queue, AppQueue):
        queue.hung_up = callback
        return
    stream: Any = getattr(send, "__self__", None)
    put = getattr(stream, "app_put", None)
    if put is None:
        return

    async def app_put(event: Any) -> None:
        if event["type"] == "websocket.disconnect":
            callback()
        await put(event)

    stream.app_put = app_put


async def _drain(receive: Any) -> None:
    """Read until the disconnect (or for DRAIN_SECONDS): frames the client sent after
    the handler stopped reading are dropped, and Hypercorn's last delivery (the
    disconnect) finds room in its queue."""
    try:
        async with asyncio.timeout(DRAIN_SECONDS):
            while (await receive())["type"] != "websocket.disconnect":
                pass
        return
    except TimeoutError:
        pass
    queue = getattr(receive, "__self__", None)  # Hypercorn's queue: empty it at once
    if isinstance(queue, asyncio.Queue | AppQueue):
        while not queue.empty():
            queue.get_nowait()
