"""The documentation agrees with the code (Datasette's tests/test_docs.py is the model)."""

from __future__ import annotations

import re
from pathlib import Path

from quartchat.settings import Settings, markdown_table

README = Path(__file__).resolve().parent.parent / "README.md"


def _configuration_table() -> str:
    """The table under the README's "## Configuration" heading, as written."""
    section = README.read_text(encoding="utf-8").split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    return "\n".join(rows) + "\n"


def test_the_readme_configuration_table_is_the_one_made_from_the_settings() -> None:
    assert _configuration_table() == markdown_table(), (
        "README.md's configuration table and quartchat/settings.py differ: "
        "run `python -m quartchat.settings` and paste its output over the table"
    )


def test_every_setting_is_documented_once() -> None:
    documented = re.findall(r"^\| `(QUARTCHAT_\w+)` \|", _configuration_table(), re.MULTILINE)
    declared = [f"QUARTCHAT_{name.upper()}" for name in Settings.__dataclass_fields__]
    assert sorted(documented) == sorted(declared)
