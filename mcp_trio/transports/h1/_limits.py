"""The engine's limits, each with a named default, in one frozen object.

``H1Limits.from_limits`` derives them from the server's ``Limits``, where each has its flag,
config key and environment variable: ``max_head_size``, ``max_headers``,
``max_message_size`` (the body), ``request_deadline``, ``keep_alive_timeout``,
``max_http_connections``, ``send_timeout``, ``grace_period``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..._limits import Limits

#: Largest request head (request line and header lines), in bytes: 431 past it. h11's default.
DEFAULT_MAX_HEAD_SIZE = 16 * 1024
#: Header lines one request may carry: 431 past it.
DEFAULT_MAX_HEADERS = 100
#: Largest request body, in bytes: 413, from Content-Length before reading, or while counting.
DEFAULT_MAX_BODY_SIZE = 4 * 1024 * 1024
#: Seconds one request may take to arrive whole, head and body, however it trickles: 408.
DEFAULT_REQUEST_DEADLINE = 30.0
#: Seconds an idle keep-alive connection (or a new one that sends nothing) is kept open.
DEFAULT_KEEP_ALIVE_TIMEOUT = 5.0
#: Concurrent TCP connections; past it a connection is answered 503 and closed.
DEFAULT_MAX_CONNECTIONS = 10_000
#: Seconds a single write may stall (a client that stops reading) before the connection is dropped.
DEFAULT_SEND_TIMEOUT = 30.0
#: Seconds open exchanges get to finish at shutdown before they are cancelled.
DEFAULT_GRACE_PERIOD = 10.0


@dataclass(frozen=True, slots=True)
class H1Limits:
    """Every limit of the HTTP/1.1 engine. A time of 0 disables that deadline."""

    max_head_size: int = DEFAULT_MAX_HEAD_SIZE
    max_headers: int = DEFAULT_MAX_HEADERS
    max_body_size: int = DEFAULT_MAX_BODY_SIZE
    request_deadline: float = DEFAULT_REQUEST_DEADLINE
    keep_alive_timeout: float = DEFAULT_KEEP_ALIVE_TIMEOUT
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    send_timeout: float = DEFAULT_SEND_TIMEOUT
    grace_period: float = DEFAULT_GRACE_PERIOD

    def __post_init__(self) -> None:
        for name in ("max_head_size", "max_headers", "max_body_size", "max_connections"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in ("request_deadline", "keep_alive_timeout", "send_timeout", "grace_period"):
            value = getattr(self, name)
            if value < 0 or math.isnan(value):
                raise ValueError(f"{name} must not be negative")

    @classmethod
    def from_limits(cls, limits: Limits, **overrides: float) -> H1Limits:
        """The engine's limits for a server with ``limits``; ``overrides`` set the others."""
        values: dict[str, float] = {
            "max_head_size": limits.max_head_size,
            "max_headers": limits.max_headers,
            "max_body_size": limits.max_message_size,
            "request_deadline": limits.request_deadline,
            "keep_alive_timeout": limits.keep_alive_timeout,
            "max_connections": limits.max_http_connections,
            "grace_period": limits.grace_period,
            "send_timeout": limits.send_timeout,
        }
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]
