"""The gate: checks on an HTTP request's head that every route relies on, sans-io.

Both HTTP servers use it, on what the wire carried (the ASGI scope's ``raw_path`` and
``headers`` as received, or the WebSocket server's own parse), before any route runs:

* **Framing** (RFC 9112 6.3): a request with ``Transfer-Encoding`` and ``Content-Length``,
  more than one ``Content-Length`` or ``Transfer-Encoding``, or a ``Content-Length`` that is
  not one decimal number is refused with 400 and the connection closed: a proxy in front that
  frames the body differently would otherwise let a second request hide inside the first
  (request smuggling). A transfer coding other than ``chunked`` is 501.
* **Headers that must be single**: ``Host``, ``Origin``, ``Content-Type``,
  ``Mcp-Session-Id``, ``MCP-Protocol-Version``, ``Last-Event-ID``: two of one are 400, never
  "the last one wins" (a proxy may have checked the first).
* **Routes** match the raw path, exactly as sent: ``/%61dmin`` is not ``/admin``, so a proxy
  that guards ``/admin`` by prefix cannot be walked around by percent-encoding.
* **Host and Origin** values are parsed strictly (``parse_authority``): ``[::1]evil.com`` is
  not a loopback host, it is no host at all.
* ``Expect: 100-continue`` is answered only once the head passed (``continue_refusal``): a body
  over the size limit is refused before the client is invited to send it.

Refusals never quote a header's value: error bodies and logs name the header, not what it
carried (it may be a credential).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import NamedTuple

#: Headers a request may carry at most once.
SINGLE_HEADERS = frozenset({b"host", b"origin", b"content-type", b"mcp-session-id", b"mcp-protocol-version",
                            b"last-event-id", b"content-length", b"transfer-encoding", b"expect"})
_DIGITS = re.compile(rb"[0-9]{1,19}")
#: A registered name or IPv4 address (RFC 3986 reg-name, without percent-encoding).
_REG_NAME = re.compile(r"[a-z0-9._~!$&'()*+,;=-]+")
_IPV6 = re.compile(r"[0-9a-f:.]+")
_PORT = re.compile(r"[0-9]{0,5}")


class Refusal(NamedTuple):
    """An HTTP answer refusing a request before any route: status, message, close after."""

    status: int
    message: str
    close: bool = False


def check_head(headers: Iterable[tuple[bytes, bytes]]) -> Refusal | None:
    """The refusal a request head deserves (framing, repeated headers), or None.

    ``headers``: (lower-case name, value) pairs, as received (ASGI ``scope["headers"]``).
    """
    seen: set[bytes] = set()
    for name, _ in headers:
        if name in SINGLE_HEADERS:
            if name in seen:
                if name in (b"content-length", b"transfer-encoding"):
                    return Refusal(400, f"bad request: more than one {name.decode()} header (ambiguous framing)", True)
                return Refusal(400, f"bad request: more than one {name.decode()} header")
            seen.add(name)
    if b"transfer-encoding" in seen or b"content-length" in seen:
        return _check_framing(headers, seen)
    return None


def _check_framing(headers: Iterable[tuple[bytes, bytes]], seen: set[bytes]) -> Refusal | None:
    if b"transfer-encoding" in seen and b"content-length" in seen:
        return Refusal(400, "bad request: both Transfer-Encoding and Content-Length (ambiguous framing)", True)
    for name, value in headers:
        if name == b"content-length" and _DIGITS.fullmatch(value.strip()) is None:
            return Refusal(400, "bad request: Content-Length is not a decimal number", True)
        if name == b"transfer-encoding" and value.strip().lower() != b"chunked":
            return Refusal(501, "not implemented: the only transfer coding accepted is chunked", True)
    return None


def continue_refusal(headers: Iterable[tuple[bytes, bytes]], limit: int) -> Refusal | None:
    """For a request with ``Expect: 100-continue``: the refusal to send instead of 100
    Continue (a declared body over ``limit`` is 413), or None when the client may go on."""
    for name, value in headers:
        if name == b"content-length" and _DIGITS.fullmatch(value.strip()) and int(value) > limit:
            return Refusal(413, f"request body of {int(value)} bytes exceeds the limit of {limit} bytes", True)
    return None


def route_path(raw_path: bytes | None, path: str) -> str:
    """The path a request is routed on: the raw one, exactly as sent (no percent-decoding).
    ``path`` (the decoded one) is used only when the server gave no raw path."""
    return path if raw_path is None else raw_path.decode("latin-1")


def parse_authority(value: str) -> tuple[str, str | None] | None:
    """``host[:port]`` -> (host, port), the host lower case, an IPv6 address without its
    brackets; None unless the whole value is one valid authority (``[::1]evil.com`` is not)."""
    text = value.strip().lower()
    if text.startswith("["):
        end = text.find("]")
        host, rest = text[1:end], text[end + 1:]
        if end < 0 or not host or _IPV6.fullmatch(host) is None or host.count(":") < 2:
            return None
        if not rest:
            return host, None
        if rest[0] != ":" or _PORT.fullmatch(rest[1:]) is None:
            return None
        return host, rest[1:] or None
    host, colon, port = text.partition(":")
    if not host or _REG_NAME.fullmatch(host) is None or (colon and _PORT.fullmatch(port) is None):
        return None
    return host, port or None


def bracketed(host: str) -> str:
    """An IPv6 address as it appears in a Host header (``[::1]``); other hosts as they are."""
    return f"[{host}]" if ":" in host else host
