"""The SQL of the write path (quartchat/writes.py): client_id idempotency, sessions
checked at commit, the rooms' counters, every stored column, checkpoints, threads."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, insert, select, text

from quartchat import mentions, migrate
from quartchat.database import Database, create_database
from quartchat.metrics import Metrics
from quartchat.models import Message, Room, Session, User
from quartchat.protocol import UserRef, format_ts
from quartchat.settings import Settings
from quartchat.store import Store, token_session_id
from quartchat.writer import MessageWriter
from quartchat.writes import Draft, NotMember, SessionEnded, SqliteWrites, create_writes

from . import postgres_database
from .support import ALICE, add_user, need_service, unique
from .test_writer import Committed, new_writer


def _in_a_thread(action: Coroutine[Any, Any, int]) -> int:
    """Run `action` on an event loop of its own, leaving this thread's loop alone."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, action).result()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The tests that take `database` run on both databases: SqliteWrites and PostgresWrites."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/w.db"
        return
    name = unique("qc_writes_")
    if _in_a_thread(postgres_database.main("create", name)) != 0:
        need_service(False, "PostgreSQL on 127.0.0.1:5432")
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        _in_a_thread(postgres_database.main("drop", name))


async def test_a_client_id_is_stored_once_within_and_across_batches(database: Database) -> None:
    committed = Committed()
    writer = new_writer(database, committed)
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
    writes = create_writes(database)
    writer = new_writer(database, committed)
    writer.start()
    await writes.create_session("s-live", ALICE.id)
    await writes.create_session("s-ended", ALICE.id)
    await writes.delete_session("s-ended")  # signed out, but its socket has not heard yet
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


async def test_a_non_member_stores_nothing_in_a_private_room_checked_in_the_transaction(database: Database) -> None:
    bob = UserRef("u-bob", "bob")
    await add_user(database, bob)
    writes = create_writes(database)
    assert await writes.create_room("secret", "private", ALICE.id)
    assert await writes.create_room("open", "public", ALICE.id)
    assert not await writes.create_room("secret", "public", bob.id), "a taken name"
    committed = Committed()
    writer = new_writer(database, committed)
    writer.start()
    outcomes = await asyncio.gather(
        writer.submit(Draft("secret", ALICE, "owner's")),
        writer.submit(Draft("secret", bob, "outsider's")),
        writer.submit(Draft("open", bob, "anyone's")),
        writer.submit(Draft("never-made", bob, "public by its first message")),
        return_exceptions=True,
    )
    assert isinstance(outcomes[1], NotMember)
    assert await writes.add_member("secret", bob.id) and not await writes.add_member("secret", bob.id)
    invited = await writer.submit(Draft("secret", bob, "now a member"))
    assert await writes.remove_member("secret", bob.id) and not await writes.remove_member("secret", bob.id)
    with pytest.raises(NotMember):
        await writer.submit(Draft("secret", bob, "removed"))
    await writer.close()
    assert invited.fresh
    assert [m.text for b in committed.batches for m in b] == [
        "owner's",
        "anyone's",
        "public by its first message",
        "now a member",
    ]
    rooms = {r.name: r for r in await Store(database).rooms()}
    assert (rooms["secret"].kind, rooms["secret"].messages) == ("private", 2)
    assert rooms["never-made"].kind == "public"


async def test_a_refused_message_never_deletes_an_empty_room_made_by_the_api(database: Database) -> None:
    bob = UserRef("u-bob", "bob")
    await add_user(database, bob)
    writes = create_writes(database)
    await writes.create_room("empty-secret", "private", ALICE.id)
    await writes.create_room("empty-open", "public", ALICE.id)
    await writes.create_session("s-ended", bob.id)
    await writes.delete_session("s-ended")
    writer = new_writer(database, Committed())
    writer.start()
    refused = await asyncio.gather(
        writer.submit(Draft("empty-secret", bob, "x")),
        writer.submit(Draft("empty-open", bob, "x", session_id="s-ended")),
        return_exceptions=True,
    )
    await writer.close()
    assert isinstance(refused[0], NotMember) and isinstance(refused[1], SessionEnded)
    assert sorted(r.name for r in await Store(database).rooms()) == ["empty-open", "empty-secret"]


