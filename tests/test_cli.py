"""The command line as an operator runs it (a process per command): the version, one
handler per command, refusals as one line with status 2, and a quiet start."""

from __future__ import annotations

import re
from importlib.metadata import version
from pathlib import Path

import pytest

from quartchat.cli import build_parser

from .support import Server, quartchat_env, run_cli, sqlite_url


def test_version_is_the_installed_packages(tmp_path: Path) -> None:
    result = run_cli(quartchat_env(sqlite_url(tmp_path / "chat.db")), tmp_path, "--version")
    assert result.returncode == 0 and result.stdout.strip() == f"quartchat {version('quartchat')}"


@pytest.mark.parametrize(
    "argv",
    [
        ["serve"],
        ["db", "upgrade"],
        ["db", "downgrade", "base"],
        ["db", "current"],
        ["db", "backup", "copy.db"],
        ["db", "copy", "--to", "sqlite+aiosqlite:///copy.db"],
        ["export"],
        ["import", "-"],
        ["static", "www"],
        ["user", "password", "alice"],
        ["user", "role", "alice", "admin"],
        ["user", "disable", "alice"],
        ["user", "enable", "alice"],
        ["token", "create", "alice", "--room", "ci"],
        ["token", "list"],
        ["token", "revoke", "0b1c"],
        ["room", "retention", "lobby", "30"],
    ],
)
def test_every_command_has_a_handler(argv: list[str]) -> None:
    assert callable(build_parser().parse_args(argv).handler)


def test_db_backup_refusals_are_one_line_and_never_overwrite(tmp_path: Path) -> None:
    env = quartchat_env(sqlite_url(tmp_path / "chat.db"))
    missing = run_cli(env, tmp_path, "db", "backup", str(tmp_path / "copy.db"))
    assert missing.returncode == 2
    assert missing.stderr.splitlines() == [f"quartchat: no database at {(tmp_path / 'chat.db').resolve()}"]
    assert run_cli(env, tmp_path, "db", "upgrade").returncode == 0
    taken = tmp_path / "taken.db"
    taken.write_text("keep me")
    refused = run_cli(env, tmp_path, "db", "backup", str(taken))
    assert refused.returncode == 2 and refused.stderr.splitlines() == [
        f"quartchat: {taken} exists: give a new file name"
    ]
    assert taken.read_text() == "keep me"
    postgres = quartchat_env("postgresql+asyncpg://postgres@127.0.0.1/quartchat")
    elsewhere = run_cli(postgres, tmp_path, "db", "backup", str(tmp_path / "pg.db"))
    assert elsewhere.returncode == 2 and "use pg_dump" in elsewhere.stderr


def test_db_upgrade_says_in_one_line_which_revisions_it_applied(tmp_path: Path) -> None:
    env = quartchat_env(sqlite_url(tmp_path / "chat.db"))
    first = run_cli(env, tmp_path, "db", "upgrade")
    assert first.returncode == 0
    assert re.fullmatch(
        r"\S+ \S+ INFO \[\d+\] quartchat\.migrate: database sqlite\+aiosqlite:///\S+chat\.db: "
        r"migrated \(empty\) → 0001( → \d{4})+",
        first.stderr.strip(),
    ), first.stderr
    again = run_cli(env, tmp_path, "db", "upgrade")
    assert again.stderr.strip().endswith(": nothing to migrate") and len(again.stderr.splitlines()) == 1


def test_user_password_refusals_are_one_line_with_status_2(tmp_path: Path) -> None:
    env = quartchat_env(sqlite_url(tmp_path / "chat.db"))
    short = run_cli(env, tmp_path, "user", "password", "alice", stdin="short\n")
    assert short.returncode == 2 and short.stderr.splitlines() == ["quartchat: a password has 8 to 128 characters"]
    bad_name = run_cli(env, tmp_path, "user", "password", "a/b", stdin="long enough\n")
    assert bad_name.returncode == 2 and bad_name.stderr.startswith("quartchat: a name may hold letters")


def test_serve_says_where_the_database_stands_and_where_it_listens_once(tmp_path: Path) -> None:
    server = Server(tmp_path).start()
    server.stop()
    log = server.log()
    assert "alembic" not in log, log
    assert len(re.findall(r"quartchat\.migrate: database \S+: migrated \(empty\) → ", log)) == 1, log
    assert log.count("Running on") == 1, log
