"""Search (docs/protocol.md §16) against a real server on SQLite and on PostgreSQL:
GET /api/search, `around` paging, and `quartchat search`."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sqlite3
import statistics
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import create_async_engine

from quartchat import models

from .conftest import POSTGRES_ADMIN
from .support import Chat, Server, User, quartchat_env, run_cli, unique

pytestmark = pytest.mark.asyncio


def _postgres_database() -> str | None:
    """A fresh PostgreSQL database for the module's server, or None without PostgreSQL."""
    try:
        import asyncpg
    except ImportError:
        return None
    name = unique("qc_search_")

    async def create() -> None:
        admin = await asyncpg.connect(POSTGRES_ADMIN, timeout=5)
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.close()

    try:
        asyncio.run(create())
    except (OSError, asyncpg.PostgresError):
        return None
    return name


def _drop_postgres_database(name: str) -> None:
    import asyncpg

    async def drop() -> None:
        admin = await asyncpg.connect(POSTGRES_ADMIN, timeout=5)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()

    asyncio.run(drop())


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server per database kind, shared by the module's tests (unique rooms and users)."""
    database_url, pg_name = None, None
    if request.param == "postgresql":
        pg_name = _postgres_database()
        if pg_name is None:
            pytest.skip("PostgreSQL on 127.0.0.1:5432 is not available")
        database_url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{pg_name}"
    elif os.environ.get("QUARTCHAT_TEST_DATABASE_URL"):
        pytest.skip("the PostgreSQL pass of tests/run: the postgresql server of this module covers it")
    instance = Server(
        tmp_path_factory.mktemp("search"), database_url, rate_limit="100000/1", search_limit="100000/1"
    ).start()
    yield instance
    instance.stop()
    if pg_name is not None:
        _drop_postgres_database(pg_name)


@pytest.fixture
async def chat(server: Server) -> AsyncIterator[Chat]:
    driver = Chat(server)
    yield driver
    await driver.aclose()


async def post(chat: Chat, user: User, room: str, texts: list[str]) -> list[dict[str, Any]]:
    """Send every text to the room through the WebSocket; the stored messages."""
    conn = await chat.open(user, room)
    for text in texts:
        await conn.send_json({"type": "chat", "data": text})
    return await conn.chats(len(texts))


async def search(who: User, q: str, **params: Any) -> dict[str, Any]:
    response = await who.http.get("/api/search", params={"q": q, **params})
    assert response.status_code == 200, response.text
    return dict(response.json())


async def found(user: User, q: str, room: str) -> list[str]:
    """The texts found in one room, newest first."""
    return [m["data"] for m in (await search(user, q, room=room, limit=100))["messages"]]


async def test_every_term_must_appear_in_any_order(chat: Chat) -> None:
    user, room = await chat.user(), unique("r")
    await post(chat, user, room, ["alpha bravo charlie", "charlie alpha", "bravo delta", "nothing here"])
    assert await found(user, "alpha", room) == ["charlie alpha", "alpha bravo charlie"]
    assert await found(user, "charlie alpha", room) == ["charlie alpha", "alpha bravo charlie"]
    assert await found(user, "alpha bravo charlie", room) == ["alpha bravo charlie"]
    assert await found(user, "alpha delta", room) == []
    assert await found(user, "zulu", room) == []


async def test_a_quoted_phrase_must_appear_as_written(chat: Chat) -> None:
    user, room = await chat.user(), unique("r")
    await post(chat, user, room, ["the quick brown fox", "brown quick fox", "quick  brown, twice spaced"])
    assert await found(user, '"quick brown"', room) == ["the quick brown fox"]
    assert await found(user, "quick brown", room) == [
        "quick  brown, twice spaced",
        "brown quick fox",
        "the quick brown fox",
    ]
    assert await found(user, '"brown quick" fox', room) == ["brown quick fox"]
    assert await found(user, '"fox the"', room) == []
    # A short phrase with a space in it ("k b") is a substring like any other.
    assert await found(user, '"k b"', room) == ["the quick brown fox"]