async def test_a_dm_is_one_room_however_many_open_it_at_once(database: Database) -> None:
    bob = UserRef("u-bob", "bob")
    await add_user(database, bob)
    writes = create_writes(database)
    kinds = await asyncio.gather(*(writes.open_dm("dm-0011223344556677", (ALICE.id, bob.id)) for _ in range(20)))
    assert kinds == ["dm"] * 20
    members = await Store(database).members("dm-0011223344556677")
    assert sorted(m.user.id for m in members) == sorted([ALICE.id, bob.id])
    await writes.create_room("dm-taken-before", "public", ALICE.id)
    assert await writes.open_dm("dm-taken-before", (ALICE.id, bob.id)) == "public"


async def test_an_expired_session_stores_nothing(database: Database) -> None:
    store = Store(database, session_lifetime_ms=1)
    writes = create_writes(database, session_lifetime_ms=1)
    writer = MessageWriter(writes, Committed(), Metrics())
    writer.start()
    await writes.create_session("s-old", ALICE.id)
    await asyncio.sleep(0.01)
    with pytest.raises(SessionEnded):
        await writer.submit(Draft("r", ALICE, "expired", session_id="s-old"))
    await writer.close()
    assert await store.rooms() == []


async def test_rooms_keep_their_count_and_last_id(database: Database) -> None:
    writer = new_writer(database, Committed())
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
        writer = new_writer(db, Committed())
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


async def test_sqlite_batches_run_on_the_calling_thread_without_a_driver_thread(tmp_path: Path) -> None:
    """SQLite's writes make each driver call on the thread that runs the batch (the
    message writer's own): no driver thread is started (sqlite3, not aiosqlite), and
    what a batch commits is in the database for every other connection."""
    url = f"sqlite+aiosqlite:///{tmp_path}/inline.db"
    await asyncio.to_thread(migrate.upgrade, url)
    db = create_database(Settings(database_url=url))
    await add_user(db, ALICE)
    writes = create_writes(db)
    assert isinstance(writes, SqliteWrites)
    threads: list[int] = []

    def run() -> None:
        async def main() -> None:
            threads.append(threading.active_count())
            await writes.open()
            await writes.commit_batch([Draft("t", ALICE, "on this thread")])
            threads.append(threading.active_count())
            await writes.close()

        asyncio.run(main())

    worker = threading.Thread(target=run)
    worker.start()
    worker.join(20)
    assert len(threads) == 2 and threads[0] == threads[1], threads
    async with db.reader.connect() as reader:
        assert (await reader.execute(text("SELECT text FROM messages"))).scalars().all() == ["on this thread"]
    await db.dispose()


async def test_a_batch_stores_every_column_and_keeps_the_rooms_counters(database: Database) -> None:
    """Many rooms in one batch, and more rows than one SQLite INSERT takes: every column
    as sent, ids in submission order, each message's predecessor in its room, and each
    room's count and last id."""
    committed = Committed()
    writer = new_writer(database, committed, batch_size=2500)
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


async def test_purging_deletes_the_expired_sessions_and_only_them(database: Database) -> None:
    writes = create_writes(database, session_lifetime_ms=60_000)
    await writes.create_session("s-new", ALICE.id)
    async with database.writer.begin() as connection:
        await connection.execute(insert(Session).values(id="s-old", user_id=ALICE.id, created_ms=0))
    store = Store(database, session_lifetime_ms=60_000)
    assert await store.live_sessions({"s-new", "s-old", "s-never"}) == {"s-new"}
    assert await writes.purge_expired_sessions() == 1
    async with database.reader.connect() as connection:
        assert (await connection.execute(select(Session.id))).scalars().all() == ["s-new"]


# Accounts, tokens and disabled users (docs/protocol.md §11) ---------------------------


async def test_the_first_account_of_an_empty_database_is_the_one_admin_however_many_race(database: Database) -> None:
    async with database.writer.begin() as connection:
        await connection.execute(delete(User))
    writes = create_writes(database)
    await asyncio.gather(
        *(writes.create_account(f"u{n}", f"racer{n}", f"racer{n}", "hash", f"racer{n}") for n in range(12))
    )
    async with database.reader.connect() as connection:
        roles = sorted((await connection.execute(select(User.role))).scalars())
    assert roles == ["admin"] + ["member"] * 11


