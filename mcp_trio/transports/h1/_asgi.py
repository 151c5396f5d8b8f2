"""An engine handler served by an ASGI server: the ASGI scope becomes a ``Request``, ``send`` a ``Responder``.

The engine's own interface, ``handler(request, responder)``, is what the HTTP app is written
against. Where the engine does not serve (HTTP/2 through hypercorn, or an ASGI stack a user
mounts the app in), ``AsgiHost`` puts the same handler behind ASGI 3:

* HTTP: the request's body is read whole first, as the engine does, within
  ``max_body_size`` (413: from Content-Length before reading any of it, else while counting)
  and ``request_deadline`` (408). A request with ``Expect: 100-continue`` and a body over the
  limit is refused before it is read (the ASGI server may have sent ``100 Continue``
  already: hypercorn does). The handler then gets a ``Request`` (raw path, split from the
  query, never percent-decoded; the ``root_path`` a router mounted the app at taken off) and
  an ``AsgiResponder``: ``respond`` is one whole response, ``start``/``send``/``end`` a
  streamed one, ``wait_disconnected`` waits for ``http.disconnect``.
* WebSocket scopes go to ``websocket(scope, receive, send)``; ``AsgiWebSocket`` is such a
  socket as a channel of whole text messages.
* Lifespan: ``lifespan(receive, send)`` when given, else startup and shutdown are
  acknowledged.

A handler's failure is that request's: 500 (``error_body``) if nothing was sent yet, else the
response is cut; logged once, with its traceback.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import trio

from ._parser import Request
from ._server import ErrorBody, Handler, plain_error_body

logger = logging.getLogger("mcp_trio.http.asgi")

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
WebSocketHandler = Callable[[Scope, Receive, Send], Awaitable[None]]
LifespanHandler = Callable[[Receive, Send], Awaitable[None]]

#: What a write raises when the client has just left (hypercorn's own close races ours).
_CLIENT_GONE = (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError)
#: Response headers that are the ASGI server's to write.
_FRAMING = frozenset({b"content-length", b"transfer-encoding"})
_BODYLESS = frozenset({204, 304})


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class AsgiResponder:
    """The ``Responder`` of one ASGI HTTP exchange (see ``h1.Responder``)."""

    __slots__ = ("_disconnected", "_method", "_receive", "_send", "_started", "_streaming", "done")

    def __init__(self, receive: Receive, send: Send, method: str) -> None:
        self._receive = receive
        self._send = send
        self._method = method
        self._started = self._streaming = self.done = False
        self._disconnected = False

    @property
    def started(self) -> bool:
        return self._started

    @property
    def disconnected(self) -> bool:
        return self._disconnected

    def _begin(self, status: int) -> None:
        if self._started:
            raise RuntimeError("this request has already been answered (or its answer started)")
        if status < 200:
            raise ValueError(f"status {status}: informational responses are the server's")
        self._started = True

    async def respond(self, status: int, headers: Iterable[tuple[bytes, bytes]] = (), body: bytes = b"") -> None:
        self._begin(status)
        self.done = True
        framing = [] if status in _BODYLESS else [(b"content-length", b"%d" % len(body))]
        await self._send({"type": "http.response.start", "status": status,
                          "headers": [*(h for h in headers if h[0] not in _FRAMING), *framing]})
        await self._send({"type": "http.response.body", "body": body})

    async def start(self, status: int, headers: Iterable[tuple[bytes, bytes]] = (), body: bytes = b"") -> None:
        self._begin(status)
        self._streaming = True
        await self._send({"type": "http.response.start", "status": status,
                          "headers": [h for h in headers if h[0] not in _FRAMING]})
        await self._send({"type": "http.response.body", "body": body, "more_body": True})

    async def send(self, data: bytes) -> None:
        if not self._streaming or self.done:
            raise RuntimeError("send() needs a streamed response started with start() and not ended")
        await self._send({"type": "http.response.body", "body": data, "more_body": True})

    async def end(self) -> None:
        if not self._streaming or self.done:
            await trio.lowlevel.checkpoint()
            return
        self.done = True
        await self._send({"type": "http.response.body", "body": b"", "more_body": False})

    async def wait_disconnected(self) -> None:
        while not self._disconnected:
            if (await self._receive())["type"] == "http.disconnect":
                self._disconnected = True


class AsgiHost:
    """``handler`` (and ``websocket``) as an ASGI 3 application (see the module docstring).

    ``max_body_size`` and ``request_deadline`` (0: none) bound the body read before the
    handler runs; ``error_body`` shapes the refusals and 500s written here.
    """

    def __init__(self, handler: Handler, *, max_body_size: int, request_deadline: float,
                 websocket: WebSocketHandler | None = None, lifespan: LifespanHandler | None = None,
                 error_body: ErrorBody | None = None) -> None:
        self.handler = handler
        self.websocket = websocket
        self.lifespan = lifespan
        self.max_body_size = max_body_size
        self.request_deadline = request_deadline if request_deadline > 0 else math.inf
        self.error_body = error_body or plain_error_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            if self.websocket is not None:
                await self.websocket(scope, receive, send)
            else:
                await send({"type": "websocket.close", "code": 1008})
        elif kind == "lifespan":
            if self.lifespan is not None:
                await self.lifespan(receive, send)
            else:
                await _acknowledge_lifespan(receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        responder = AsgiResponder(receive, send, method)
        try:
            try:
                body = await self._body(scope["headers"], receive)
            except _Refused as refused:
                await self._answer_error(responder, refused.status, refused.message, close=True)
                return
            await self.handler(_request(scope, method, body), responder)
        except Exception as exc:
            if _client_gone(exc):
                logger.debug("client gone during %s %r", method, scope.get("path"))
                return
            logger.exception("HTTP handler failed on %s %r", method, scope.get("path"))
            if not responder.started:
                await self._answer_error(responder, 500, "internal server error")
            return
        if responder._streaming and not responder.done:
            await responder.end()
        elif responder.disconnected:
            logger.debug("client gone before %s %r was answered", method, scope.get("path"))
        elif not responder.started:
            logger.error("HTTP handler returned without answering %s %r", method, scope.get("path"))
            await self._answer_error(responder, 500, "internal server error: no response")

    async def _answer_error(self, responder: AsgiResponder, status: int, message: str, *, close: bool = False) -> None:
        content_type, body = self.error_body(status, message)
        headers = [(b"content-type", content_type)]
        if close:
            headers.append((b"connection", b"close"))
        try:
            await responder.respond(status, headers, body)
        except _CLIENT_GONE:
            logger.debug("client gone before the %d answer", status)

    async def _body(self, headers: Iterable[tuple[bytes, bytes]], receive: Receive) -> bytes:
        """The whole body, within the size limit and the request deadline (413, 408)."""
        limit = self.max_body_size
        expected = -1
        for name, value in headers:
            if name == b"content-length":
                expected = int(value) if value.strip().isdigit() else -1  # the server has validated it
                if expected > limit:
                    raise _Refused(413, f"request body of {expected} bytes exceeds the limit of {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        with trio.move_on_after(self.request_deadline) as waited:
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    raise _Refused(400, "client disconnected")
                chunk = message.get("body", b"")
                if chunk:
                    size += len(chunk)
                    if size > limit:
                        raise _Refused(413, f"request body exceeds the limit of {limit} bytes")
                    chunks.append(chunk)
                # With Content-Length, the last byte is the end: no wait for the empty message.
                if not message.get("more_body", False) or size == expected:
                    break
        if waited.cancelled_caught:
            raise _Refused(408, f"request body not received within {self.request_deadline:g} s")
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _request(scope: Scope, method: str, body: bytes) -> Request:
    raw = scope.get("raw_path") or scope["path"].encode("utf-8")
    root = scope.get("root_path")
    prefix = b""
    if root:
        prefix = root.encode("utf-8")
        if raw.startswith(prefix) and raw[len(prefix):len(prefix) + 1] in (b"", b"/"):
            raw = raw[len(prefix):] or b"/"
    query = scope.get("query_string", b"")
    request = Request(method, raw + b"?" + query if query else raw, [(name, value) for name, value in scope["headers"]], body,
                      scope.get("http_version", "1.1"), True)
    request.root_path = prefix
    client = scope.get("client")
    request.client = (str(client[0]), int(client[1])) if client else None
    request.scheme = scope.get("scheme", "http")
    return request


def _client_gone(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return all(_client_gone(inner) for inner in exc.exceptions)
    return isinstance(exc, _CLIENT_GONE)


async def _acknowledge_lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


#: WebSocket close codes.
_GOING_AWAY = 1001
_UNSUPPORTED_DATA = 1003


class AsgiWebSocket(trio.abc.Channel[bytes]):
    """An accepted ASGI WebSocket as a message channel: one message per text frame.

    The message size limit is the ASGI server's (hypercorn: ``websocket_max_message_size``,
    close 1009); so are pings (``websocket_ping_interval``) and the answer to a client's close
    frame. A binary frame closes the connection with 1003; so much silence
    (``idle_timeout``, nothing ``busy``) with 1000 and ``idle timeout``; graceful shutdown
    with 1001, as the WebSocket transport does.
    """

    def __init__(self, receive: Receive, send: Send, idle_timeout: float, shutting_down: trio.Event) -> None:
        self._receive = receive
        self._send = send
        self._idle = idle_timeout if idle_timeout > 0 else math.inf
        self._shutting_down = shutting_down
        self._disconnected = False
        self._close: tuple[int, str] | None = None
        self.busy: Callable[[], bool] = lambda: False

    async def receive(self) -> bytes:
        while True:
            with trio.move_on_after(self._idle):
                message = await self._receive()
                kind = message["type"]
                if kind == "websocket.receive":
                    text = message.get("text")
                    if text is not None:
                        return text.encode()
                    self._close = (_UNSUPPORTED_DATA, "binary frames are not supported: send each JSON-RPC message as one text frame")
                    raise trio.EndOfChannel
                if kind == "websocket.disconnect":
                    self._disconnected = True
                    raise trio.EndOfChannel
                continue
            if not self.busy():
                self._close = (1000, "idle timeout")
                raise trio.EndOfChannel

    async def send(self, data: bytes) -> None:
        if self._disconnected:
            raise trio.BrokenResourceError("WebSocket closed by the peer")
        await self._send({"type": "websocket.send", "text": data.decode()})

    async def aclose(self) -> None:
        if not self._disconnected:
            self._disconnected = True
            code, reason = self._close or ((_GOING_AWAY, "server shutting down") if self._shutting_down.is_set() else (1000, ""))
            await self._send({"type": "websocket.close", "code": code, "reason": reason})
