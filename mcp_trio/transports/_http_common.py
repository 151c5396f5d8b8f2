"""HTTP helpers shared by every HTTP route (``http.py``, ``_stateless_http.py``, ``_legacy_sse.py``).

They answer through an h1 ``Responder`` (the engine's connection, or the ASGI shim's under
hypercorn): a whole JSON answer (``respond_json``); SSE framing; the watch that cancels an
exchange when its client leaves; the one way to build a JSON-RPC error body (``error_body``);
``Refused``, an HTTP error answer; and ``admission_status``, the status (and headers) of a
request refused before its handler ran (429, 403, 503), the same for a session's request and a
stateless one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
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
from .h1 import Responder

JSON = b"application/json"
JSON_HEADERS = [(b"content-type", JSON)]
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
#: What a write raises when the client has just left (a 413 or 408 is answered before the
#: body arrived; a client may close as soon as it has read an answer).
CLIENT_GONE = (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError)

_encode = msgspec.json.Encoder().encode


def error_body(error: McpError | ErrorObject, rid: RequestId | None = None) -> bytes:
    """A JSON-RPC error response (``id`` null unless the request's id is known): the one way
    an HTTP answer's error body is built."""
    obj = error if isinstance(error, ErrorObject) else error_object(error)
    return _encode({"jsonrpc": "2.0", "id": rid, "error": obj})


def engine_error_body(status: int, message: str) -> tuple[bytes, bytes]:
    """The engine's own refusals (400, 408, 413, 431...), as JSON-RPC errors like ours."""
    return JSON, error_body(ErrorObject(SERVER_OVERLOADED if status == 503 else INVALID_REQUEST, message))


async def respond_json(responder: Responder, status: int, body: bytes, headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    await responder.respond(status, [(b"content-type", JSON), *headers], body)


class Refused(Exception):
    """An HTTP error answer: status, JSON-RPC error code and message."""

    def __init__(self, status: int, code: int, message: str, rid: RequestId | None = None, headers: list[tuple[bytes, bytes]] | None = None,
                 data: Any = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.rid = status, code, message, rid
        self.headers = headers or []
        self.data = data


async def refuse(responder: Responder, refused: Refused) -> None:
    await respond_json(responder, refused.status, error_body(ErrorObject(refused.code, refused.message, refused.data), refused.rid),
                       refused.headers)


async def refuse_head(responder: Responder, refusal: Refusal) -> None:
    """Answer a request the gate refused (framing, repeated headers); close if it says so."""
    extra = [(b"connection", b"close")] if refusal.close else []
    code = SERVER_OVERLOADED if refusal.status == 503 else INVALID_REQUEST
    await respond_json(responder, refusal.status, error_body(ErrorObject(code, refusal.message)), extra)


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


def same_caller(owner: Any, caller: Any) -> bool:
    """Whether ``caller`` (a ``Principal`` or None) may use a session ``owner`` opened: a
    session is bound to the caller that opened it (no owner: anyone may)."""
    return owner is None or (caller is not None and caller.kind == owner.kind and caller.subject == owner.subject)


async def watch_disconnect(responder: Responder, scope: trio.CancelScope) -> None:
    """Cancel ``scope`` when the client goes away (a streamed answer has nothing else to read)."""
    await responder.wait_disconnected()
    scope.cancel()
