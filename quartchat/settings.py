"""Settings, read from the environment once and checked loudly (docs/configuration.md)."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import Field, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

PREFIX = "QUARTCHAT_"
# How long an SQLite connection waits for another one's lock before it gives up.
SQLITE_BUSY_TIMEOUT_MS = 5000

T = TypeVar("T")


class SettingsError(Exception):
    """An invalid setting; the message is one line that names the variable."""


class InvalidValue(ValueError):
    """What is wrong with one value, without the variable's name (the caller adds it)."""


@dataclass(frozen=True)
class RateLimit:
    count: int
    seconds: float


def setting(default: T, parse: Callable[[str], T], help: str, shown: str | None = None) -> T:
    """Declare a setting: a field of Settings whose variable is QUARTCHAT_<FIELD NAME>.

    `parse` turns a set, non-blank value into the field's type or raises InvalidValue;
    `help` is its line in the configuration table (docs/configuration.md), where the default shows as
    `shown` (else the default itself).
    """
    return field(default=default, metadata={"parse": parse, "help": help, "shown": shown})


def whole(low: int, high: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        if not re.fullmatch(r"\d+", value) or not low <= int(value) <= high:
            raise InvalidValue(f"expected a whole number from {low} to {high}, got {value!r}")
        return int(value)

    return parse


def seconds(low: float, high: float) -> Callable[[str], float]:
    def parse(value: str) -> float:
        if not re.fullmatch(r"\d+(?:\.\d+)?", value) or not low <= float(value) <= high:
            raise InvalidValue(f"expected seconds from {low:g} to {high:g} (e.g. 2.5), got {value!r}")
        return float(value)

    return parse


def choice(*choices: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value.upper() not in choices:
            raise InvalidValue(f"expected one of {', '.join(choices)}, got {value!r}")
        return value.upper()

    return parse


def at_least_16_characters(value: str) -> str:
    if len(value) < 16:
        raise InvalidValue("at least 16 characters are needed")
    return value


def parse_database_url(value: str) -> str:
    """An async SQLAlchemy URL of an engine quartchat runs on."""
    try:
        url = make_url(value)
    except ArgumentError:
        raise InvalidValue(f"not a database URL: {value!r}") from None
    if url.drivername not in ("sqlite+aiosqlite", "postgresql+asyncpg"):
        raise InvalidValue(f"use sqlite+aiosqlite:/// or postgresql+asyncpg://, not {url.drivername!r}")
    return value


def parse_broker_url(value: str) -> str:
    if value == "memory://" or re.fullmatch(r"rediss?://\S+", value):
        return value
    raise InvalidValue(f"use memory:// or redis://host:port/db, not {value!r}")


def parse_redis_namespace(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", value):
        raise InvalidValue(f"1-64 of A-Z, a-z, 0-9, '_', '.', '-', got {value!r}")
    return value


def parse_rate_limit(value: str) -> RateLimit:
    match = re.fullmatch(r"(\d+)\s*/\s*(\d+(?:\.\d+)?)", value)
    if not match or int(match[1]) < 1 or float(match[2]) <= 0:
        raise InvalidValue(f"expected COUNT/SECONDS such as 20/10, got {value!r}")
    return RateLimit(int(match[1]), float(match[2]))


_SECONDS_PER_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: str) -> int:
    """Seconds, from `90`, `90s`, `15m`, `12h` or `30d`; from 1 second to 10 years."""
    match = re.fullmatch(r"(\d{1,9})\s*([smhd]?)", value.lower())
    total = int(match[1]) * _SECONDS_PER_UNIT[match[2] or "s"] if match else 0
    if not 1 <= total <= 3650 * 86400:
        raise InvalidValue(f"expected a duration such as 30d, 12h or 90s (at most 3650d), got {value!r}")
    return total


def parse_origins(value: str) -> tuple[str, ...]:
    found = []
    for part in value.split(","):
        origin = part.strip().rstrip("/").lower()
        if not origin:
            continue
        if not re.fullmatch(r"https?://[^/\s]+", origin):
            raise InvalidValue(f"{part.strip()!r} is not an origin such as https://chat.example.org")
        found.append(origin)
    return tuple(found)


# A host name or IPv4 address (optionally `.`-prefixed: that domain and its subdomains),
# a bracketed IPv6 address, or `*`.
_HOST_PATTERN = re.compile(r"\*|\.?[a-z0-9-]+(?:\.[a-z0-9-]+)*\.?|\[[0-9a-f:.]+\]")


def parse_hosts(value: str) -> tuple[str, ...]:
    found = []
    for part in value.split(","):
        host = part.strip().lower()
        if not host:
            continue
        if _is_ipv6(host):
            host = f"[{host}]"  # as it appears in a Host header
        if not _HOST_PATTERN.fullmatch(host):
            raise InvalidValue(f"{part.strip()!r} is not a host name such as chat.example.org (no scheme, no port)")
        found.append(host.rstrip("."))
    return tuple(found)


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Settings:
    """Every setting, declared once: its variable, type, default, accepted values and help.

    The configuration table (docs/configuration.md) is made from these declarations (markdown_table);
    tests/test_docs.py fails when the two differ.
    """

    database_url: str = setting(
        "sqlite+aiosqlite:///quartchat.db",
        parse_database_url,
        "`sqlite+aiosqlite:///path` or `postgresql+asyncpg://user@host/db`",
    )
    broker_url: str = setting(
        "memory://",
        parse_broker_url,
        "fan-out between processes: `memory://` (one process) or `redis://host:port/db`",
    )
    secret_key: str | None = setting(
        None,
        at_least_16_characters,
        "signs session cookies; generated once into `<database>.secret` (mode 0600) so a restart signs nobody "
        "out. Required (and shared by every instance) on PostgreSQL",
        shown="a key file beside the SQLite database",
    )
    history_limit: int = setting(50, whole(1, 1000), "messages a joining client receives")
    max_message_chars: int = setting(4000, whole(1, 16000), "longest chat text accepted, in characters")
    rate_limit: RateLimit = setting(
        RateLimit(20, 10.0),
        parse_rate_limit,
        "at most 20 chat messages in any 10 seconds, per user and room",
        shown="`20/10`",
    )
    # A search reads far more than a history page: a few a second per user, in bursts.
    search_limit: RateLimit = setting(
        RateLimit(10, 5.0),
        parse_rate_limit,
        "at most 10 searches (`GET /api/search`) in any 5 seconds, per user; past it 429 with "
        "`Retry-After`. Counted per process",
        shown="`10/5`",
    )
    search_budget_ms: int = setting(
        300,
        whole(10, 60000),
        "longest a search statement may run, in milliseconds; past it 422 (the search is too broad)",
    )
    allowed_origins: tuple[str, ...] = setting(
        (),
        parse_origins,
        "comma-separated extra origins allowed to open the WebSocket",
        shown="empty: same origin only",
    )
    trusted_proxy_hops: int = setting(
        0, whole(0, 10), "how many proxies' `X-Forwarded-*` headers to believe (nginx in front: 1)"
    )
    allowed_hosts: tuple[str, ...] = setting(
        (),
        parse_hosts,
        "comma-separated names this server answers to (Django's `ALLOWED_HOSTS`): `chat.example.org`, "
        "`.example.org` (that domain and its subdomains) or `*` (any). A request or WebSocket handshake with "
        "any other `Host` (behind a trusted proxy: the one it passes) gets 400 before anything runs, which "
        "stops DNS rebinding. Required when binding a non-loopback address: start-up stops, naming it",
        shown="empty: `localhost`, `127.0.0.1`, `[::1]` and the bind address, on a loopback bind only",
    )
    sqlite_synchronous: str = setting(
        "FULL", choice("FULL", "NORMAL"), "SQLite's `synchronous` pragma: `FULL` or `NORMAL` (see Durability)"
    )
    max_connections_per_address: int = setting(
        200, whole(1, 1_000_000), "open WebSockets one client address may hold; more are refused with 429"
    )
    send_queue_size: int = setting(
        1000,
        whole(16, 1_000_000),
        "frames queued for one client beyond which it is closed with 1013 if its socket is backed up (it is "
        "not reading); if its socket takes what it is given, the server is behind and slows its intake instead",
    )
    send_stall_seconds: float = setting(
        10.0,
        seconds(1, 3600),
        "seconds a client's own socket may stay backed up (the server waiting to write to it all along) "
        "before it is closed with 1013",
    )
    fanout_backlog: int = setting(
        20_000,
        whole(100, 10_000_000),
        "frames queued for delivery in one process (clients whose socket is backed up not counted) beyond "
        "which it stops reading senders' frames until half of them are written",
    )
    write_batch_size: int = setting(
        256, whole(1, 10_000), "most messages committed in one transaction (1 = one commit per message)"
    )
    write_linger_ms: int = setting(
        1,
        whole(0, 100),
        "under load (the last commit held several messages and more were waiting when it ended), milliseconds "
        "the writer waits before the next commit so that more share it; an idle writer never waits (0 = never)",
    )
    presence_grace: float = setting(
        3.0,
        seconds(0, 300),
        "seconds a user whose last connection closed still counts as online: a reconnect within them (a "
        "refresh) sends neither `left` nor `join`; 0 announces `left` at once",
    )
    presence_ttl: int = setting(
        30,
        whole(1, 3600),
        "with Redis: seconds without a heartbeat before a process counts as dead and its users leave",
    )
    user_stream: int = setting(
        1,
        whole(0, 1),
        "1: every connection of a user also hears of the user's other rooms (`activity` and `notify` frames, "
        "docs/protocol.md §18); 0 turns that off (for a comparison: the rooms' own frames are unchanged)",
    )
    session_lifetime: int = setting(
        30 * 24 * 3600,
        parse_duration,
        "how long a sign-in lasts (`90s`, `15m`, `12h`, `30d`; a bare number is seconds). At its end the "
        "cookie stops working, the session's open WebSockets close with 4001, and its row is purged",
        shown="`30d`",
    )
    # Mastodon's rate (25 in 5 minutes), and a team behind one NAT can still all sign up within the hour.
    signup_limit: RateLimit = setting(
        RateLimit(300, 3600.0),
        parse_rate_limit,
        "at most 300 new accounts from one address in any 3,600 seconds (Mastodon's default rate, 25 in 5 "
        "minutes, without its small bursts: a team behind one NAT can all sign up at once); past it a sign-up "
        "answers 429 with `Retry-After`. Counted per process",
        shown="`300/3600`",
    )
    redis_namespace: str | None = setting(
        None,
        parse_redis_namespace,
        "with Redis: prefix of this deployment's pub/sub channel and presence keys (1-64 of `A-Za-z0-9_.-`), "
        "so deployments sharing one Redis never hear each other",
        shown="derived from the signing key",
    )
    metrics_token: str | None = setting(
        None,
        at_least_16_characters,
        "`/metrics` answers clients on this host (loopback, as the trusted proxies report the address) and, "
        "when set, a scraper elsewhere that sends `Authorization: Bearer <token>`; anyone else gets 403. At "
        "least 16 characters",
        shown="unset",
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every QUARTCHAT_* variable; raise SettingsError naming the bad one.
        An unset or blank variable takes the default."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for declared in fields(cls):
            variable = variable_name(declared)
            value = env.get(variable, "").strip()
            if not value:
                continue
            try:
                values[declared.name] = declared.metadata["parse"](value)
            except InvalidValue as invalid:
                raise SettingsError(f"{variable}: {invalid}") from None
        return cls(**values)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite database file, or None for another engine or an in-memory database."""
        if not self.is_sqlite:
            return None
        database = make_url(self.database_url).database
        if not database or database == ":memory:" or database.startswith("file:"):
            return None
        return Path(database).resolve()

    @property
    def secret_key_path(self) -> Path | None:
        """Where the signing key is kept when it is not set: beside the SQLite file."""
        path = self.sqlite_path
        return path.with_name(path.name + ".secret") if path is not None else None

    def resolved_secret_key(self) -> str:
        """The signing key: the setting, else the key file beside the SQLite database.

        The file is created once with mode 0600 (O_EXCL, so concurrent starters agree).
        Other engines have no "beside", and every instance must share one key: there the
        setting is required.
        """
        if self.secret_key is not None:
            return self.secret_key
        key_path = self.secret_key_path
        if key_path is None:
            if self.is_sqlite:
                return secrets.token_urlsafe(48)  # in-memory database: nothing outlives us
            raise SettingsError(
                f"{PREFIX}SECRET_KEY: required when the database is not an SQLite file "
                "(every instance must sign with the same key)"
            )
        try:
            fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            key = key_path.read_text(encoding="ascii").strip()
            if len(key) < 32:
                raise SettingsError(f"{PREFIX}SECRET_KEY: the key file {key_path} is damaged") from None
            return key
        key = secrets.token_urlsafe(48)
        with os.fdopen(fd, "w", encoding="ascii") as key_file:
            key_file.write(key + "\n")
        return key

    def resolved_redis_namespace(self) -> str:
        """The prefix of this deployment's Redis channel and keys (pub/sub ignores the
        database number in the URL, so deployments sharing a Redis need one each).

        The setting, else one derived from the signing key: every instance of a
        deployment must share that key anyway, so they agree without being told, and
        no other deployment has it. (An HMAC of it says nothing about it.)
        """
        if self.redis_namespace is not None:
            return self.redis_namespace
        key = self.resolved_secret_key().encode()
        return "qc-" + hmac.new(key, b"quartchat redis namespace", hashlib.sha256).hexdigest()[:16]


def variable_name(declared: Field[Any]) -> str:
    return PREFIX + declared.name.upper()


def markdown_table() -> str:
    """The configuration table (docs/configuration.md), made from the declarations above."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for declared in fields(Settings):
        shown = declared.metadata["shown"]
        if shown is None:
            shown = _shown_default(declared.default)
        rows.append(f"| `{variable_name(declared)}` | {shown} | {declared.metadata['help']} |")
    return "\n".join(rows) + "\n"


def _shown_default(default: object) -> str:
    if isinstance(default, str):
        return f"`{default}`"
    if isinstance(default, float):
        return f"{default:g}"
    return str(default)


if __name__ == "__main__":  # python -m quartchat.settings: the table, to paste into docs/configuration.md
    print(markdown_table(), end="")
