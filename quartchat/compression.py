"""WebSockets without `permessage-deflate` (docs/reliability.md, "Compressed frames").

Hypercorn accepts the extension from any client that offers it (every browser does)
and wsproto then inflates a whole frame before the 64 KiB frame limit applies: a 61 KB
frame of zeros becomes 60 MiB of memory and a third of a second of CPU. Deflate also
costs about half of the server's CPU per frame it sends. quartchat refuses it: chat
frames are small, and behind nginx the offer is removed anyway.

Hypercorn has no setting for this. Its handshake (`WSStream.handshake`) reads the
client's offer before the app runs and negotiates it when the app accepts; this
middleware clears the offer in between. The `send` Hypercorn hands an app is the
stream's own bound method, which is how the handshake is reached.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


class RefuseCompression:
    """ASGI middleware: no WebSocket extension is ever negotiated."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._warned = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            self._clear_offer(send)
        await self.app(scope, receive, send)

    def _clear_offer(self, send: Any) -> None:
        handshake = getattr(getattr(send, "__self__", None), "handshake", None)
        if handshake is not None and hasattr(handshake, "extensions"):
            handshake.extensions = None  # as if the client had offered none
        elif not self._warned:  # another server, or a Hypercorn that changed
            self._warned = True
            log.warning("cannot refuse permessage-deflate under this server: WebSocket frames may be compressed")
