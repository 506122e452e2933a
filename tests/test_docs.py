"""The documentation agrees with the code (Datasette's tests/test_docs.py is the model)."""

from __future__ import annotations

import re
from pathlib import Path

from quartchat.settings import Settings, markdown_table

CONFIGURATION = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def _configuration_table() -> str:
    """The table of docs/configuration.md, as written."""
    section = CONFIGURATION.read_text(encoding="utf-8")
    rows = [line for line in section.splitlines() if line.startswith("|")]
    return "\n".join(rows) + "\n"


def test_the_readme_configuration_table_is_the_one_made_from_the_settings() -> None:
    assert _configuration_table() == markdown_table(), (
        "docs/configuration.md's table and quartchat/settings.py differ: "
        "run `python -m quartchat.settings` and paste its output over the table"
    )


def test_every_setting_is_documented_once() -> None:
    documented = re.findall(r"^\| `(QUARTCHAT_\w+)` \|", _configuration_table(), re.MULTILINE)
    declared = [f"QUARTCHAT_{name.upper()}" for name in Settings.__dataclass_fields__]
    assert sorted(documented) == sorted(declared)
