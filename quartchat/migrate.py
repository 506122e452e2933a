"""Alembic, driven from our settings: `quartchat db upgrade|downgrade|current`."""

from __future__ import annotations

import io
from typing import TextIO

from alembic import command
from alembic.config import Config

from .resources import resource


def alembic_config(database_url: str, output: TextIO | None = None) -> Config:
    config = Config(stdout=output) if output is not None else Config()
    config.set_main_option("script_location", str(resource("migrations")))
    # `%` is ConfigParser's interpolation character; URLs may hold %-escapes.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)


def current(database_url: str) -> str:
    output = io.StringIO()
    command.current(alembic_config(database_url, output))
    return output.getvalue().strip()
