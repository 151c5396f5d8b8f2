"""Response heads and body framing as bytes (no I/O): status lines, headers, chunks, Date."""

from __future__ import annotations

import time
from collections.abc import Iterable
from email.utils import formatdate
from http import HTTPStatus

_STATUS_LINES = {s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode("ascii")) for s in HTTPStatus}
#: Response headers the engine writes itself; an app's own are dropped (``connection: close``
#: from the app is honoured: the connection closes after the response).
_FRAMING = frozenset({b"content-length", b"transfer-encoding", b"connection"})
_BODYLESS = frozenset({204, 304})
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
LAST_CHUNK = b"0\r\n\r\n"


class UnsafeHeader(ValueError):
    """A response header value with CR, LF or NUL in it (it would split the response)."""


def status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        if not 100 <= status <= 999:
            raise ValueError(f"not an HTTP status code: {status}")
        line = b"HTTP/1.1 %d \r\n" % status
    return line


def has_body(status: int, method: str) -> bool:
    """Whether a response with ``status`` to ``method`` carries a body on the wire."""
    return method != "HEAD" and status >= 200 and status not in _BODYLESS


def render_head(status: int, headers: Iterable[tuple[bytes, bytes]], framing: bytes, date: bytes,
                close: bool) -> tuple[bytes, bool]:
    """The response head, and whether the app asked for the connection to close.

    ``framing`` is the engine's own framing line (``content-length: N\\r\\n``,
    ``transfer-encoding: chunked\\r\\n`` or empty). Header names are the app's, lower case.
    """
    parts = [status_line(status)]
    app_close = False
    for name, value in headers:
        if name in _FRAMING:
            if name == b"connection" and b"close" in value.lower():
                app_close = True
            continue
        if b"\r" in value or b"\n" in value or b"\0" in value:
            raise UnsafeHeader(f"response header {name.decode('latin-1')!r} has CR, LF or NUL in its value")
        parts += (name, b": ", value, b"\r\n")
    parts += (framing, date)
    if close or app_close:
        parts.append(b"connection: close\r\n")
    parts.append(b"\r\n")
    return b"".join(parts), app_close


def chunk(data: bytes) -> bytes:
    """One piece of a chunked body (``data`` not empty: an empty chunk ends the body)."""
    return b"%x\r\n%b\r\n" % (len(data), data)


class DateHeader:
    """The ``date:`` line (RFC 9110 §6.6.1), formatted at most once a second."""

    __slots__ = ("_line", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._line = b""

    def line(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._line = b"date: %b\r\n" % formatdate(now, usegmt=True).encode("ascii")
        return self._line