async def test_case_does_not_matter_in_any_script(chat: Chat) -> None:
    user, room = await chat.user(), unique("r")
    await post(chat, user, room, ["Hello WORLD", "Привет Мир", "ΚΑΛΗΜΕΡΑ κόσμε", "OK then"])
    assert await found(user, "hello world", room) == ["Hello WORLD"]
    assert await found(user, "WORLD hello", room) == ["Hello WORLD"]
    assert await found(user, "привет мир", room) == ["Привет Мир"]
    assert await found(user, "καλημερα", room) == ["ΚΑΛΗΜΕΡΑ κόσμε"]
    # Two-letter terms have no trigram: their own path, still case-insensitive.
    assert await found(user, "ok", room) == ["OK then"]
    assert await found(user, "мИ", room) == ["Привет Мир"]
    assert await found(user, "Ok hello", room) == []


async def test_accents_count_as_written(chat: Chat) -> None:
    user, room = await chat.user(), unique("r")
    await post(chat, user, room, ["un café crème", "a cafe with no accent"])
    assert await found(user, "café", room) == ["un café crème"]
    assert await found(user, "CAFÉ CRÈME", room) == ["un café crème"]
    assert await found(user, "cafe", room) == ["a cafe with no accent"]
    assert await found(user, "crème", room) == ["un café crème"]
    assert await found(user, "creme", room) == []


async def test_chinese_terms_of_two_and_four_characters(chat: Chat) -> None:
    user, room = await chat.user(), unique("r")
    await post(chat, user, room, ["大家你好啊", "你们好", "今天天气很好 hello", "你好"])
    assert await found(user, "你好", room) == ["你好", "大家你好啊"]
    assert await found(user, "大家你好", room) == ["大家你好啊"]
    assert await found(user, "天气很好", room) == ["今天天气很好 hello"]
    assert await found(user, "天气 hello", room) == ["今天天气很好 hello"]
    assert await found(user, "你好 大家", room) == ["大家你好啊"]
    assert await found(user, "你们好啊", room) == []
    assert await found(user, "好", room) == ["你好", "今天天气很好 hello", "你们好", "大家你好啊"]
    assert await found(user, "我们", room) == []


async def test_emoji_and_a_term_inside_a_url(chat: Chat) -> None:
    user, room = await chat.user(), unique("r")
    await post(
        chat,
        user,
        room,
        ["party 🎉 tonight", "🎉🎉🎉 release day", "docs at https://example.com/guides/quartchat-setup?lang=en#top"],
    )
    assert await found(user, "🎉", room) == ["🎉🎉🎉 release day", "party 🎉 tonight"]
    assert await found(user, "🎉🎉🎉", room) == ["🎉🎉🎉 release day"]
    assert await found(user, "🎉 party", room) == ["party 🎉 tonight"]
    assert await found(user, "quartchat-setup", room) == [
        "docs at https://example.com/guides/quartchat-setup?lang=en#top"
    ]
    assert await found(user, "example.com/guides", room) == [
        "docs at https://example.com/guides/quartchat-setup?lang=en#top"
    ]
    assert await found(user, "lang=en#top", room) == ["docs at https://example.com/guides/quartchat-setup?lang=en#top"]
    assert await found(user, "example.org", room) == []
    # LIKE's own wildcards are plain characters in a term.
    assert await found(user, "%", room) == []
    assert await found(user, "quartchat_setup", room) == []


async def test_room_and_user_narrow_the_search(chat: Chat) -> None:
    alice, bob = await chat.user(), await chat.user()
    here, there = unique("r"), unique("r")
    word = unique("w")
    await post(chat, alice, here, [f"{word} from alice"])
    await post(chat, bob, here, [f"{word} from bob"])
    await post(chat, alice, there, [f"{word} elsewhere"])
    everywhere = await search(alice, word)
    assert [m["data"] for m in everywhere["messages"]] == [
        f"{word} elsewhere",
        f"{word} from bob",
        f"{word} from alice",
    ]
    assert {m["room"] for m in everywhere["messages"]} == {here, there}
    by_bob = await search(alice, word, user=bob.name.upper())
    assert [m["data"] for m in by_bob["messages"]] == [f"{word} from bob"]
    fullwidth = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in bob.name)  # NFKC folds it back
    assert [m["data"] for m in (await search(alice, word, user=fullwidth))["messages"]] == [f"{word} from bob"]
    assert (await search(alice, word, user="nobody-of-that-name"))["messages"] == []
    first = everywhere["messages"][0]
    assert first["user"] == {"id": alice.id, "name": alice.name} and first["ts"].endswith("Z")


