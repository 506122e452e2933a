"""The command line: `quartchat serve | db … | export | import | static DIR | user password NAME`."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import getpass
import shlex
import sys
import uuid
from pathlib import Path
from typing import Any

from tqdm import tqdm

from .export import (
    FORMATS,
    ExportError,
    ExportQuery,
    Format,
    SqliteFile,
    count,
    formatter,
    parse_time,
    render,
    render_sqlite,
)
from .logs import configure_logging
from .rooms import valid_room
from .settings import Settings, SettingsError, check_database_url


class UsageError(Exception):
    """A command that cannot run as asked; printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="quartchat", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="migrate the database, then serve the chat")
    serve.add_argument("--bind", help="HOST:PORT (default 127.0.0.1:8000, from hypercorn.toml)")
    serve.add_argument("--config", type=Path, help="a Hypercorn TOML file (default: the bundled hypercorn.toml)")
    serve.add_argument("--workers", type=int, help="worker processes (more than 1 needs a redis:// broker)")

    db = commands.add_parser("db", help="database schema (Alembic)").add_subparsers(dest="db_command", required=True)
    upgrade = db.add_parser("upgrade", help="migrate to a revision (default: the newest)")
    upgrade.add_argument("revision", nargs="?", default="head")
    downgrade = db.add_parser("downgrade", help="migrate back to a revision")
    downgrade.add_argument("revision")
    db.add_parser("current", help="print the database's revision")

    export = commands.add_parser("export", help="write history in one of the export formats")
    export.add_argument("--room", help="one room (default: every room)")
    export.add_argument("--since", help="ISO 8601 date or time, inclusive (no zone: UTC)")
    export.add_argument("--until", help="ISO 8601 date or time, exclusive (no zone: UTC)")
    export.add_argument("--format", default="ndjson", choices=sorted(FORMATS))
    export.add_argument("-o", "--output", type=Path, help="a file (default: standard output)")

    load = commands.add_parser("import", help="load an ndjson or json export (- for standard input)")
    load.add_argument("file")

    backup = db.add_parser("backup", help="copy the SQLite database to FILE, safely while the server runs")
    backup.add_argument("file", type=Path)
    copy = db.add_parser("copy", help="copy the whole deployment into an empty database")
    copy.add_argument("--to", required=True, metavar="URL", help="the target database URL")

    static = commands.add_parser(
        "static", help="copy this version's static files into DIR/v/<version>/ for nginx (DIR/current: the newest)"
    )
    static.add_argument("directory", type=Path)

    user = commands.add_parser("user", help="accounts").add_subparsers(dest="user_command", required=True)
    password = user.add_parser("password", help="set a user's password (prompted; creates the user if new)")
    password.add_argument("name")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging()
    try:
        settings = Settings.from_env()
        if args.command == "serve":
            return _serve(settings, args)
        if args.command == "db":
            return _db(settings, args)
        if args.command == "export":
            return _export(settings, args)
        if args.command == "import":
            return _import(settings, args.file)
        if args.command == "static":
            return _static(args.directory)
        return _user_password(settings, args.name)
    except (SettingsError, UsageError) as problem:
        print(f"quartchat: {problem}", file=sys.stderr)
        return 2


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from .hosts import default_hosts
    from .server import hypercorn_config, run, run_workers

    if args.config is not None and not args.config.is_file():
        raise UsageError(f"--config: no such file: {args.config}")
    config = hypercorn_config(args.config, args.bind)
    workers = args.workers if args.workers is not None else config.workers
    if workers < 1:
        raise UsageError("--workers must be at least 1")
    if workers > 1 and settings.broker_url == "memory://":
        raise UsageError(
            f"--workers {workers} needs QUARTCHAT_BROKER_URL=redis://…: with memory:// each "
            "worker would hold its own share of the chat"
        )
    if not settings.allowed_hosts:
        binds = [*config.bind, *config.insecure_bind, *config.quic_bind]
        settings = dataclasses.replace(settings, allowed_hosts=default_hosts(binds))
    settings.resolved_secret_key()  # made once, before anything else reads it
    from . import migrate  # Alembic is loaded only by the commands that need it (and logs)

    migrate.upgrade(settings.database_url)  # once, before any worker starts
    if workers > 1:
        run_workers(settings, config, workers)
    else:
        run(settings, config)
    return 0


