"""`quartchat import`'s checks, fuzzed: whatever a file holds, the import either works
or stops with one TransferError that names the line, and a failed import adds nothing."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from quartchat import migrate
from quartchat.database import create_database
from quartchat.models import Message
from quartchat.settings import Settings
from quartchat.transfer import TransferError, import_records, read_export

from . import postgres_database
from .support import need_service, quartchat_env, run_cli, sqlite_url, unique

anything = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20) | st.lists(st.integers())
zones = st.integers(min_value=-24 * 60 + 1, max_value=24 * 60 - 1).map(lambda m: timezone(timedelta(minutes=m)))
times = st.datetimes(timezones=st.none() | zones).map(lambda moment: moment.isoformat())
names = st.sampled_from(["alice", "ALICE", "Alice\u0301", "bob", "\uff41\uff4c\uff49\uff43\uff45", "\u200b"])
# A message valid in every field, and for each field what a bad file could hold instead.
valid = st.fixed_dictionaries(
    {
        "id": st.integers(min_value=1, max_value=50),
        "type": st.just("chat"),
        "room": st.sampled_from(["lobby", "dev-1", "-1-1"]),
        "user": st.fixed_dictionaries({"id": st.text("uvw", min_size=1, max_size=4), "name": names}),
        "data": st.text(max_size=30),
        "ts": times,
    },
    optional={"client_id": st.text(min_size=1, max_size=64)},
)
bad_values: dict[str, st.SearchStrategy[Any]] = {
    "id": st.integers(min_value=-5, max_value=2**64) | anything,
    "type": anything,
    "room": st.sampled_from(["Bad Room", ""]) | anything,
    "user": st.fixed_dictionaries(
        {}, optional={"id": st.sampled_from(["x" * 37, ""]) | anything, "name": names | anything}
    )
    | anything,
    "data": st.text(st.characters(codec=None, exclude_categories=()), max_size=30) | anything,
    "ts": st.sampled_from(["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "0001-01-01"]) | anything,
    "client_id": st.text(max_size=70) | anything,
}
messages = st.builds(
    lambda base, bad, missing: {k: v for k, v in {**base, **bad}.items() if k not in missing},
    valid,
    st.one_of(st.just({}), *(st.dictionaries(st.just(key), value, max_size=1) for key, value in bad_values.items())),
    st.sets(st.sampled_from(sorted(bad_values)), max_size=1) | st.just(set()),
)


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = sqlite_url(tmp_path_factory.mktemp("import") / "i.db")
    migrate.upgrade(url)
    yield url


async def import_lines(url: str, lines: list[str]) -> tuple[int, int]:
    database = create_database(Settings(database_url=url, secret_key="s" * 32))
    try:
        async with database.writer.connect() as connection:
            before = await connection.scalar(select(func.count()).select_from(Message))
        try:
            return await import_records(database.writer, read_export(io.StringIO("\n".join(lines)), "fuzz.ndjson"))
        except TransferError:
            async with database.writer.connect() as connection:
                assert await connection.scalar(select(func.count()).select_from(Message)) == before, "nothing added"
            raise
    finally:
        await database.dispose()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(messages, min_size=1, max_size=4))
def test_any_file_imports_or_fails_with_an_error_naming_its_line(database_url: str, batch: list[Any]) -> None:
    lines = [json.dumps(message) for message in batch]  # lone surrogates travel as \ud800
    try:
        asyncio.run(import_lines(database_url, lines))
    except TransferError as refused:
        assert str(refused).startswith("fuzz.ndjson: line ") or str(refused).startswith("line "), str(refused)


def test_an_imported_name_that_looks_like_an_account_is_refused_naming_the_line(tmp_path: Path) -> None:
    """Import makes accounts too: a look-alike of a name already there (fullwidth, or a
    Cyrillic a), or a name mixing scripts, is refused as sign-up refuses it."""
    url = sqlite_url(tmp_path / "l.db")
    migrate.upgrade(url)
    message = {"id": 1, "type": "chat", "room": "lobby", "ts": "2026-11-24T15:31:06.123Z", "data": "hi"}
    alice = json.dumps({**message, "user": {"id": "u-1", "name": "alice"}})
    assert asyncio.run(import_lines(url, [alice])) == (1, 1)
    for user_id, look_alike in (
        ("u-2", "\uff41\uff4c\uff49\uff43\uff45"),
        ("u-3", "\u0430lice"),
        ("u-4", "\u0430lic3"),
    ):
        line = json.dumps({**message, "id": 2, "user": {"id": user_id, "name": look_alike}})
        with pytest.raises(TransferError) as refused:
            asyncio.run(import_lines(url, [line]))
        assert "line 1" in str(refused.value) and ("looks like" in str(refused.value) or "mix" in str(refused.value))
    bob = json.dumps({**message, "id": 2, "user": {"id": "u-5", "name": "bob"}})
    assert asyncio.run(import_lines(url, [bob])) == (1, 1)


def test_a_time_whose_zone_takes_it_past_year_1_is_an_error_naming_the_line(tmp_path: Path) -> None:
    good = {"id": 1, "type": "chat", "room": "lobby", "user": {"id": "u-1", "name": "alice"}, "data": "hi"}
    lines = [
        json.dumps({**good, "ts": "2026-11-24T15:31:06.123Z"}),
        json.dumps({**good, "id": 2, "ts": "0001-01-01T00:00:00+14:00"}),
    ]
    dump = tmp_path / "old.ndjson"
    dump.write_text("\n".join(lines) + "\n")
    env = quartchat_env(sqlite_url(tmp_path / "o.db"))
    assert run_cli(env, tmp_path, "db", "upgrade").returncode == 0
    result = run_cli(env, tmp_path, "import", str(dump))
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("quartchat: ") and "line 2" in result.stderr
    assert "Traceback" not in result.stderr and "out of range" in result.stderr


def test_year_one_is_written_with_four_digits_and_round_trips(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "y.db")
    migrate.upgrade(url)
    message = {"id": 1, "type": "chat", "room": "lobby", "user": {"id": "u-1", "name": "alice"}, "data": "hi"}
    ts = datetime(1, 1, 1, 0, 0, 0, 5000, tzinfo=UTC).isoformat()
    assert asyncio.run(import_lines(url, [json.dumps({**message, "ts": ts})])) == (1, 1)
    exported = run_cli(quartchat_env(url), tmp_path, "export").stdout
    assert json.loads(exported)["ts"] == "0001-01-01T00:00:00.005Z"


def _event_line(**fields: object) -> str:
    base: dict[str, object] = {"room": "lobby", "user": {"id": "u-a", "name": "alice"}, "ts": "2026-01-01T00:00:00Z"}
    return json.dumps({**base, **fields})


async def _rows(url: str) -> dict[int, tuple[str, str, bool]]:
    database = create_database(Settings(database_url=url, secret_key="s" * 32))
    try:
        async with database.reader.connect() as connection:
            rows = await connection.execute(select(Message.id, Message.kind, Message.text, Message.deleted))
            return {row.id: (row.kind, row.text, row.deleted) for row in rows}
    finally:
        await database.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def events_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database of the test's own, of each kind."""
    if request.param == "sqlite":
        url = sqlite_url(tmp_path / "i.db")
        migrate.upgrade(url)
        yield url
        return
    name = unique("qc_import_")
    if asyncio.run(postgres_database.main("create", name)) != 0:
        need_service(False, "PostgreSQL on 127.0.0.1:5432")
    try:
        url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
        migrate.upgrade(url)
        yield url
    finally:
        asyncio.run(postgres_database.main("drop", name))


