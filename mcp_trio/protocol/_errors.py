"""JSON-RPC and MCP error codes, and the typed errors that carry them.

Like h11's ``LocalProtocolError``/``RemoteProtocolError``, an error here says whose fault it
was by its code: the ``-326xx`` codes blame the peer's message, ``INTERNAL_ERROR`` blames us.
Every error converts to exactly one JSON-RPC error object, in one place (the request task).
"""

from __future__ import annotations

from typing import Any

# JSON-RPC 2.0
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

# MCP (handshake era). The spec reserves -32000..-32099 for implementation-defined errors.
REQUEST_TIMEOUT = -32001
RESOURCE_NOT_FOUND = -32002
FORBIDDEN = -32003
RATE_LIMITED = -32029
SERVER_OVERLOADED = -32030
SHUTTING_DOWN = -32031
QUOTA_EXCEEDED = -32032

# MCP 2026-07-28 (stateless revision).
HEADER_MISMATCH = -32020
MISSING_CLIENT_CAPABILITY = -32021
UNSUPPORTED_PROTOCOL_VERSION = -32022


class McpError(Exception):
    """An error that becomes one JSON-RPC error object.

    ``code`` is the JSON-RPC error code, ``message`` a short sentence for a person, ``data``
    anything JSON-serialisable that helps a program (which argument, how long to wait).
    """

    code: int = INTERNAL_ERROR

    def __init__(self, message: str, data: Any = None, *, code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data
        if code is not None:
            self.code = code

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code})"


class ParseError(McpError):
    """The bytes were not JSON (or not UTF-8)."""

    code = PARSE_ERROR


class InvalidRequest(McpError):
    """JSON, but not a valid JSON-RPC 2.0 message (wrong types, batch, duplicate id, too large)."""

    code = INVALID_REQUEST


class BatchRefused(InvalidRequest):
    """A JSON array where one JSON-RPC object was expected: a batch, which only sessions of
    protocol revision 2025-03-26 may send (``serving._batch``)."""


class MethodNotFound(McpError):
    """The method does not exist, or is not available in the session's current state."""

    code = METHOD_NOT_FOUND


class InvalidParams(McpError):
    """The params (or a tool's arguments) do not fit what the method expects."""

    code = INVALID_PARAMS


class InternalError(McpError):
    """Our fault: an unexpected exception. The message never leaks a traceback."""

    code = INTERNAL_ERROR


class NoSessionError(InternalError):
    """``ctx.session_state`` asked of a request that belongs to no session (protocol revision
    2026-07-28): the server's code assumed a session. A tool's call answers it as a failure
    the model reads (``isError``); any other request as ``-32603`` with this message."""


class ResourceNotFound(McpError):
    """``resources/read`` (or subscribe) of a URI that no resource or template matches."""

    code = RESOURCE_NOT_FOUND


class RequestTimeout(McpError):
    """A request outlived its deadline (a tool's timeout, or a server->client request's)."""

    code = REQUEST_TIMEOUT


class ShuttingDown(McpError):
    """The server stopped before the request finished; it was cancelled after the grace period."""

    code = SHUTTING_DOWN


class PeerError(McpError):
    """The client answered one of our requests (sampling, elicitation, roots) with an error."""


class Forbidden(McpError):
    """The caller is authenticated but lacks a scope the tool, resource or prompt requires.

    ``data`` is ``{"requiredScopes": [...]}``; over HTTP this is a 403 with
    ``error="insufficient_scope"``.
    """

    code = FORBIDDEN


class RateLimited(McpError):
    """The caller's token bucket is empty; ``data`` is ``{"retryAfterMs": N}`` (HTTP: 429)."""

    code = RATE_LIMITED


class ServerOverloaded(McpError):
    """Too many requests are running server-wide; this one is shed, not queued (HTTP: 503)."""

    code = SERVER_OVERLOADED


class QuotaExceeded(McpError):
    """The caller already holds as many of something (sessions, tasks, listen streams,
    subscriptions) as its quota allows; ``data`` is ``{"quota": "<Limits field>", "limit": N}``
    (HTTP: 429, with no ``Retry-After``: it clears when the caller releases one, not with time)."""

    code = QUOTA_EXCEEDED


class HeaderMismatch(McpError):
    """2026-07-28 over HTTP: a routing header (``MCP-Protocol-Version``, ``Mcp-Method``,
    ``Mcp-Name``, ``Mcp-Param-*``) disagrees with the body (HTTP: 400)."""

    code = HEADER_MISMATCH


class MissingClientCapability(McpError):
    """2026-07-28: serving the request needs a capability the request's ``_meta`` did not
    declare; ``data`` is ``{"requiredCapabilities": {"sampling": {}}}`` (HTTP: 400)."""

    code = MISSING_CLIENT_CAPABILITY


class UnsupportedProtocolVersion(McpError):
    """The request's ``_meta`` names a revision not served statelessly; ``data`` is
    ``{"supported": [...], "requested": "..."}`` (HTTP: 400)."""

    code = UNSUPPORTED_PROTOCOL_VERSION