async def test_before_pages_back_through_hundreds_of_hits_without_gaps_or_duplicates(chat: Chat) -> None:
    user, room = await chat.user(), unique("r")
    word = unique("page")
    texts = [f"{word} number {i}" if i % 3 else f"filler {i}" for i in range(450)]
    stored = await post(chat, user, room, texts)
    expected = [m["id"] for m in reversed(stored) if m["data"].startswith(word)]
    assert len(expected) == 300
    seen: list[int] = []
    params: dict[str, Any] = {"limit": 37}
    while True:
        page = await search(user, word, **params)
        ids = [m["id"] for m in page["messages"]]
        assert len(ids) <= 37
        seen.extend(ids)
        if not page["has_more"]:
            break
        params["before"] = ids[-1]
    assert seen == expected
    default = await search(user, word)
    assert len(default["messages"]) == 20 and default["has_more"]


async def test_private_rooms_are_searched_by_their_members_only(chat: Chat, server: Server) -> None:
    member, invited, outsider = await chat.user(), await chat.user(), await chat.user()
    room, word = unique("p"), unique("secret")
    pair = "".join(chr(0x4E00 + secrets.randbelow(20000)) for _ in range(2))  # a short term: no trigram
    made = await member.http.post("/api/rooms", json={"name": room, "private": True})
    assert made.status_code == 201, made.text
    await post(chat, member, room, [f"{word} plans", f"more {word}", f"only {pair} here"])
    mine = [f"more {word}", f"{word} plans"]
    assert [m["data"] for m in (await search(member, word))["messages"]] == mine
    assert [m["data"] for m in (await search(member, word, room=room))["messages"]] == mine
    assert [m["data"] for m in (await search(member, pair))["messages"]] == [f"only {pair} here"]
    nothing = {"messages": [], "has_more": False}
    for who in (invited, outsider):
        assert await search(who, word) == nothing
        assert await search(who, word, room=room) == nothing
        assert await search(who, "pla " + word) == nothing
        assert await search(who, pair) == nothing
    # A member once invited finds the history; the operator's CLI reads every room.
    added = await member.http.post(f"/api/rooms/{room}/members", json={"name": invited.name})
    assert added.status_code == 201, added.text
    assert [m["data"] for m in (await search(invited, word))["messages"]] == mine
    assert await search(outsider, word) == nothing
    operator = run_cli(quartchat_env(server.database_url), server.workdir, "search", word)
    assert operator.returncode == 0 and len(operator.stdout.splitlines()) == 2


async def test_a_changed_or_deleted_row_is_found_by_its_current_text_only(chat: Chat, server: Server) -> None:
    """What issue 22's edit, delete and retention will do to the table: the index follows
    in the same transaction (triggers on SQLite, the GIN index on PostgreSQL)."""
    user, room = await chat.user(), unique("r")
    old, new, gone, expired = unique("old"), unique("new"), unique("gone"), unique("expired")
    purged = await post(chat, user, room, [f"{expired} {i} 过期" for i in range(50)])
    edited, deleted = await post(chat, user, room, [f"{old} text", f"{gone} text"])
    engine = create_async_engine(server.database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                update(models.Message).where(models.Message.id == edited["id"]).values(text=f"{new} text")
            )
            await connection.execute(delete(models.Message).where(models.Message.id == deleted["id"]))
            # A retention purge: every message of the room up to a time, in one statement.
            await connection.execute(
                delete(models.Message).where(models.Message.room == room, models.Message.id <= purged[-1]["id"])
            )
    finally:
        await engine.dispose()
    assert await found(user, expired, room) == []
    assert await found(user, "过期", room) == []
    assert await found(user, new, room) == [f"{new} text"]
    assert await found(user, old, room) == []
    if server.database_url.startswith("sqlite"):
        # Every batch of the writer, and these changes, left the index exactly the table's.
        with sqlite3.connect(server.database_url.split("///", 1)[1]) as connection:
            connection.execute("INSERT INTO messages_fts (messages_fts) VALUES ('integrity-check')")
    assert await found(user, gone, room) == []
    assert await found(user, "text", room) == [f"{new} text"]


