"""An ASGI 3 app served through the engine: the scope, ``receive`` and ``send`` are built here only.

A bridge for today's ``McpHttpApp`` until the HTTP transport answers ``Request``s directly:

* HTTP: the engine has read the whole body (within its limits), so the first ``receive``
  gives it in one message — also without a trip through the scheduler, through the
  ``receive_nowait`` of the object ``receive`` is bound to. Later ``receive`` calls wait for
  the client to leave (``http.disconnect``). ``http.response.start`` is held until the first
  body message, then sent with it: one whole response when that is the last message, a
  streamed (chunked) one otherwise.
* WebSocket: the upgrade request is validated (version 13, a key), then the app gets a
  ``websocket`` scope over the WebSocket transport's own channel (``WebSocketChannel``,
  wsproto frames, its size and fragment limits, close codes). ``websocket.accept`` writes
  the 101; a refusal before it is an HTTP answer (``websocket.http.response``). Heartbeat
  pings are not sent on this path.
* No lifespan events (the app has nothing to do in them).

``scope["path"]`` is percent-decoded, as ASGI defines it; ``raw_path`` is what was sent.
"""

from __future__ import annotations

import base64
import logging
import ssl
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import unquote

import trio
from wsproto.utilities import generate_accept_token

from ..._limits import Limits
from .._ws_channel import WebSocketChannel
from ._io import bind
from ._limits import H1Limits
from ._parser import Request
from ._server import ErrorBody, H1Server, Responder
from ._wire import DateHeader, render_head

logger = logging.getLogger("mcp_trio.http.h1")

Scope = dict[str, Any]
Message = dict[str, Any]
AsgiApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]

_ASGI = {"version": "3.0", "spec_version": "2.3"}
_DISCONNECT: Message = {"type": "http.disconnect"}


def _path(raw: bytes) -> str:
    text = raw.decode("latin-1")
    return unquote(text) if "%" in text else text


class _HttpExchange:
    """``receive`` and ``send`` of one HTTP request."""

    __slots__ = ("_body", "_ended", "_headers", "_responder", "_status")

    def __init__(self, body: bytes, responder: Responder) -> None:
        self._body: bytes | None = body
        self._responder = responder
        self._status = 0
        self._headers: Iterable[tuple[bytes, bytes]] = ()
        self._ended = False

    def receive_nowait(self) -> Message:
        body = self._body
        if body is None:
            raise trio.WouldBlock
        self._body = None
        return {"type": "http.request", "body": body, "more_body": False}

    async def receive(self) -> Message:
        if self._body is not None:
            return self.receive_nowait()
        if not self._ended:
            await self._responder.wait_disconnected()
        return _DISCONNECT

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.body":
            body = message.get("body", b"")
            more = message.get("more_body", False)
            status = self._status
            if status:
                self._status = 0
                if more:
                    await self._responder.start(status, self._headers, body)
                else:
                    self._ended = True
                    await self._responder.respond(status, self._headers, body)
            elif self._ended:
                raise RuntimeError("ASGI: http.response.body after the response ended")
            else:
                if body:
                    await self._responder.send(body)
                if not more:
                    self._ended = True
                    await self._responder.end()
        elif kind == "http.response.start":
            self._status = message["status"]
            self._headers = message.get("headers", ())
        else:
            raise RuntimeError(f"ASGI: unexpected message {kind!r} in an HTTP exchange")


