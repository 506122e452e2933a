"""Attacks on `quartchat import` of edits and deletes (docs/protocol.md §13, §17)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from ..support import quartchat_env, run_cli, sqlite_url

USER = {"id": "u-1", "name": "alice"}


def _line(**fields: object) -> str:
    base: dict[str, object] = {"room": "general", "user": USER, "ts": "2026-01-01T00:00:00.000Z"}
    return json.dumps({**base, **fields})


def _import(tmp_path: Path, lines: list[str]) -> tuple[Path, str]:
    dump = tmp_path / "dump.ndjson"
    dump.write_text("\n".join(lines) + "\n")
    db = tmp_path / "i.db"
    env = quartchat_env(sqlite_url(db))
    assert run_cli(env, tmp_path, "db", "upgrade").returncode == 0
    result = run_cli(env, tmp_path, "import", str(dump))
    return db, f"rc={result.returncode} {result.stderr[-400:]}"


def _texts(db: Path) -> list[tuple[int, str, str]]:
    with sqlite3.connect(db) as connection:
        return list(connection.execute("SELECT id, kind, text FROM messages ORDER BY id"))


def test_an_imported_edit_of_a_deleted_message_keeps_no_text(tmp_path: Path) -> None:
    """A delete erases every edit's text (writes._ERASE_EDITS); an import of a deleted
    message with its edit events should store no edit text either."""
    db, outcome = _import(
        tmp_path,
        [
            _line(type="chat", id=1, data="", deleted=True),
            _line(type="edit", id=2, target=1, data="SECRET-EDIT-TEXT"),
        ],
    )
    rows = _texts(db)
    assert not any("SECRET" in text for _, _, text in rows), (outcome, rows)


def test_an_imported_edit_whose_target_is_in_another_room_or_missing_is_refused(tmp_path: Path) -> None:
    """An edit event pointing at a message of another room (or none) is what the server
    never stores (_EventCheck: not_found); an import should refuse it and name the line."""
    db, outcome = _import(
        tmp_path,
        [
            _line(type="chat", id=1, data="in general"),
            _line(type="edit", id=2, target=1, data="from elsewhere", room="other"),
            _line(type="edit", id=3, target=999, data="of nothing"),
        ],
    )
    assert outcome.startswith("rc=2"), (outcome, _texts(db))
