"""PresenceGrace: a last connection's removal waits out the grace; a return cancels it."""

from __future__ import annotations

import asyncio

from quartchat.presence import MemoryPresence, PresenceGrace
from quartchat.protocol import UserRef

ALICE = UserRef("a", "alice")
GRACE = 0.2


async def test_a_return_within_the_grace_is_neither_a_last_nor_a_first_connection() -> None:
    presence = PresenceGrace(MemoryPresence(), GRACE)
    assert await presence.add("lobby", ALICE) is True
    leaving = asyncio.create_task(presence.remove("lobby", ALICE))
    await asyncio.sleep(GRACE / 4)
    assert await presence.online("lobby") == [ALICE], "online during the grace"
    assert await presence.add("lobby", ALICE) is False, "no join for the return"
    assert await leaving is False, "no left for the departure"
    assert await presence.online("lobby") == [ALICE]


async def test_a_departure_counts_once_the_grace_is_over() -> None:
    presence = PresenceGrace(MemoryPresence(), GRACE)
    await presence.add("lobby", ALICE)
    started = asyncio.get_running_loop().time()
    assert await presence.remove("lobby", ALICE) is True
    assert asyncio.get_running_loop().time() - started >= GRACE * 0.9
    assert await presence.online("lobby") == []
    assert await presence.add("lobby", ALICE) is True, "a later return is a join again"


async def test_a_return_after_the_grace_ran_out_keeps_the_count_right() -> None:
    presence = PresenceGrace(MemoryPresence(), 0)
    await presence.add("lobby", ALICE)
    assert await presence.remove("lobby", ALICE) is True
    assert await presence.add("lobby", ALICE) is True
    assert await presence.online("lobby") == [ALICE]
