"""Sliding-window limits: chat messages per user and room, refusals per connection."""

from __future__ import annotations

import time
from collections import deque

from .settings import RateLimit


class SlidingWindow:
    """At most `limit.count` events in any `limit.seconds`."""

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self._times: deque[float] = deque(maxlen=limit.count)

    def allow(self, now: float | None = None) -> bool:
        """Record an event if it fits the window; False (nothing recorded) if not."""
        now = time.monotonic() if now is None else now
        if len(self._times) == self.limit.count and now - self._times[0] < self.limit.seconds:
            return False
        self._times.append(now)
        return True

    def wait(self, now: float | None = None) -> float:
        """Seconds until an event would fit the window (0: it fits now)."""
        now = time.monotonic() if now is None else now
        if len(self._times) < self.limit.count:
            return 0.0
        return max(0.0, self._times[0] + self.limit.seconds - now)

    def idle(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        return not self._times or now - self._times[-1] >= self.limit.seconds


class RateLimiter:
    """One window per (user id, room), shared by all of that user's tabs in the room."""

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self._windows: dict[tuple[str, str], SlidingWindow] = {}

    def allow(self, user_id: str, room: str) -> bool:
        window = self._windows.get((user_id, room))
        if window is None:
            if len(self._windows) > 10_000:
                self._forget_idle()
            window = self._windows[(user_id, room)] = SlidingWindow(self.limit)
        return window.allow()

    def _forget_idle(self) -> None:
        now = time.monotonic()
        for key in [k for k, w in self._windows.items() if w.idle(now)]:
            del self._windows[key]


def flood_limit(limit: RateLimit) -> RateLimit:
    """Refusals a connection may collect in one window before it is closed with 1008."""
    return RateLimit(count=2 * limit.count + 10, seconds=limit.seconds)
