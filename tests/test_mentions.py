"""Mentions (quartchat/mentions.py, docs/protocol.md §18): which `@name`s a text may hold,
and what the write path stores and sends for them, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
import unicodedata

import orjson
import pytest
from sqlalchemy import insert, select

from quartchat import mentions, models, names
from quartchat.database import Database
from quartchat.mentions import MAX_CANDIDATES, MAX_NORMALIZATIONS, candidates
from quartchat.names import name_key
from quartchat.protocol import UserRef
from quartchat.store import Store
from quartchat.writes import Draft

from .support import ALICE
from .test_writer import Committed, new_writer
from .test_writes import database_url  # noqa: F401  # both databases

MARY = UserRef("u-mary", "Mary")
MARY_ANN = UserRef("u-mary-ann", "Mary Ann")
ZOE = UserRef("u-zoe", "Zoë")
JEAN_LUC = UserRef("u-jean-luc", "jean-luc")


async def _add_named(database: Database, *users: UserRef) -> None:
    async with database.writer.begin() as connection:
        await connection.execute(
            insert(models.User),
            [{"id": u.id, "name": u.name, "name_key": name_key(u.name), "created_ms": 0} for u in users],
        )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hi @Mary Ann, see you", [["mary ann", "mary"]]),
        ("@bob.", [["bob.", "bob"]]),
        ("@jean-luc: here", [["jean-luc", "jean"]]),
        ("(@bob)", [["bob"]]),
        ("@ALICE!", [["alice"]]),
        ("@Straße", [["strasse"]]),
        ("@Zoe\u0308 hi", [["zoë hi", "zoë"]]),  # decomposed: NFC before the key
        ("mail bob@example.com or a.b@c", []),  # an address mentions nobody
        ("@bobby", [["bobby"]]),  # never bob: the name goes on
        ("@@@@ @ @! @, @ bob", []),
        ("x @a@a @b", [["a"], ["b"]]),
    ],
)
def test_each_at_gives_the_names_it_may_stand_for_longest_first(text: str, expected: list[list[str]]) -> None:
    assert candidates(text) == expected


def test_a_name_is_read_at_most_32_characters_far() -> None:
    assert candidates("@" + "a" * 32) == [["a" * 32]]
    assert candidates("@" + "a" * 33) == []
    assert candidates("@" + "a" * 200 + " x") == []


@pytest.mark.parametrize(
    "text",
    [
        "@" * 4000,
        " @" * 2000,
        "@a " * 1333,
        "@a-b-c-d-e-f-g-h-i-j " * 190,
        "@\U0001f600" * 2000,
        "@\u0301" * 2000,
        "@\ud800 @a\udfff" * 500,  # lone surrogates: never stored, but never a crash here
    ],
)
def test_hostile_texts_are_bounded_in_keys_and_time(text: str) -> None:
    # Ten times the largest text a message may hold: work that grew with the square of
    # the text would take minutes here, linear work milliseconds. The bound is loose on
    # purpose (a busy machine); the speed itself is bench's business.
    started = time.perf_counter()
    found = candidates(text * 10)
    assert time.perf_counter() - started < 2.0
    assert sum(len(keys) for keys in found) <= MAX_CANDIDATES


@pytest.mark.parametrize(
    "text",
    [
        ("@" + "a\u0301" * 17 + " a\u0301" * 30 + "!") * 400,  # decomposed runs, mostly too long for a name
        ("@" + "é" * 33 + " é" * 47 + "!") * 600,  # runs too long for a name, each end measured
    ],
)
def test_the_normalisations_of_one_text_are_capped(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every place a name could end costs a normalisation, whether or not it becomes a
    key: a text of long runs holding no name is capped by MAX_NORMALIZATIONS, not by
    MAX_CANDIDATES alone (the writer reads texts before its transaction, but its thread
    is one)."""
    calls = 0
    normalize = unicodedata.normalize

    def counted(form: str, text: str) -> str:
        nonlocal calls
        calls += 1
        return normalize(form, text)  # type: ignore[arg-type]

    monkeypatch.setattr(mentions.unicodedata, "normalize", counted)
    monkeypatch.setattr(names.unicodedata, "normalize", counted)
    candidates(text)
    # A measure is one normalisation, a key two (quartchat/names.py): each counts one.
    assert MAX_NORMALIZATIONS <= calls <= 2 * MAX_NORMALIZATIONS


def test_a_name_after_a_hostile_run_in_an_ordinary_text_is_still_found() -> None:
    assert candidates("@" + "a" * 40 + " hello @bob!") == [["bob"]]


async def test_the_writer_stores_and_sends_the_longest_existing_names(database: Database) -> None:
    await _add_named(database, MARY, MARY_ANN, ZOE, JEAN_LUC)
    committed = Committed()
    writer = new_writer(database, committed)
    writer.start()
    texts = [
        "hi @mary ann and @MARY, and @mary ann again",
        "@Mary Anne is nobody, but @Mary is",
        "@zoe\u0308 @jean-luc. @jean",
        "mail mary@example.com",
        "@nobody here",
        "no at all",
    ]
    outcomes = await asyncio.gather(*(writer.submit(Draft("r", ALICE, text)) for text in texts))
    late = UserRef("u-late", "Late Comer")
    await _add_named(database, late)  # an account made after the writer started
    later = await writer.submit(Draft("r", ALICE, "welcome @late comer"))
    await writer.close()
    expected = [
        (MARY_ANN.id, MARY.id),
        (MARY.id,),
        (ZOE.id, JEAN_LUC.id),
        (),
        (),
        (),
    ]
    assert [o.message.mentions for o in outcomes] == expected
    assert later.message.mentions == (late.id,)
    sent = [orjson.loads(o.message.json) for o in outcomes]
    assert sent[0]["mentions"] == [MARY_ANN.id, MARY.id]
    assert all("mentions" not in message for message in sent[3:]), "no mention: no field"
    async with database.reader.connect() as connection:
        stored = (await connection.execute(select(models.Message.mentions).order_by(models.Message.id))).scalars()
        stored_lists = [None if m is None else tuple(orjson.loads(m)) for m in stored]
    assert stored_lists == [m or None for m in expected] + [(late.id,)], "None where nobody is mentioned"
    page = await Store(database).newest("r", 50)
    assert [m.mentions for m in page.messages] == [*expected, (late.id,)]


async def test_exports_carry_mentions_as_the_socket_does(database: Database) -> None:
    from quartchat.export import ExportQuery, json_chunks

    await _add_named(database, MARY)
    committed = Committed()
    writer = new_writer(database, committed)
    writer.start()
    outcomes = [
        await writer.submit(Draft("r", ALICE, text, client_id))
        for text, client_id in [("hi @mary", "c1"), ("hi @mary", None), ("hi", "c2"), ("hi", None)]
    ]
    await writer.close()
    lines = [line async for chunk in json_chunks(database.reader, ExportQuery(room="r")) for line in chunk]
    assert [orjson.loads(line) for line in lines] == [orjson.loads(o.message.json) for o in outcomes]
