"""Alembic, driven from our settings: `quartchat db upgrade|downgrade|current`.

Alembic's own INFO lines (plugin set-up, "Context impl …", one per revision) are
silenced in logs.configure_logging; upgrade and downgrade say in one line what they did.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from typing import Any, TextIO

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationInfo
from sqlalchemy.engine import make_url

from .resources import resource

log = logging.getLogger(__name__)


def alembic_config(database_url: str, output: TextIO | None = None) -> Config:
    config = Config(stdout=output) if output is not None else Config()
    config.set_main_option("script_location", str(resource("migrations")))
    # `%` is ConfigParser's interpolation character; URLs may hold %-escapes.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    _migrate(command.upgrade, database_url, revision)


def downgrade(database_url: str, revision: str) -> None:
    _migrate(command.downgrade, database_url, revision)


def current(database_url: str) -> str:
    output = io.StringIO()
    command.current(alembic_config(database_url, output))
    return output.getvalue().strip()


def _migrate(move: Callable[[Config, str], None], database_url: str, revision: str) -> None:
    """Run `move` to `revision` and log one line: which revisions it went through, if any."""
    config = alembic_config(database_url)
    steps: list[MigrationInfo] = []

    def applied(step: MigrationInfo, **_: Any) -> None:
        steps.append(step)

    config.attributes["on_version_apply"] = applied  # migrations/env.py passes it to Alembic
    move(config, revision)
    shown = make_url(database_url).render_as_string(hide_password=True)
    if not steps:
        log.info("database %s: nothing to migrate", shown)
        return
    path = [", ".join(steps[0].source_revision_ids) or "(empty)"]
    for step in steps:
        path.append(", ".join(step.destination_revision_ids) or "(empty)")
    log.info("database %s: migrated %s", shown, " → ".join(path))
