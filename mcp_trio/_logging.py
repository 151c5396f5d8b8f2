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
#: The authenticated caller of the session or request (None on a trusted channel).
principal_var: contextvars.ContextVar[Any] = contextvars.ContextVar("mcp_principal", default=None)


def current_request_id() -> int | str | None:
    """The JSON-RPC id of the request this code serves (None outside one). A context
    variable: it is right in a tool's own task, a task it starts, a worker thread running a
    plain ``def`` tool, and an asyncio tool (``runtime="asyncio"``) alike."""
    return request_id_var.get()


def current_principal() -> Any:
    """The authenticated caller (``mcp_trio.auth.Principal``) of the request this code serves,
    or None on a trusted channel (stdio) or outside a request; visible wherever
    ``current_request_id`` is."""
    return principal_var.get()


class ContextFilter(logging.Filter):
    """Copies the current session and request id onto each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.session_id = session_id_var.get()
        record.request_id = request_id_var.get()
        return True


#: Characters that could start a new line, or rewrite one, on a terminal or in a log file:
#: C0 and C1 controls, DEL, and the Unicode line and paragraph separators.
_UNSAFE = {code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F, *range(0x80, 0xA0))}
_UNSAFE.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t", 0x2028: "\\u2028", 0x2029: "\\u2029"})


def escape_text(text: str) -> str:
    """``text`` on one line, whatever a client put in it: controls, line breaks and lone
    surrogates are written as escapes (``\\n``, ``\\x1b``, ``\\udcff``), so a request id or a
    method name cannot forge a log line or a terminal sequence. ~50 ns for ordinary text."""
    if text.isascii() and text.isprintable():
        return text
    escaped = text.translate(_UNSAFE)
    try:
        escaped.encode("utf-8")
    except UnicodeEncodeError:
        escaped = escaped.encode("utf-8", "backslashreplace").decode("ascii")
    return escaped


class TextFormatter(logging.Formatter):
    """One line per event. The message and the ids are escaped (``escape_text``): text logs
    quote clients (request ids, method names, client names), and must stay one line each.
    A traceback, which only the server writes, follows on lines of its own."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(ids)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        session = getattr(record, "session_id", None)
        request = getattr(record, "request_id", None)
        ids = ""
        if session is not None:
            ids += f" [{escape_text(str(session))}"
            ids += f" #{escape_text(str(request))}]" if request is not None else "]"
        record.ids = ids
        return super().format(record)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        record.message = escape_text(record.message)
        return super().formatMessage(record)

    def formatException(self, ei: Any) -> str:  # noqa: N802
        """Each traceback line behind ``  | ``: an exception message that quotes a client
        (and holds a line break) cannot pass for a log line of its own."""
        return "\n".join("  | " + escape_text(line) for line in super().formatException(ei).split("\n"))

    def formatStack(self, stack_info: str) -> str:  # noqa: N802
        return "\n".join("  | " + escape_text(line) for line in stack_info.split("\n"))


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
        try:
            return self._encoder.encode(entry).decode()
        except UnicodeEncodeError:  # a lone surrogate (a file name, say): escaped, not lost
            entry = {k: v.encode("utf-8", "backslashreplace").decode("utf-8") if isinstance(v, str) else v
                     for k, v in entry.items()}
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
