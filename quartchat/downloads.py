"""Streamed downloads (history exports) that a graceful shutdown waits for."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

log = logging.getLogger(__name__)


class Downloads:
    def __init__(self) -> None:
        self.under_way = 0
        self._none_under_way = asyncio.Event()
        self._none_under_way.set()

    async def tracked(self, pieces: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """A response body, counted while it streams."""
        self.under_way += 1
        self._none_under_way.clear()
        try:
            async for piece in pieces:
                yield piece
        finally:
            self.under_way -= 1
            if not self.under_way:
                self._none_under_way.set()

    async def finished(self, grace: float) -> None:
        """Wait up to `grace` seconds for the downloads under way to end."""
        try:
            await asyncio.wait_for(self._none_under_way.wait(), grace)
        except TimeoutError:
            log.warning("%d downloads were cut short by the shutdown", self.under_way)
