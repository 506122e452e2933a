"""quartchat: a self-hosted chat room server whose history is never lost."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    # The command line's data commands (export, import, db) never load Quart.
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(name)