def _db(settings: Settings, args: argparse.Namespace) -> int:
    from . import migrate  # Alembic is loaded only by the commands that need it

    if args.db_command == "upgrade":
        migrate.upgrade(settings.database_url, args.revision)
    elif args.db_command == "downgrade":
        migrate.downgrade(settings.database_url, args.revision)
    elif args.db_command == "copy":
        return _copy(settings, args.to)
    elif args.db_command == "backup":
        return _backup(settings, args.file)
    else:
        print(migrate.current(settings.database_url) or "(no revision: run `quartchat db upgrade`)")
    return 0


def _static(target: Path) -> int:
    from .resources import resource
    from .static import publish_static

    if target.exists() and not target.is_dir():
        raise UsageError(f"{target} is not a directory")
    try:
        published = publish_static(resource("static"), target)
    except OSError as failed:
        raise UsageError(f"cannot copy the static files into {target}: {failed}") from None
    print(f"static files of this version in {published}; {target / 'current'} points at them")
    return 0


def _user_password(settings: Settings, raw_name: str) -> int:
    from .accounts import CredentialsError, check_password, clean_name, stored_name

    try:
        try:  # an existing account's name (as it was made), else a new one's
            name = stored_name(raw_name)
        except CredentialsError:
            name = clean_name(raw_name)
        if sys.stdin.isatty():
            password = getpass.getpass(f"New password for {name}: ")
            if getpass.getpass("Again: ") != password:
                raise UsageError("the two passwords differ")
        else:  # scripts pipe it in; never on the command line, where `ps` shows it
            password = sys.stdin.readline().rstrip("\n")
        check_password(password)
        created, name = asyncio.run(_set_password(settings, raw_name, password))
    except CredentialsError as refused:
        raise UsageError(refused.message) from None
    print(f"{'created' if created else 'updated'} {name}; their other sessions are signed out")
    return 0


async def _set_password(settings: Settings, raw_name: str, password: str) -> tuple[bool, str]:
    """(created, the account's name)."""
    # Loaded here, not at the top: `quartchat export` starts faster without them.
    from .accounts import Passwords, find_account, name_key, unconfusable
    from .database import create_database
    from .store import Store
    from .writes import create_writes

    database = create_database(settings)
    try:
        store = Store(database)
        writes = create_writes(database)
        password_hash = Passwords().hash_sync(password)
        name, account = await find_account(store, raw_name)
        if account is None:
            skeleton = await unconfusable(store, name)
            await writes.create_account(str(uuid.uuid4()), name, name_key(name), password_hash, skeleton)
            return True, name
        await writes.set_password_hash(account.id, password_hash, end_sessions=True)
        return False, account.name
    finally:
        await database.dispose()


def _progress_bar(total: int | None, unit: str) -> Any:
    """A bar on a terminal (count, rate, time left); nothing when stderr is not one."""
    return tqdm(total=total, unit=unit, unit_scale=True, file=sys.stderr, disable=not sys.stderr.isatty())


def _export(settings: Settings, args: argparse.Namespace) -> int:
    if args.room is not None and not valid_room(args.room):
        raise UsageError(f"--room: {args.room!r} is not a room name (1-64 of a-z, 0-9, '-')")
    try:
        query = ExportQuery(args.room, parse_time(args.since, "--since"), parse_time(args.until, "--until"))
    except ExportError as bad:
        raise UsageError(str(bad)) from None
    output = formatter(args.format, query.room)
    if settings.sqlite_path is not None and output.wants_json:
        _write_sqlite_export(settings.sqlite_path, query, output, args.output)
    else:
        asyncio.run(_write_export(settings, query, output, args.output))
    return 0


def _write_sqlite_export(path: Path, query: ExportQuery, output: Format, target: Path | None) -> None:
    """ndjson and json from an SQLite file: synchronous, bytes in and bytes out."""
    try:
        database = SqliteFile(path)
        try:
            if target is None:
                sys.stdout.buffer.writelines(render_sqlite(database, query, output))
                sys.stdout.buffer.flush()
                return
            total = database.count(query) if sys.stderr.isatty() else None
            with target.open("wb") as file, _progress_bar(total, "msg") as bar:
                file.writelines(render_sqlite(database, query, output, bar.update))
        finally:
            database.close()
    except ExportError as bad:
        raise UsageError(str(bad)) from None