async def edit_and_delete(chat: Chat, user: User, room: str, edits: dict[int, list[str]], deletes: list[int]) -> None:
    """Edit messages (each to its texts in turn) and delete some, through the WebSocket."""
    conn = await chat.open(user, room)
    for target, texts in edits.items():
        for text in texts:
            await conn.send_json({"type": "edit", "id": target, "data": text})
            assert (await conn.expect("edit"))["data"] == text
    for target in deletes:
        await conn.send_json({"type": "delete", "id": target})
        assert (await conn.expect("delete"))["target"] == target


async def test_an_edited_message_is_found_by_its_new_text_and_a_deleted_one_never(chat: Chat) -> None:
    user, room = await chat.user(), unique("r")
    old, new, gone, short = unique("old"), unique("new"), unique("gone"), "éz"
    # Rooms of hundreds of messages: the two changed ones among 300.
    filler = await post(chat, user, room, [f"filler {i}" for i in range(300)])
    edited, deleted, edited_then_deleted = await post(
        chat, user, room, [f"{old} text", f"{gone} text {short}", f"{old} {gone} both"]
    )
    await edit_and_delete(
        chat,
        user,
        room,
        {edited["id"]: [f"{unique('mid')} text", f"{new} text"], edited_then_deleted["id"]: [f"{new} {gone} later"]},
        [deleted["id"], edited_then_deleted["id"]],
    )
    assert await found(user, new, room) == [f"{new} text"]
    assert await found(user, old, room) == []
    assert await found(user, gone, room) == []
    assert await found(user, short, room) == []  # the short-term path reads rows, not the index
    assert await found(user, f"{gone} later", room) == []
    assert len(await found(user, "filler", room)) == 100 and filler


async def test_a_delete_leaves_no_text_of_the_message_or_its_edits_in_any_row(chat: Chat, server: Server) -> None:
    """Delete means gone (docs/protocol.md §17): a raw read of every row of messages."""
    user, room = await chat.user(), unique("r")
    secret = unique("secret")
    kept = await post(chat, user, room, [f"{secret} kept"])
    first, second = await post(chat, user, room, [f"{secret} original", f"{secret} other"])
    await edit_and_delete(
        chat,
        user,
        room,
        {first["id"]: [f"{secret} edit one", f"{secret} edit two"], second["id"]: [f"{secret} second edit"]},
        [first["id"], second["id"]],
    )
    engine = create_async_engine(server.database_url)
    try:
        async with engine.connect() as connection:
            rows = (
                await connection.exec_driver_sql("SELECT id, kind, target, text, deleted, mentions FROM messages")
            ).all()
    finally:
        await engine.dispose()
    holding = [row for row in rows if secret in row.text]
    assert [row.id for row in holding] == [kept[0]["id"]], holding
    mine = {
        row.id: row
        for row in rows
        if row.id in (first["id"], second["id"]) or row.target in (first["id"], second["id"])
    }
    assert len(mine) == 2 + 3 + 2  # two chat rows, three edits, two deletes
    assert all(row.text == "" for row in mine.values())
    assert [bool(mine[m["id"]].deleted) for m in (first, second)] == [True, True]
    assert all(mine[m["id"]].mentions is None for m in (first, second))


