"""Text that goes into line-oriented output (the txt export, log lines) made unable to
forge lines or drive a terminal.

A lone CR, VT, FF, U+0085, U+2028 and U+2029 all end a line in some terminal, editor or
log viewer, and ESC starts ANSI sequences that can clear a screen or rewrite a line: a
message could display as a separate line "from" someone else. Such characters are
written as visible escapes (`\\x1b`, `\\u2028`); JSON, CSV and HTML keep texts exact.
"""

from __future__ import annotations

import re

# Every C0 and C1 control and DEL, the Unicode line and paragraph separators, and the
# bidirectional overrides and isolates (they reorder what a reader sees on the line).
_CONTROLS = [*range(0x00, 0x20), *range(0x7F, 0xA0), 0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]


def _escape(code: int) -> str:
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


_ONE_LINE_ESCAPES = {code: _escape(code) for code in _CONTROLS}
# In a text export tabs stay (they cannot forge a line) and so does bidirectional text,
# which languages written right to left use.
_TEXT_ESCAPES = {code: _escape(code) for code in _CONTROLS if code != 0x09 and not 0x202A <= code <= 0x2069}
# What str.splitlines() splits at, CR LF counting as one break.
_LINE_BREAK = re.compile("\r\n|[\n\r\v\f\x1c-\x1e\x85\u2028\u2029]")


def one_line(value: str) -> str:
    """`value` on one line, every control character escaped: for log fields and names."""
    return value.translate(_ONE_LINE_ESCAPES)


def text_lines(text: str) -> list[str]:
    """A text's lines, split at every line break a reader could see (CR LF, CR, LF, VT,
    FF, U+0085, U+2028, U+2029, ...), each with its other control characters escaped."""
    return [line.translate(_TEXT_ESCAPES) for line in _LINE_BREAK.split(text)]
