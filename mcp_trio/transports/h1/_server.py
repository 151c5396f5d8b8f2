"""The engine: accept connections, one task per connection, deadlines, graceful shutdown.

::

    listening sockets ─► accept loop ─► connection task: read ─► parse ─► app(request, responder) ─► write
                                               ▲
                        reaper (one task per server): idle keep-alive, request deadline, stalled writes

A connection task reads, parses (``RequestParser``), calls the app with each whole request
in turn, and writes the answers in the order the requests came (pipelining needs nothing
more). The app answers through the connection itself (``Responder``): one whole response,
or a streamed one (chunked, for SSE), and may wait for the client to leave. No task, timer
or cancel scope is made per request: one reaper task compares each connection's state and
the time it entered it, every quarter of the shortest deadline, and cancels the
connection's one scope (or closes its socket, for a stalled write) when a deadline passes.

What ends a connection, and what the client sees:

* a refused request (malformed, smuggling shapes, limits; see ``_parser``): the status and a
  one-line reason (``error_body`` shapes it), ``connection: close``, then the connection is
  closed after a short linger (what the client still sends is read and dropped for up to
  ``LINGER`` seconds, so the answer is not lost to a TCP reset);
* ``request_deadline`` passed while a request was arriving: 408, then the same;
* ``keep_alive_timeout`` with no request begun: closed quietly;
* ``Connection: close`` from the client or the app, HTTP/1.0 without keep-alive, or
  shutdown: ``connection: close`` on the response (whole or streamed), closed after it;
* a write stalled for ``send_timeout``: the socket is closed at once;
* ``max_connections`` reached: a new connection gets 503 with ``Retry-After`` to its first
  request, then is closed (at most ``REFUSING_MAX`` such connections at once; past that,
  closed at once);
* shutdown: listeners closed at once, idle connections closed at once, the others finish
  the response in progress (with ``connection: close``) within ``grace_period``, then are
  cancelled.

An app's failure is that request's: 500 if nothing was sent yet, else the connection is
dropped; logged once, with the traceback. A WebSocket upgrade request (see ``_parser``) is
handed, with the connection's stream and the bytes read behind its head, to ``on_upgrade``.
"""

from __future__ import annotations

import logging
import math
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol

import trio

from .._sockets import SocketStream, socket_of
from ._io import ACCEPT_CAPACITY_ERRNOS, bind
from ._limits import H1Limits
from ._parser import READ_SIZE, Refusal, Request, RequestParser
from ._wire import CONTINUE, LAST_CHUNK, DateHeader, chunk, has_body, render_head

logger = logging.getLogger("mcp_trio.http.h1")

#: Seconds a refused connection's remaining input is read and dropped before it is closed.
LINGER = 2.0
#: Connections over ``max_connections`` answered 503 at once; past it they are closed unanswered.
REFUSING_MAX = 64
#: Seconds a client refused for capacity is asked to wait (``Retry-After``).
RETRY_AFTER = 1

_CLIENT_GONE = (trio.BrokenResourceError, trio.ClosedResourceError)
_IDLE, _READING, _HANDLING, _UPGRADED = range(4)


class Responder(Protocol):
    """How an app answers the request it was given (the engine's connection implements it).

    Either ``respond`` once, or ``start`` then ``send`` any number of times then ``end`` (the
    engine ends a streamed body itself when the app returns). Header names are lower case;
    ``content-length``, ``transfer-encoding`` and ``connection`` are the engine's (an app's
    ``connection: close`` is honoured). A write to a client that has gone raises
    ``trio.BrokenResourceError``.
    """

    async def respond(self, status: int, headers: Iterable[tuple[bytes, bytes]] = (), body: bytes = b"") -> None: ...

    async def start(self, status: int, headers: Iterable[tuple[bytes, bytes]] = (), body: bytes = b"") -> None: ...

    async def send(self, data: bytes) -> None: ...

    async def end(self) -> None: ...

    async def wait_disconnected(self) -> None: ...

    @property
    def disconnected(self) -> bool: ...


