"""SQLite's WAL copied into the database file now and then, on a reader connection (its
own thread), so that no commit waits for it (database.create_database's
`background_checkpoints` turns the writer's own checkpoints off)."""

from __future__ import annotations

import asyncio
import logging

from .database import Database

log = logging.getLogger(__name__)


class WalCheckpoints:
    """A task that checkpoints `database` every `interval` seconds while it runs."""

    def __init__(self, database: Database, interval: float = 1.0) -> None:
        self.database = database
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._checkpoint_now_and_then())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _checkpoint_now_and_then(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.database.checkpoint()
            except Exception as exc:  # a full disk, a lock: try again next time
                if not failing:  # one line when it starts failing, not one a second
                    log.warning("WAL checkpoints are failing: %s", exc)
                failing = True
            else:
                if failing:
                    log.info("WAL checkpoints work again")
                failing = False
