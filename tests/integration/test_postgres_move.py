"""Moving from SQLite to PostgreSQL (docs/deploy.md, "Moving from SQLite"): by
`quartchat db copy` and by export + import, on the real PostgreSQL service."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx

from ..conftest import StartServer
from ..support import PASSWORD, Chat, Server, quartchat_env, run_cli, unique


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


def serve_postgres(start_server: StartServer, tmp_path: Path, postgres_url: str, **settings: str) -> Server:
    """A server on the PostgreSQL database the history was moved into."""
    workdir = tmp_path / "pg"
    workdir.mkdir()
    return start_server(workdir=workdir, database_url=postgres_url, **settings)


async def sign_in_status(server: Server, name: str, password: str) -> int:
    async with httpx.AsyncClient(base_url=server.base_url, trust_env=False) as client:
        response = await client.post("/api/session", json={"name": name, "password": password})
        return response.status_code


async def test_db_copy_moves_accounts_with_passwords_and_messages(
    start_server: StartServer, postgres_url: str, tmp_path: Path
) -> None:
    source_dir = tmp_path / "sqlite"
    source_dir.mkdir()
    sqlite, sent, name = await seed_sqlite(start_server, source_dir)
    made = run_cli(quartchat_env(sqlite), tmp_path, "token", "create", name, "--room", "lobby")
    assert made.returncode == 0, made.stderr
    token = {"Authorization": f"Bearer {made.stdout.strip()}"}
    result = run_cli(quartchat_env(sqlite), tmp_path, "db", "copy", "--to", postgres_url)
    assert result.returncode == 0, result.stderr
    assert "copied and verified" in result.stderr
    assert "keep QUARTCHAT_SECRET_KEY as it is" in result.stderr

    again = run_cli(quartchat_env(sqlite), tmp_path, "db", "copy", "--to", postgres_url)
    assert again.returncode == 2 and "not empty" in again.stderr

    server = serve_postgres(start_server, tmp_path, postgres_url)
    chat = Chat(server)
    try:
        assert await sign_in_status(server, name, PASSWORD) == 200, "the copied account keeps its password"
        user = await chat.user(name)
        assert (await chat.messages(user, "lobby"))["messages"] == sent
        newer = await (await chat.open(user, "lobby")).say("after the move")
        assert newer["id"] > sent[-1]["id"]  # type: ignore[operator]
        # The bot token and its room limit moved too; so did the first account's role.
        bot = chat.http()
        assert (await bot.post("/api/rooms/lobby/messages", json={"data": "bot"}, headers=token)).status_code == 201
        assert (await bot.get("/api/rooms/elsewhere/messages", headers=token)).status_code == 403
        assert (await bot.get("/api/export", headers=token)).status_code == 403  # an admin's, but limited
        assert (await user.http.get("/api/export")).status_code == 200, "the first account is still the admin"
    finally:
        await chat.aclose()


async def test_db_copy_says_how_to_keep_the_key_file_and_doing_so_keeps_everyone_signed_in(
    start_server: StartServer, postgres_url: str, tmp_path: Path
) -> None:
    source_dir = tmp_path / "sqlite"
    source_dir.mkdir()
    server = start_server(workdir=source_dir, secret_key=None)  # the key file beside the database
    chat = Chat(server)
    user = await chat.user()
    await (await chat.open(user, "lobby")).say("before the move")
    await chat.aclose()
    server.stop()
    key_file = source_dir / "chat.db.secret"
    result = run_cli(quartchat_env(server.database_url, secret_key=None), tmp_path, "db", "copy", "--to", postgres_url)
    assert result.returncode == 0, result.stderr
    command = f'echo "QUARTCHAT_SECRET_KEY=$(cat {key_file})" >> /etc/quartchat/quartchat.env'
    assert command in result.stderr
    assert key_file.read_text().strip() not in result.stderr, "the key itself is never printed"

    env_file = tmp_path / "quartchat.env"
    local_command = command.replace("/etc/quartchat/quartchat.env", str(env_file))
    shell = await asyncio.create_subprocess_exec("sh", "-c", local_command)
    assert await shell.wait() == 0
    key = env_file.read_text().strip().removeprefix("QUARTCHAT_SECRET_KEY=")
    moved = serve_postgres(start_server, tmp_path, postgres_url, secret_key=key)
    async with httpx.AsyncClient(base_url=moved.base_url, trust_env=False, cookies=user.http.cookies) as client:
        rooms = await client.get("/api/rooms")
    assert rooms.status_code == 200, "the session cookie from before the move is still good"


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

    server = serve_postgres(start_server, tmp_path, postgres_url)
    chat = Chat(server)
    try:
        assert await sign_in_status(server, name, PASSWORD) == 401, "an imported name cannot be claimed"
        other = await chat.user()
        newer = await (await chat.open(other, "lobby")).say("new on postgres")
        assert newer["id"] > sent[-1]["id"]  # type: ignore[operator]
        assert run_cli(pg_env, tmp_path, "user", "password", name, stdin="a new password!\n").returncode == 0
        assert await sign_in_status(server, name, "a new password!") == 200
    finally:
        await chat.aclose()
