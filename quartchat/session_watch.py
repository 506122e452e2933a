"""Sessions that end elsewhere end their sockets here; expired sessions are purged.

A sign-out in this process closes the session's sockets at once, in every process, by
the hub's `Revoked` event (web_session.end_session). A change the broker never hears of — a
password set with the command line (another process), a row deleted by hand, a session
that expired — is found by this watch: every CHECK_SECONDS it asks the database, in one
query per few hundred sessions, which of the sessions with a socket open here are still
live, and closes the sockets of the others with 4001. A bot token's sockets carry the
session id `token:<id>` (quartchat/tokens.py), so a token revoked or a user disabled
with the command line is found the same way. It also deletes the rows of expired
sessions, so that the table holds only live ones.
"""

from __future__ import annotations

import asyncio
import logging
import time

from .broker import Revoked
from .hub import Hub
from .store import Store
from .writes import Writes

log = logging.getLogger(__name__)

CHECK_SECONDS = 5.0  # a change made in another process reaches the sockets within ~this
PURGE_SECONDS = 3600.0


class SessionWatch:
    def __init__(self, hub: Hub, store: Store, writes: Writes, interval: float = CHECK_SECONDS) -> None:
        self.hub = hub
        self.store = store
        self.writes = writes
        self.interval = interval
        # Expired rows are deleted hourly, or as often as a short lifetime needs.
        self.purge_interval = min(PURGE_SECONDS, max(interval, store.session_lifetime_ms / 1000))
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._watch_forever(), name="session-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def check(self) -> int:
        """Close the sockets of sessions that are no longer live; how many closed."""
        open_sessions = {c.session_id for c in self.hub.connections if c.session_id is not None}
        if not open_sessions:
            return 0
        ended = open_sessions - await self.store.live_sessions(open_sessions)
        if not ended:
            return 0
        closed = self.hub.close_revoked(Revoked(session_ids=tuple(sorted(ended))))
        log.info("closed %d sockets of %d sessions that ended elsewhere or expired", closed, len(ended))
        return closed

    async def _watch_forever(self) -> None:
        next_purge = time.monotonic()
        failing = False
        while True:
            try:
                if time.monotonic() >= next_purge:
                    next_purge = time.monotonic() + self.purge_interval
                    purged = await self.writes.purge_expired_sessions()
                    if purged:
                        log.info("purged %d expired sessions", purged)
                await self.check()
            except Exception as exc:  # the database away: the writer refuses their messages meanwhile
                if not failing:
                    log.warning("checking sessions failed: %s", exc)
                failing = True
            else:
                failing = False
            await asyncio.sleep(self.interval)
