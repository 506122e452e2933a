"""Logging set-up shared by the command line and every server process."""

from __future__ import annotations

import logging


def configure_logging() -> None:
    """One format for every process (a spawned worker starts with no logging set up)."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s")
