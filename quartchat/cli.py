"""The command line (SPEC §3): `quartchat serve | db … | user password NAME`."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import sys
import uuid
from pathlib import Path

from . import migrate
from .auth import CredentialsError, Passwords, check_password, clean_name, name_key
from .database import create_database
from .settings import Settings, SettingsError
from .store import Store


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

    user = commands.add_parser("user", help="accounts").add_subparsers(dest="user_command", required=True)
    password = user.add_parser("password", help="set a user's password (prompted; creates the user if new)")
    password.add_argument("name")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env()
        if args.command == "serve":
            return _serve(settings, args)
        if args.command == "db":
            return _db(settings, args)
        return _user_password(settings, args.name)
    except (SettingsError, UsageError) as problem:
        print(f"quartchat: {problem}", file=sys.stderr)
        return 2


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from .server import hypercorn_config, run

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
    if workers > 1:
        raise UsageError("several workers are not supported yet (see the scale-out issue)")
    settings.resolved_secret_key()  # made once, before anything else reads it
    migrate.upgrade(settings.database_url)
    run(settings, config)
    return 0


def _db(settings: Settings, args: argparse.Namespace) -> int:
    if args.db_command == "upgrade":
        migrate.upgrade(settings.database_url, args.revision)
    elif args.db_command == "downgrade":
        migrate.downgrade(settings.database_url, args.revision)
    else:
        print(migrate.current(settings.database_url) or "(no revision: run `quartchat db upgrade`)")
    return 0


def _user_password(settings: Settings, raw_name: str) -> int:
    try:
        name = clean_name(raw_name)
        if sys.stdin.isatty():
            password = getpass.getpass(f"New password for {name}: ")
            if getpass.getpass("Again: ") != password:
                raise UsageError("the two passwords differ")
        else:  # scripts pipe it in; never on the command line, where `ps` shows it
            password = sys.stdin.readline().rstrip("\n")
        check_password(password)
    except CredentialsError as refused:
        raise UsageError(refused.message) from None
    created = asyncio.run(_set_password(settings, name, password))
    print(f"{'created' if created else 'updated'} {name}; their other sessions are signed out")
    return 0


async def _set_password(settings: Settings, name: str, password: str) -> bool:
    database = create_database(settings)
    try:
        store = Store(database)
        password_hash = Passwords().hash_sync(password)
        account = await store.account_by_name_key(name_key(name))
        if account is None:
            await store.create_account(str(uuid.uuid4()), name, name_key(name), password_hash)
            return True
        await store.set_password_hash(account.id, password_hash, end_sessions=True)
        return False
    finally:
        await database.dispose()
