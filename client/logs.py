"""Logging setup shared by the command-line programs (worker, oracle, ``adamcu``)."""

from __future__ import annotations

import logging
import os

FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"
CHATTY = ("httpx", "httpcore")  # one INFO line per request: a poll every 0.2 s floods a console


def setup_logging(verbose: bool = False) -> int:
    """Log to stderr at ``$ADAMCU_LOG_LEVEL`` (default INFO; DEBUG with ``verbose``).

    httpx's and httpcore's per-request lines are shown only at DEBUG. Returns the level; an
    unknown level name raises ``SystemExit`` naming the accepted ones.
    """
    name = os.environ.get("ADAMCU_LOG_LEVEL") or ("DEBUG" if verbose else "INFO")
    level = logging.getLevelName(name.upper())
    if not isinstance(level, int):
        raise SystemExit(
            f"ADAMCU_LOG_LEVEL={name!r} is not a level: use DEBUG, INFO, WARNING or ERROR"
        )
    if verbose:
        level = min(level, logging.DEBUG)
    logging.basicConfig(level=level, format=FORMAT)
    logging.getLogger().setLevel(level)
    for chatty in CHATTY:
        logging.getLogger(chatty).setLevel(
            logging.DEBUG if level <= logging.DEBUG else logging.WARNING
        )
    return level