@pytest.mark.parametrize(
    ("params", "complaint"),
    [
        ({}, "q needs"),
        ({"q": ""}, "q needs"),
        ({"q": "   "}, "q needs"),
        ({"q": '""'}, "q needs"),
        ({"q": '" "  ""'}, "q needs"),
        ({"q": "x" * 201}, "at most 200"),
        ({"q": "bell\x07"}, "control"),
        ({"q": "ok", "limit": "0"}, "limit"),
        ({"q": "ok", "limit": "101"}, "limit"),
        ({"q": "ok", "limit": "ten"}, "limit"),
        ({"q": "ok", "before": "-1"}, "before"),
        ({"q": "ok", "room": "Not A Room"}, "room"),
        ({"q": "ok", "user": "x" * 65}, "user"),
        ({"q": "ab cd ef gh"}, "at most 3 terms of 1 or 2 characters"),
        ({"q": "hello " + " ".join(f"{c}z" for c in "abcdefgh")}, "too broad"),
    ],
)
async def test_bad_queries_answer_422_with_the_reason(chat: Chat, params: dict[str, str], complaint: str) -> None:
    user = await chat.user()
    response = await user.http.get("/api/search", params=params)
    assert response.status_code == 422, response.text
    assert complaint in response.json()["error"]


async def test_the_longest_query_and_strange_characters_are_fine(chat: Chat) -> None:
    user = await chat.user()
    assert (await search(user, "y" * 200))["messages"] == []
    assert (await search(user, '"' + "ab " * 66 + '"'))["messages"] == []
    # A lone surrogate cannot be sent as UTF-8: its bytes arrive as replacement characters.
    for raw in ("%ED%A0%80abc", "%FF%FE", "%00abc"):
        response = await user.http.get(f"/api/search?q={raw}")
        assert response.status_code in (200, 422), response.text
        assert ("messages" if response.status_code == 200 else "error") in response.json()


async def test_searching_needs_a_session(chat: Chat) -> None:
    response = await chat.http().get("/api/search", params={"q": "hello"})
    assert response.status_code == 401 and "error" in response.json()


async def test_around_opens_a_message_in_its_context(chat: Chat) -> None:
    user, room = await chat.user(), unique("r")
    stored = [m["id"] for m in await post(chat, user, room, [f"m{i}" for i in range(25)])]

    async def around(message_id: int, limit: int) -> dict[str, Any]:
        return await chat.messages(user, room, around=message_id, limit=limit)

    middle = await around(stored[12], 10)
    assert [m["id"] for m in middle["messages"]] == stored[7:18]
    assert middle["has_more_before"] and middle["has_more_after"]
    first = await around(stored[0], 10)
    assert [m["id"] for m in first["messages"]] == stored[0:6]
    assert not first["has_more_before"] and first["has_more_after"]
    last = await around(stored[-1], 10)
    assert [m["id"] for m in last["messages"]] == stored[19:]
    assert last["has_more_before"] and not last["has_more_after"]
    edge = await around(stored[5], 10)  # exactly 5 older: none beyond them
    assert [m["id"] for m in edge["messages"]] == stored[0:11] and not edge["has_more_before"]
    assert [m["id"] for m in (await around(stored[3], 1))["messages"]] == [stored[3]]
    everything = await around(stored[12], 200)
    assert [m["id"] for m in everything["messages"]] == stored
    assert not everything["has_more_before"] and not everything["has_more_after"]
    # Then ordinary paging goes on from either end.
    older = await chat.messages(user, room, before=middle["messages"][0]["id"], limit=50)
    assert [m["id"] for m in older["messages"]] == stored[:7]


async def test_around_refuses_what_it_cannot_answer(chat: Chat) -> None:
    user, room, other = await chat.user(), unique("r"), unique("r")
    (mine,) = await post(chat, user, room, ["here"])
    await post(chat, user, other, ["there"])
    missing = await user.http.get(f"/api/rooms/{other}/messages", params={"around": mine["id"]})
    assert missing.status_code == 404 and "error" in missing.json()
    both = await user.http.get(f"/api/rooms/{room}/messages", params={"around": mine["id"], "before": 5})
    assert both.status_code == 422
    bad = await user.http.get(f"/api/rooms/{room}/messages", params={"around": "x"})
    assert bad.status_code == 422


