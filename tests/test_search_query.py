"""quartchat/search.py on its own: what a query means, and the SQL it becomes."""

from __future__ import annotations

import pytest
from sqlalchemy import insert, true
from sqlalchemy.dialects import postgresql, sqlite

from quartchat.access import readable_rooms
from quartchat.database import Database
from quartchat.models import Message, Room
from quartchat.search import BadQuery, case_variants, escape_like, fts_match, parse, search_query
from quartchat.store import SignedIn, Store

from .support import ALICE


@pytest.mark.parametrize(
    ("q", "terms"),
    [
        ("hello world", ("hello", "world")),
        ("  hello \t world\n", ("hello", "world")),
        ('"a quoted phrase" and', ("a quoted phrase", "and")),
        ('say "hi  there" twice "hi  there"', ("say", "hi  there", "twice")),
        ('unclosed "quote runs on', ("unclosed", "quote runs on")),
        ('"  padded  "', ("padded",)),
        ("你好 大家", ("你好", "大家")),
        ("a", ("a",)),
        ("x" * 200, ("x" * 200,)),
    ],
)
def test_terms_are_words_and_quoted_phrases(q: str, terms: tuple[str, ...]) -> None:
    assert parse(q) == terms


@pytest.mark.parametrize("q", ["", "   ", '""', '" " ""', '"', "x" * 201, "bell\x07", "nul\x00", "esc\x1b[2J"])
def test_unusable_queries_are_refused(q: str) -> None:
    with pytest.raises(BadQuery):
        parse(q)


def test_fts_strings_escape_their_quotes_and_are_all_required() -> None:
    assert fts_match(["hello", 'say "x"', "OR"]) == '"hello" AND "say ""x""" AND "OR"'


def test_short_terms_are_matched_in_every_case() -> None:
    assert sorted(case_variants("ok")) == ["OK", "Ok", "oK", "ok"]
    assert case_variants("你好") == ["你好"]
    assert sorted(case_variants("ми")) == ["МИ", "Ми", "мИ", "ми"]
    assert len(case_variants("ǆx")) <= 9  # a title-case letter: at most three spellings a character


def test_like_wildcards_are_plain_characters() -> None:
    assert escape_like(r"50%_off\now") == r"50\%\_off\\now"


def test_the_sqlite_query_is_driven_by_the_fts_table_newest_first() -> None:
    query = search_query(("hello", "ok"), lambda _room: true(), sqlite=True, before=100, limit=20)
    sql = str(query.compile(dialect=sqlite.dialect()))
    assert "JOIN messages_fts ON messages_fts.rowid = messages.id" in sql
    assert "messages_fts.messages_fts MATCH" in sql and "instr(messages.text" in sql
    assert "messages_fts.rowid < " in sql and "ORDER BY messages_fts.rowid DESC" in sql


def test_short_terms_alone_walk_the_messages_newest_first_on_sqlite() -> None:
    query = search_query(("ok",), lambda room: room == "lobby", sqlite=True, limit=20)
    sql = str(query.compile(dialect=sqlite.dialect()))
    assert "messages_fts" not in sql and "+messages.room = " in sql and "ORDER BY messages.id DESC" in sql


def test_postgresql_matches_every_term_with_like_on_lower_text() -> None:
    query = search_query(("Hello", "50%"), lambda _room: true(), sqlite=False, limit=20)
    compiled = query.compile(dialect=postgresql.dialect())
    sql = str(compiled)
    assert sql.count("lower(messages.text) LIKE lower(") == 2 and "ESCAPE" in sql
    assert set(compiled.params.values()) >= {"%Hello%", "%50\\%%"}


async def test_a_bot_token_limited_to_rooms_finds_only_theirs(database: Database) -> None:
    """access.readable_rooms inside the search's own SQL, on a real SQLite database."""
    async with database.writer.begin() as connection:
        for room in ("alpha", "beta"):
            await connection.execute(insert(Room).values(name=room, message_count=1, last_id=0))
            await connection.execute(
                insert(Message).values(room=room, user_id=ALICE.id, text=f"status report {room}", ts_ms=0, ts="")
            )
    store = Store(database)

    async def rooms_found(token_rooms: frozenset[str] | None) -> list[str]:
        who = SignedIn(ALICE, "s", 0, token_id=None if token_rooms is None else "t", token_rooms=token_rooms)
        query = search_query(parse("report"), lambda column: readable_rooms(who, column), sqlite=True, limit=10)
        return [m.room for m in (await store.search(query, 10)).messages]

    assert await rooms_found(None) == ["beta", "alpha"]
    assert await rooms_found(frozenset({"alpha"})) == ["alpha"]
    assert await rooms_found(frozenset()) == []
