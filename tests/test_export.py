"""docs/protocol.md §13 export formats and `quartchat export` / `import` (docs/operations.md), on real SQLite files."""

from __future__ import annotations

import csv
import fcntl
import html
import io
import json
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path
from typing import Any

import pytest

from .support import quartchat_env, run_cli, sqlite_url

TEXTS = [
    "hello",
    "=1+2",
    "+cmd",
    "-2",
    "@SUM(A1)",
    "\tTAB",
    "<script>alert(1)</script>",
    "line one\nline two",
    'comma, "quoted"',
    "你好 🎉",
    "emoji 👩‍👩‍👧 mixed",
]


def message(i: int, text: str, room: str = "lobby", user: tuple[str, str] = ("u-1", "张伟")) -> dict[str, Any]:
    return {
        "id": i,
        "type": "chat",
        "room": room,
        "user": {"id": user[0], "name": user[1]},
        "data": text,
        "ts": f"2026-11-24T10:00:{i:02d}.{i:03d}Z",
    }


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """A migrated database holding TEXTS in `lobby` plus one message elsewhere (read only)."""
    tmp_path = tmp_path_factory.mktemp("export")
    env = quartchat_env(sqlite_url(tmp_path / "e.db"))
    messages = [message(i + 1, text) for i, text in enumerate(TEXTS)]
    messages.append(message(40, "elsewhere", room="other", user=("u-2", "mallory")))
    dump = tmp_path / "seed.ndjson"
    dump.write_text("".join(json.dumps(m, ensure_ascii=False) + "\n" for m in messages), encoding="utf-8")
    assert run_cli(env, tmp_path, "db", "upgrade").returncode == 0
    result = run_cli(env, tmp_path, "import", str(dump))
    assert result.returncode == 0, result.stderr
    return env, messages


