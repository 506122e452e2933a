"""Where the non-Python parts live: beside the package in a checkout, inside it once installed."""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def resource(name: str) -> Path:
    """`templates`, `static`, `migrations` or `hypercorn.toml`.

    A wheel carries them inside the package (pyproject's force-include); a checkout
    or an editable install has them at the top level of the repository.
    """
    for candidate in (PACKAGE_DIR / name, PACKAGE_DIR.parent / name):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"quartchat is missing its {name!r}: reinstall it")
