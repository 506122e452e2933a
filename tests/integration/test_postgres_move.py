"""Moving from SQLite to PostgreSQL (README "Moving from SQLite to PostgreSQL"): by
`quartchat db copy` and by export + import, on the real PostgreSQL service."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from ..conftest import StartServer
from ..support import PASSWORD, Chat, quartchat_env, run_cli, unique


async def seed_sqlite(start_server: StartServer, workdir: Path) -> tuple[str, list[dict[str, object]], str]:
    """A SQLite deployment with an account and a conversation; (url, messages, name)."""
    server = start_server(workdir=workdir)
    chat = Chat(server)
    name = unique("mover")
    user = await chat.user(name)
    conn = await chat.open(user, "lobby")
    sent = [await conn.say(text) for text in ("hello", "你好 🎉", "=1+2", "bye")]
    await chat.aclose()
    server.stop()
    return server.database_url, sent, name


async def test_db_copy_moves_accounts_with_passwords_and_messages(
    start_server: StartServer, postgres_url: str, tmp_path: Path
) -> None:
    source_dir = tmp_path / "sqlite"
    source_dir.mkdir()
    sqlite, sent, name = await seed_sqlite(start_server, source_dir)
    result = run_cli(quartchat_env(sqlite), tmp_path, "db", "copy", "--to", postgres_url)
    assert result.returncode == 0, result.stderr
    assert "copied and verified" in result.stderr

    again = run_cli(quartchat_env(sqlite), tmp_path, "db", "copy", "--to", postgres_url)
    assert again.returncode == 2 and "not empty" in again.stderr

    pg_dir = tmp_path / "pg"
    pg_dir.mkdir()
    server = start_server(workdir=pg_dir, database_url=postgres_url)
    chat = Chat(server)
    try:
        async with httpx.AsyncClient(base_url=server.base_url, trust_env=False) as client:
            signed_in = await client.post("/api/session", json={"name": name, "password": PASSWORD})
            assert signed_in.status_code == 200, "the copied account keeps its password"
        user = await chat.user(name)
        assert (await chat.messages(user, "lobby"))["messages"] == sent
        newer = await (await chat.open(user, "lobby")).say("after the move")
        assert newer["id"] > sent[-1]["id"]  # type: ignore[operator]
    finally:
        await chat.aclose()


async def test_import_into_postgresql_keeps_ids_and_reserves_names(
    start_server: StartServer, postgres_url: str, tmp_path: Path
) -> None:
    source_dir = tmp_path / "sqlite"
    source_dir.mkdir()
    sqlite, sent, name = await seed_sqlite(start_server, source_dir)
    dump = tmp_path / "all.ndjson"
    assert run_cli(quartchat_env(sqlite), tmp_path, "export", "-o", str(dump)).returncode == 0
    pg_env = quartchat_env(postgres_url)
    assert run_cli(pg_env, tmp_path, "db", "upgrade").returncode == 0
    for _ in range(2):
        result = run_cli(pg_env, tmp_path, "import", str(dump))
        assert result.returncode == 0, result.stderr
    assert "added 0" in result.stderr

    exported = run_cli(pg_env, tmp_path, "export")
    assert [json.loads(line) for line in exported.stdout.splitlines()] == sent

    pg_dir = tmp_path / "pg"
    pg_dir.mkdir()
    server = start_server(workdir=pg_dir, database_url=postgres_url)
    chat = Chat(server)
    try:
        async with httpx.AsyncClient(base_url=server.base_url, trust_env=False) as client:
            claimed = await client.post("/api/session", json={"name": name, "password": PASSWORD})
            assert claimed.status_code == 401, "an imported name cannot be claimed"
        other = await chat.user()
        newer = await (await chat.open(other, "lobby")).say("new on postgres")
        assert newer["id"] > sent[-1]["id"]  # type: ignore[operator]
        assert run_cli(pg_env, tmp_path, "user", "password", name, stdin="a new password!\n").returncode == 0
        async with httpx.AsyncClient(base_url=server.base_url, trust_env=False) as client:
            signed_in = await client.post("/api/session", json={"name": name, "password": "a new password!"})
            assert signed_in.status_code == 200
    finally:
        await chat.aclose()
