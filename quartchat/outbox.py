"""Publishing to the other processes: committed batches, presence changes, revocations.

The hub has delivered every event to this process's own connections before it comes
here; the outbox only carries it to the other processes, through the broker (which
hands it back to this process too, where the hub ignores it by its origin).

A committed batch whose publish fails is kept and published again once the broker takes
publishes: the other processes may have resynced already (their subscription came back
before our publish failed), so only this copy tells them. A presence change or a
revocation that cannot be published is logged and dropped: the presence counts catch
up with the next joins and leaves, and the other processes' session checks close a
revoked session's sockets (docs/scaling.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from .broker import Broker, Committed, MemberAdded, Presence, ReadMoved, Revoked

log = logging.getLogger(__name__)

# Beyond this many kept batches the oldest go: an outage that long has cut every
# subscriber, and they all resync from the database.
UNPUBLISHED_MAX = 10_000
REPUBLISH_FIRST_SECONDS = 0.2
REPUBLISH_MAX_SECONDS = 5.0


class Outbox:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self._posted: asyncio.Queue[Presence | Revoked | MemberAdded | ReadMoved] = asyncio.Queue()
        self._unpublished: deque[Committed] = deque()
        self._republish = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._publish_posted_forever(), name="outbox-publish"),
            loop.create_task(self._republish_forever(), name="outbox-republish"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def publish_committed(self, event: Committed) -> None:
        """Publish a committed batch now, or keep it to publish again later.

        The writer's hand-off awaits this, so batches leave in commit order and a
        shutdown that has closed the writer has published every batch it could.
        """
        try:
            await self.broker.publish(event)
        except Exception as exc:
            log.warning(
                "broker unavailable (%s): %d messages reach the other processes once it is back",
                exc,
                len(event.messages),
            )
            if len(self._unpublished) >= UNPUBLISHED_MAX:
                self._unpublished.popleft()
            self._unpublished.append(event)
            self._republish.set()

    def post(self, event: Presence | Revoked | MemberAdded | ReadMoved) -> None:
        """Queue a presence change, a revocation, a new membership or read positions for
        publishing, in the order posted."""
        self._posted.put_nowait(event)

    async def _publish_posted_forever(self) -> None:
        while True:
            event = await self._posted.get()
            try:
                await self.broker.publish(event)
            except Exception as exc:
                log.warning("publishing a %s event failed (only this process heard it): %s", type(event).__name__, exc)

    async def _republish_forever(self) -> None:
        delay = REPUBLISH_FIRST_SECONDS
        while True:
            await self._republish.wait()
            await asyncio.sleep(delay)
            while self._unpublished:
                try:
                    await self.broker.publish(self._unpublished[0])
                except Exception:
                    delay = min(delay * 2, REPUBLISH_MAX_SECONDS)
                    break
                self._unpublished.popleft()
            else:
                log.info("broker back: published again what could not be published")
                self._republish.clear()
                delay = REPUBLISH_FIRST_SECONDS
