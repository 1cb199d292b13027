"""Logging set-up shared by the three processes."""

from __future__ import annotations

import logging


def configure_logging(level: str = "INFO") -> None:
    """One line per record with time, level, logger and message."""
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