async def test_a_revoked_tokens_messages_are_refused_in_the_transaction(database: Database) -> None:
    writes = create_writes(database)
    await writes.create_token("t-live", ALICE.id, "a" * 64, None)
    await writes.create_token("t-revoked", ALICE.id, "b" * 64, ["r"])
    assert await writes.delete_token("t-revoked") and not await writes.delete_token("t-revoked")
    committed = Committed()
    writer = new_writer(database, committed)
    writer.start()
    outcomes = await asyncio.gather(
        writer.submit(Draft("r", ALICE, "by the live token", session_id=token_session_id("t-live"))),
        writer.submit(Draft("r", ALICE, "by the revoked one", session_id=token_session_id("t-revoked"))),
        return_exceptions=True,
    )
    await writer.close()
    assert isinstance(outcomes[1], SessionEnded)
    assert [m.text for b in committed.batches for m in b] == ["by the live token"]


async def test_disabling_ends_sessions_and_tokens_and_refuses_new_sessions(database: Database) -> None:
    store, writes = Store(database), create_writes(database)
    assert await writes.create_session("s1", ALICE.id)
    await writes.create_token("t1", ALICE.id, "c" * 64, None)
    assert await store.token_session("c" * 64) is not None
    assert await writes.set_disabled(ALICE.id, True) == (1, 1)
    assert await store.live_sessions({"s1", token_session_id("t1")}) == set()
    assert not await writes.create_session("s2", ALICE.id), "a sign-in that raced the disable"
    assert await store.session("s2", ALICE.id) is None
    assert await writes.set_disabled(ALICE.id, False) == (0, 0)
    assert await writes.create_session("s3", ALICE.id)
    assert await store.session("s3", ALICE.id) is not None
    assert await store.token_session("c" * 64) is None, "enabling brings no token back"


async def test_edits_and_deletes_in_one_batch_are_checked_in_order_and_update_their_messages(
    database: Database,
) -> None:
    """docs/protocol.md §17 in the SQL: who may, what is not found (a delete earlier in the
    same batch included), the chat rows brought to their state and erased in the same
    transaction, events numbered in the room's sequence, the counter of chat messages."""
    bob, owner = UserRef("u-bob", "bob"), UserRef("u-owner", "owner")
    for user in (bob, owner):
        await add_user(database, user)
    writes = create_writes(database)
    assert await writes.create_room("team", "private", owner.id)
    for user in (ALICE, bob):
        await writes.add_member("team", user.id)
    await writes.set_role(bob.id, "admin")  # what the writer reads, Draft.admin alone is not enough
    await writes.open()
    try:
        chats = await writes.commit_batch(
            [Draft("team", ALICE, "a1"), Draft("team", ALICE, "a2"), Draft("team", bob, "b1"), Draft("x", bob, "x")]
        )
        a1, a2, b1, elsewhere = (o.message for o in chats if not isinstance(o, Exception))

        def event(kind: str, user: UserRef, target: int, text: str = "", **more: Any) -> Draft:
            return Draft("team", user, text, kind=kind, target=target, **more)

        batch = [
            event("edit", ALICE, a1.id, "a1 edited", client_id="e1"),
            event("delete", ALICE, a1.id),
            event("edit", ALICE, a1.id, "too late"),  # deleted earlier in this batch
            event("delete", bob, a2.id),  # not bob's, bob no owner
            event("edit", owner, b1.id, "owner's words"),  # an owner may delete, never edit
            event("delete", owner, b1.id),
            event("delete", bob, b1.id),  # deleted already
            event("delete", bob, elsewhere.id),  # another room's
            event("edit", ALICE, a2.id, "a2 edited"),
            event("delete", bob, a2.id, admin=True),
            event("edit", ALICE, a2.id, "again", client_id="e1"),  # a repeat: the first's outcome
        ]
        outcomes = await writes.commit_batch(batch)
        kinds = [type(o).__name__ if isinstance(o, Exception) else o.message.kind for o in outcomes]
        assert kinds == [
            "edit", "delete", "NotFound", "Forbidden", "Forbidden", "delete",
            "NotFound", "NotFound", "edit", "delete", "edit",
        ]  # fmt: skip
        stored = [o.message for o in outcomes[:-1] if not isinstance(o, Exception)]
        assert outcomes[-1].message == stored[0]  # type: ignore[union-attr]
        assert [m.prev_id for m in stored] == [b1.id] + [m.id for m in stored[:-1]]
        assert [m.target for m in stored] == [a1.id, a1.id, b1.id, a2.id, a2.id]
        again = await writes.commit_batch([event("edit", ALICE, a1.id, "retry", client_id="e1")])
        # The stored event back, its text erased by the delete since.
        assert again[0].message == replace(stored[0], text="") and not again[0].fresh  # type: ignore[union-attr]
    finally:
        await writes.close()
    async with database.reader.connect() as connection:
        rows = {r.id: r for r in (await connection.execute(select(Message).where(Message.room == "team"))).all()}
        room = (await connection.execute(select(Room.message_count, Room.last_id).where(Room.name == "team"))).one()
    assert (rows[a1.id].text, rows[a1.id].deleted, rows[a1.id].edited_ms) == ("", True, stored[0].ts_ms)
    assert (rows[b1.id].text, rows[b1.id].deleted) == ("", True)
    assert (rows[a2.id].text, rows[a2.id].deleted) == ("", True)
    assert all(rows[m.id].text == "" for m in stored), "every edit of a deleted message is erased"
    assert all(rows[m.id].kind == m.kind and rows[m.id].target == m.target for m in stored)
    assert tuple(room) == (3, stored[-1].id)


