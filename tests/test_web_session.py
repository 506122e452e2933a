"""docs/protocol.md §10: redirects after signing in, without a server."""

from __future__ import annotations

import pytest

from quartchat.web_session import safe_next


@pytest.mark.parametrize(
    "target, expected",
    [
        ("/r/lobby", "/r/lobby"),
        ("/r/x?a=1", "/r/x?a=1"),
        ("//evil.example/", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("///evil.example", "/"),
        ("/ /evil", "/"),
        ("javascript:alert(1)", "/"),
        (None, "/"),
    ],
)
def test_next_only_points_inside_the_site(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected
