"""The command line: `quartchat serve | db … | export | import | static DIR | user … | room … | token …`."""

# Each command is a handler that checks its arguments, calls the library and prints the
# outcome; a refusal is one line on standard error and exit status 2.

from __future__ import annotations

import argparse
import asyncio
import getpass
import shlex
import sys
from collections.abc import Awaitable, Callable
from contextlib import nullcontext
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from tqdm import tqdm

from .export import FORMATS, ExportError, ExportQuery, formatter, parse_time, write_export, write_sqlite_export
from .logs import configure_logging
from .rooms import valid_room
from .settings import InvalidValue, Settings, SettingsError, parse_database_url

if TYPE_CHECKING:
    from .database import Database
    from .store import Store
    from .writes import Writes

T = TypeVar("T")


class UsageError(Exception):
    """A command that cannot run as asked; printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="quartchat", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_installed_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="migrate the database, then serve the chat")
    serve.add_argument("--bind", help="HOST:PORT (default 127.0.0.1:8000, from hypercorn.toml)")
    serve.add_argument("--config", type=Path, help="a Hypercorn TOML file (default: the bundled hypercorn.toml)")
    serve.add_argument("--workers", type=int, help="worker processes (more than 1 needs a redis:// broker)")
    serve.set_defaults(handler=serve_command)

    db = commands.add_parser("db", help="database schema (Alembic)").add_subparsers(dest="db_command", required=True)
    upgrade = db.add_parser("upgrade", help="migrate to a revision (default: the newest)")
    upgrade.add_argument("revision", nargs="?", default="head")
    upgrade.set_defaults(handler=db_upgrade)
    downgrade = db.add_parser("downgrade", help="migrate back to a revision")
    downgrade.add_argument("revision")
    downgrade.set_defaults(handler=db_downgrade)
    db.add_parser("current", help="print the database's revision").set_defaults(handler=db_current)
    backup = db.add_parser("backup", help="copy the SQLite database to FILE, safely while the server runs")
    backup.add_argument("file", type=Path)
    backup.set_defaults(handler=db_backup)
    copy = db.add_parser("copy", help="copy the whole deployment into an empty database")
    copy.add_argument("--to", required=True, metavar="URL", help="the target database URL")
    copy.set_defaults(handler=db_copy)

    export = commands.add_parser("export", help="write history in one of the export formats")
    export.add_argument("--room", help="one room (default: every room)")
    export.add_argument("--since", help="ISO 8601 date or time, inclusive (no zone: UTC)")
    export.add_argument("--until", help="ISO 8601 date or time, exclusive (no zone: UTC)")
    export.add_argument("--format", default="ndjson", choices=sorted(FORMATS))
    export.add_argument("-o", "--output", type=Path, help="a file (default: standard output)")
    export.add_argument("--with-edits", action="store_true", help="add the edit events, with their texts")
    export.set_defaults(handler=export_command)

    load = commands.add_parser("import", help="load an ndjson or json export (- for standard input)")
    load.add_argument("file")
    load.set_defaults(handler=import_command)

    find = commands.add_parser("search", help="search every room's history (docs/protocol.md §16), newest first")
    find.add_argument("query", help='words that must all appear, and "quoted phrases"')
    find.add_argument("--room", help="one room (default: every room, private ones too)")
    find.add_argument("--limit", type=int, default=20, help="at most this many messages (1-1000, default 20)")
    find.set_defaults(handler=search_command)

    static = commands.add_parser(
        "static", help="copy this version's static files into DIR/v/<version>/ for nginx (DIR/current: the newest)"
    )
    static.add_argument("directory", type=Path)
    static.set_defaults(handler=static_command)

    user = commands.add_parser("user", help="accounts").add_subparsers(dest="user_command", required=True)
    password = user.add_parser("password", help="set a user's password (prompted; creates the user if new)")
    password.add_argument("name")
    password.set_defaults(handler=user_password)
    role = user.add_parser("role", help="make a user an admin or a member")
    role.add_argument("name")
    role.add_argument("role", choices=["admin", "member"])
    role.set_defaults(handler=user_role)
    disable = user.add_parser("disable", help="refuse a user's sign-ins; end its sessions, tokens and sockets")
    disable.add_argument("name")
    disable.set_defaults(handler=user_disable, disabled=True)
    enable = user.add_parser("enable", help="let a disabled user sign in again")
    enable.add_argument("name")
    enable.set_defaults(handler=user_disable, disabled=False)

    room = commands.add_parser("room", help="rooms").add_subparsers(dest="room_command", required=True)
    retention = room.add_parser(
        "retention", help="keep a room's messages DAYS days (0: forever), or the server's default again"
    )
    retention.add_argument("room")
    retention.add_argument("days", metavar="DAYS|default")
    retention.set_defaults(handler=room_retention)

    token = commands.add_parser("token", help="bot tokens (Authorization: Bearer)").add_subparsers(
        dest="token_command", required=True
    )
    create = token.add_parser("create", help="make a token for the user NAME; it is printed once")
    create.add_argument("name")
    create.add_argument("--room", action="append", help="limit the token to this room (repeat for more)")
    create.set_defaults(handler=token_create)
    token.add_parser("list", help="every token: id, user, rooms, created (never the token)").set_defaults(
        handler=token_list
    )
    revoke = token.add_parser("revoke", help="end a token; its sockets close within 10 s")
    revoke.add_argument("id")
    revoke.set_defaults(handler=token_revoke)
    return parser


def _installed_version() -> str:
    try:
        return version("quartchat")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "(not installed)"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging()
    handler: Callable[[Settings, argparse.Namespace], int] = args.handler
    try:
        return handler(Settings.from_env(), args)
    except (SettingsError, UsageError) as problem:
        print(f"quartchat: {problem}", file=sys.stderr)
        return 2


def serve_command(settings: Settings, args: argparse.Namespace) -> int:
    from .server import hypercorn_config, serve

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
    serve(settings, config, workers)
    return 0


# Alembic is loaded only by the commands that need it: the others start faster.


def db_upgrade(settings: Settings, args: argparse.Namespace) -> int:
    from . import migrate

    migrate.upgrade(settings.database_url, args.revision)
    return 0


def db_downgrade(settings: Settings, args: argparse.Namespace) -> int:
    from . import migrate

    migrate.downgrade(settings.database_url, args.revision)
    return 0


def db_current(settings: Settings, args: argparse.Namespace) -> int:
    from . import migrate

    print(migrate.current(settings.database_url) or "(no revision: run `quartchat db upgrade`)")
    return 0


def db_backup(settings: Settings, args: argparse.Namespace) -> int:
    from .backup import BackupError, backup_sqlite

    source = settings.sqlite_path
    if source is None:
        raise UsageError("db backup copies an SQLite file; for PostgreSQL use pg_dump (docs/deploy.md)")
    try:
        backup_sqlite(source, args.file)
    except BackupError as failed:
        raise UsageError(str(failed)) from None
    print(f"backed up {source} to {args.file} (integrity check ok)", file=sys.stderr)
    return 0


def db_copy(settings: Settings, args: argparse.Namespace) -> int:
    from . import migrate
    from .transfer import TransferError, copy_database, table_counts

    try:
        target_url = parse_database_url(args.to)
    except InvalidValue as bad:
        raise UsageError(f"--to: {bad}") from None
    if target_url == settings.database_url:
        raise UsageError("--to names the database being copied")
    migrate.upgrade(target_url)
    target_settings = Settings(database_url=target_url, sqlite_synchronous=settings.sqlite_synchronous)

    async def copy(source: Database) -> dict[str, int]:
        async def into(target: Database) -> dict[str, int]:
            total = sum((await table_counts(source.reader)).values())
            with _progress_bar(total, "row") as bar:
                return await copy_database(source.reader, target.writer, bar.update)

        return await _using_database(target_settings, into)

    try:
        copied = asyncio.run(_using_database(settings, copy))
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
    key_file = settings.secret_key_path
    if key_file is None or not key_file.exists():
        return "no signing key was made for the copied database: give the new deployment a new QUARTCHAT_SECRET_KEY"
    # The command, not the key: a key printed here would stay in terminal scroll-back and logs.
    return (
        f"sessions are signed with the key in {key_file}: give the new deployment the same key, "
        "or everyone is signed out. With docs/deploy.md's layout:\n"
        f'  echo "QUARTCHAT_SECRET_KEY=$(cat {shlex.quote(str(key_file))})" >> /etc/quartchat/quartchat.env'
    )


def export_command(settings: Settings, args: argparse.Namespace) -> int:
    if args.room is not None and not valid_room(args.room):
        raise UsageError(f"--room: {args.room!r} is not a room name (1-64 of a-z, 0-9, '-')")
    try:
        query = ExportQuery(
            args.room, parse_time(args.since, "--since"), parse_time(args.until, "--until"), args.with_edits
        )
        output = formatter(args.format, query.room)
        # A bar for a file on a terminal only: the count that sizes it costs a pass over the history.
        with _progress_bar(None, "msg") if args.output is not None else nullcontext() as bar:
            shown = bar if sys.stderr.isatty() else None
            if settings.sqlite_path is not None and output.wants_json:
                write_sqlite_export(settings.sqlite_path, query, output, args.output, shown)
            else:
                asyncio.run(
                    _using_database(
                        settings, lambda database: write_export(database.reader, query, output, args.output, shown)
                    )
                )
    except ExportError as bad:
        raise UsageError(str(bad)) from None
    return 0


def import_command(settings: Settings, args: argparse.Namespace) -> int:
    from .transfer import TransferError, import_file

    async def load(database: Database) -> tuple[int, int]:
        with _progress_bar(None, "msg") as bar:
            return await import_file(database.writer, args.file, sys.stdin, bar.update)

    try:
        read, added = asyncio.run(_using_database(settings, load))
    except TransferError as bad:
        raise UsageError(str(bad)) from None
    print(f"read {read} messages, added {added} ({read - added} were already here)", file=sys.stderr)
    return 0


def search_command(settings: Settings, args: argparse.Namespace) -> int:
    """The operator's search: every room, straight from the database, one line a message
    with every control character escaped (a text cannot drive the terminal)."""
    from sqlalchemy import true

    from .plaintext import one_line
    from .protocol import format_ts
    from .search import BadQuery, parse, search_query
    from .store import Page, Store

    if args.room is not None and not valid_room(args.room):
        raise UsageError(f"--room: {args.room!r} is not a room name (1-64 of a-z, 0-9, '-')")
    if not 1 <= args.limit <= 1000:
        raise UsageError("--limit: a whole number from 1 to 1000")
    try:
        terms = parse(args.query)
    except BadQuery as bad:
        raise UsageError(str(bad)) from None

    async def find(database: Database) -> Page:
        # The operator reads every room: no access condition.
        query = search_query(terms, lambda _room: true(), sqlite=database.is_sqlite, room=args.room, limit=args.limit)
        return await Store(database).search(query, args.limit)

    page = asyncio.run(_using_database(settings, find))
    for m in page.messages:
        print(f"{m.id} {format_ts(m.ts_ms)} #{m.room} <{one_line(m.user.name)}> {one_line(m.text)}")
    if page.has_more:
        print(f"(more than {args.limit}: --limit N shows more)", file=sys.stderr)
    return 0


def static_command(settings: Settings, args: argparse.Namespace) -> int:
    from .resources import resource
    from .static import publish_static

    target: Path = args.directory
    if target.exists() and not target.is_dir():
        raise UsageError(f"{target} is not a directory")
    try:
        published = publish_static(resource("static"), target)
    except OSError as failed:
        raise UsageError(f"cannot copy the static files into {target}: {failed}") from None
    print(f"static files of this version in {published}; {target / 'current'} points at them")
    return 0


def user_password(settings: Settings, args: argparse.Namespace) -> int:
    # Loaded here, not at the top: `quartchat export` starts faster without them.
    from .accounts import CredentialsError, Passwords, account_name, check_password, set_password
    from .store import Store
    from .writes import create_writes

    try:
        name = account_name(args.name)
        if sys.stdin.isatty():
            password = getpass.getpass(f"New password for {name}: ")
            if getpass.getpass("Again: ") != password:
                raise UsageError("the two passwords differ")
        else:  # scripts pipe it in; never on the command line, where `ps` shows it
            password = sys.stdin.readline().rstrip("\n")
        check_password(password)
        created, name = asyncio.run(
            _using_database(
                settings,
                lambda database: set_password(
                    Store(database), create_writes(database), Passwords(), args.name, password
                ),
            )
        )
    except CredentialsError as refused:
        raise UsageError(refused.message) from None
    print(f"{'created' if created else 'updated'} {name}; their other sessions are signed out")
    return 0


def user_role(settings: Settings, args: argparse.Namespace) -> int:
    from .accounts import set_role

    account = _run_admin(settings, lambda store, writes: set_role(store, writes, args.name, args.role))
    print(f"{account.name} is now {'an admin' if args.role == 'admin' else 'a member'}")
    return 0


def user_disable(settings: Settings, args: argparse.Namespace) -> int:
    from .accounts import set_disabled

    account, sessions, tokens = _run_admin(
        settings, lambda store, writes: set_disabled(store, writes, args.name, args.disabled)
    )
    if args.disabled:
        print(
            f"disabled {account.name}: {sessions} sessions and {tokens} tokens ended; "
            "their open sockets close within 10 s"
        )
    else:
        print(f"enabled {account.name}: they may sign in again (their old tokens stay revoked)")
    return 0


def room_retention(settings: Settings, args: argparse.Namespace) -> int:
    from .retention import set_room_retention
    from .settings import whole

    if not valid_room(args.room):
        raise UsageError(f"{args.room!r} is not a room name (1-64 of a-z, 0-9, '-')")
    days: int | None = None
    if args.days != "default":
        try:
            days = whole(0, 36500)(args.days)
        except InvalidValue as bad:
            raise UsageError(f"DAYS: {bad}, or 'default'") from None
    if not asyncio.run(_using_database(settings, lambda database: set_room_retention(database, args.room, days))):
        raise UsageError(f"no room {args.room!r}")
    if days is None:
        default = settings.retention_days
        print(f"#{args.room} keeps the server's default: {f'{default} days' if default else 'forever'}")
    elif days == 0:
        print(f"#{args.room} keeps its messages forever, whatever the server's default")
    else:
        print(f"#{args.room} keeps its messages {days} days; older ones go within the hour")
    return 0


def token_create(settings: Settings, args: argparse.Namespace) -> int:
    from . import tokens

    made = _run_admin(settings, lambda store, writes: tokens.create(store, writes, args.name, args.room))
    rooms = ", ".join(made.rooms) if made.rooms else "every room the user may use"
    print(f"token {made.id} for {made.user_name} ({rooms}); it is shown this once:", file=sys.stderr)
    print(made.token)
    return 0


def token_list(settings: Settings, args: argparse.Namespace) -> int:
    from .protocol import format_ts

    found = _run_admin(settings, lambda store, writes: store.tokens())
    print("id\tuser\trooms\tcreated")
    for info in found:
        rooms = ",".join(info.rooms) if info.rooms is not None else "*"
        print(f"{info.id}\t{info.user.name}\t{rooms}\t{format_ts(info.created_ms)}")
    return 0


def token_revoke(settings: Settings, args: argparse.Namespace) -> int:
    from . import tokens

    _run_admin(settings, lambda store, writes: tokens.revoke(writes, args.id))
    print(f"revoked {args.id}; its open sockets close within 10 s")
    return 0


def _run_admin(settings: Settings, work: Callable[[Store, Writes], Awaitable[T]]) -> T:
    """Run an account or token command on the database; its refusal as a UsageError."""
    from .accounts import CredentialsError
    from .store import Store
    from .tokens import TokenError
    from .writes import create_writes

    try:
        return asyncio.run(_using_database(settings, lambda database: work(Store(database), create_writes(database))))
    except CredentialsError as refused:
        raise UsageError(refused.message) from None
    except TokenError as refused:
        raise UsageError(str(refused)) from None


async def _using_database(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    """`work` done with the settings' database, which is closed after."""
    from .database import create_database

    database = create_database(settings)
    try:
        return await work(database)
    finally:
        await database.dispose()


def _progress_bar(total: int | None, unit: str) -> Any:
    """A bar on a terminal (count, rate, time left); nothing when stderr is not one."""
    return tqdm(total=total, unit=unit, unit_scale=True, file=sys.stderr, disable=not sys.stderr.isatty())
