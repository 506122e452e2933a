"""The message writer: group commit, the linger, ids in commit order, hand-off, failures.

The SQL of a batch is tested in tests/test_writes.py."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from quartchat.database import Database
from quartchat.metrics import Metrics
from quartchat.protocol import StoredMessage, UserRef
from quartchat.store import Store
from quartchat.writer import Draft, MessageWriter, OnCommit, Outcome, Unavailable
from quartchat.writes import SessionEnded, create_writes

from .support import ALICE, until


def new_writer(database: Database, on_commit: OnCommit, **options: Any) -> MessageWriter:
    return MessageWriter(create_writes(database), on_commit, Metrics(), **options)


class Watched(MessageWriter):
    """A writer that says when it has taken a batch and begun committing it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.committing = threading.Event()  # set from the writer's thread

    async def _commit(self, drafts: list[Draft]) -> list[Outcome | SessionEnded] | None:
        self.committing.set()
        return await super()._commit(drafts)


class Committed:
    def __init__(self) -> None:
        self.batches: list[list[StoredMessage]] = []

    async def __call__(self, messages: Sequence[StoredMessage]) -> None:
        self.batches.append(list(messages))


async def test_concurrent_messages_share_commits_and_come_out_in_id_order(database: Database) -> None:
    committed = Committed()
    writer = new_writer(database, committed)
    writer.start()
    outcomes = await asyncio.gather(*(writer.submit(Draft("r", ALICE, f"m{i}")) for i in range(200)))
    await writer.close()
    ids = [o.message.id for o in outcomes]
    assert ids == sorted(ids) and len(set(ids)) == 200
    assert [m.text for o in outcomes for m in [o.message]] == [f"m{i}" for i in range(200)]
    assert writer.batches < 20, f"{writer.batches} commits for 200 queued messages: no grouping"
    handed_off = [m.id for batch in committed.batches for m in batch]
    assert handed_off == ids
    page = await Store(database).newest("r", 200)
    assert [m.id for m in page.messages] == ids


async def test_an_idle_writer_commits_a_lone_message_at_once(database: Database) -> None:
    # A linger far longer than the deadline: an idle writer must not linger at all,
    # whether it has never committed or its last batch held several messages.
    writer = new_writer(database, Committed(), linger=5.0)
    writer.start()
    outcome = await asyncio.wait_for(writer.submit(Draft("r", ALICE, "alone")), 2)
    assert outcome.fresh and writer.batches == 1
    await asyncio.wait_for(asyncio.gather(*(writer.submit(Draft("r", ALICE, t)) for t in ("a", "b"))), 2)
    await asyncio.wait_for(writer.submit(Draft("r", ALICE, "alone again")), 2)
    await writer.close()


async def test_a_message_sent_on_hearing_of_a_batch_finds_the_writer_idle(tmp_path: Path, database: Database) -> None:
    """The race CI once lost: a sender hears that its batch of two is committed and
    sends again before the writer's thread has looked at its queue once more. Nothing
    was waiting when that batch was committed, so the new message must not linger."""
    heard = threading.Event()

    class LateLooking(Watched):
        def _post(self, done: Any) -> None:
            super()._post(done)
            if done is not None and len(done[0]) == 2:
                assert heard.wait(5), "the hand-off never ran"  # only then look again

    follow_up: list[asyncio.Future[Outcome]] = []

    async def on_commit(messages: Sequence[StoredMessage]) -> None:
        if len(messages) == 2:
            follow_up.append(writer.submit(Draft("r", ALICE, "right after")))
            heard.set()

    writer = LateLooking(create_writes(database), on_commit, Metrics(), linger=5.0)
    writer.start()
    lock = sqlite3.connect(tmp_path / "w.db")
    lock.execute("BEGIN IMMEDIATE")  # the writer takes a alone and waits for the lock
    first = writer.submit(Draft("r", ALICE, "a"))
    await until(writer.committing.is_set, "the writer took a")  # and waits for the lock
    pair = [writer.submit(Draft("r", ALICE, text)) for text in ("b", "c")]  # wait together
    lock.rollback()
    lock.close()
    await asyncio.wait_for(asyncio.gather(first, *pair), 10)
    (after,) = follow_up
    assert (await asyncio.wait_for(after, 2)).message.text == "right after"  # the linger is 5 s
    await writer.close()
    assert writer.batches == 3


