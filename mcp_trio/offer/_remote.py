"""``Remote``: a remote MCP server to mount (``Server.mount(Remote(...), prefix=...)``).

A description, nothing more: where the upstream is, how to authenticate to it, and its limits,
each with a named default. The serving layer's gateway (``serving._gateway.Upstream``) connects
to it while the host is served, lists what it offers into the host's registry under the
mount's prefix, and forwards calls over ``mcp_trio.client``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

#: Seconds to open a connection (TCP, TLS, WebSocket handshake) or start a stdio command,
#: and again to open the session (``initialize`` or ``server/discover``).
DEFAULT_CONNECT_TIMEOUT = 10.0
#: Seconds one forwarded request may take, waiting for a free slot included.
DEFAULT_REQUEST_TIMEOUT = 60.0
#: Requests forwarded to one upstream at once; more wait for a slot (within the request timeout).
DEFAULT_MAX_CONCURRENCY = 32
#: Keep-alive HTTP connections to one upstream (the client's bounded pool).
DEFAULT_MAX_CONNECTIONS = 8
#: Seconds between attempts to reach an upstream that is down: doubling from the first to the last.
RETRY_FIRST = 0.5
RETRY_LAST = 30.0

#: The least severe of the upstream's log messages asked for (and relayed to the caller of the
#: call they belong to, as its own ``logging/setLevel`` allows); None: ask for none.
DEFAULT_LOG_LEVEL = "info"

TokenProvider = Callable[[bool], Awaitable[str]]


class Remote:
    """A remote MCP server: ``"https://host/mcp"``, ``"ws://host/ws"``, or ``"stdio:command
    args"`` (a list of arguments also names a command).

    ``auth``: a bearer token (``str``), or an async ``(refresh: bool) -> token`` provider asked
    again after a 401; ``headers``: sent with every HTTP request and the WebSocket handshake
    (``X-API-Key``...). ``era``: ``"auto"`` (``server/discover``, else ``initialize``),
    ``"handshake"`` or ``"stateless"``. Limits: ``connect_timeout``, ``request_timeout``,
    ``max_concurrency``, ``max_connections`` (named defaults above). ``env``/``cwd``: for a
    stdio command. ``name``: how logs and errors call it (default: the target). ``log_level``:
    the upstream's log messages asked for (``DEFAULT_LOG_LEVEL``; None for none).

    A plain class rather than a dataclass: it is imported by every server (``mcp_trio``
    exports it), and a dataclass costs a millisecond of start-up to build.
    """

    __slots__ = ("target", "auth", "headers", "era", "connect_timeout", "request_timeout", "max_concurrency",
                 "max_connections", "env", "cwd", "name", "log_level")

    def __init__(self, target: str | Sequence[str], *, auth: str | TokenProvider | None = None,
                 headers: Mapping[str, str] | None = None, era: str = "auto",
                 connect_timeout: float = DEFAULT_CONNECT_TIMEOUT, request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
                 max_concurrency: int = DEFAULT_MAX_CONCURRENCY, max_connections: int = DEFAULT_MAX_CONNECTIONS,
                 env: Mapping[str, str] | None = None, cwd: str | None = None, name: str | None = None,
                 log_level: str | None = DEFAULT_LOG_LEVEL) -> None:
        self.target = target if isinstance(target, str) else tuple(target)
        self.auth = auth
        self.headers = dict(headers or {})
        self.era = era
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self.max_concurrency = max_concurrency
        self.max_connections = max_connections
        self.env = env
        self.cwd = cwd
        self.name = name
        self.log_level = log_level
        self._check()

    def _check(self) -> None:
        if not self.target:
            raise ValueError("Remote: give a target: https://host/mcp, ws://host/ws or stdio:command")
        if self.era not in ("auto", "handshake", "stateless"):
            raise ValueError(f"Remote {self.label}: era must be auto, handshake or stateless, not {self.era!r}")
        for limit in ("connect_timeout", "request_timeout"):
            if not getattr(self, limit) > 0:
                raise ValueError(f"Remote {self.label}: {limit} must be positive")
        for limit in ("max_concurrency", "max_connections"):
            if not (isinstance(getattr(self, limit), int) and getattr(self, limit) >= 1):
                raise ValueError(f"Remote {self.label}: {limit} must be at least 1")
        if self.auth is not None and not isinstance(self.auth, str) and not callable(self.auth):
            raise ValueError(f"Remote {self.label}: auth is a bearer token or an async token provider")

    def __repr__(self) -> str:  # never the token or the headers' values
        return f"Remote({self.label!r})"

    @property
    def label(self) -> str:
        """How logs and errors name it: ``name``, else the target without its credentials."""
        if self.name:
            return self.name
        if isinstance(self.target, str):
            text: str = self.target
            scheme, sep, rest = text.partition("://")
            if sep and "@" in rest.split("/", 1)[0]:  # user:password@host: never in a log line
                rest = rest.split("@", 1)[1]
                text = f"{scheme}://{rest}"
            return text
        return "stdio:" + " ".join(self.target)

    def connect_options(self) -> dict[str, Any]:
        """Keyword arguments for ``mcp_trio.client.connect``."""
        headers = dict(self.headers)
        token_provider = None
        if isinstance(self.auth, str):
            headers["Authorization"] = f"Bearer {self.auth}"
        elif self.auth is not None:
            token_provider = self.auth
        return {
            "era": self.era, "headers": headers, "token_provider": token_provider,
            "connect_timeout": self.connect_timeout, "handshake_timeout": self.connect_timeout,
            "request_timeout": self.request_timeout, "max_connections": self.max_connections,
            "env": self.env, "cwd": self.cwd, "log_level": self.log_level,
        }
