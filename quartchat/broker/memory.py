"""One process: events go straight from publisher to the hub's delivery task."""

from __future__ import annotations

import asyncio

from . import Broker, Event


class MemoryBroker(Broker):
    def __init__(self) -> None:
        # Unbounded on purpose: it holds events between two steps of one loop and is
        # drained by a task that only copies them into the (bounded) connection queues.
        self._events: asyncio.Queue[Event] = asyncio.Queue()

    async def connect(self) -> None:
        pass

    async def disconnect(self) -> None:
        pass

    async def publish(self, event: Event) -> None:
        self._events.put_nowait(event)

    async def next_published(self) -> Event:
        return await self._events.get()