async def test_who_may_delete_anothers_message_is_read_in_the_transaction(database: Database) -> None:
    """Draft.admin is what the sender was when its socket opened: a demoted or disabled
    admin deletes nothing of others' any more, nor does an owner removed from the room;
    an admin still an admin does. A member made an admin after its socket opened gets
    the right from its next socket (both must hold: the socket's and the database's)."""
    demoted, disabled, admin, owner, promoted = (
        UserRef(f"u-{n}", n) for n in ("demoted", "disabled", "admin", "owner", "promoted")
    )
    for user in (demoted, disabled, admin, owner, promoted):
        await add_user(database, user)
    writes = create_writes(database)
    for user in (demoted, disabled, admin):
        await writes.set_role(user.id, "admin")
    assert await writes.create_room("team", "public", owner.id)
    await writes.open()
    try:
        chats = await writes.commit_batch([Draft("team", ALICE, f"a{i}") for i in range(5)])
        a0, a1, a2, a3, a4 = (o.message for o in chats if not isinstance(o, Exception))
        await writes.set_role(demoted.id, "member")
        await writes.set_role(promoted.id, "admin")
        await writes.set_disabled(disabled.id, True)
        assert await writes.remove_member("team", owner.id)
        outcomes = await writes.commit_batch(
            [
                Draft("team", demoted, "", kind="delete", target=a0.id, admin=True),
                Draft("team", disabled, "", kind="delete", target=a1.id, admin=True),
                Draft("team", owner, "", kind="delete", target=a2.id),
                Draft("team", promoted, "", kind="delete", target=a4.id),
                Draft("team", admin, "", kind="delete", target=a3.id, admin=True),
            ]
        )
    finally:
        await writes.close()
    kinds = [type(o).__name__ if isinstance(o, Exception) else o.message.kind for o in outcomes]
    assert kinds == ["Forbidden", "Forbidden", "Forbidden", "Forbidden", "delete"]
    async with database.reader.connect() as connection:
        deleted = await connection.execute(select(Message.id).where(Message.room == "team", Message.deleted))
        assert list(deleted.scalars()) == [a3.id]


async def test_mentions_are_read_before_the_transaction_and_looked_up_in_it(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The keys of a text's `@`s are read before the write lock (Draft.mention_keys):
    no text, however hostile, lengthens the transaction; the names are looked up in
    the transaction, so a name made just before counts."""
    bob = UserRef("u-bob", "bob")
    writes = create_writes(database)
    in_transaction = False
    read_inside: list[str] = []
    transaction, read_keys = writes._transaction, mentions.candidates

    def watched_transaction(connection: Any, drafts: list[Draft]) -> Any:
        nonlocal in_transaction
        in_transaction = True
        try:
            return transaction(connection, drafts)
        finally:
            in_transaction = False

    def watched_candidates(text: str) -> list[list[str]]:
        if in_transaction:
            read_inside.append(text)
        return read_keys(text)

    monkeypatch.setattr(writes, "_transaction", watched_transaction)
    monkeypatch.setattr(mentions, "candidates", watched_candidates)
    await writes.open()
    try:
        draft = Draft("r", ALICE, "hi @bob and @nobody")
        await add_user(database, bob)
        outcomes = await writes.commit_batch([draft, Draft("r", ALICE, "no mention")])
    finally:
        await writes.close()
    assert [o.message.mentions for o in outcomes if not isinstance(o, Exception)] == [(bob.id,), ()]
    assert read_inside == []