async def test_a_hundred_concurrent_searches_are_answered_or_limited_never_failed(
    chat: Chat, tmp_path: Path, server: Server
) -> None:
    if "postgresql" in server.database_url:
        pytest.skip("the limit is counted in the process, the same on every database")
    limited = Server(tmp_path).start()
    try:
        driver = Chat(limited)
        try:
            user = await driver.user()
            answers = await asyncio.gather(
                *(user.http.get("/api/search", params={"q": "hello ok"}) for _ in range(100))
            )
        finally:
            await driver.aclose()
    finally:
        limited.stop()
    statuses = [a.status_code for a in answers]
    assert statuses.count(200) == 10 and statuses.count(429) == 90
    assert all(int(a.headers["Retry-After"]) >= 1 for a in answers if a.status_code == 429)


async def test_the_operator_searches_every_room_from_the_command_line(chat: Chat, server: Server) -> None:
    user, room, word = await chat.user(), unique("r"), unique("cli")
    await post(chat, user, room, [f"{word} one", f"{word} two \x1b[2J\u2028forged line", "unrelated"])
    env = quartchat_env(server.database_url)
    result = run_cli(env, server.workdir, "search", word, "--room", room)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].endswith(f"#{room} <{user.name}> {word} two \\x1b[2J\\u2028forged line")
    assert lines[1].endswith(f"{word} one")
    assert "\x1b" not in result.stdout
    one = run_cli(env, server.workdir, "search", word, "--limit", "1")
    assert len(one.stdout.splitlines()) == 1 and "--limit" in one.stderr
    refused = run_cli(env, server.workdir, "search", '""')
    assert refused.returncode == 2 and "q needs" in refused.stderr


async def test_imported_messages_are_found(chat: Chat, server: Server) -> None:
    user, room, word = await chat.user(), unique("r"), unique("imported")
    lines = [
        json.dumps(
            {
                "id": 900_000 + i,
                "type": "chat",
                "room": room,
                "user": {"id": "00000000-0000-4000-8000-0000000000f1", "name": unique("old")},
                "data": f"{word} 旧消息 {i}",
                "ts": "2025-01-02T03:04:05.000Z",
            }
        )
        for i in range(3)
    ]
    path = server.workdir / f"{room}.ndjson"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    done = run_cli(quartchat_env(server.database_url), server.workdir, "import", str(path))
    assert done.returncode == 0, done.stderr
    assert await found(user, f"{word} 消息", room) == [f"{word} 旧消息 {i}" for i in (2, 1, 0)]
    # Importing the same file again adds nothing, and finds nothing twice.
    assert run_cli(quartchat_env(server.database_url), server.workdir, "import", str(path)).returncode == 0
    assert len(await found(user, word, room)) == 3


async def test_db_copy_to_the_other_database_kind_keeps_search_right(
    chat: Chat, server: Server, postgres_url: str, tmp_path: Path
) -> None:
    """SQLite -> PostgreSQL, or PostgreSQL -> SQLite: the target's index is built as the
    rows arrive (the GIN index; the FTS triggers)."""
    user, room, word = await chat.user(), unique("r"), unique("copied")
    await post(chat, user, room, [f"{word} 你好 one", "other", f"Two {word.upper()}"])
    to_postgres = "postgresql" not in server.database_url
    target = postgres_url if to_postgres else f"sqlite+aiosqlite:///{tmp_path}/copy.db"
    copied = run_cli(quartchat_env(server.database_url), server.workdir, "db", "copy", "--to", target)
    assert copied.returncode == 0, copied.stderr
    on_target = quartchat_env(target)
    result = run_cli(on_target, tmp_path, "search", word, "--room", room)
    assert result.returncode == 0, result.stderr
    assert [line.split("> ", 1)[1] for line in result.stdout.splitlines()] == [
        f"Two {word.upper()}",
        f"{word} 你好 one",
    ]
    short = run_cli(on_target, tmp_path, "search", f"你好 {word}", "--room", room)
    assert [line.split("> ", 1)[1] for line in short.stdout.splitlines()] == [f"{word} 你好 one"]


