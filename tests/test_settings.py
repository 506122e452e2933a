"""The configuration table (docs/configuration.md): settings from the environment; a bad value stops start-up."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from quartchat.settings import RateLimit, Settings, SettingsError


def test_defaults_are_the_specs() -> None:
    settings = Settings.from_env({})
    assert settings.database_url == "sqlite+aiosqlite:///quartchat.db"
    assert settings.broker_url == "memory://"
    assert (settings.history_limit, settings.max_message_chars) == (50, 4000)
    assert settings.rate_limit == RateLimit(20, 10.0)
    assert settings.allowed_origins == ()
    assert settings.trusted_proxy_hops == 0
    assert (settings.write_batch_size, settings.write_linger_ms) == (256, 1)
    assert settings.session_lifetime == 30 * 86400
    assert settings.signup_limit == RateLimit(300, 3600.0)


@pytest.mark.parametrize("value, seconds", [("90", 90), ("90s", 90), ("15m", 900), ("12h", 43200), ("30D", 2592000)])
def test_session_lifetime_takes_a_unit(value: str, seconds: int) -> None:
    assert Settings.from_env({"QUARTCHAT_SESSION_LIFETIME": value}).session_lifetime == seconds


def test_values_are_read_and_cast() -> None:
    settings = Settings.from_env(
        {
            "QUARTCHAT_HISTORY_LIMIT": "10",
            "QUARTCHAT_RATE_LIMIT": "5/2.5",
            "QUARTCHAT_ALLOWED_ORIGINS": "https://a.example, http://B.example:8080/",
            "QUARTCHAT_TRUSTED_PROXY_HOPS": "1",
            "QUARTCHAT_BROKER_URL": "redis://127.0.0.1:6379/0",
            "QUARTCHAT_WRITE_LINGER_MS": "0",
            "QUARTCHAT_ALLOWED_HOSTS": "Chat.Example.org., .example.net, ::1, *",
        }
    )
    assert settings.history_limit == 10
    assert settings.rate_limit == RateLimit(5, 2.5)
    assert settings.allowed_origins == ("https://a.example", "http://b.example:8080")
    assert settings.trusted_proxy_hops == 1
    assert settings.write_linger_ms == 0
    assert settings.allowed_hosts == ("chat.example.org", ".example.net", "[::1]", "*")


@pytest.mark.parametrize(
    "name, value",
    [
        ("DATABASE_URL", "mysql://x"),
        ("DATABASE_URL", "::not a url::"),
        ("BROKER_URL", "kafka://x"),
        ("SECRET_KEY", "short"),
        ("HISTORY_LIMIT", "fifty"),
        ("HISTORY_LIMIT", "0"),
        ("MAX_MESSAGE_CHARS", "-5"),
        ("RATE_LIMIT", "20 per 10"),
        ("RATE_LIMIT", "0/10"),
        ("ALLOWED_ORIGINS", "evil.example"),
        ("TRUSTED_PROXY_HOPS", "x"),
        ("WRITE_LINGER_MS", "101"),
        ("WRITE_LINGER_MS", "0.5"),
        ("SESSION_LIFETIME", "0"),
        ("SESSION_LIFETIME", "a month"),
        ("SESSION_LIFETIME", "3651d"),
        ("SIGNUP_LIMIT", "lots"),
        ("ALLOWED_HOSTS", "chat.example.org:443"),
        ("ALLOWED_HOSTS", "https://chat.example.org"),
        ("ALLOWED_HOSTS", "a b"),
    ],
)
def test_an_invalid_value_raises_an_error_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({f"QUARTCHAT_{name}": value})
    message = str(refused.value)
    assert message.startswith(f"QUARTCHAT_{name}:") and "\n" not in message


def test_serve_with_an_invalid_setting_prints_one_line_and_exits(tmp_path: Path) -> None:
    env = {**os.environ, "QUARTCHAT_HISTORY_LIMIT": "lots"}
    result = subprocess.run(
        [sys.executable, "-m", "quartchat", "serve"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "quartchat: QUARTCHAT_HISTORY_LIMIT: expected a whole number from 1 to 1000, got 'lots'"
    ]


def test_secret_key_is_generated_once_beside_the_database_with_mode_0600(tmp_path: Path) -> None:
    settings = Settings.from_env({"QUARTCHAT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/chat.db"})
    first = settings.resolved_secret_key()
    key_file = tmp_path / "chat.db.secret"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert settings.resolved_secret_key() == first and len(first) >= 32


def test_a_set_secret_key_wins_and_postgresql_requires_one() -> None:
    assert Settings.from_env({"QUARTCHAT_SECRET_KEY": "k" * 20}).resolved_secret_key() == "k" * 20
    postgres = Settings.from_env({"QUARTCHAT_DATABASE_URL": "postgresql+asyncpg://postgres@127.0.0.1/test"})
    with pytest.raises(SettingsError, match="QUARTCHAT_SECRET_KEY"):
        postgres.resolved_secret_key()


def test_workers_above_one_with_the_memory_broker_are_refused(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "quartchat", "serve", "--workers", "2"],
        env={k: v for k, v in os.environ.items() if not k.startswith("QUARTCHAT_")},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "QUARTCHAT_BROKER_URL=redis://" in result.stderr


def test_the_redis_namespace_is_the_setting_else_derived_from_the_signing_key() -> None:
    named = Settings.from_env({"QUARTCHAT_REDIS_NAMESPACE": "chat-prod.eu_1"})
    assert named.resolved_redis_namespace() == "chat-prod.eu_1"
    first, same, other = (Settings(secret_key=key) for key in ("k" * 32, "k" * 32, "o" * 32))
    assert first.resolved_redis_namespace() == same.resolved_redis_namespace()
    assert first.resolved_redis_namespace() != other.resolved_redis_namespace()
    assert "k" * 16 not in first.resolved_redis_namespace()


@pytest.mark.parametrize("value", ["has:colon", "has space", "x" * 65, "*"])
def test_a_redis_namespace_that_could_mix_with_another_is_refused(value: str) -> None:
    with pytest.raises(SettingsError, match="QUARTCHAT_REDIS_NAMESPACE"):
        Settings.from_env({"QUARTCHAT_REDIS_NAMESPACE": value})


def test_presence_grace_is_seconds_and_a_bad_value_names_the_variable() -> None:
    assert Settings.from_env({}).presence_grace == 3.0
    assert Settings.from_env({"QUARTCHAT_PRESENCE_GRACE": "0.5"}).presence_grace == 0.5
    assert Settings.from_env({"QUARTCHAT_PRESENCE_GRACE": "0"}).presence_grace == 0.0
    for bad in ("lots", "-1", "301"):
        with pytest.raises(SettingsError, match="QUARTCHAT_PRESENCE_GRACE"):
            Settings.from_env({"QUARTCHAT_PRESENCE_GRACE": bad})