#: ``app(request, responder)``: answer one request.
Handler = Callable[[Request, Responder], Awaitable[None]]
#: ``on_upgrade(request, stream, data)``: take the connection over after a WebSocket upgrade
#: request (``data``: the bytes read behind its head). The connection is closed when it returns.
UpgradeHandler = Callable[[Request, trio.abc.Stream, bytes], Awaitable[None]]
#: ``error_body(status, message)`` -> (content type, body) of the engine's own error answers.
ErrorBody = Callable[[int, str], tuple[bytes, bytes]]


def plain_error_body(status: int, message: str) -> tuple[bytes, bytes]:
    return b"text/plain; charset=utf-8", message.encode() + b"\n"


class HttpConnection:
    """One client connection, and the ``Responder`` for the request being answered on it."""

    __slots__ = ("_body_allowed", "_broken", "_chunked", "_close", "_closing", "_disconnected", "_done",
                 "_expired", "_gone", "_idle_wait", "_parser", "_reading", "_refuse_all", "_request", "_scope",
                 "_seen_writes", "_server", "_started", "_stream", "_streaming", "_write_since", "_writes",
                 "_writing", "client", "since", "state")

    def __init__(self, server: H1Server, stream: trio.abc.Stream, client: tuple[str, int] | None, *,
                 refuse_all: bool = False) -> None:
        self._server = server
        self._stream = stream
        self.client = client
        self._parser = RequestParser(server.limits)
        self._scope = trio.CancelScope()
        self._refuse_all = refuse_all
        self.state = _IDLE
        self.since = trio.current_time()
        self._idle_wait = False
        self._closing = False
        self._expired: int | None = None
        self._reading = False
        self._writing = False
        self._writes = 0
        self._seen_writes = 0
        self._write_since = 0.0
        self._broken = False
        self._disconnected = False
        self._gone: trio.Event | None = None
        self._request: Request | None = None
        self._started = self._streaming = self._done = self._chunked = self._close = False
        self._body_allowed = True

    # -- the connection's life -------------------------------------------------------------
    async def run(self) -> None:
        try:
            with self._scope:
                await self._serve()
            if self._expired == 408:
                await self._refuse(Refusal(408, f"request not received within {self._server.limits.request_deadline:g} s"))
        except _CLIENT_GONE:
            logger.debug("client %s gone", self.client)
        finally:
            await self._close_stream()

    async def _serve(self) -> None:
        parser = self._parser
        ready = parser.ready
        while True:
            while not ready:
                if parser.continue_pending:
                    parser.continue_sent()
                    await self._write(CONTINUE)
                if parser.in_message:
                    if self.state != _READING:
                        self.state = _READING
                        self.since = trio.current_time()
                elif self._closing or parser.closed:
                    return
                self._idle_wait = self.state == _IDLE
                self._reading = True
                try:
                    data = await self._stream.receive_some(READ_SIZE)
                finally:
                    self._reading = self._idle_wait = False
                if not data or self._scope.cancel_called:
                    return  # the client closed, or a deadline or shutdown came with the data
                parser.feed(data)
                del data  # an idle connection holds no bytes of the last request
            item = ready.pop(0)
            if type(item) is Refusal:
                await self._refuse(item)
                return
            request: Request = item  # type: ignore[assignment]
            request.client = self.client
            if self._server.tls:
                request.scheme = "https"
            if self._refuse_all:
                await self._refuse(Refusal(503, f"too many connections (limit {self._server.limits.max_connections}); "
                                                "try again later"), [(b"retry-after", b"%d" % RETRY_AFTER)])
                return
            if request.upgrade:
                on_upgrade = self._server.on_upgrade
                if on_upgrade is not None:
                    self.state = _UPGRADED
                    data, parser.upgrade_data = parser.upgrade_data, b""
                    # The session that follows may last for hours: only the callee keeps the
                    # request (and may let it go once it has read what it needs).
                    upgraded = on_upgrade(request, self._stream, data)
                    del item, request, data
                    await upgraded
                    return
                request.keep_alive = False  # what follows its head is not HTTP
            self.state = _HANDLING
            await self._handle(request)
            del item, request  # nor the request itself, while it waits for the next
            if self._close or self._broken:
                if ready or parser.in_message:
                    await self._linger()
                return
            self.state = _IDLE
            self.since = trio.current_time()

    async def _handle(self, request: Request) -> None:
        self._request = request
        self._started = self._streaming = self._done = self._chunked = False
        self._body_allowed = True
        self._close = self._closing or not request.keep_alive
        try:
            await self._server.handler(request, self)
        except Exception as exc:
            if _client_gone(exc):
                logger.debug("client %s gone during %s %r", self.client, request.method, request.target)
                self._broken = True
                return
            logger.exception("HTTP handler failed on %s %r", request.method, request.target)
            if self._started:
                self._broken = True  # a response half sent cannot be finished
                return
            await self._respond_error(500, "internal server error")
            return
        finally:
            self._request = None
        if not self._done:
            if self._streaming:
                self._request = request
                try:
                    await self.end()
                finally:
                    self._request = None
            elif self.disconnected:
                # The client left and the app gave up on its answer (it was watching for that).
                logger.debug("client %s gone before %s %r was answered", self.client, request.method, request.target)
                self._close = True
            else:
                logger.error("HTTP handler returned without answering %s %r", request.method, request.target)
                await self._respond_error(500, "internal server error: no response")

    async def _respond_error(self, status: int, message: str) -> None:
        content_type, body = self._server.error_body(status, message)
        self._close = True
        head, _ = render_head(status, [(b"content-type", content_type)], b"content-length: %d\r\n" % len(body),
                              self._server.date.line(), True)
        await self._write(head + body)
        self._done = True

    async def _refuse(self, refusal: Refusal, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
        """Answer ``refusal`` (the engine's own error), then linger and close."""
        server = self._server
        server.refused[refusal.status] = server.refused.get(refusal.status, 0) + 1
        logger.debug("refused %s (%d): %s", self.client, refusal.status, refusal.message)
        content_type, body = server.error_body(refusal.status, refusal.message)
        head, _ = render_head(refusal.status, [(b"content-type", content_type), *headers],
                              b"content-length: %d\r\n" % len(body), server.date.line(), True)
        with trio.move_on_after(_finite(server.limits.send_timeout)):
            await self._write(head + body)
        await self._linger()

    async def _linger(self) -> None:
        """Send EOF, then drop what the client still sends for up to ``LINGER`` seconds: closing
        with unread input would reset the connection, and the client could lose our answer."""
        sock = socket_of(self._stream)
        if sock is None or sock is not self._stream:
            return  # TLS cannot half-close: close at once
        await sock.send_eof()
        with trio.move_on_after(LINGER):
            try:
                while await sock.receive_some(READ_SIZE):
                    pass
            except _CLIENT_GONE:
                pass

    async def _close_stream(self) -> None:
        sock = socket_of(self._stream)
        if sock is not None and sock is self._stream:
            sock.close_now()
        else:
            await trio.aclose_forcefully(self._stream)

    # -- deadlines and shutdown (called by the server's reaper and shutdown) ---------------
    def check(self, now: float, keep_alive: float, deadline: float, send_timeout: float) -> None:
        """One reaper round: end this connection if a deadline has passed."""
        if self._idle_wait:
            if now - self.since >= keep_alive:
                self._expire(None)
        elif self.state == _READING and self._reading and now - self.since >= deadline:
            self._expire(408)
        if self._writing:
            if self._writes != self._seen_writes:
                self._seen_writes = self._writes
                self._write_since = now
            elif now - self._write_since >= send_timeout:
                logger.info("client %s has not read for %g s; dropping the connection", self.client, send_timeout)
                self.abort()

    def _expire(self, status: int | None) -> None:
        if not self._scope.cancel_called:
            self._expired = status
            self._scope.cancel()

    def shutdown(self) -> None:
        """The server is shutting down: close now if idle, else after the response under way."""
        self._closing = True
        self._close = True
        if self._idle_wait:
            self._expire(None)

    def abort(self) -> None:
        """Drop the connection now (a stalled write): the task blocked on it wakes and ends."""
        self._broken = True
        self._mark_gone()
        sock = socket_of(self._stream)
        if sock is not None:
            sock.close_now()
        else:
            self._scope.cancel()

    # -- Responder ---------------------------------------------------------------------------
    @property
    def disconnected(self) -> bool:
        """The client has closed its side (or the connection broke)."""
        return self._disconnected or self._broken

    async def respond(self, status: int, headers: Iterable[tuple[bytes, bytes]] = (), body: bytes = b"") -> None:
        """Answer the request with one whole response (``content-length`` is added)."""
        request = self._check_unanswered(status)
        framing = b"" if status == 204 or status == 304 else b"content-length: %d\r\n" % len(body)
        if request.http_version == "1.0" and not self._close:
            framing += b"connection: keep-alive\r\n"  # an HTTP/1.0 client closes without it
        head, app_close = render_head(status, headers, framing, self._server.date.line(), self._close)
        self._started = self._done = True
        if app_close:
            self._close = True
        await self._write(head + body if body and has_body(status, request.method) else head)

    async def start(self, status: int, headers: Iterable[tuple[bytes, bytes]] = (), body: bytes = b"") -> None:
        """Begin a streamed response (chunked; close-delimited for an HTTP/1.0 client), and
        write ``body`` as its first piece in the same write."""
        request = self._check_unanswered(status)
        allowed = has_body(status, request.method)
        chunked = allowed and request.http_version == "1.1"
        framing = b"transfer-encoding: chunked\r\n" if chunked else b""
        close = self._close or (allowed and not chunked)  # close-delimited for HTTP/1.0
        head, app_close = render_head(status, headers, framing, self._server.date.line(), close)
        self._started = self._streaming = True
        self._body_allowed, self._chunked, self._close = allowed, chunked, close or app_close
        if body and allowed:
            head += chunk(body) if chunked else body
        await self._write(head)

    async def send(self, data: bytes) -> None:
        """Write one more piece of a streamed response's body."""
        if not self._streaming or self._done or self._request is None:
            raise RuntimeError("send() needs a streamed response started with start() and not ended")
        if data and self._body_allowed:
            await self._write(chunk(data) if self._chunked else data)
        else:
            await trio.lowlevel.checkpoint()

    async def end(self) -> None:
        """End a streamed response (the engine does it when the app returns without)."""
        if not self._streaming or self._done:
            await trio.lowlevel.checkpoint()
            return
        self._done = True
        if self._chunked and self._body_allowed and not self._broken:
            await self._write(LAST_CHUNK)
        else:
            await trio.lowlevel.checkpoint()

    async def wait_disconnected(self) -> None:
        """Return when the client goes away (EOF or a broken connection).

        Reads ahead meanwhile: pipelined requests are parsed and kept for later. Once a whole
        one (or a refusal) is waiting, reading stops, and so does the watch: the client is
        then still there as far as this answer knows.
        """
        parser = self._parser
        while not self.disconnected:
            if parser.ready or parser.closed or self._reading:
                if self._gone is None:
                    self._gone = trio.Event()
                await self._gone.wait()  # another task is watching (or nothing more can be read)
                return
            self._reading = True
            try:
                data = await self._stream.receive_some(READ_SIZE)
            except _CLIENT_GONE:
                data = b""
            finally:
                self._reading = False
            if not data:
                self._mark_gone()
                return
            parser.feed(data)

    def _mark_gone(self) -> None:
        self._disconnected = True
        self._close = True
        if self._gone is not None:
            self._gone.set()

    def _check_unanswered(self, status: int) -> Request:
        request = self._request
        if request is None:
            raise RuntimeError("no request is being answered on this connection")
        if self._started:
            raise RuntimeError("this request has already been answered (or its answer started)")
        if status < 200:
            raise ValueError(f"status {status}: informational responses are the engine's")
        return request

    async def _write(self, data: bytes) -> None:
        if self._broken:
            raise trio.BrokenResourceError("the connection is broken")
        if self._writing:
            raise trio.BusyResourceError("another task is writing to this connection")
        self._writing = True
        self._writes += 1
        try:
            await self._stream.send_all(data)
        except _CLIENT_GONE:
            self._broken = True
            self._mark_gone()
            raise
        finally:
            self._writing = False


def _client_gone(exc: BaseException) -> bool:
    """``exc`` (or every exception in the group) says the client went away."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_client_gone(inner) for inner in exc.exceptions)
    return isinstance(exc, (*_CLIENT_GONE, trio.BusyResourceError))


def _finite(seconds: float) -> float:
    return seconds if seconds > 0 else math.inf


class H1Server:
    """The HTTP/1.1 engine: serves ``handler`` on the listening sockets given to ``serve``.

    ``on_upgrade`` takes WebSocket upgrade requests (None: they are answered by ``handler``
    like any request, and the connection closes after); ``error_body`` shapes the engine's
    own error answers; ``ssl_context`` serves HTTPS (``trio.SSLStream``).
    """

    def __init__(self, handler: Handler, limits: H1Limits | None = None, *, on_upgrade: UpgradeHandler | None = None,
                 error_body: ErrorBody | None = None, ssl_context: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.limits = limits or H1Limits()
        self.on_upgrade = on_upgrade
        self.error_body = error_body or plain_error_body
        self.ssl_context = ssl_context
        self.tls = ssl_context is not None
        self.date = DateHeader()
        #: Open connections (each served by a task of its own).
        self.connections: set[HttpConnection] = set()
        #: Connections over ``max_connections`` being answered 503 (deadlines apply to them too).
        self.refusing: set[HttpConnection] = set()
        #: Refusals by status (400, 408, 413, 431, 503...).
        self.refused: dict[int, int] = {}
        #: (host, port) of each listening socket.
        self.addresses: list[tuple[str, int]] = []
        self.shutting_down = trio.Event()
        self._drained = trio.Event()
        self._nursery: trio.Nursery | None = None

    def shutdown(self) -> None:
        """Begin a graceful shutdown (see the module docstring)."""
        self.shutting_down.set()

    def statistics(self) -> dict[str, Any]:
        return {"connections": len(self.connections), "refusing": len(self.refusing), "refused": dict(self.refused)}

    async def serve(self, sockets: Sequence[socket.socket], *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Accept on ``sockets`` (listening, non-blocking; closed here) until ``shutdown()``,
        then drain: returns when every connection has ended, or ``grace_period`` later."""
        limits = self.limits
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self.addresses = [sock.getsockname()[:2] for sock in sockets]
                accepting = trio.CancelScope()
                reaping = trio.CancelScope()
                nursery.start_soon(_in_scope, accepting, self._accept_all, sockets)
                nursery.start_soon(_in_scope, reaping, self._reap)
                task_status.started()
                await self.shutting_down.wait()
                _close_listeners(sockets)
                accepting.cancel()
                logger.debug("HTTP/1.1: shutting down; %d connection(s) open", len(self.connections))
                for connection in list(self.connections):
                    connection.shutdown()
                nursery.cancel_scope.deadline = trio.current_time() + limits.grace_period
                if self.connections:
                    await self._drained.wait()
                reaping.cancel()
        finally:
            _close_listeners(sockets)

    async def _accept_all(self, sockets: Sequence[socket.socket]) -> None:
        async with trio.open_nursery() as nursery:
            for sock in sockets:
                nursery.start_soon(self._accept_from, sock)

    async def _accept_from(self, listener: socket.socket) -> None:
        connections = self.connections
        max_connections = self.limits.max_connections
        while True:
            try:
                sock, address = listener.accept()
            except BlockingIOError:
                try:
                    await trio.lowlevel.wait_readable(listener)
                except trio.ClosedResourceError:
                    return
                continue
            except OSError as exc:
                if listener.fileno() < 0:
                    return
                if exc.errno in ACCEPT_CAPACITY_ERRNOS:
                    logger.error("accept: %s (out of file descriptors?); retrying in 100 ms", exc.strerror)
                    await trio.sleep(0.1)
                    continue
                logger.debug("accept: %s", exc)
                continue
            refuse = len(connections) >= max_connections
            if refuse and len(self.refusing) >= REFUSING_MAX:
                self.refused[503] = self.refused.get(503, 0) + 1
                sock.close()
                await trio.lowlevel.checkpoint()
                continue
            if sock.family != socket.AF_UNIX:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            assert self._nursery is not None
            self._nursery.start_soon(self._connection, sock, address, refuse)
            await trio.lowlevel.checkpoint()

    async def _connection(self, sock: socket.socket, address: Any, refuse: bool) -> None:
        stream: trio.abc.Stream = SocketStream(sock)
        if self.ssl_context is not None:
            stream = trio.SSLStream(stream, self.ssl_context, server_side=True, https_compatible=True)
        client = (str(address[0]), int(address[1])) if isinstance(address, tuple) else None
        connection = HttpConnection(self, stream, client, refuse_all=refuse)
        registry = self.refusing if refuse else self.connections
        registry.add(connection)
        if self.shutting_down.is_set():
            connection.shutdown()
        try:
            await connection.run()
        except Exception:
            logger.exception("HTTP connection from %s failed", client)
        finally:
            registry.discard(connection)
            if not self.connections and self.shutting_down.is_set():
                self._drained.set()

    async def _reap(self) -> None:
        """Every quarter of the shortest deadline: end connections whose deadline has passed."""
        limits = self.limits
        keep_alive, deadline, send_timeout = (_finite(limits.keep_alive_timeout), _finite(limits.request_deadline),
                                              _finite(limits.send_timeout))
        shortest = min(keep_alive, deadline, send_timeout)
        if shortest == math.inf:
            return
        interval = max(shortest / 4, 0.005)
        while True:
            await trio.sleep(interval)
            now = trio.current_time()
            for registry in (self.connections, self.refusing):
                for connection in registry:
                    connection.check(now, keep_alive, deadline, send_timeout)


def _close_listeners(sockets: Sequence[socket.socket]) -> None:
    for sock in sockets:
        if sock.fileno() >= 0:
            trio.lowlevel.notify_closing(sock)
            sock.close()


async def _in_scope(scope: trio.CancelScope, fn: Callable[..., Awaitable[None]], *args: Any) -> None:
    with scope:
        await fn(*args)


async def serve_h1(handler: Handler, limits: H1Limits | None = None, *, host: str = "127.0.0.1", port: int = 0,
                   ssl_context: ssl.SSLContext | None = None, reuse_port: bool = False,
                   on_upgrade: UpgradeHandler | None = None, error_body: ErrorBody | None = None,
                   task_status: trio.TaskStatus[H1Server] = trio.TASK_STATUS_IGNORED) -> None:
    """Bind ``host:port`` and serve ``handler`` until ``H1Server.shutdown()`` (the server is
    reported through ``task_status``; its ``addresses`` give the bound port)."""
    sockets = await bind(host, port, reuse_port=reuse_port)
    server = H1Server(handler, limits, on_upgrade=on_upgrade, error_body=error_body, ssl_context=ssl_context)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve, sockets)
        task_status.started(server)
