"""Publishing to the other processes: a batch the broker refused is published again;
presence changes and revocations go out in order, and one that fails is dropped."""

from __future__ import annotations

import logging

import pytest

from quartchat.broker import Committed, Event, Presence, Revoked
from quartchat.broker.memory import MemoryBroker
from quartchat.outbox import Outbox
from quartchat.protocol import JOIN, LEFT, StoredMessage, UserRef

from .support import until

ALICE = UserRef("a", "alice")


def committed(message_id: int, prev_id: int) -> Committed:
    return Committed((StoredMessage(message_id, "r", ALICE, f"m{message_id}", 0, prev_id=prev_id),), "here")


class RecordingBroker(MemoryBroker):
    """Keeps what is published, after refusing the first `failures` publishes as Redis
    would when it is away (test_broker.py and test_scale.py use the real one)."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.sent: list[Event] = []

    async def publish(self, event: Event) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("broker away")
        self.sent.append(event)


async def test_a_batch_whose_publish_failed_is_published_again_once_the_broker_takes_publishes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = RecordingBroker(failures=3)  # the first publish and two retries fail
    outbox = Outbox(broker)
    outbox.start()
    try:
        with caplog.at_level(logging.WARNING, "quartchat.outbox"):
            await outbox.publish_committed(committed(1, 0))
        assert not broker.sent
        assert "broker unavailable" in caplog.text, "the failure is logged (test_scale.py looks for it)"
        await until(lambda: broker.sent, "published again (retries after 0.2, 0.4 and 0.8 s)")
        assert broker.sent == [committed(1, 0)]
        await outbox.publish_committed(committed(2, 1))
        assert broker.sent == [committed(1, 0), committed(2, 1)], "and the broker's back: published at once"
    finally:
        await outbox.stop()


async def test_batches_kept_during_an_outage_are_published_again_in_commit_order() -> None:
    broker = RecordingBroker(failures=3)
    outbox = Outbox(broker)
    outbox.start()
    try:
        for message_id in (1, 2, 3):  # three refused: the retries start once the outage ends
            await outbox.publish_committed(committed(message_id, message_id - 1))
        await until(lambda: len(broker.sent) == 3, "all three published again")
        assert broker.sent == [committed(1, 0), committed(2, 1), committed(3, 2)]
    finally:
        await outbox.stop()


async def test_presence_changes_and_revocations_go_out_in_order_and_one_that_fails_is_dropped() -> None:
    broker = RecordingBroker(failures=1)
    outbox = Outbox(broker)
    outbox.start()
    try:
        lost = Presence(JOIN, "r", ALICE, 1, "here")
        posted = [Presence(LEFT, "r", ALICE, 2, "here"), Revoked(session_ids=("s",), origin="here")]
        for event in [lost, *posted]:
            outbox.post(event)
        await until(lambda: len(broker.sent) == 2, "the two after the failure are published")
        assert broker.sent == posted
    finally:
        await outbox.stop()