@pytest.mark.parametrize("linger", [0.5, 0.0])
async def test_under_load_the_writer_lingers_so_that_what_arrives_meanwhile_shares_a_commit(
    tmp_path: Path, database: Database, linger: float
) -> None:
    """a and b commit together while c waits; d arrives just after that commit (from
    its hand-off) and, with a linger, shares c's commit instead of following it alone."""
    committed = Committed()
    follow_up: list[asyncio.Future[Outcome]] = []

    async def on_commit(messages: Sequence[StoredMessage]) -> None:
        await committed(messages)
        if len(committed.batches) == 1:
            follow_up.append(writer.submit(Draft("r", ALICE, "d")))

    writer = Watched(create_writes(database), on_commit, Metrics(), linger=linger)
    writer.start()
    lock = sqlite3.connect(tmp_path / "w.db")
    lock.execute("BEGIN IMMEDIATE")  # the writer's first batch waits for the write lock
    first = [writer.submit(Draft("r", ALICE, text)) for text in ("a", "b")]
    await until(writer.committing.is_set, "the writer took a and b")  # and waits for the lock
    third = writer.submit(Draft("r", ALICE, "c"))
    lock.rollback()
    lock.close()
    await asyncio.wait_for(asyncio.gather(*first, third), 10)
    await asyncio.wait_for(follow_up[0], 10)
    await writer.close()
    expected = [["a", "b"], ["c", "d"]] if linger else [["a", "b"], ["c"], ["d"]]
    assert [[m.text for m in batch] for batch in committed.batches] == expected


async def test_a_failed_batch_answers_unavailable_to_its_senders_and_the_next_succeeds(database: Database) -> None:
    committed = Committed()
    writer = new_writer(database, committed)
    writer.start()
    ghost = UserRef("u-ghost", "ghost")  # no such user: the foreign key refuses the batch
    with pytest.raises(Unavailable):
        await writer.submit(Draft("r", ghost, "lost"))
    assert writer.failing
    stored = await writer.submit(Draft("r", ALICE, "kept"))
    await writer.close()
    assert stored.fresh and not writer.failing
    assert [m.text for b in committed.batches for m in b] == ["kept"]


async def test_a_failed_batch_logs_no_message_text(database: Database, caplog: pytest.LogCaptureFixture) -> None:
    """The writer logs a failed batch with its traceback; SQLAlchemy's error would name
    the statement's parameters, message texts among them, unless the engine hides them
    (quartchat/database.py): a text deleted later must not live on in the log."""
    writer = new_writer(database, Committed())
    writer.start()
    ghost = UserRef("u-ghost", "ghost")  # no such user: the foreign key refuses the batch
    with caplog.at_level(logging.ERROR, logger="quartchat.writer"), pytest.raises(Unavailable):
        await writer.submit(Draft("r", ghost, "SECRET-TEXT-42", client_id="CLIENT-ID-42"))
    await writer.close()
    logged = caplog.text  # messages and tracebacks, as the log handler writes them
    assert "storing a batch of 1 messages failed" in logged and "IntegrityError" in logged, logged
    assert "SECRET-TEXT-42" not in logged and "CLIENT-ID-42" not in logged, logged
    assert "SQL parameters hidden" in logged, logged


async def test_close_commits_everything_already_taken(database: Database) -> None:
    writer = new_writer(database, Committed())
    writer.start()
    futures = [writer.submit(Draft("r", ALICE, f"m{i}")) for i in range(50)]
    await writer.close()
    assert all(f.done() and f.result().fresh for f in futures)
    with pytest.raises(Unavailable):
        await writer.submit(Draft("r", ALICE, "after close"))
