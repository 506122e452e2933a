"""One process: there is no other process to reach.

The hub delivers this process's events to its connections itself, so a publish has
nowhere to go and nothing is ever handed back.
"""

from __future__ import annotations

import asyncio

from . import Broker, Event


class MemoryBroker(Broker):
    async def connect(self) -> None:
        pass

    async def disconnect(self) -> None:
        pass

    async def publish(self, event: Event) -> None:
        pass

    async def next_published(self) -> Event:
        never: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
        return await never
