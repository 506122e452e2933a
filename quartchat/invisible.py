"""Characters that show nothing: a name or a chat text made only of them looks empty,
and in a name they make a copy of someone else's that looks the same."""

from __future__ import annotations

import unicodedata

# Letters and symbols that render as blank space (Hangul fillers, the braille blank)
# and marks that never show (the combining grapheme joiner, Khmer's inherent vowels,
# the Mongolian variation selectors and the variation selectors).
_BLANK = frozenset((0x115F, 0x1160, 0x3164, 0xFFA0, 0x2800, 0x034F, 0x17B4, 0x17B5)).union(
    range(0x180B, 0x1810), range(0xFE00, 0xFE10), range(0xE0100, 0xE01F0)
)
# Controls, format characters (zero-width space and joiners, bidirectional marks, the
# byte-order mark, tags) and separators (spaces).
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})


def is_invisible(char: str) -> bool:
    return ord(char) in _BLANK or unicodedata.category(char) in _INVISIBLE_CATEGORIES


def is_blank(text: str) -> bool:
    """True when nothing in `text` would show (an empty text too)."""
    return all(is_invisible(char) for char in text)
