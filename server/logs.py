"""JSON log lines with the request id, through the standard ``logging`` module.

Every record says ``time``, ``level``, ``logger``, ``message`` and, inside a request,
``request_id`` (the caller's ``X-Request-ID`` or a fresh one, echoed in the response). Fields
passed as ``extra={...}`` come along. ``uvicorn_log_config`` gives uvicorn the same format, so
its startup lines and its workers' lines are JSON too.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

request_id: ContextVar[str | None] = ContextVar("adamcu_request_id", default=None)

_GOOD_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# attributes every LogRecord has; anything else came through ``extra=``
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def new_request_id(header: str | None) -> str:
    """The caller's id when it is short and plain, else a fresh one (never echo junk)."""
    if header and _GOOD_ID.match(header):
        return header
    return uuid.uuid4().hex


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = request_id.get()
        if rid is not None:
            line["request_id"] = rid
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value if isinstance(value, str | int | float | bool) else str(value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def uvicorn_log_config(fmt: str, access_log: bool) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for uvicorn and the app: ``fmt`` is json or text."""
    formatter: dict[str, Any] = (
        {"()": "server.logs.JsonFormatter"}
        if fmt == "json"
        else {"format": "%(asctime)s %(levelname)s [%(name)s] %(message)s"}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["default"], "level": "INFO"},
        "loggers": {
            "uvicorn": {"level": "INFO"},
            "uvicorn.error": {"level": "INFO"},
            # the app's own access line carries the request id; uvicorn's is off
            "uvicorn.access": {"level": "WARNING"},
            "server.access": {"level": "INFO" if access_log else "WARNING"},
        },
    }
