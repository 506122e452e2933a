"""Believe `X-Forwarded-*` from exactly the configured number of proxies."""

from __future__ import annotations

from typing import Any

from hypercorn.middleware import ProxyFixMiddleware

_WEBSOCKET_SCHEMES = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}


class TrustedProxies:
    """Hypercorn's ProxyFixMiddleware, with the WebSocket scheme mended.

    ProxyFixMiddleware copies `X-Forwarded-Proto: https` into a WebSocket scope as
    `https` where ASGI wants `wss` (hypercorn #198): map it back.
    """

    def __init__(self, app: Any, trusted_hops: int) -> None:
        self._proxy_fix = ProxyFixMiddleware(self._mend_scheme, mode="legacy", trusted_hops=trusted_hops)
        self._app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self._proxy_fix(scope, receive, send)

    async def _mend_scheme(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            scope["scheme"] = _WEBSOCKET_SCHEMES.get(scope.get("scheme", "ws"), "ws")
        await self._app(scope, receive, send)
