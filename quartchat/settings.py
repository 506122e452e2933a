"""Settings, read from the environment once and checked loudly (README.md, "Configuration")."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

PREFIX = "QUARTCHAT_"
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///quartchat.db"
# How long an SQLite connection waits for another one's lock before it gives up.
SQLITE_BUSY_TIMEOUT_MS = 5000


class SettingsError(Exception):
    """An invalid setting; the message is one line that names the variable."""


@dataclass(frozen=True)
class RateLimit:
    count: int
    seconds: float


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    broker_url: str = "memory://"
    secret_key: str | None = None
    history_limit: int = 50
    max_message_chars: int = 4000
    rate_limit: RateLimit = field(default_factory=lambda: RateLimit(20, 10.0))
    allowed_origins: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()  # empty: the loopback names, on a loopback bind only
    metrics_token: str | None = None
    trusted_proxy_hops: int = 0
    sqlite_synchronous: str = "FULL"
    max_connections_per_address: int = 200
    send_queue_size: int = 1000
    write_batch_size: int = 256
    write_linger_ms: int = 1
    presence_ttl: int = 30
    session_lifetime: int = 30 * 24 * 3600  # seconds from sign-in
    # Accounts one address may create: the rate of Mastodon's default (25 in 5 minutes),
    # and a team behind one NAT can still all sign up within the hour.
    signup_limit: RateLimit = field(default_factory=lambda: RateLimit(300, 3600.0))
    redis_namespace: str | None = None
    presence_grace: float = 3.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every QUARTCHAT_* variable; raise SettingsError naming the bad one."""
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(PREFIX + name)
            return value.strip() if value is not None and value.strip() != "" else None

        defaults = cls()
        return cls(
            database_url=check_database_url(get("DATABASE_URL") or defaults.database_url),
            broker_url=_broker_url(get("BROKER_URL") or defaults.broker_url),
            secret_key=_secret_key(get("SECRET_KEY")),
            history_limit=_integer("HISTORY_LIMIT", get("HISTORY_LIMIT"), defaults.history_limit, 1, 1000),
            max_message_chars=_integer(
                "MAX_MESSAGE_CHARS", get("MAX_MESSAGE_CHARS"), defaults.max_message_chars, 1, 16000
            ),
            rate_limit=_rate_limit("RATE_LIMIT", get("RATE_LIMIT")) or defaults.rate_limit,
            allowed_origins=_origins(get("ALLOWED_ORIGINS")),
            allowed_hosts=_hosts(get("ALLOWED_HOSTS")),
            metrics_token=_metrics_token(get("METRICS_TOKEN")),
            trusted_proxy_hops=_integer(
                "TRUSTED_PROXY_HOPS", get("TRUSTED_PROXY_HOPS"), defaults.trusted_proxy_hops, 0, 10
            ),
            sqlite_synchronous=_choice(
                "SQLITE_SYNCHRONOUS",
                get("SQLITE_SYNCHRONOUS"),
                defaults.sqlite_synchronous,
                ("FULL", "NORMAL"),
            ),
            max_connections_per_address=_integer(
                "MAX_CONNECTIONS_PER_ADDRESS",
                get("MAX_CONNECTIONS_PER_ADDRESS"),
                defaults.max_connections_per_address,
                1,
                1_000_000,
            ),
            send_queue_size=_integer(
                "SEND_QUEUE_SIZE", get("SEND_QUEUE_SIZE"), defaults.send_queue_size, 16, 1_000_000
            ),
            write_batch_size=_integer(
                "WRITE_BATCH_SIZE", get("WRITE_BATCH_SIZE"), defaults.write_batch_size, 1, 10_000
            ),
            write_linger_ms=_integer("WRITE_LINGER_MS", get("WRITE_LINGER_MS"), defaults.write_linger_ms, 0, 100),
            presence_ttl=_integer("PRESENCE_TTL", get("PRESENCE_TTL"), defaults.presence_ttl, 1, 3600),
            session_lifetime=_duration("SESSION_LIFETIME", get("SESSION_LIFETIME"), defaults.session_lifetime),
            signup_limit=_rate_limit("SIGNUP_LIMIT", get("SIGNUP_LIMIT")) or defaults.signup_limit,
            redis_namespace=_redis_namespace(get("REDIS_NAMESPACE")),
            presence_grace=_seconds("PRESENCE_GRACE", get("PRESENCE_GRACE"), defaults.presence_grace, 0, 300),
        )

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

    def resolved_secret_key(self) -> str:
        """The signing key: the setting, else the key file beside the SQLite database.

        The file is created once with mode 0600 (O_EXCL, so concurrent starters agree).
        Other engines have no "beside", and every instance must share one key: there the
        setting is required.
        """
        if self.secret_key is not None:
            return self.secret_key
        path = self.sqlite_path
        if path is None:
            if self.is_sqlite:
                return secrets.token_urlsafe(48)  # in-memory database: nothing outlives us
            raise SettingsError(
                f"{PREFIX}SECRET_KEY: required when the database is not an SQLite file "
                "(every instance must sign with the same key)"
            )
        key_path = path.with_name(path.name + ".secret")
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