class _WebSocketExchange:
    """``receive`` and ``send`` of one WebSocket, over the WebSocket transport's channel."""

    def __init__(self, stream: trio.abc.Stream, channel: WebSocketChannel, key: bytes, date: bytes) -> None:
        self._stream = stream
        self._channel = channel
        self._key = key
        self._date = date
        self._connected = False
        self.accepted = False
        self.answered = False  # an HTTP answer (a refusal) was written
        self.closed = False
        self._refusal: tuple[int, list[tuple[bytes, bytes]]] | None = None

    async def receive(self) -> Message:
        if not self._connected:
            self._connected = True
            return {"type": "websocket.connect"}
        if not self.accepted or self.closed:
            await trio.lowlevel.checkpoint()
            return {"type": "websocket.disconnect", "code": 1006}
        try:
            data = await self._channel.receive()
        except trio.EndOfChannel:
            return {"type": "websocket.disconnect", "code": self._channel.close_code or 1005}
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return {"type": "websocket.disconnect", "code": 1006}
        return {"type": "websocket.receive", "text": data.decode()}

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "websocket.send":
            text = message.get("text")
            if text is None:
                raise ValueError("ASGI: binary WebSocket messages are not supported here")
            await self._channel.send(text.encode())
        elif kind == "websocket.accept":
            await self._accept(message)
        elif kind == "websocket.close":
            if not self.accepted:
                await self.refuse(403)
                return
            self._channel.close_code = message.get("code", 1000)
            self._channel.close_reason = message.get("reason") or ""
            await self.close()
        elif kind == "websocket.http.response.start":
            self._refusal = (message["status"], list(message.get("headers", ())))
        elif kind == "websocket.http.response.body":
            if self._refusal is None:
                raise RuntimeError("ASGI: websocket.http.response.body before its start")
            status, headers = self._refusal
            await self._answer(status, headers, message.get("body", b""))
        else:
            raise RuntimeError(f"ASGI: unexpected message {kind!r} in a WebSocket exchange")

    async def _accept(self, message: Message) -> None:
        if self.accepted or self.answered:
            raise RuntimeError("ASGI: websocket.accept twice, or after an HTTP answer")
        head = [b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n",
                b"sec-websocket-accept: %b\r\n" % generate_accept_token(self._key)]
        subprotocol = message.get("subprotocol")
        if subprotocol:
            head.append(b"sec-websocket-protocol: %b\r\n" % subprotocol.encode("latin-1"))
        for name, value in message.get("headers", ()):
            head += (name, b": ", value, b"\r\n")
        head.append(b"\r\n")
        self.accepted = True
        await self._stream.send_all(b"".join(head))

    async def refuse(self, status: int) -> None:
        await self._answer(status, [(b"content-type", b"text/plain")], b"WebSocket refused\n")

    async def _answer(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        if self.accepted or self.answered:
            raise RuntimeError("ASGI: an HTTP answer after the WebSocket was accepted or answered")
        self.answered = True
        await _http_answer(self._stream, status, headers, body, self._date)

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            await self._channel.aclose()


async def _http_answer(stream: trio.abc.Stream, status: int, headers: list[tuple[bytes, bytes]], body: bytes,
                       date: bytes) -> None:
    """An HTTP answer to an upgrade request that is not accepted (the connection closes after)."""
    head, _ = render_head(status, headers, b"content-length: %d\r\n" % len(body), date, True)
    await stream.send_all(head + body)


class AsgiAdapter:
    """Serves ``app`` (ASGI 3) through the engine: ``handle`` for HTTP, ``upgrade`` for WebSocket.

    ``limits`` are the WebSocket side's (message size and fragments, send and close
    timeouts); ``shutting_down`` picks the close code 1001 over 1000 when it is set.
    """

    def __init__(self, app: AsgiApp, limits: Limits, shutting_down: trio.Event, *,
                 server_address: tuple[str, int] | None = None) -> None:
        self.app = app
        self.limits = limits
        self.shutting_down = shutting_down
        self.server_address = server_address
        self._date = DateHeader()

    def _scope(self, kind: str, scheme: str, request: Request) -> Scope:
        path = request.path
        return {
            "type": kind,
            "asgi": _ASGI,
            "http_version": request.http_version,
            "scheme": scheme,
            "path": _path(path),
            "raw_path": path,
            "query_string": request.query,
            "root_path": "",
            "headers": request.headers,
            "client": request.client,
            "server": self.server_address,
        }

    async def handle(self, request: Request, responder: Responder) -> None:
        scope = self._scope("http", request.scheme, request)
        scope["method"] = request.method
        exchange = _HttpExchange(request.body, responder)
        await self.app(scope, exchange.receive, exchange.send)

    async def upgrade(self, request: Request, stream: trio.abc.Stream, data: bytes) -> None:
        key = request.header(b"sec-websocket-key") or b""
        try:
            valid = len(base64.b64decode(key, validate=True)) == 16
        except ValueError:
            valid = False
        date = self._date.line()
        if request.header(b"sec-websocket-version") != b"13" or not valid:
            await _http_answer(stream, 426 if valid else 400, [(b"content-type", b"text/plain"), (b"sec-websocket-version", b"13")],
                               b"bad WebSocket handshake: send Sec-WebSocket-Version: 13 and a Sec-WebSocket-Key\n", date)
            return
        channel = WebSocketChannel(stream, self.limits, self.shutting_down, trailing_data=data)
        exchange = _WebSocketExchange(stream, channel, key, date)
        protocols = request.header(b"sec-websocket-protocol")
        scope = self._scope("websocket", "wss" if request.scheme == "https" else "ws", request)
        scope["subprotocols"] = [p.strip() for p in protocols.decode("latin-1").split(",")] if protocols else []
        scope["extensions"] = {"websocket.http.response": {}}
        try:
            await self.app(scope, exchange.receive, exchange.send)
        finally:
            with trio.CancelScope(shield=True) as finishing:
                finishing.deadline = trio.current_time() + self.limits.send_timeout + self.limits.handshake_timeout
                if exchange.accepted:
                    await exchange.close()
                elif not exchange.answered:
                    await exchange.refuse(403)  # returned without accepting (ASGI: 403)


async def serve_asgi(app: AsgiApp, limits: Limits, h1_limits: H1Limits | None = None, *, host: str = "127.0.0.1",
                     port: int = 0, certfile: str | None = None, keyfile: str | None = None, reuse_port: bool = False,
                     error_body: ErrorBody | None = None, shutdown_trigger: Callable[[], Awaitable[Any]],
                     task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve ``app`` on ``host:port`` until ``shutdown_trigger`` returns, then drain.

    Reports the bound addresses as ``scheme://host:port`` strings, as ``hypercorn.trio.serve``
    does, so ``serve_http`` can take either.
    """
    ssl_context = None
    if certfile is not None:
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(certfile, keyfile)
        ssl_context.set_alpn_protocols(["http/1.1"])
    sockets = await bind(host, port, reuse_port=reuse_port)
    shutting_down = trio.Event()
    host_port = sockets[0].getsockname()[:2]
    adapter = AsgiAdapter(app, limits, shutting_down, server_address=(str(host_port[0]), int(host_port[1])))
    server = H1Server(adapter.handle, h1_limits or H1Limits.from_limits(limits), on_upgrade=adapter.upgrade,
                      error_body=error_body, ssl_context=ssl_context)
    scheme = "https" if ssl_context is not None else "http"
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve, sockets)
        binds = [f"{scheme}://{f'[{h}]' if ':' in h else h}:{p}" for h, p in server.addresses]
        task_status.started(binds)
        await shutdown_trigger()
        shutting_down.set()
        server.shutdown()
