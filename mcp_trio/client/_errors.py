"""The errors the client raises: one class per fact, each a :class:`ClientError`.

Like trio-websocket, errors are translated at the API edge: a broken socket is
:class:`ConnectionLost`, never an ``OSError`` from deep inside; an error the server answered
is :class:`McpError` with its code, message and data. Every message is one line that says
what happened and, where there is one, what to do.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ClientError",
    "ConnectError",
    "ConnectionLost",
    "EraError",
    "HTTPError",
    "McpError",
    "ProtocolError",
    "RPCError",
    "RequestTimeout",
    "TargetError",
]


class ClientError(Exception):
    """Base of every error this package raises."""


class TargetError(ClientError, ValueError):
    """The target names no transport we speak (the caller's mistake)."""


class ConnectError(ClientError):
    """The server could not be reached or would not open a session: the command did not
    start, the TCP connection or the WebSocket handshake failed, ``initialize`` or
    ``server/discover`` took longer than the handshake timeout."""


class ConnectionLost(ClientError):
    """The server went away (EOF, a closed WebSocket, a reset, an expired HTTP session) or
    the client was closed; requests still waiting fail with this."""


class ProtocolError(ClientError):
    """The server sent something that is not JSON-RPC or not the MCP shape asked for, or
    broke a limit (message size, pages, input rounds)."""


class McpError(ClientError):
    """The server answered a request with a JSON-RPC error object.

    ``code`` is the JSON-RPC error code (``-32601`` method not found, ``-32602`` invalid
    params, ...), ``message`` the server's sentence, ``data`` whatever it attached.
    A sampling, elicitation or roots callback may raise it too: the server then gets that
    error as the answer to its request.
    """

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.data = data


#: The name this error had before the client was typed; kept for existing callers.
RPCError = McpError


class HTTPError(ClientError):
    """The server answered an HTTP request with an error status (400, 401, 404, 413,
    429, 503...). ``retry_after`` is the ``Retry-After`` header in seconds, when given."""

    def __init__(self, status: int, body: bytes, retry_after: float | None = None) -> None:
        text = " ".join(body[:200].decode("utf-8", "replace").split())
        hint = _HINTS.get(status, "")
        super().__init__(f"HTTP {status}" + (f": {text}" if text else "") + hint)
        self.status = status
        self.body = body
        self.retry_after = retry_after


_HINTS = {
    401: " (the server wants credentials: pass headers={'Authorization': 'Bearer ...'} or a token provider)",
    403: " (the credentials lack a permission, or the Host/Origin is not allowed)",
    404: " (wrong URL path, or the session expired)",
}


class RequestTimeout(ClientError, TimeoutError):
    """A request got no answer within its timeout; the server was told to stop working on
    it (``notifications/cancelled``, or the HTTP response was closed)."""


class EraError(ClientError):
    """The method does not exist in the protocol era of this session (``ping`` and
    ``logging/setLevel`` are handshake-era requests, ``subscriptions/listen`` a 2026-07-28
    one); the message says what to use instead."""
