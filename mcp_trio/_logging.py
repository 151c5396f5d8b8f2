"""Logging set-up: one line per event on stderr, with the session and request id attached.

The ids live in context variables: a connection sets the session id, each request task sets
its request id, and trio copies the context into every task it starts, so a log line from
deep inside a tool still says which request it belongs to.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import time
from typing import IO, Any

import msgspec

session_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("mcp_session_id", default=None)
request_id_var: contextvars.ContextVar[int | str | None] = contextvars.ContextVar("mcp_request_id", default=None)


class ContextFilter(logging.Filter):
    """Copies the current session and request id onto each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.session_id = session_id_var.get()
        record.request_id = request_id_var.get()
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(ids)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        session = getattr(record, "session_id", None)
        request = getattr(record, "request_id", None)
        ids = ""
        if session is not None:
            ids += f" [{session}"
            ids += f" #{request}]" if request is not None else "]"
        record.ids = ids
        return super().format(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, session, request, exc."""

    def __init__(self) -> None:
        super().__init__()
        self._encoder = msgspec.json.Encoder()

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        session = getattr(record, "session_id", None)
        if session is not None:
            entry["session"] = session
        request = getattr(record, "request_id", None)
        if request is not None:
            entry["request"] = request
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return self._encoder.encode(entry).decode()


def configure_logging(level: str = "warning", fmt: str = "text", stream: IO[str] | None = None) -> None:
    """Send ``mcp_trio`` logs (and the root logger's) to ``stream`` (stderr by default).

    Never stdout: under the stdio transport stdout carries protocol messages only.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
