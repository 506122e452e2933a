"""The Redis broker against a real redis-server that goes away and comes back.

Redis pub/sub is at-most-once, so whatever is published while a subscriber is cut off
is gone for it; the broker must say so (a Resync, after which the hub repairs its rooms
from the database) after every reconnection, however it came about. redis-py can
reconnect a pub/sub connection and resubscribe by itself (its default retry policy);
a reconnection the broker did not see would lose those messages without a repair.
"""

from __future__ import annotations

import asyncio

from quartchat.broker import Committed, Event, Resync, Revoked
from quartchat.broker.redis import RedisBroker, decode, encode
from quartchat.protocol import StoredMessage, UserRef

from ..conftest import RedisServer


def committed(message_id: int) -> Committed:
    message = StoredMessage(
        id=message_id, room="r", user=UserRef("u", "ann"), text=f"m{message_id}", ts_ms=1, client_id=None, prev_id=0
    )
    return Committed((message,), "elsewhere")


async def next_event(broker: RedisBroker, timeout: float = 15.0) -> Event:
    return await asyncio.wait_for(broker.next_published(), timeout)


async def test_a_subscriber_cut_off_by_a_redis_restart_is_told_to_resync(redis_server: RedisServer) -> None:
    subscriber, publisher = RedisBroker(redis_server.url, "test"), RedisBroker(redis_server.url, "test")
    await subscriber.connect()
    await publisher.connect()
    try:
        await publisher.publish(committed(1))
        assert await next_event(subscriber) == committed(1)

        waiting = asyncio.ensure_future(next_event(subscriber))
        await asyncio.sleep(0.2)  # the subscriber is blocked reading its connection
        redis_server.stop()
        await asyncio.sleep(0.3)  # well inside redis-py's own retry window (10 tries, up to 1 s apart)
        redis_server.start()

        # The first thing the subscriber hears after the outage is a Resync: anything
        # published meanwhile is lost for it and must be read from the database.
        assert isinstance(await waiting, Resync)
        # And it is subscribed again: what is published now reaches it.
        # The publisher's pooled connection died too; its one retry uses a new one.
        await publisher.publish(committed(2))
        event = await next_event(subscriber)
        while isinstance(event, Resync):  # a second reconnection in the window, if any
            event = await next_event(subscriber)
        assert event == committed(2)
    finally:
        await subscriber.disconnect()
        await publisher.disconnect()


async def test_a_subscriber_whose_connection_is_dropped_while_redis_stays_up_is_told_to_resync(
    redis_server: RedisServer,
) -> None:
    """A blip (a proxy restart, CLIENT KILL, a network hiccup): redis-py's retry could
    reconnect and resubscribe at once, silently; the broker must still say Resync."""
    subscriber, publisher = RedisBroker(redis_server.url, "test"), RedisBroker(redis_server.url, "test")
    await subscriber.connect()
    await publisher.connect()
    try:
        waiting = asyncio.ensure_future(next_event(subscriber))
        await asyncio.sleep(0.2)
        killed = await publisher.redis.client_kill_filter(_type="pubsub")
        assert killed == 2  # both brokers subscribe; the publisher's own one too
        assert isinstance(await waiting, Resync)
        await publisher.publish(committed(3))
        assert await next_event(subscriber) == committed(3)
    finally:
        await subscriber.disconnect()
        await publisher.disconnect()


async def test_publishing_while_redis_is_down_fails_quickly(redis_server: RedisServer) -> None:
    """The writer hands each batch to the broker; a dead Redis must not hold it for seconds
    (the hub then delivers the batch locally and the other processes repair on Resync)."""
    publisher = RedisBroker(redis_server.url, "test")
    await publisher.connect()
    try:
        await publisher.publish(committed(1))
        redis_server.stop()
        loop = asyncio.get_running_loop()
        started = loop.time()
        failed = False
        try:
            await asyncio.wait_for(publisher.publish(committed(2)), 10)
        except Exception:
            failed = True
        elapsed = loop.time() - started
        assert failed, "a publish to a stopped Redis reported success"
        assert elapsed < 1.0, f"a publish to a stopped Redis took {elapsed:.2f} s to fail"
    finally:
        await publisher.disconnect()


async def test_a_revoked_event_crosses_redis_whole(redis_server: RedisServer) -> None:
    broker = RedisBroker(redis_server.url, "test")
    await broker.connect()
    try:
        sent = Revoked(("s1", "s2"), ("u1",), room="r", code=4003, reason="Not a member", origin="o")
        assert decode(encode(sent)) == sent
        everyone_else = Revoked(room="r", code=4004, reason="Invalid room", origin="o", all_but=("u1",))
        assert decode(encode(everyone_else)) == everyone_else
        await broker.publish(sent)
        assert await next_event(broker) == sent
    finally:
        await broker.disconnect()
