"""ASGI and HTTP helpers shared by both HTTP eras (``http.py``, ``_stateless_http.py``).

The ASGI types; a whole JSON answer (``respond``); SSE framing; the watch that cancels an
exchange when its client leaves; the one way to build a JSON-RPC error body (``error_body``);
``Refused``, an HTTP error answer; and ``admission_status``, the status (and headers) of a
request refused before its handler ran (429, 403, 503), the same for a session's request and a
stateless one.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import msgspec
import trio

from ..auth import insufficient_scope
from ..protocol._errors import (
    FORBIDDEN,
    INVALID_REQUEST,
    QUOTA_EXCEEDED,
    RATE_LIMITED,
    SERVER_OVERLOADED,
    McpError,
)
from ..protocol._jsonrpc import ErrorObject, RequestId, error_object
from ._gate import Refusal

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

JSON = b"application/json"
SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache, no-transform"),
    (b"x-accel-buffering", b"no"),
]
KEEPALIVE = b": keep-alive\n\n"
#: Seconds between keep-alive comments on an idle SSE stream (finds peers that left); a
#: stateless answer also commits to SSE after this much silence.
SSE_KEEPALIVE = 15.0
#: JSON-RPC errors that refuse a request before its handler: answered with an HTTP status too.
ADMISSION_CODES = frozenset({RATE_LIMITED, FORBIDDEN, SERVER_OVERLOADED, QUOTA_EXCEEDED})
#: What a write to hypercorn raises when the client has just left: a 413 or 408 is answered
#: before the body arrived, and a client that closes as soon as it has read an answer races
#: hypercorn's own close of the connection (its ``send_eof`` is outside its send lock).
CLIENT_GONE = (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError)

_encode = msgspec.json.Encoder().encode


def error_body(error: McpError | ErrorObject, rid: RequestId | None = None) -> bytes:
    """A JSON-RPC error response (``id`` null unless the request's id is known): the one way
    an HTTP answer's error body is built."""
    obj = error if isinstance(error, ErrorObject) else error_object(error)
    return _encode({"jsonrpc": "2.0", "id": rid, "error": obj})


async def respond(send: Send, status: int, body: bytes, content_type: bytes = JSON, headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type), (b"content-length", b"%d" % len(body)), *headers]})
    await send({"type": "http.response.body", "body": body})


class Refused(Exception):
    """An HTTP error answer: status, JSON-RPC error code and message."""

    def __init__(self, status: int, code: int, message: str, rid: RequestId | None = None, headers: list[tuple[bytes, bytes]] | None = None,
                 data: Any = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.rid = status, code, message, rid
        self.headers = headers or []
        self.data = data


async def refuse(send: Send, refused: Refused) -> None:
    await respond(send, refused.status, error_body(ErrorObject(refused.code, refused.message, refused.data), refused.rid),
                  headers=refused.headers)


async def refuse_head(send: Send, refusal: Refusal) -> None:
    """Answer a request the gate refused (framing, repeated headers); close if it says so."""
    extra = [(b"connection", b"close")] if refusal.close else []
    code = SERVER_OVERLOADED if refusal.status == 503 else INVALID_REQUEST
    await respond(send, refusal.status, error_body(ErrorObject(code, refusal.message)), headers=extra)


def admission_status(error: ErrorObject, authenticator: Any = None) -> tuple[int, list[tuple[bytes, bytes]]]:
    """The HTTP status (and headers) of a request refused before its handler ran.

    -32029 rate limited → 429 with ``Retry-After`` (whole seconds, rounded up);
    -32003 forbidden → 403 with ``WWW-Authenticate: Bearer error="insufficient_scope"``;
    -32030 overloaded → 503 with ``Retry-After: 1``; -32032 quota exceeded → 429 (no
    ``Retry-After``: it clears when the caller releases something). The body stays the
    JSON-RPC error.
    """
    data = error.data if isinstance(error.data, dict) else {}
    if error.code == QUOTA_EXCEEDED:
        return 429, []
    if error.code == RATE_LIMITED:
        retry_ms = data.get("retryAfterMs", 1000)
        seconds = max(1, math.ceil(retry_ms / 1000)) if isinstance(retry_ms, (int, float)) else 1
        return 429, [(b"retry-after", b"%d" % seconds)]
    if error.code == FORBIDDEN:
        headers: list[tuple[bytes, bytes]] = []
        if authenticator is not None:
            required = data.get("requiredScopes", [])
            challenge = authenticator.challenge(insufficient_scope(frozenset(required)))
            headers.append((b"www-authenticate", challenge.encode()))
        return 403, headers
    return 503, [(b"retry-after", b"1")]


async def watch_disconnect(receive: Receive, scope: trio.CancelScope) -> None:
    """Cancel ``scope`` when the client goes away (an SSE response has nothing else to read)."""
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


async def ws_reject(scope: Scope, send: Send, status: int, message: str, headers: Iterable[tuple[bytes, bytes]] = (),
                     code: int | None = None) -> None:
    """Refuse a WebSocket handshake with an HTTP status (403 when the server cannot say more)."""
    if "websocket.http.response" in scope.get("extensions", {}):
        body = error_body(ErrorObject(code if code is not None else INVALID_REQUEST if status != 503 else SERVER_OVERLOADED, message))
        await send({"type": "websocket.http.response.start", "status": status,
                    "headers": [(b"content-type", JSON), (b"content-length", b"%d" % len(body)), *headers]})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1008})
