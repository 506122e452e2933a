"""Rate limits: chat messages per user and room, refusals per connection (sliding
windows), failed sign-ins per name and address (doubling waits) and new accounts per
address (QUARTCHAT_SIGNUP_LIMIT)."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

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

    def retry_after(self, user_id: str, room: str) -> float:
        """Seconds until the user may post in the room again (0: now)."""
        window = self._windows.get((user_id, room))
        return 0.0 if window is None else window.wait()

    def _forget_idle(self) -> None:
        now = time.monotonic()
        for key in [k for k, w in self._windows.items() if w.idle(now)]:
            del self._windows[key]


def flood_limit(limit: RateLimit) -> RateLimit:
    """Refusals a connection may collect in one window before it is closed with 1008."""
    return RateLimit(count=2 * limit.count + 10, seconds=limit.seconds)


# Sign-in throttling (brute force), per name and per address, that never locks a
# victim out for long: after a few free failures each further attempt must wait twice
# as long as the last (at most a minute), and a quiet quarter of an hour forgets them.

FREE_PER_NAME = 5
FREE_PER_ADDRESS = 20
WINDOW_SECONDS = 15 * 60
MAX_DELAY_SECONDS = 60.0


@dataclass
class _Failures:
    count: int = 0
    last: float = 0.0


class SignInThrottle:
    def __init__(self) -> None:
        self._by_name: dict[str, _Failures] = {}
        self._by_address: dict[str, _Failures] = {}

    def retry_after(self, name_key: str, address: str, now: float | None = None) -> float:
        """Seconds to wait before this attempt may be checked (0: go ahead)."""
        now = time.monotonic() if now is None else now
        return max(
            self._wait(self._by_name.get(name_key), FREE_PER_NAME, now),
            self._wait(self._by_address.get(address), FREE_PER_ADDRESS, now),
        )

    def failed(self, name_key: str, address: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for table, key in ((self._by_name, name_key), (self._by_address, address)):
            failures = table.get(key)
            if failures is None or now - failures.last > WINDOW_SECONDS:
                failures = table[key] = _Failures()
            failures.count += 1
            failures.last = now
        if len(self._by_name) + len(self._by_address) > 100_000:
            self._forget(now)

    def succeeded(self, name_key: str) -> None:
        self._by_name.pop(name_key, None)

    @staticmethod
    def _wait(failures: _Failures | None, free: int, now: float) -> float:
        if failures is None or failures.count < free or now - failures.last > WINDOW_SECONDS:
            return 0.0
        delay = min(MAX_DELAY_SECONDS, 2.0 ** (failures.count - free))
        return max(0.0, failures.last + delay - now)

    def _forget(self, now: float) -> None:
        for table in (self._by_name, self._by_address):
            for key in [k for k, f in table.items() if now - f.last > WINDOW_SECONDS]:
                del table[key]


class SignUpLimit:
    """At most `limit.count` new accounts from one address in any `limit.seconds`
    (counted in each process)."""

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self._by_address: dict[str, SlidingWindow] = {}

    def take(self, address: str) -> float:
        """Count a sign-up from `address` and answer 0, or the seconds it must wait
        (nothing counted). Check and count happen together, so concurrent sign-ups
        cannot all pass."""
        window = self._by_address.get(address)
        if window is None:
            if len(self._by_address) > 10_000:
                for key in [k for k, w in self._by_address.items() if w.idle()]:
                    del self._by_address[key]
            window = self._by_address[address] = SlidingWindow(self.limit)
        return 0.0 if window.allow() else max(window.wait(), 1.0)