def test_an_imported_delete_empties_its_message_and_erases_every_edits_text(events_url: str) -> None:
    """docs/protocol.md §17 as the server stores it: a delete event's message is emptied
    and marked deleted even when the file does not say so, and no edit of a deleted
    message (marked in the file or deleted by an event) keeps its text; a target later
    in the file counts."""
    url = events_url
    lines = [
        _event_line(type="edit", id=2, target=1, data="edit before the chat line"),
        _event_line(type="chat", id=1, data="first @bob", mentions=["u-b"]),
        _event_line(type="delete", id=3, target=1),
        _event_line(type="chat", id=4, data="", deleted=True),
        _event_line(type="edit", id=5, target=4, data="edit of a deleted one"),
        _event_line(type="chat", id=6, data="kept"),
        _event_line(type="edit", id=7, target=6, data="kept, edited"),
    ]
    assert asyncio.run(import_lines(url, lines)) == (7, 7)
    assert asyncio.run(_rows(url)) == {
        1: ("chat", "", True),
        2: ("edit", "", False),
        3: ("delete", "", False),
        4: ("chat", "", True),
        5: ("edit", "", False),
        6: ("chat", "kept", False),
        7: ("edit", "kept, edited", False),
    }


@pytest.mark.parametrize(
    ("event", "refusal"),
    [
        ({"type": "edit", "target": 1, "room": "dev-1"}, 'line 3: "target" 1 is no chat message of room dev-1'),
        ({"type": "delete", "target": 99}, 'line 3: "target" 99 is no chat message of room lobby'),
        ({"type": "edit", "target": 2}, 'line 3: "target" 2 is no chat message of room lobby'),  # an event
        ({"type": "edit", "target": 1, "user": {"id": "u-b", "name": "bob"}}, "by the edit's author"),
    ],
)
def test_an_event_the_server_would_not_store_is_refused_by_its_line_and_imports_nothing(
    events_url: str, event: dict[str, object], refusal: str
) -> None:
    url = events_url
    lines = [
        _event_line(type="chat", id=1, data="in the lobby"),
        _event_line(type="edit", id=2, target=1, data="edited"),
        _event_line(**{"id": 3, "data": "x", **event}),
        _event_line(type="chat", id=4, data="after"),
    ]
    with pytest.raises(TransferError, match=refusal):
        asyncio.run(import_lines(url, lines))
    assert asyncio.run(_rows(url)) == {}