async def test_a_room_it_may_not_read_answers_the_empty_page_of_a_readable_room_byte_for_byte(chat: Chat) -> None:
    member, outsider = await chat.user(), await chat.user()
    private, public, word = unique("p"), unique("r"), unique("hidden")
    made = await member.http.post("/api/rooms", json={"name": private, "private": True})
    assert made.status_code == 201, made.text
    await post(chat, member, private, [f"{word} {i}" for i in range(30)])
    await post(chat, member, public, ["nothing to see"])
    readable = await outsider.http.get("/api/search", params={"q": word, "room": public})
    assert readable.status_code == 200 and readable.json() == {"messages": [], "has_more": False}
    for room in (private, unique("never"), unique("dm-"), public):
        answer = await outsider.http.get("/api/search", params={"q": word, "room": room})
        assert answer.status_code == readable.status_code
        assert answer.content == readable.content
        assert answer.headers["content-type"] == readable.headers["content-type"]
    assert len((await search(member, word, room=private))["messages"]) == 20


# Issue 23's review (docs/security.md): a search's cost is bounded, and an outsider's
# search takes no longer for hits it cannot see. One SQLite server with a private room
# of many messages written straight into the database.
CROWD = 40_000  # messages in the private room; every other one holds "launch"
BUDGET_MS = 15  # the default is 300: these queries take ~35 ms here, 0.3 s at 300k messages


@dataclass
class Crowded:
    server: Server
    owner: str  # the name of the private room's owner
    private: str
    public: str


@pytest.fixture(scope="module")
def crowded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Crowded]:
    """The private room holds CROWD messages, half with "launch", all with common pairs
    of letters; the public room a thousand."""
    if os.environ.get("QUARTCHAT_TEST_DATABASE_URL"):
        pytest.skip("SQLite only: the PostgreSQL pass of tests/run")
    server = Server(
        tmp_path_factory.mktemp("crowded"),
        rate_limit="100000/1",
        search_limit="100000/1",
        search_budget_ms=str(BUDGET_MS),
    ).start()
    owner, private, public = unique("u"), unique("p"), unique("r")

    async def make_rooms() -> str:
        driver = Chat(server)
        try:
            user = await driver.user(owner)
            for name, is_private in ((private, True), (public, False)):
                made = await user.http.post("/api/rooms", json={"name": name, "private": is_private})
                assert made.status_code == 201, made.text
            return user.id
        finally:
            await driver.aclose()

    owner_id = asyncio.run(make_rooms())
    filler = "the quick brown fox jumps over the lazy dog, and then some more words to read: "
    rows = [
        (private, owner_id, f"{'launch ' if i % 2 else ''}{filler}{i}", 1_700_000_000_000 + i, "") for i in range(CROWD)
    ]
    rows += [(public, owner_id, f"{filler}{i}", 1_700_000_000_000 + i, "") for i in range(1000)]
    with sqlite3.connect(server.database_url.split("///", 1)[1]) as connection:
        connection.executemany("INSERT INTO messages (room, user_id, text, ts_ms, ts) VALUES (?, ?, ?, ?, ?)", rows)
    yield Crowded(server, owner, private, public)
    server.stop()


async def _timed(who: User, q: str, **params: str) -> tuple[float, int]:
    started = time.perf_counter()
    response = await who.http.get("/api/search", params={"q": q, **params})
    assert response.status_code in (200, 422, 503), response.text
    return time.perf_counter() - started, response.status_code


PATHOLOGICAL = "the ab cd zq"  # every row has "the", "ab" and "cd"; none "zq"