def export(env: dict[str, str], cwd: Path, *args: str) -> str:
    result = run_cli(env, cwd, "export", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_ndjson_is_one_message_object_a_line(filled: Any, tmp_path: Path) -> None:
    env, messages = filled
    lines = export(env, tmp_path, "--format", "ndjson").splitlines()
    assert [json.loads(line) for line in lines] == messages


def test_json_wraps_the_messages_with_room_and_time(filled: Any, tmp_path: Path) -> None:
    env, messages = filled
    body = json.loads(export(env, tmp_path, "--format", "json", "--room", "lobby"))
    assert body["room"] == "lobby" and body["messages"] == messages[:-1]
    assert body["exported_at"].endswith("Z")
    assert json.loads(export(env, tmp_path, "--format", "json"))["room"] is None


def test_csv_is_rfc4180_utf8_and_defuses_formulas(filled: Any, tmp_path: Path) -> None:
    env, messages = filled
    target = tmp_path / "out.csv"
    export(env, tmp_path, "--format", "csv", "--room", "lobby", "-o", str(target))
    raw = target.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbfid,room,ts,user_id,user_name,text\r\n")
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    assert rows[0] == ["id", "room", "ts", "user_id", "user_name", "text"]
    texts = {m["data"]: row[5] for m, row in zip(messages, rows[1:], strict=False)}
    for dangerous in ("=1+2", "+cmd", "-2", "@SUM(A1)", "\tTAB"):
        assert texts[dangerous] == "'" + dangerous
    for plain in ("line one\nline two", 'comma, "quoted"', "你好 🎉", "<script>alert(1)</script>"):
        assert texts[plain] == plain
    assert rows[1][:5] == ["1", "lobby", "2026-11-24T10:00:01.001Z", "u-1", "张伟"]


def test_txt_is_one_line_a_message_with_indented_continuations(filled: Any, tmp_path: Path) -> None:
    env, _ = filled
    lines = export(env, tmp_path, "--format", "txt", "--room", "lobby").splitlines()
    assert lines[0] == "[2026-11-24 10:00:01Z] #lobby 张伟: hello"
    at = lines.index("[2026-11-24 10:00:08Z] #lobby 张伟: line one")
    assert lines[at + 1] == "    line two"
    assert "[2026-11-24 10:00:10Z] #lobby 张伟: 你好 🎉" in lines


def test_html_is_a_standalone_escaped_page(filled: Any, tmp_path: Path) -> None:
    env, messages = filled
    page = export(env, tmp_path, "--format", "html")
    assert page.startswith("<!doctype html>") and "<style>" in page and page.rstrip().endswith("</html>")
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    for m in messages:
        assert html.escape(m["data"]) in page


def test_since_is_inclusive_and_until_exclusive_and_dates_are_utc(filled: Any, tmp_path: Path) -> None:
    env, messages = filled

    def ids(*bounds: str) -> list[int]:
        return [json.loads(line)["id"] for line in export(env, tmp_path, *bounds).splitlines()]

    assert ids("--since", messages[1]["ts"], "--until", messages[4]["ts"]) == [2, 3, 4]
    assert ids("--since", "2026-11-24T10:00:40") == [40]
    assert ids("--since", "2026-11-25") == []
    assert ids("--until", "2026-11-24") == []
    bad = run_cli(env, tmp_path, "export", "--since", "yesterday")
    assert bad.returncode == 2 and "--since" in bad.stderr


@pytest.mark.parametrize("fmt", ["ndjson", "json", "csv", "txt", "html"])
def test_chinese_and_emoji_survive_every_format(filled: Any, tmp_path: Path, fmt: str) -> None:
    env, _ = filled
    target = tmp_path / f"out.{fmt}"
    export(env, tmp_path, "--format", fmt, "-o", str(target))
    text = target.read_text(encoding="utf-8-sig")
    assert "你好 🎉" in (html.unescape(text) if fmt == "html" else json.loads(json.dumps(text)))
    assert "emoji 👩‍👩‍👧 mixed" in html.unescape(text) or "emoji 👩‍👩‍👧 mixed" in json.dumps(text, ensure_ascii=False)
    assert "张伟" in text


def test_round_trip_export_import_export_is_byte_identical(filled: Any, tmp_path: Path) -> None:
    env, _ = filled
    first = tmp_path / "first.ndjson"
    export(env, tmp_path, "-o", str(first))
    fresh = quartchat_env(sqlite_url(tmp_path / "fresh.db"))
    assert run_cli(fresh, tmp_path, "db", "upgrade").returncode == 0
    for _ in range(2):
        result = run_cli(fresh, tmp_path, "import", str(first))
        assert result.returncode == 0, result.stderr
    assert "added 0" in result.stderr, "the second import added messages"
    second = tmp_path / "second.ndjson"
    export(fresh, tmp_path, "-o", str(second))
    assert second.read_bytes() == first.read_bytes()


def test_json_export_imports_too_and_stdin_works(filled: Any, tmp_path: Path) -> None:
    env, messages = filled
    document = export(env, tmp_path, "--format", "json")
    fresh = quartchat_env(sqlite_url(tmp_path / "fresh.db"))
    run_cli(fresh, tmp_path, "db", "upgrade")
    result = run_cli(fresh, tmp_path, "import", "-", stdin=document)
    assert result.returncode == 0, result.stderr
    assert [json.loads(line) for line in export(fresh, tmp_path).splitlines()] == messages


def test_a_bad_line_3_of_10_names_line_3_and_imports_nothing(tmp_path: Path) -> None:
    lines = [json.dumps(message(i, f"m{i}")) for i in range(1, 11)]
    lines[2] = json.dumps({**message(3, "m3"), "room": "Bad Room"})
    dump = tmp_path / "bad.ndjson"
    dump.write_text("\n".join(lines) + "\n")
    env = quartchat_env(sqlite_url(tmp_path / "b.db"))
    run_cli(env, tmp_path, "db", "upgrade")
    result = run_cli(env, tmp_path, "import", str(dump))
    assert result.returncode == 2
    assert "line 3" in result.stderr and "room" in result.stderr
    assert export(env, tmp_path) == ""


@pytest.mark.parametrize("name", ["<b>mallory</b>", "<script>alert(1)</script>", "Robert'); DROP TABLE users;--"])
def test_an_import_with_a_hostile_user_name_names_the_line_and_imports_nothing(tmp_path: Path, name: str) -> None:
    # Sent whole: a name the sign-in would refuse is refused by the import too, so no
    # export (html included) ever has to show one.
    lines = [json.dumps(message(1, "fine")), json.dumps(message(2, "hostile", user=("u-2", name)))]
    dump = tmp_path / "names.ndjson"
    dump.write_text("\n".join(lines) + "\n")
    env = quartchat_env(sqlite_url(tmp_path / "n.db"))
    assert run_cli(env, tmp_path, "db", "upgrade").returncode == 0
    result = run_cli(env, tmp_path, "import", str(dump))
    assert result.returncode == 2
    assert "line 2" in result.stderr and "user.name" in result.stderr, result.stderr
    assert export(env, tmp_path) == ""


def test_new_messages_get_ids_above_imported_ones_and_imported_names_are_reserved(filled: Any, tmp_path: Path) -> None:
    import asyncio

    from quartchat.accounts import NameReserved, Passwords, authenticate
    from quartchat.database import create_database
    from quartchat.metrics import Metrics
    from quartchat.protocol import UserRef
    from quartchat.settings import Settings
    from quartchat.store import Store
    from quartchat.web_errors import status_of
    from quartchat.writer import Draft, MessageWriter
    from quartchat.writes import create_writes

    _, messages = filled
    copy = tmp_path / "copy.db"
    copy.write_bytes(Path(filled[0]["QUARTCHAT_DATABASE_URL"].removeprefix("sqlite+aiosqlite:///")).read_bytes())
    env = quartchat_env(sqlite_url(copy))

    async def check() -> None:
        database = create_database(Settings(database_url=env["QUARTCHAT_DATABASE_URL"]))
        store = Store(database)
        writes = create_writes(database)
        try:
            with pytest.raises(NameReserved) as refused:
                await authenticate(store, writes, Passwords(), "张伟", "any password at all")
            assert status_of(refused.value) == 401 and "reserved" in refused.value.message

            async def nothing(_: object) -> None:
                pass

            writer = MessageWriter(writes, nothing, Metrics())
            writer.start()
            outcome = await writer.submit(Draft("lobby", UserRef("u-1", "张伟"), "new"))
            await writer.close()
            assert outcome.message.id > max(m["id"] for m in messages)
        finally:
            await database.dispose()

    asyncio.run(check())
    result = run_cli(env, tmp_path, "user", "password", "张伟", stdin="a brand new password\n")
    assert result.returncode == 0, result.stderr


def test_export_progress_bar_only_on_a_terminal(filled: Any, tmp_path: Path) -> None:
    env, _ = filled
    quiet = run_cli(env, tmp_path, "export", "-o", str(tmp_path / "q.ndjson"))
    assert "msg" not in quiet.stderr
    main, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a terminal has a size
    process = subprocess.run(
        [sys.executable, "-m", "quartchat", "export", "-o", str(tmp_path / "t.ndjson")],
        env=env,
        cwd=tmp_path,
        stderr=secondary,
        stdout=subprocess.DEVNULL,
        timeout=60,
    )
    os.close(secondary)
    shown = b""
    try:
        while chunk := os.read(main, 4096):
            shown += chunk
    except OSError:
        pass
    assert process.returncode == 0
    assert b"12.0/12.0" in shown and b"msg/s" in shown, shown


def test_sqlite_strftime_renders_times_exactly_as_the_protocol_does(tmp_path: Path) -> None:
    """Migration 0002 fills messages.ts of older rows with this expression."""
    import random
    import sqlite3

    from quartchat.protocol import format_ts

    connection = sqlite3.connect(tmp_path / "t.db")
    samples = [0, 999, 1_795_534_266_007, 4_102_444_799_999, *random.sample(range(4_102_444_800_000), 5000)]
    for ts_ms in samples:
        rendered = connection.execute("SELECT strftime('%Y-%m-%dT%H:%M:%fZ', ? / 1000.0, 'unixepoch')", (ts_ms,))
        assert rendered.fetchone()[0] == format_ts(ts_ms)


@pytest.mark.parametrize(
    "bounds",
    [{}, {"room": "lobby"}, {"room": "other"}, {"since": "2026-11-24T10:00:03.003Z", "until": "2026-11-24T10:00:09"}],
    ids=["all", "room", "other-room", "since-until"],
)
@pytest.mark.parametrize("fmt", ["ndjson", "json"])
def test_the_command_lines_direct_sqlite_read_equals_the_servers_export(
    filled: Any, fmt: str, bounds: dict[str, str]
) -> None:
    """`quartchat export` reads ndjson and json with Python's sqlite3 directly; the
    server streams them through SQLAlchemy. Both must write the same bytes."""
    import asyncio

    from quartchat.database import create_database
    from quartchat.export import ExportQuery, SqliteFile, formatter, parse_time, render, render_sqlite
    from quartchat.settings import Settings

    env, _ = filled
    settings = Settings(database_url=env["QUARTCHAT_DATABASE_URL"])
    query = ExportQuery(
        bounds.get("room"), parse_time(bounds.get("since"), "since"), parse_time(bounds.get("until"), "until")
    )

    async def served() -> str:
        database = create_database(settings)
        try:
            return "".join([piece async for piece in render(database.reader, query, formatter(fmt, query.room))])
        finally:
            await database.dispose()

    assert settings.sqlite_path is not None
    direct = SqliteFile(settings.sqlite_path)
    try:
        written = b"".join(render_sqlite(direct, query, formatter(fmt, query.room))).decode()
    finally:
        direct.close()
    through_server = asyncio.run(served())
    if fmt == "json":  # written a moment apart
        written, through_server = json.loads(written), json.loads(through_server)
        assert written.pop("exported_at") <= through_server.pop("exported_at")
    assert written == through_server
    assert written  # not trivially equal: each case selects something or writes the wrapper


def test_import_stores_times_in_the_protocols_form_whatever_form_they_came_in(tmp_path: Path) -> None:
    forms = {
        1: ("2026-11-24T10:00:01Z", "2026-11-24T10:00:01.000Z"),
        2: ("2026-11-24T11:00:02.5+01:00", "2026-11-24T10:00:02.500Z"),
        3: ("2026-11-24 10:00:03.123456", "2026-11-24T10:00:03.123Z"),
        4: ("2026-11-24T10:00:04.004Z", "2026-11-24T10:00:04.004Z"),
    }
    dump = tmp_path / "forms.ndjson"
    dump.write_text("".join(json.dumps({**message(i, "x"), "ts": given}) + "\n" for i, (given, _) in forms.items()))
    env = quartchat_env(sqlite_url(tmp_path / "f.db"))
    assert run_cli(env, tmp_path, "db", "upgrade").returncode == 0
    assert run_cli(env, tmp_path, "import", str(dump)).returncode == 0
    for fmt in ("ndjson", "csv"):
        shown = export(env, tmp_path, "--format", fmt)
        for _, canonical in forms.values():
            assert canonical in shown, (fmt, canonical)


def test_export_explains_a_missing_or_unmigrated_database(tmp_path: Path) -> None:
    missing = run_cli(quartchat_env(sqlite_url(tmp_path / "none.db")), tmp_path, "export")
    assert missing.returncode == 2 and "no database at" in missing.stderr
    assert not (tmp_path / "none.db").exists(), "the export created an empty database"
    env = quartchat_env(sqlite_url(tmp_path / "old.db"))
    assert run_cli(env, tmp_path, "db", "upgrade", "0001").returncode == 0
    old = run_cli(env, tmp_path, "export")
    assert old.returncode == 2 and "quartchat db upgrade" in old.stderr, old.stderr


def test_the_sqlite_import_statement_names_every_message_column() -> None:
    """SQLite's import inserts with hand-written SQL: a new column must join it."""
    from quartchat.models import Message
    from quartchat.transfer import MESSAGE_COLUMNS

    assert sorted(MESSAGE_COLUMNS) == sorted(Message.__table__.columns.keys())


FORGERS = [
    "cr\r[2026-11-24 10:00:00Z] #lobby admin: lone CR",
    "ls\u2028[2026-11-24 10:00:00Z] #lobby admin: U+2028",
    "ps\u2029nel\x85vt\x0bff\x0cfs\x1cend",
    "ansi \x1b[2J\x1b[1A\x1b]0;title\x07 c1 \x9b31m del \x7f",
    "crlf\r\nkept as one break\n",
]


def test_no_text_can_forge_a_txt_line_and_json_csv_keep_it_exact(tmp_path: Path) -> None:
    env = quartchat_env(sqlite_url(tmp_path / "f.db"))
    messages = [message(i + 1, text) for i, text in enumerate(FORGERS)]
    messages.append(message(9, "in a room a spreadsheet would run", room="-1-1"))
    dump = tmp_path / "forgers.ndjson"
    dump.write_text("".join(json.dumps(m) + "\n" for m in messages), encoding="utf-8")
    assert run_cli(env, tmp_path, "db", "upgrade").returncode == 0
    assert run_cli(env, tmp_path, "import", str(dump)).returncode == 0, "imported"

    def exported(fmt: str) -> str:  # through a file: standard output's text mode would turn CR into LF
        target = tmp_path / f"out.{fmt}"
        export(env, tmp_path, "--format", fmt, "-o", str(target))
        return target.read_bytes().decode("utf-8-sig")

    txt = exported("txt")
    lines = txt.split("\n")
    assert lines.pop() == ""
    for line in lines:  # every line is a message's own, or an indented continuation
        assert line.startswith(("[2026-11-24 10:00:0", "    ")), repr(line)
        assert not any((ord(c) < 0x20 and c != "\t") or 0x7F <= ord(c) < 0xA0 for c in line), repr(line)
        assert "\u2028" not in line and "\u2029" not in line
    starts = [line for line in lines if line.startswith("[")]
    assert len(starts) == len(messages)
    assert "    [2026-11-24 10:00:00Z] #lobby admin: lone CR" in lines
    assert "ansi \\x1b[2J\\x1b[1A\\x1b]0;title\\x07 c1 \\x9b31m del \\x7f" in txt
    assert lines[lines.index("[2026-11-24 10:00:05Z] #lobby 张伟: crlf") + 1 :][:2] == ["    kept as one break", "    "]

    # ndjson is split at "\n" only: JSON strings may hold U+2028 and U+0085 as they are.
    assert [json.loads(line) for line in exported("ndjson").split("\n")[:-1]] == messages
    rows = list(csv.reader(io.StringIO(exported("csv"), newline="")))
    assert [row[5] for row in rows[1:6]] == FORGERS
    assert rows[6][1] == "'-1-1", "the room column is formula-guarded too"


# Edits and deletes (docs/protocol.md §17) ------------------------------------------------

ALICE_REF = {"id": "u-1", "name": "alice"}


def edited_history() -> list[dict[str, Any]]:
    """A room as the server stores it after edits and a delete, with its events."""
    ts = "2026-11-24T10:00:{:02d}.{:03d}Z".format
    return [
        {"id": 1, "type": "chat", "room": "lobby", "user": ALICE_REF, "data": "plain", "ts": ts(1, 1)},
        {
            "id": 2, "type": "chat", "room": "lobby", "user": ALICE_REF, "data": "=2 newest",
            "ts": ts(2, 2), "edited": ts(6, 6), "client_id": "c-2",
        },
        {"id": 3, "type": "chat", "room": "lobby", "user": ALICE_REF, "data": "", "ts": ts(3, 3), "deleted": True},
        {
            "id": 4, "type": "chat", "room": "lobby", "user": ALICE_REF, "data": "", "ts": ts(4, 4),
            "edited": ts(7, 7), "deleted": True, "client_id": "c-4",
        },
        {"id": 5, "type": "edit", "room": "lobby", "user": ALICE_REF, "target": 2, "data": "middle", "ts": ts(5, 5)},
        {
            "id": 6, "type": "edit", "room": "lobby", "user": ALICE_REF, "target": 2, "data": "=2 newest",
            "ts": ts(6, 6), "client_id": "e-6",
        },
        {"id": 7, "type": "edit", "room": "lobby", "user": ALICE_REF, "target": 4, "data": "", "ts": ts(7, 7)},
        {"id": 8, "type": "delete", "room": "lobby", "user": ALICE_REF, "target": 3, "ts": ts(8, 8)},
        {"id": 9, "type": "delete", "room": "lobby", "user": ALICE_REF, "target": 4, "ts": ts(9, 9)},
    ]  # fmt: skip


@pytest.fixture(scope="module")
def edited(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp_path = tmp_path_factory.mktemp("edited")
    env = quartchat_env(sqlite_url(tmp_path / "e.db"))
    dump = tmp_path / "seed.ndjson"
    dump.write_text("".join(json.dumps(m) + "\n" for m in edited_history()), encoding="utf-8")
    assert run_cli(env, tmp_path, "db", "upgrade").returncode == 0
    result = run_cli(env, tmp_path, "import", str(dump))
    assert result.returncode == 0, result.stderr
    return env


def test_an_export_shows_chat_messages_in_their_current_state(edited: dict[str, str], tmp_path: Path) -> None:
    chats = [m for m in edited_history() if m["type"] == "chat"]
    assert [json.loads(line) for line in export(edited, tmp_path).splitlines()] == chats
    with_edits = [json.loads(line) for line in export(edited, tmp_path, "--with-edits").splitlines()]
    assert with_edits == [m for m in edited_history() if m["type"] != "delete"]
    rows = list(csv.reader(io.StringIO(export(edited, tmp_path, "--format", "csv").lstrip("\ufeff"))))
    assert [row[-1] for row in rows[1:]] == ["plain", "'=2 newest (edited)", "(deleted)", "(deleted)"]
    txt = export(edited, tmp_path, "--format", "txt", "--with-edits")
    assert "alice: (edit of 2) middle\n" in txt and "alice: =2 newest (edited)\n" in txt
    page = export(edited, tmp_path, "--format", "html")
    assert "=2 newest (edited)</li>" in page and page.count("(deleted)</li>") == 2 and "middle" not in page


@pytest.mark.parametrize("with_edits", [False, True])
@pytest.mark.parametrize("fmt", ["ndjson", "json"])
def test_sqlites_direct_read_of_edited_and_deleted_messages_equals_the_servers(
    edited: dict[str, str], fmt: str, with_edits: bool
) -> None:
    """The SQLite json_object forms of an edited or deleted message and of an edit
    event write what StoredMessage.to_dict writes, byte for byte."""
    import asyncio

    from quartchat.database import create_database
    from quartchat.export import ExportQuery, SqliteFile, formatter, render, render_sqlite
    from quartchat.settings import Settings

    settings = Settings(database_url=edited["QUARTCHAT_DATABASE_URL"])
    query = ExportQuery(with_edits=with_edits)

    async def served() -> str:
        database = create_database(settings)
        try:
            return "".join([piece async for piece in render(database.reader, query, formatter("ndjson", None))])
        finally:
            await database.dispose()

    assert settings.sqlite_path is not None
    direct = SqliteFile(settings.sqlite_path)
    try:
        written = b"".join(render_sqlite(direct, query, formatter("ndjson", None))).decode()
    finally:
        direct.close()
    assert written == asyncio.run(served())
    assert written.count("\n") == (7 if with_edits else 4)


def test_an_export_with_edits_round_trips_and_imports_once(edited: dict[str, str], tmp_path: Path) -> None:
    first = tmp_path / "first.ndjson"
    export(edited, tmp_path, "--with-edits", "-o", str(first))
    fresh = quartchat_env(sqlite_url(tmp_path / "fresh.db"))
    assert run_cli(fresh, tmp_path, "db", "upgrade").returncode == 0
    for _ in range(2):
        result = run_cli(fresh, tmp_path, "import", str(first))
        assert result.returncode == 0, result.stderr
    assert "added 0" in result.stderr, "the second import added messages"
    second = tmp_path / "second.ndjson"
    export(fresh, tmp_path, "--with-edits", "-o", str(second))
    assert second.read_bytes() == first.read_bytes()
    # The plain export imports too, and says the same of the chat messages.
    plain = tmp_path / "plain.ndjson"
    export(edited, tmp_path, "-o", str(plain))
    other = quartchat_env(sqlite_url(tmp_path / "other.db"))
    assert run_cli(other, tmp_path, "db", "upgrade").returncode == 0
    assert run_cli(other, tmp_path, "import", str(plain)).returncode == 0
    assert export(other, tmp_path) == plain.read_text()


def test_an_imported_deleted_message_keeps_no_text_whatever_the_file_says(tmp_path: Path) -> None:
    import sqlite3

    lines = [
        {**message(1, "secret text"), "deleted": True},
        {**message(2, "secret too"), "type": "delete", "target": 1},
    ]
    dump = tmp_path / "d.ndjson"
    dump.write_text("".join(json.dumps(m) + "\n" for m in lines))
    env = quartchat_env(sqlite_url(tmp_path / "d.db"))
    assert run_cli(env, tmp_path, "db", "upgrade").returncode == 0
    assert run_cli(env, tmp_path, "import", str(dump)).returncode == 0
    with sqlite3.connect(tmp_path / "d.db") as connection:
        rows = connection.execute("SELECT id, kind, target, text, deleted FROM messages ORDER BY id").fetchall()
    connection.close()
    assert rows == [(1, "chat", None, "", 1), (2, "delete", 1, "", 0)]


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"type": "edit"}, '"target"'),
        ({"type": "edit", "target": "1"}, '"target"'),
        ({"type": "react"}, '"type"'),
        ({"deleted": "yes"}, '"deleted"'),
        ({"edited": "yesterday"}, "edited"),
        ({"type": "edit", "target": 1, "edited": "2026-11-24T10:00:00Z"}, '"edited"'),
        ({"mentions": "u-1"}, '"mentions"'),
    ],
)
def test_a_bad_edit_field_names_its_line_and_imports_nothing(
    tmp_path: Path, change: dict[str, Any], complaint: str
) -> None:
    dump = tmp_path / "bad.ndjson"
    dump.write_text(json.dumps(message(1, "fine")) + "\n" + json.dumps({**message(2, "x"), **change}) + "\n")
    env = quartchat_env(sqlite_url(tmp_path / "b.db"))
    assert run_cli(env, tmp_path, "db", "upgrade").returncode == 0
    result = run_cli(env, tmp_path, "import", str(dump))
    assert result.returncode != 0 and "line 2" in result.stderr and complaint in result.stderr, result.stderr
    assert export(env, tmp_path) == ""
