"""Logging set-up shared by the command line and every server process."""

from __future__ import annotations

import logging

from .plaintext import one_line

FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"


class OneLineFormatter(logging.Formatter):
    """A record is one line: control and line-separator characters in its message
    (a request path with %0D%0A, an ANSI escape) are escaped, so no input can forge a
    log line. A traceback, appended after, keeps its own lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return one_line(super().formatMessage(record))


def configure_logging() -> None:
    """One format for every process (a spawned worker starts with no logging set up)."""
    if not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(OneLineFormatter(FORMAT))
        logging.basicConfig(level=logging.INFO, handlers=[handler])
    # Alembic says at INFO how it sets itself up; quartchat.migrate says what it did.
    logging.getLogger("alembic").setLevel(logging.WARNING)
