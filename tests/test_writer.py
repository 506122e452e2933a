"""The write path: group commit, ids in commit order, client_id idempotency, failures."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert

from quartchat import migrate
from quartchat.database import Database, create_database
from quartchat.models import User
from quartchat.protocol import StoredMessage, UserRef, format_ts
from quartchat.settings import Settings
from quartchat.store import Store
from quartchat.writer import Draft, MessageWriter, Outcome, SessionEnded, Unavailable

from .support import until

ALICE = UserRef("u-alice", "alice")


async def add_user(database: Database, user: UserRef) -> None:
    async with database.writer.begin() as connection:
        await connection.execute(
            insert(User).values(id=user.id, name=user.name, name_key=user.name, password_hash=None, created_ms=0)
        )


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    url = f"sqlite+aiosqlite:///{tmp_path}/w.db"
    await asyncio.to_thread(migrate.upgrade, url)
    db = create_database(Settings(database_url=url))
    await add_user(db, ALICE)
    yield db
    await db.dispose()


class Watched(MessageWriter):
    """A writer that says when it has taken a batch and begun committing it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.committing = threading.Event()  # set from the writer's thread

    async def _commit(self, drafts: list[Draft]) -> list[Outcome] | None:
        self.committing.set()
        return await super()._commit(drafts)


class Committed:
    def __init__(self) -> None:
        self.batches: list[list[StoredMessage]] = []

    async def __call__(self, messages: Sequence[StoredMessage]) -> None:
        self.batches.append(list(messages))


async def test_concurrent_messages_share_commits_and_come_out_in_id_order(database: Database) -> None:
    committed = Committed()
    writer = MessageWriter(database, Store(database), committed)
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
    writer = MessageWriter(database, Store(database), Committed(), linger=5.0)
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

    writer = LateLooking(database, Store(database), on_commit, linger=5.0)
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

    writer = Watched(database, Store(database), on_commit, linger=linger)
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


async def test_a_client_id_is_stored_once_within_and_across_batches(database: Database) -> None:
    committed = Committed()
    writer = MessageWriter(database, Store(database), committed)
    writer.start()
    same_batch = await asyncio.gather(*(writer.submit(Draft("r", ALICE, "x", "k1")) for _ in range(3)))
    later = await writer.submit(Draft("r", ALICE, "x", "k1"))
    other_user = UserRef("u-bob", "bob")
    await add_user(database, other_user)
    theirs = await writer.submit(Draft("r", other_user, "x", "k1"))
    await writer.close()
    assert [o.fresh for o in same_batch] == [True, False, False] and not later.fresh
    assert {o.message for o in [*same_batch, later]} == {same_batch[0].message}
    assert theirs.fresh and theirs.message.id > same_batch[0].message.id
    assert sum(len(b) for b in committed.batches) == 2, "only fresh messages are broadcast"


async def test_a_message_whose_session_ended_before_its_commit_is_not_stored(database: Database) -> None:
    committed = Committed()
    store = Store(database)
    writer = MessageWriter(database, store, committed)
    writer.start()
    await store.create_session("s-live", ALICE.id)
    await store.create_session("s-ended", ALICE.id)
    await store.delete_session("s-ended")  # signed out, but its socket has not heard yet
    outcomes = await asyncio.gather(
        writer.submit(Draft("r", ALICE, "live", session_id="s-live")),
        writer.submit(Draft("elsewhere", ALICE, "too late", session_id="s-ended")),
        writer.submit(Draft("r", ALICE, "unchecked")),
        return_exceptions=True,
    )
    await writer.close()
    assert isinstance(outcomes[1], SessionEnded)
    assert [m.text for b in committed.batches for m in b] == ["live", "unchecked"]
    assert [r.name for r in await store.rooms()] == ["r"], "no room made for a refused message"


async def test_an_expired_session_stores_nothing(database: Database) -> None:
    store = Store(database, session_lifetime_ms=1)
    writer = MessageWriter(database, store, Committed())
    writer.start()
    await store.create_session("s-old", ALICE.id)
    await asyncio.sleep(0.01)
    with pytest.raises(SessionEnded):
        await writer.submit(Draft("r", ALICE, "expired", session_id="s-old"))
    await writer.close()
    assert await store.rooms() == []


async def test_a_failed_batch_answers_unavailable_to_its_senders_and_the_next_succeeds(database: Database) -> None:
    committed = Committed()
    writer = MessageWriter(database, Store(database), committed)
    writer.start()
    ghost = UserRef("u-ghost", "ghost")  # no such user: the foreign key refuses the batch
    with pytest.raises(Unavailable):
        await writer.submit(Draft("r", ghost, "lost"))
    assert writer.failing
    stored = await writer.submit(Draft("r", ALICE, "kept"))
    await writer.close()
    assert stored.fresh and not writer.failing
    assert [m.text for b in committed.batches for m in b] == ["kept"]


async def test_close_commits_everything_already_taken(database: Database) -> None:
    writer = MessageWriter(database, Store(database), Committed())
    writer.start()
    futures = [writer.submit(Draft("r", ALICE, f"m{i}")) for i in range(50)]
    await writer.close()
    assert all(f.done() and f.result().fresh for f in futures)
    with pytest.raises(Unavailable):
        await writer.submit(Draft("r", ALICE, "after close"))


