"""Sign-in throttling: free failures, doubling waits capped at a minute, forgetting."""

from __future__ import annotations

import pytest

from quartchat.rate_limits import (
    FREE_PER_ADDRESS,
    FREE_PER_NAME,
    MAX_DELAY_SECONDS,
    WINDOW_SECONDS,
    SignInThrottle,
    SignUpLimit,
)
from quartchat.settings import RateLimit


def test_a_few_failures_are_free_then_each_waits_twice_as_long_up_to_a_minute() -> None:
    throttle = SignInThrottle()
    for i in range(FREE_PER_NAME):
        assert throttle.retry_after("alice", "a", now=float(i)) == 0
        throttle.failed("alice", f"addr-{i}", now=float(i))  # other addresses: only the name counts
    last = float(FREE_PER_NAME - 1)
    assert throttle.retry_after("alice", "x", now=last) == 1.0
    waits = []
    now = last
    for _ in range(10):
        now += throttle.retry_after("alice", "x", now=now)
        throttle.failed("alice", "x", now=now)
        waits.append(throttle.retry_after("alice", "x", now=now))
    assert waits[:5] == [2.0, 4.0, 8.0, 16.0, 32.0]
    assert max(waits) == MAX_DELAY_SECONDS, "never more than a minute: no one is locked out for good"
    assert throttle.retry_after("bob", "y", now=now) == 0, "other names are not affected"


def test_a_quiet_window_forgets_and_a_success_resets_the_name() -> None:
    throttle = SignInThrottle()
    for i in range(FREE_PER_NAME + 3):
        throttle.failed("carol", "z", now=float(i))
    assert throttle.retry_after("carol", "z", now=10.0) > 0
    assert throttle.retry_after("carol", "z", now=10.0 + WINDOW_SECONDS + 1) == 0
    throttle.succeeded("carol")
    assert throttle.retry_after("carol", "other", now=10.0) == 0


def test_one_address_trying_many_names_is_slowed_too() -> None:
    throttle = SignInThrottle()
    for i in range(FREE_PER_ADDRESS):
        throttle.failed(f"name-{i}", "203.0.113.9", now=float(i))
    assert throttle.retry_after("a-fresh-name", "203.0.113.9", now=float(FREE_PER_ADDRESS - 1)) == 1.0
    assert throttle.retry_after("a-fresh-name", "198.51.100.1", now=float(FREE_PER_ADDRESS - 1)) == 0


def test_sign_ups_per_address_wait_for_the_oldest_to_leave_the_window(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr("quartchat.rate_limits.time.monotonic", lambda: now[0])
    signups = SignUpLimit(RateLimit(2, 60.0))
    assert [signups.take("a"), signups.take("a")] == [0.0, 0.0]
    now[0] += 15
    assert signups.take("a") == 45.0, "the first sign-up leaves the window in 45 s"
    assert signups.take("b") == 0.0, "another address has its own count"
    now[0] += 45
    assert signups.take("a") == 0.0