async def _write_export(settings: Settings, query: ExportQuery, output: Format, target: Path | None) -> None:
    from .database import create_database

    database = create_database(settings)
    try:
        engine = database.reader
        if target is None:
            async for piece in render(engine, query, output):
                sys.stdout.buffer.write(piece.encode("utf-8"))
            sys.stdout.buffer.flush()
            return
        total = await count(engine, query) if sys.stderr.isatty() else None
        with target.open("w", encoding="utf-8", newline="") as file, _progress_bar(total, "msg") as bar:
            async for piece in render(engine, query, output, bar.update):
                file.write(piece)
    finally:
        await database.dispose()


def _import(settings: Settings, path: str) -> int:
    from .transfer import TransferError

    try:
        read, added = asyncio.run(_run_import(settings, path))
    except TransferError as bad:
        raise UsageError(str(bad)) from None
    print(f"read {read} messages, added {added} ({read - added} were already here)", file=sys.stderr)
    return 0


async def _run_import(settings: Settings, path: str) -> tuple[int, int]:
    from .database import create_database
    from .transfer import import_file

    database = create_database(settings)
    try:
        with _progress_bar(None, "msg") as bar:
            return await import_file(database.writer, path, sys.stdin, bar.update)
    finally:
        await database.dispose()


def _copy(settings: Settings, target_url: str) -> int:
    from . import migrate  # Alembic is loaded only by the commands that need it

    try:
        target_url = check_database_url(target_url)
    except SettingsError as bad:
        raise UsageError(str(bad).replace("QUARTCHAT_DATABASE_URL", "--to")) from None
    if target_url == settings.database_url:
        raise UsageError("--to names the database being copied")
    from .transfer import TransferError

    migrate.upgrade(target_url)
    try:
        copied = asyncio.run(_run_copy(settings, target_url))
    except TransferError as bad:
        raise UsageError(str(bad)) from None
    summary = ", ".join(f"{count} {table}" for table, count in copied.items())
    print(f"copied and verified: {summary}", file=sys.stderr)
    print(_keep_the_key(settings), file=sys.stderr)
    return 0


def _keep_the_key(settings: Settings) -> str:
    """How the new deployment keeps signing as the old one did: with another key every
    session cookie is refused and everyone has to sign in again."""
    if settings.secret_key is not None:
        return "keep QUARTCHAT_SECRET_KEY as it is for the new deployment: everyone stays signed in"
    path = settings.sqlite_path
    key_file = path.with_name(path.name + ".secret") if path is not None else None
    if key_file is None or not key_file.exists():
        return "no signing key was made for the copied database: give the new deployment a new QUARTCHAT_SECRET_KEY"
    # The command, not the key: a key printed here would stay in terminal scroll-back and logs.
    return (
        f"sessions are signed with the key in {key_file}: give the new deployment the same key, "
        "or everyone is signed out. With docs/deploy.md's layout:\n"
        f'  echo "QUARTCHAT_SECRET_KEY=$(cat {shlex.quote(str(key_file))})" >> /etc/quartchat/quartchat.env'
    )


async def _run_copy(settings: Settings, target_url: str) -> dict[str, int]:
    from .database import create_database
    from .transfer import copy_database, table_counts

    source = create_database(settings)
    target = create_database(Settings(database_url=target_url, sqlite_synchronous=settings.sqlite_synchronous))
    try:
        total = sum((await table_counts(source.reader)).values())
        with _progress_bar(total, "row") as bar:
            return await copy_database(source.reader, target.writer, bar.update)
    finally:
        await source.dispose()
        await target.dispose()


def _backup(settings: Settings, target: Path) -> int:
    """SQLite's online backup: a consistent copy while the server keeps writing."""
    import sqlite3

    source = settings.sqlite_path
    if source is None:
        raise UsageError("db backup copies an SQLite file; for PostgreSQL use pg_dump (docs/deploy.md)")
    if not source.exists():
        raise UsageError(f"no database at {source}")
    if target.exists():
        raise UsageError(f"{target} exists: give a new file name")
    reading = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    writing = sqlite3.connect(target)
    try:
        # In steps of 1024 pages, so the server's writes are not held up meanwhile.
        reading.backup(writing, pages=1024)
        check = writing.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        reading.close()
        writing.close()
    if check != "ok":
        raise UsageError(f"the backup failed its integrity check: {check}")
    print(f"backed up {source} to {target} (integrity check ok)", file=sys.stderr)
    return 0
