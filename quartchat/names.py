"""What makes two user names the same (docs/protocol.md §10), shared by accounts and mentions."""

from __future__ import annotations

import unicodedata


def name_key(name: str) -> str:
    """What makes two names the same: NFC, then case-folded (then NFC again)."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).casefold())