async def test_rooms_keep_their_count_and_last_id(database: Database) -> None:
    writer = MessageWriter(database, Store(database), Committed())
    writer.start()
    outcomes = await asyncio.gather(*(writer.submit(Draft(f"room-{i % 2}", ALICE, "m")) for i in range(7)))
    await writer.close()
    rooms = {r.name: r for r in await Store(database).rooms()}
    assert (rooms["room-0"].messages, rooms["room-1"].messages) == (4, 3)
    assert rooms["room-0"].last_id == max(o.message.id for o in outcomes if o.message.room == "room-0")


@pytest.mark.parametrize("background", [False, True])
async def test_commits_leave_checkpoints_to_the_background_when_asked(tmp_path: Path, background: bool) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/c.db"
    await asyncio.to_thread(migrate.upgrade, url)
    db = create_database(Settings(database_url=url), background_checkpoints=background)
    try:
        await add_user(db, ALICE)
        writer = MessageWriter(db, Store(db), Committed())
        writer.start()
        for i in range(300):  # 300 commits of a 3 KB message: far past 1,000 WAL pages
            await writer.submit(Draft("r", ALICE, f"{i} " + "x" * 3000))
        await writer.close()
        wal_bytes = (tmp_path / "c.db-wal").stat().st_size
        result = await db.checkpoint()
    finally:
        await db.dispose()
    assert result is not None
    busy, pages, copied = result
    if background:
        # Nothing was copied by the commits: the WAL holds them all, until checkpoint().
        assert busy == 0 and pages == copied and pages > 1000, result
        assert wal_bytes > 1000 * 4096
    else:
        # SQLite's own auto-checkpoint ran in the commits and restarted the WAL.
        assert pages < 1000, result


async def test_the_writer_engine_runs_sqlite_on_its_own_thread_without_a_driver_thread(tmp_path: Path) -> None:
    """The message writer's engine makes each driver call at once on the thread that
    awaits it (the writer's own); aiosqlite's thread is not started, and what it commits
    is in the database for every other connection."""
    import threading

    from sqlalchemy import text

    url = f"sqlite+aiosqlite:///{tmp_path}/inline.db"
    await asyncio.to_thread(migrate.upgrade, url)
    db = create_database(Settings(database_url=url))
    engine = db.open_writer()
    seen: list[int] = []

    def run() -> None:
        async def main() -> None:
            threads_before = threading.active_count()
            async with engine.connect() as connection:
                raw = await connection.get_raw_connection()
                driver = raw.driver_connection
                assert driver is not None
                await driver.create_function("thread_id", 0, lambda: threading.get_ident() % 2**62)
                async with connection.begin():
                    seen.append(int((await connection.execute(text("SELECT thread_id()"))).scalar_one()))
                    await connection.execute(
                        text("INSERT INTO rooms (name, message_count, last_id) VALUES ('t', 0, 0)")
                    )
                assert threading.active_count() == threads_before
            await engine.dispose()

        asyncio.run(main())

    worker = threading.Thread(target=run)
    worker.start()
    worker.join(20)
    assert seen == [worker.ident % 2**62]  # type: ignore[operator]
    async with db.reader.connect() as reader:
        assert (await reader.execute(text("SELECT name FROM rooms"))).scalars().all() == ["t"]
    await db.dispose()


async def test_a_batch_stores_every_column_and_keeps_the_rooms_counters(database: Database) -> None:
    """Many rooms in one batch, and more rows than one SQLite INSERT takes: every column
    as sent, ids in submission order, each message's predecessor in its room, and each
    room's count and last id."""
    from sqlalchemy import select

    from quartchat.models import Message, Room

    committed = Committed()
    writer = MessageWriter(database, Store(database), committed, batch_size=2500)
    writer.start()
    drafts = [Draft(f"room-{i % 7}", ALICE, f"text {i} ✓", f"c{i}" if i % 2 else None) for i in range(2500)]
    first = await writer.submit(Draft("room-0", ALICE, "before"))
    outcomes = await asyncio.gather(*(writer.submit(d) for d in drafts))
    await writer.close()
    assert writer.batches <= 3
    ids = [o.message.id for o in outcomes]
    assert ids == sorted(ids) and len(set(ids)) == 2500 and ids[0] > first.message.id
    previous = {"room-0": first.message.id}
    for draft, outcome in zip(drafts, outcomes, strict=True):
        assert (outcome.message.room, outcome.message.text, outcome.message.client_id) == (
            draft.room,
            draft.text,
            draft.client_id,
        )
        assert outcome.message.prev_id == previous.get(draft.room, 0)
        previous[draft.room] = outcome.message.id
    async with database.reader.connect() as connection:
        rows = (await connection.execute(select(Message).order_by(Message.id))).all()
        rooms = {r.name: (r.message_count, r.last_id) for r in (await connection.execute(select(Room))).all()}
    assert [(r.id, r.room, r.user_id, r.text, r.client_id) for r in rows[1:]] == [
        (o.message.id, d.room, ALICE.id, d.text, d.client_id) for d, o in zip(drafts, outcomes, strict=True)
    ]
    assert all(r.ts == format_ts(r.ts_ms) for r in rows)
    assert rooms == {
        room: (sum(d.room == room for d in drafts) + (room == "room-0"), previous[room]) for room in previous
    }
