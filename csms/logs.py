"""Logging as operators ship it: plain text lines, or one JSON object per line.

The ids a line is about (``chargerId``, ``webhookId``, ``eventId``, ``commandId``) come from
the record's ``extra=`` or from the context of the task that logs: a charger's connection
handler sets ``chargerId`` once and every line logged while serving it carries it, with no
change to the call sites.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

ID_FIELDS = ("chargerId", "webhookId", "eventId", "commandId")
_context: ContextVar[Mapping[str, str]] = ContextVar(
    "chargehook_log_context", default=MappingProxyType({})
)
ACCESS_LOGGER = "csms.api.access"


@contextmanager
def log_context(**ids: str | None) -> Iterator[None]:
    """Lines logged inside (by this task and the tasks it starts) carry these ids."""
    token = _context.set({**_context.get(), **{k: v for k, v in ids.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def set_log_context(**ids: str | None) -> None:
    """Like ``log_context`` for the rest of the current task (a connection handler)."""
    _context.set({**_context.get(), **{k: v for k, v in ids.items() if v is not None}})


class _ContextIds(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", ids..., "exception"?}``, one line each."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in (*ID_FIELDS, *ACCESS_FIELDS):
            value = getattr(record, key, None)
            if value is not None:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """The classic line, with the ids that apply appended as ``key=value``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        ids = [f"{k}={getattr(record, k)}" for k in ID_FIELDS if getattr(record, k, None)]
        return f"{text} [{' '.join(ids)}]" if ids and "\n" not in text else text


def setup_logging(level: str, fmt: str) -> None:
    """Configure the root logger once, for ``csms`` commands (stderr)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_ContextIds())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("websockets").setLevel(logging.WARNING)


ACCESS_FIELDS = ("method", "path", "status", "durationMs", "remote")


class AccessLogger(AbstractAccessLogger):
    """One line per admin API request, with its fields (the query string left out: it may
    hold filter values only, but a path is enough to see what was asked)."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time_: float) -> None:
        self.logger.info(
            "%s %s %s %.1f ms",
            request.method,
            request.path,
            response.status,
            time_ * 1000,
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status,
                "durationMs": round(time_ * 1000, 2),
                "remote": request.remote,
            },
        )

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


def access_logger() -> logging.Logger:
    return logging.getLogger(ACCESS_LOGGER)