async def test_a_search_too_broad_for_its_budget_answers_422_at_once(crowded: Crowded) -> None:
    driver = Chat(crowded.server)
    try:
        owner = await driver.user(crowded.owner)
        for room in ({}, {"room": crowded.private}):
            response = await owner.http.get("/api/search", params={"q": PATHOLOGICAL, **room})
            assert response.status_code == 422, response.text
            assert response.json() == {"error": "the search is too broad: add a longer word or a room"}
            took = [(await _timed(owner, PATHOLOGICAL, **room))[0] for _ in range(3)]
            print(f"too broad {room}: {[round(t * 1000) for t in took]} ms")
            assert statistics.median(took) < BUDGET_MS / 1000 + 0.4
        # An ordinary search of the same room is answered, right, within the budget.
        page = await search(owner, f"launch {CROWD - 1}", room=crowded.private)
        assert [m["data"] for m in page["messages"]] == [
            f"launch the quick brown fox jumps over the lazy dog, and then some more words to read: {CROWD - 1}"
        ]
        assert len((await search(owner, "launch", limit=100))["messages"]) == 100
    finally:
        await driver.aclose()


async def test_ten_broad_searches_at_once_leave_history_reads_prompt(crowded: Crowded) -> None:
    driver = Chat(crowded.server)
    try:
        owner, reader = await driver.user(crowded.owner), await driver.user()

        async def read_history() -> float:
            await asyncio.sleep(0.05)  # the searches first
            started = time.perf_counter()
            await driver.messages(reader, crowded.public, limit=1)
            return time.perf_counter() - started

        *answers, took = await asyncio.gather(*(_timed(owner, PATHOLOGICAL) for _ in range(10)), read_history())
        statuses = sorted(status for _, status in answers)
        print(f"history read {took * 1000:.0f} ms beside searches answering {statuses}")
        assert set(statuses) <= {422, 503} and took < 1.0
    finally:
        await driver.aclose()


async def _median(who: User, q: str, **params: str) -> float:
    return statistics.median([(await _timed(who, q, **params))[0] for _ in range(7)])


async def test_an_outsiders_search_of_a_room_it_cannot_read_takes_no_longer_for_its_hits(crowded: Crowded) -> None:
    driver = Chat(crowded.server)
    try:
        outsider = await driver.user()
        for room in (crowded.private, unique("never")):
            assert (await search(outsider, "launch", room=room))["messages"] == []
            hidden, nowhere = (
                await _median(outsider, "launch", room=room),
                await _median(outsider, unique("zz"), room=room),
            )
            print(f"outsider, room={room}: launch {hidden * 1000:.1f} ms, nowhere {nowhere * 1000:.1f} ms")
            assert hidden < 3 * nowhere + 0.02
    finally:
        await driver.aclose()


async def test_db_copy_keeps_edits_and_deletes_and_the_target_finds_current_texts_only(
    chat: Chat, server: Server, postgres_url: str, tmp_path: Path
) -> None:
    user, room, word = await chat.user(), unique("r"), unique("copied")
    first, second, third = await post(chat, user, room, [f"{word} old", f"{word} gone", "plain"])
    await edit_and_delete(
        chat, user, room, {first["id"]: [f"{word} new"], second["id"]: ["edited first"]}, [second["id"]]
    )
    to_postgres = "postgresql" not in server.database_url
    target = postgres_url if to_postgres else f"sqlite+aiosqlite:///{tmp_path}/copy.db"
    copied = run_cli(quartchat_env(server.database_url), server.workdir, "db", "copy", "--to", target)
    assert copied.returncode == 0, copied.stderr
    columns = "id, room, kind, target, text, ts_ms, edited_ms, deleted, mentions"
    tables = []
    for url in (server.database_url, target):
        engine = create_async_engine(url)
        try:
            async with engine.connect() as connection:
                rows = await connection.exec_driver_sql(
                    f"SELECT {columns} FROM messages WHERE room = '{room}' ORDER BY id"
                )
                tables.append([(*row[:7], bool(row[7]), row[8]) for row in rows])
        finally:
            await engine.dispose()
    assert tables[0] == tables[1]
    assert [row[2] for row in tables[1]] == ["chat", "chat", "chat", "edit", "edit", "delete"]
    assert tables[1][0][6] is not None and tables[1][1][7] is True and third["id"] == tables[1][2][0]
    result = run_cli(quartchat_env(target), tmp_path, "search", word, "--room", room)
    assert [line.split("> ", 1)[1] for line in result.stdout.splitlines()] == [f"{word} new"]