def check_database_url(value: str) -> str:
    try:
        url = make_url(value)
    except ArgumentError:
        raise SettingsError(f"{PREFIX}DATABASE_URL: not a database URL: {value!r}") from None
    if url.drivername not in ("sqlite+aiosqlite", "postgresql+asyncpg"):
        raise SettingsError(
            f"{PREFIX}DATABASE_URL: use sqlite+aiosqlite:/// or postgresql+asyncpg://, not {url.drivername!r}"
        )
    return value


def _broker_url(value: str) -> str:
    if value == "memory://" or re.fullmatch(r"rediss?://\S+", value):
        return value
    raise SettingsError(f"{PREFIX}BROKER_URL: use memory:// or redis://host:port/db, not {value!r}")


def _redis_namespace(value: str | None) -> str | None:
    if value is not None and not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", value):
        raise SettingsError(f"{PREFIX}REDIS_NAMESPACE: 1-64 of A-Z, a-z, 0-9, '_', '.', '-', got {value!r}")
    return value


def _secret_key(value: str | None) -> str | None:
    if value is not None and len(value) < 16:
        raise SettingsError(f"{PREFIX}SECRET_KEY: at least 16 characters are needed")
    return value


def _metrics_token(value: str | None) -> str | None:
    if value is not None and len(value) < 16:
        raise SettingsError(f"{PREFIX}METRICS_TOKEN: at least 16 characters are needed")
    return value


def _integer(name: str, value: str | None, default: int, low: int, high: int) -> int:
    if value is None:
        return default
    if not re.fullmatch(r"\d+", value) or not low <= int(value) <= high:
        raise SettingsError(f"{PREFIX}{name}: expected a whole number from {low} to {high}, got {value!r}")
    return int(value)


def _seconds(name: str, value: str | None, default: float, low: float, high: float) -> float:
    if value is None:
        return default
    if not re.fullmatch(r"\d+(?:\.\d+)?", value) or not low <= float(value) <= high:
        raise SettingsError(f"{PREFIX}{name}: expected seconds from {low:g} to {high:g} (e.g. 2.5), got {value!r}")
    return float(value)


def _choice(name: str, value: str | None, default: str, choices: tuple[str, ...]) -> str:
    if value is None:
        return default
    if value.upper() not in choices:
        raise SettingsError(f"{PREFIX}{name}: expected one of {', '.join(choices)}, got {value!r}")
    return value.upper()


def _rate_limit(name: str, value: str | None) -> RateLimit | None:
    if value is None:
        return None
    match = re.fullmatch(r"(\d+)\s*/\s*(\d+(?:\.\d+)?)", value)
    if not match or int(match[1]) < 1 or float(match[2]) <= 0:
        raise SettingsError(f"{PREFIX}{name}: expected COUNT/SECONDS such as 20/10, got {value!r}")
    return RateLimit(int(match[1]), float(match[2]))


_SECONDS_PER_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(name: str, value: str | None, default: int) -> int:
    """Seconds, from `90`, `90s`, `15m`, `12h` or `30d`; from 1 second to 10 years."""
    if value is None:
        return default
    match = re.fullmatch(r"(\d{1,9})\s*([smhd]?)", value.lower())
    seconds = int(match[1]) * _SECONDS_PER_UNIT[match[2] or "s"] if match else 0
    if not 1 <= seconds <= 3650 * 86400:
        raise SettingsError(
            f"{PREFIX}{name}: expected a duration such as 30d, 12h or 90s (at most 3650d), got {value!r}"
        )
    return seconds


def _origins(value: str | None) -> tuple[str, ...]:
    if value is None:
        return ()
    origins = []
    for part in value.split(","):
        origin = part.strip().rstrip("/").lower()
        if not origin:
            continue
        if not re.fullmatch(r"https?://[^/\s]+", origin):
            raise SettingsError(
                f"{PREFIX}ALLOWED_ORIGINS: {part.strip()!r} is not an origin such as https://chat.example.org"
            )
        origins.append(origin)
    return tuple(origins)


# A host name or IPv4 address (optionally `.`-prefixed: that domain and its subdomains),
# a bracketed IPv6 address, or `*`.
_HOST_PATTERN = re.compile(r"\*|\.?[a-z0-9-]+(?:\.[a-z0-9-]+)*\.?|\[[0-9a-f:.]+\]")


def _hosts(value: str | None) -> tuple[str, ...]:
    if value is None:
        return ()
    hosts = []
    for part in value.split(","):
        host = part.strip().lower()
        if not host:
            continue
        if _is_ipv6(host):
            host = f"[{host}]"  # as it appears in a Host header
        if not _HOST_PATTERN.fullmatch(host):
            raise SettingsError(
                f"{PREFIX}ALLOWED_HOSTS: {part.strip()!r} is not a host name such as chat.example.org "
                "(no scheme, no port)"
            )
        hosts.append(host.rstrip("."))
    return tuple(hosts)


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True
