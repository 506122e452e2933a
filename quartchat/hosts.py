"""The names this server answers to (`QUARTCHAT_ALLOWED_HOSTS`, Django's ALLOWED_HOSTS).

A page on a foreign name that re-binds its DNS to 127.0.0.1 (DNS rebinding) reaches a
server on a loopback bind with its own name in `Host`: refusing every `Host` that is
not ours, before anything else runs, is what stops it from signing in and reading.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
from collections.abc import Iterable
from typing import Any

from .settings import PREFIX, SettingsError

log = logging.getLogger(__name__)

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
# A Host header: a name or IPv4 address, or a bracketed IPv6 address; an optional port.
_HOST = re.compile(r"([a-z0-9.-]+|\[[a-f0-9]*:[a-f0-9.:]+\])(?::[0-9]{1,5})?")


def host_name(header: str) -> str | None:
    """The name in a Host header (lowercase, no port, no trailing dot); None if it is
    not a valid one."""
    found = _HOST.fullmatch(header.strip().lower())
    if found is None:
        return None
    return found[1].removesuffix(".")


def host_allowed(name: str, patterns: Iterable[str]) -> bool:
    """`*` allows every name, `.example.org` that domain and its subdomains, anything
    else exactly itself."""
    for pattern in patterns:
        if pattern == "*" or name == pattern:
            return True
        if pattern.startswith(".") and (name.endswith(pattern) or name == pattern[1:]):
            return True
    return False


def default_hosts(binds: Iterable[str]) -> tuple[str, ...]:
    """The names allowed when the setting is empty: the loopback names, for a server
    that listens on loopback (or a Unix socket) only, and the addresses it is bound to.
    A public bind needs the setting: SettingsError."""
    names = list(LOOPBACK_NAMES)
    for bind in binds:
        if bind.startswith(("unix:", "fd://")):
            continue
        address = bind.rpartition(":")[0] if ":" in bind else bind
        if not _is_loopback(address.strip("[]")):
            raise SettingsError(
                f"{PREFIX}ALLOWED_HOSTS: required when serving on {bind} (not loopback): "
                "the names clients use, such as chat.example.org"
            )
        if address.lower() not in names:
            names.append(address.lower())
    return tuple(names)


def _is_loopback(address: str) -> bool:
    if address.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


class AllowedHosts:
    """ASGI middleware: a request (or WebSocket handshake) with a `Host` that is not
    allowed gets 400 and goes no further."""

    def __init__(self, app: Any, patterns: tuple[str, ...]) -> None:
        self.app = app
        self.patterns = patterns

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket") or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        body = json.dumps({"error": "this server does not answer to that Host"}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        # The WebSocket denial response (an ASGI extension Hypercorn implements).
        prefix = "websocket.http." if scope["type"] == "websocket" else "http."
        await send({"type": prefix + "response.start", "status": 400, "headers": headers})
        await send({"type": prefix + "response.body", "body": body})

    def _allowed(self, scope: Any) -> bool:
        headers = scope["headers"]
        hosts = [value for key, value in headers if key.lower() == b"host"] or [
            value
            for key, value in headers
            if key == b":authority"  # HTTP/2 may send only this
        ]
        if len(hosts) != 1:
            return False
        name = host_name(hosts[0].decode("latin-1"))
        allowed = name is not None and host_allowed(name, self.patterns)
        if not allowed:
            log.warning("refused a request for an unknown Host %r", hosts[0][:100])
        return allowed
