"""QUARTCHAT_ALLOWED_HOSTS: Host headers, patterns and the loopback defaults, without a server."""

from __future__ import annotations

import pytest

from quartchat.hosts import LOOPBACK_NAMES, default_hosts, host_allowed, host_name
from quartchat.settings import SettingsError


@pytest.mark.parametrize(
    "header, name",
    [
        ("Chat.Example.org", "chat.example.org"),
        ("chat.example.org.:8443", "chat.example.org"),
        ("[::1]:8000", "[::1]"),
        ("127.0.0.1", "127.0.0.1"),
        ("a b", None),
        ("evil.example/x", None),
        ("user@evil.example", None),
        ("evil.example:99999999", None),
        ("", None),
    ],
)
def test_the_name_in_a_host_header(header: str, name: str | None) -> None:
    assert host_name(header) == name


def test_patterns_are_exact_or_a_domain_with_its_subdomains_or_everything() -> None:
    assert host_allowed("chat.example.org", ["chat.example.org"])
    assert not host_allowed("evil.chat.example.org", ["chat.example.org"])
    assert host_allowed("example.net", [".example.net"]) and host_allowed("a.example.net", [".example.net"])
    assert not host_allowed("evilexample.net", [".example.net"])
    assert host_allowed("anything.at.all", ["*"])


@pytest.mark.parametrize("binds", [["127.0.0.1:8000"], ["localhost:8000"], ["[::1]:8000"], ["unix:/run/q.sock"]])
def test_a_loopback_bind_allows_the_loopback_names_and_its_address(binds: list[str]) -> None:
    hosts = default_hosts(binds)
    assert set(LOOPBACK_NAMES) <= set(hosts)
    assert default_hosts(["127.0.0.2:8000"])[-1] == "127.0.0.2"


@pytest.mark.parametrize("bind", ["0.0.0.0:8000", "[::]:8000", "192.0.2.7:80", "chat.example.org:8000"])
def test_a_public_bind_needs_the_setting(bind: str) -> None:
    with pytest.raises(SettingsError, match="QUARTCHAT_ALLOWED_HOSTS"):
        default_hosts(["127.0.0.1:9000", bind])
