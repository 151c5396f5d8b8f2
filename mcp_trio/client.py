"""A small MCP client on trio, for stdio, WebSocket and Streamable HTTP servers.

It is the client the benchmark harness (``mcp-trio bench``) drives and the one the tests use
where the official SDK has no transport (WebSocket). It speaks JSON-RPC and the MCP
handshake, and nothing more: no schema validation, no typed results, no retries beyond
a stale keep-alive connection.

::

    async with connect("ws://127.0.0.1:8765/") as client:
        await client.initialize()
        result = await client.request("tools/call", {"name": "echo", "arguments": {"text": "hi"}})

Targets:

* ``stdio:COMMAND ARGS...`` (split like a shell would) or a list of arguments: the command is
  spawned and spoken to over its stdin/stdout, one JSON message per line;
* ``ws://`` / ``wss://``: one JSON-RPC message per text frame, subprotocol ``mcp`` offered;
* ``http://`` / ``https://``: Streamable HTTP. Each message is a POST accepting both
  ``application/json`` and ``text/event-stream``; the answer is read from either. The
  ``Mcp-Session-Id`` the server assigns at ``initialize`` and the negotiated
  ``MCP-Protocol-Version`` are sent on every later request, and the session is ended with a
  DELETE when the client closes.

Many requests may be in flight at once on one client: each waits for the reply with its id
(a reader task matches them for stdio and WebSocket; for HTTP the reply comes back on the
request's own POST, over a pool of keep-alive connections, one per concurrent request).
Notifications from the server go to ``on_notification``; requests from the server (``ping``,
sampling, roots, elicitation) go to ``on_request``, which by default answers ``ping`` and
refuses the rest with ``-32601``.

Timeouts are the caller's: wrap a call in ``trio.fail_after``. A cancelled request is
forgotten; its late reply is dropped.
"""

from __future__ import annotations

import inspect
import os
import shlex
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import msgspec
import trio

from .protocol._versions import LATEST_VERSION

__all__ = [
    "Client",
    "ClientError",
    "ConnectError",
    "ConnectionLost",
    "HTTPError",
    "ProtocolError",
    "RPCError",
    "TargetError",
    "connect",
]

#: Largest message accepted from a server (a stdio line, a WebSocket message, an HTTP body
#: or SSE event); the server's own default limit is the same.
DEFAULT_MAX_MESSAGE_SIZE = 4 * 1024 * 1024
#: How long closing may take: the child's exit after EOF on its stdin, the WebSocket close
#: handshake, the HTTP DELETE that ends the session. Then the child is killed / we give up.
CLOSE_TIMEOUT = 5.0
#: How long a WebSocket or TCP connection and its handshake may take.
CONNECT_TIMEOUT = 30.0
#: What ``initialize`` sends as ``clientInfo`` unless told otherwise.
CLIENT_INFO = {"name": "mcp-trio-client", "version": "0.1.0"}

_READ_SIZE = 65536
_ERROR_BODY_LIMIT = 4096  # bytes of an HTTP error body kept for the exception message


# --------------------------------------------------------------------------- errors


class ClientError(Exception):
    """Base of every error this module raises."""


class TargetError(ClientError, ValueError):
    """The target string names no transport we speak (the caller's mistake)."""


class ConnectError(ClientError):
    """The server could not be reached: the command did not start, the TCP connection or
    the WebSocket handshake failed."""


class ConnectionLost(ClientError):
    """The server went away (EOF, a closed WebSocket, a reset) or the client was closed;
    requests still waiting fail with this."""


class ProtocolError(ClientError):
    """The server sent something that is not JSON-RPC, or broke a framing limit."""


class RPCError(ClientError):
    """The server answered a request with a JSON-RPC error object."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.data = data


class HTTPError(ClientError):
    """The server answered a POST with an HTTP error status (400, 404, 413, 503...)."""

    def __init__(self, status: int, body: bytes) -> None:
        text = body[:200].decode("utf-8", "replace")
        super().__init__(f"HTTP {status}: {text}" if text else f"HTTP {status}")
        self.status = status
        self.body = body


# --------------------------------------------------------------------------- the wire


class _Incoming(msgspec.Struct):
    """Any JSON-RPC message; which fields are set tells what it is."""

    id: Any = msgspec.UNSET
    method: Any = msgspec.UNSET
    params: Any = msgspec.UNSET
    result: Any = msgspec.UNSET
    error: Any = msgspec.UNSET


class _Request(msgspec.Struct):
    jsonrpc: str
    id: int
    method: str
    params: Any = msgspec.UNSET  # a dict, or msgspec.Raw bytes already encoded


class _Notification(msgspec.Struct):
    jsonrpc: str
    method: str
    params: Any = msgspec.UNSET


class _Response(msgspec.Struct):
    jsonrpc: str
    id: Any
    result: Any = msgspec.UNSET
    error: Any = msgspec.UNSET


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(_Incoming)
_batch_decoder = msgspec.json.Decoder(_Incoming | list[_Incoming])

Deliver = Callable[[_Incoming], None]
NotificationHandler = Callable[[str, Any], Any]
RequestHandler = Callable[[str, Any], Awaitable[Any]]


# --------------------------------------------------------------------------- transports


class _Writer:
    """Writes to a byte stream for many tasks at once: the first sender writes everything
    queued meanwhile in one go, so pipelined requests share a write (as the server's writer
    does). A write cut short by cancellation leaves half a message on the wire: the stream
    is unusable after it, and says so."""

    def __init__(self, stream: trio.abc.SendStream, what: str) -> None:
        self._stream = stream
        self._what = what
        self._outgoing = bytearray()
        self._writing = False
        self._interrupted = False

    async def write(self, data: bytes) -> None:
        if self._interrupted:
            raise ConnectionLost(f"an earlier write to {self._what} was interrupted")
        self._outgoing += data
        if self._writing:
            await trio.lowlevel.checkpoint()
            return
        self._writing = True
        try:
            while self._outgoing:
                chunk, self._outgoing = self._outgoing, bytearray()
                written = False
                try:
                    await self._stream.send_all(chunk)
                    written = True
                finally:
                    self._interrupted = not written
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            raise ConnectionLost(f"{self._what} is closed") from None
        finally:
            self._writing = False


class _StdioTransport:
    """A child process: newline-delimited JSON on its stdin and stdout."""

    inline_answers = False

    def __init__(self, process: trio.Process, max_message_size: int) -> None:
        assert process.stdin is not None and process.stdout is not None
        self.process = process
        self.pid: int | None = process.pid
        self._stdin = process.stdin
        self._stdout = process.stdout
        self._max = max_message_size
        self._writer = _Writer(process.stdin, "the server's stdin")

    async def send(self, data: bytes) -> None:
        await self._writer.write(data + b"\n")

    async def receive_loop(self, deliver: Callable[[bytes], None]) -> str:
        """Hand every line to ``deliver`` until EOF; returns why it stopped."""
        partial = b""
        while True:
            try:
                chunk = await self._stdout.receive_some(_READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                chunk = b""
            if not chunk:
                code = await _exit_code(self.process)
                return f"the server closed its stdout (exit code {code})"
            *lines, partial = (partial + chunk).split(b"\n")
            if len(partial) > self._max:
                raise ProtocolError(f"the server wrote a line longer than {self._max} bytes")
            for line in lines:
                if line.strip():
                    deliver(line)

    async def aclose(self) -> None:
        """EOF on stdin is the stdio shutdown signal; a child that does not exit in
        CLOSE_TIMEOUT is killed."""
        process = self.process
        with trio.CancelScope(shield=True):
            try:
                await self._stdin.aclose()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            with trio.move_on_after(CLOSE_TIMEOUT):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
            await self._stdout.aclose()


async def _exit_code(process: trio.Process) -> int | None:
    with trio.move_on_after(1.0):
        await process.wait()
    return process.returncode


class _WebSocketTransport:
    """One JSON-RPC message per WebSocket text frame, on wsproto directly.

    Not trio-websocket's client: that one hands each message through a reader task and a
    channel and writes each frame with its own ``send_all``, which made the client, not the
    server, the bottleneck of a benchmark. Here the reader parses every frame a read brings
    and pipelined frames share a write.
    """

    inline_answers = False
    pid = None

    def __init__(self, stream: trio.abc.Stream, ws: Any, early: list[Any], max_message_size: int) -> None:
        self._stream = stream
        self._ws = ws
        self._early = early  # events that arrived with the handshake's answer
        self._max = max_message_size
        self._writer = _Writer(stream, "the WebSocket")
        self.subprotocol: str | None = None

    @classmethod
    async def open(cls, url: str, *, headers: Mapping[str, str], ssl_context: ssl.SSLContext | None,
                   max_message_size: int) -> _WebSocketTransport:
        from wsproto import ConnectionType, WSConnection
        from wsproto.events import (
            AcceptConnection,
            RejectConnection,
            RejectData,
            Request,
        )

        parts = urlsplit(url)
        if not parts.hostname:
            raise TargetError(f"no host in {url!r}")
        tls = parts.scheme.lower() == "wss"
        host = parts.hostname
        port = parts.port or (443 if tls else 80)
        netloc = f"[{host}]" if ":" in host else host
        host_header = netloc if port == (443 if tls else 80) else f"{netloc}:{port}"
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        stream = await _open_stream(host, port, (ssl_context or ssl.create_default_context()) if tls else None)
        ws = WSConnection(ConnectionType.CLIENT)
        try:
            with trio.fail_after(CONNECT_TIMEOUT):
                await stream.send_all(ws.send(Request(
                    host=host_header, target=target, subprotocols=["mcp"], extra_headers=list(headers.items()),
                )))
                rejected: int | None = None
                body = b""
                while True:
                    chunk = await stream.receive_some(_READ_SIZE)
                    ws.receive_data(chunk or None)
                    events = list(ws.events())
                    for n, event in enumerate(events):
                        if isinstance(event, AcceptConnection):
                            transport = cls(stream, ws, events[n + 1 :], max_message_size)
                            transport.subprotocol = event.subprotocol
                            return transport
                        if isinstance(event, RejectConnection):
                            rejected = event.status_code
                            if not event.has_body:
                                raise ConnectError(f"the server refused the WebSocket handshake with HTTP {rejected}")
                        elif isinstance(event, RejectData):
                            body += event.data[: max(0, 200 - len(body))]
                            if event.body_finished:
                                text = body.decode(errors="replace").strip()
                                raise ConnectError(f"the server refused the WebSocket handshake with HTTP {rejected}"
                                                   + (f": {text}" if text else ""))
                    if not chunk:
                        raise ConnectError("the server closed the connection during the WebSocket handshake")
        except trio.TooSlowError:
            await stream.aclose()
            raise ConnectError(f"no WebSocket handshake answer from {url} within {CONNECT_TIMEOUT:g} s") from None
        except (trio.BrokenResourceError, OSError) as exc:
            await stream.aclose()
            raise ConnectError(f"cannot open {url}: {exc or type(exc).__name__}") from None
        except BaseException:
            await stream.aclose()
            raise

    async def send(self, data: bytes) -> None:
        from wsproto.events import TextMessage
        from wsproto.utilities import LocalProtocolError

        try:
            frame = self._ws.send(TextMessage(data=data.decode()))
        except LocalProtocolError:
            raise ConnectionLost("the WebSocket is closed") from None
        await self._writer.write(frame)

    async def receive_loop(self, deliver: Callable[[bytes | str], None]) -> str:
        from wsproto import ConnectionState
        from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage

        ws = self._ws
        parts: list[Any] = []
        size = 0
        events: list[Any] = self._early
        while True:
            for event in events:
                if isinstance(event, TextMessage | BytesMessage):
                    size += len(event.data)
                    if size > self._max:
                        raise ProtocolError(f"the server sent a message longer than {self._max}")
                    if event.message_finished:
                        if parts:
                            parts.append(event.data)
                            joined: Any = ("" if isinstance(event.data, str) else b"").join(parts)
                            parts, size = [], 0
                            deliver(joined)
                        else:
                            size = 0
                            deliver(event.data)
                    else:
                        parts.append(event.data)
                elif isinstance(event, Ping) and ws.state is ConnectionState.OPEN:
                    await self._writer.write(ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    if ws.state is ConnectionState.REMOTE_CLOSING:  # not the answer to our close
                        try:
                            await self._writer.write(ws.send(event.response()))
                        except ClientError:
                            pass
                    reason = f"code {event.code}" + (f": {event.reason}" if event.reason else "")
                    return f"the server closed the WebSocket ({reason})"
            try:
                chunk = await self._stream.receive_some(_READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                return f"the WebSocket connection broke: {exc or type(exc).__name__}"
            if not chunk:
                return "the server closed the WebSocket connection without a close frame"
            ws.receive_data(chunk)
            events = ws.events()

    async def aclose(self) -> None:
        """Send a close frame (best effort) and close the connection."""
        from wsproto import ConnectionState
        from wsproto.events import CloseConnection

        with trio.CancelScope(shield=True):
            if self._ws.state is ConnectionState.OPEN:
                with trio.move_on_after(CLOSE_TIMEOUT):
                    try:
                        await self._writer.write(self._ws.send(CloseConnection(code=1000)))
                    except ClientError:
                        pass
            await self._stream.aclose()


async def _open_stream(host: str, port: int, ssl_context: ssl.SSLContext | None) -> trio.abc.Stream:
    """A TCP connection, with TLS when given a context; :class:`ConnectError` if it fails."""
    try:
        with trio.fail_after(CONNECT_TIMEOUT):
            stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)  # TCP_NODELAY is trio's default
            if ssl_context is not None:
                tls = trio.SSLStream(stream, ssl_context, server_hostname=host, https_compatible=True)
                await tls.do_handshake()
                stream = tls
    except (OSError, trio.TooSlowError, trio.BrokenResourceError) as exc:
        raise ConnectError(f"cannot connect to {host}:{port}: {exc or type(exc).__name__}") from None
    return stream


class _HTTPConnection:
    """One keep-alive HTTP/1.1 connection driven by h11."""

    def __init__(self, stream: trio.abc.Stream, max_event: int) -> None:
        import h11

        self.stream = stream
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=max_event)
        self.used = False

    async def next_event(self) -> Any:
        import h11

        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            data = await self.stream.receive_some(_READ_SIZE)
            self.h11.receive_data(data)

    def reusable(self) -> bool:
        import h11

        conn = self.h11
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
            return True
        return False

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            await self.stream.aclose()


class _HTTPTransport:
    """Streamable HTTP: each message is one POST; the answer comes back on it, as JSON or
    as an SSE stream (which may carry notifications and server requests first)."""

    inline_answers = True
    pid = None

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str],
        ssl_context: ssl.SSLContext | None,
        max_message_size: int,
    ) -> None:
        parts = urlsplit(url)
        if not parts.hostname:
            raise TargetError(f"no host in {url!r}")
        self._tls = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._tls else 80)
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        netloc = f"[{self._host}]" if ":" in self._host else self._host
        default_port = self._port == (443 if self._tls else 80)
        self._host_header = netloc if default_port else f"{netloc}:{self._port}"
        self._extra = [(k.encode(), v.encode()) for k, v in headers.items()]
        self._ssl = ssl_context if ssl_context is not None else (ssl.create_default_context() if self._tls else None)
        self._max = max_message_size
        self._idle: list[_HTTPConnection] = []
        self._closed = False
        self.deliver: Deliver = lambda message: None
        self.session_id: str | None = None
        self.protocol_version: str | None = None

    async def _open(self) -> _HTTPConnection:
        return _HTTPConnection(await _open_stream(self._host, self._port, self._ssl), self._max + 65536)

    def _headers(self, method: bytes, length: int) -> list[tuple[bytes, bytes]]:
        headers = [(b"host", self._host_header.encode())]
        if method == b"POST":
            headers += [
                (b"content-type", b"application/json"),
                (b"accept", b"application/json, text/event-stream"),
                (b"content-length", str(length).encode()),
            ]
        if self.session_id is not None:
            headers.append((b"mcp-session-id", self.session_id.encode()))
        if self.protocol_version is not None:
            headers.append((b"mcp-protocol-version", self.protocol_version.encode()))
        return headers + self._extra

    async def send(self, data: bytes) -> None:
        await self._exchange(b"POST", data)

    async def _exchange(self, method: bytes, body: bytes) -> None:
        """One HTTP request on a pooled connection. A reused connection the server closed
        while it was idle (keep-alive timeout) fails before any answer; the request then
        goes on the next pooled connection, or a fresh one. Nothing answered is retried."""
        import h11

        if self._closed:
            raise ConnectionLost("the client is closed")
        while True:
            conn = self._idle.pop() if self._idle else await self._open()
            reused = conn.used
            conn.used = True
            answered = False
            try:
                request = h11.Request(method=method, target=self._path, headers=self._headers(method, len(body)))
                payload = conn.h11.send(request)
                if body:
                    payload += conn.h11.send(h11.Data(data=body))
                payload += conn.h11.send(h11.EndOfMessage())
                await conn.stream.send_all(payload)
                response = await conn.next_event()
                while isinstance(response, h11.InformationalResponse):
                    response = await conn.next_event()
                if isinstance(response, h11.ConnectionClosed):
                    raise trio.BrokenResourceError("the server closed the connection before answering")
                answered = True
                await self._read_response(conn, response)
            except (trio.BrokenResourceError, trio.ClosedResourceError, h11.RemoteProtocolError, OSError) as exc:
                await conn.aclose()
                if reused and not answered:
                    continue
                if isinstance(exc, h11.RemoteProtocolError):
                    raise ProtocolError(f"bad HTTP from the server: {exc}") from None
                raise ConnectionLost(f"the HTTP connection broke: {exc or type(exc).__name__}") from None
            except HTTPError:
                self._release(conn)  # the error body was read whole: the connection is fine
                raise
            except BaseException:
                await conn.aclose()  # an unread or half-read response: the connection is spent
                raise
            self._release(conn)
            return

    def _release(self, conn: _HTTPConnection) -> None:
        if conn.reusable() and not self._closed:
            self._idle.append(conn)
        else:  # the server said Connection: close, or we are closing: drop it, no checkpoint
            stream = getattr(conn.stream, "transport_stream", conn.stream)
            sock = getattr(stream, "socket", None)
            if sock is not None:
                sock.close()

    async def _read_response(self, conn: _HTTPConnection, response: Any) -> None:
        status = response.status_code
        headers = {name.lower(): value for name, value in response.headers}
        if not 200 <= status < 300:
            raise HTTPError(status, await self._read_body(conn, _ERROR_BODY_LIMIT, truncate=True))
        session = headers.get(b"mcp-session-id")
        if session is not None:
            self.session_id = session.decode("ascii", "replace")
        content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if content_type == b"text/event-stream":
            await self._read_sse(conn)
            return
        body = await self._read_body(conn, self._max)
        if content_type == b"application/json" and body.strip():
            try:
                decoded = _batch_decoder.decode(body)
            except msgspec.DecodeError as exc:
                raise ProtocolError(f"the server answered with bad JSON: {exc}") from None
            for message in decoded if isinstance(decoded, list) else (decoded,):
                self.deliver(message)

    async def _read_body(self, conn: _HTTPConnection, limit: int, truncate: bool = False) -> bytes:
        import h11

        body = bytearray()
        while True:
            event = await conn.next_event()
            if isinstance(event, h11.Data):
                if len(body) + len(event.data) > limit:
                    if not truncate:
                        raise ProtocolError(f"an HTTP body longer than {limit} bytes")
                    body += event.data[: max(0, limit - len(body))]
                else:
                    body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return bytes(body)
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionLost("the server closed the connection mid-body")

    async def _read_sse(self, conn: _HTTPConnection) -> None:
        """Deliver each ``message`` event's data as it arrives, until the server ends the
        stream (it does after the answer to our request)."""
        import h11

        buffer = b""
        while True:
            event = await conn.next_event()
            if isinstance(event, h11.EndOfMessage):
                return
            if isinstance(event, h11.ConnectionClosed):
                raise ConnectionLost("the server closed the SSE stream mid-event")
            if not isinstance(event, h11.Data):
                continue
            buffer += bytes(event.data).replace(b"\r\n", b"\n")
            while True:
                end = buffer.find(b"\n\n")
                if end < 0:
                    break
                block, buffer = buffer[:end], buffer[end + 2 :]
                self._sse_event(block)
            if len(buffer) > self._max:
                raise ProtocolError(f"an SSE event longer than {self._max} bytes")

    def _sse_event(self, block: bytes) -> None:
        kind = b"message"
        data: list[bytes] = []
        for line in block.split(b"\n"):
            if line.startswith(b"data:"):
                data.append(line[6:] if line[5:6] == b" " else line[5:])
            elif line.startswith(b"event:"):
                kind = line[6:].strip()
        if kind != b"message" or not data:
            return  # comments, priming events with no data, retry hints
        payload = b"\n".join(data)
        if not payload.strip():
            return
        try:
            message = _decoder.decode(payload)
        except msgspec.DecodeError as exc:
            raise ProtocolError(f"an SSE event is not a JSON-RPC message: {exc}") from None
        self.deliver(message)

    async def aclose(self) -> None:
        """End the session with a DELETE (best effort), then drop the pooled connections."""
        if self._closed:
            return
        with trio.CancelScope(shield=True):
            if self.session_id is not None:
                with trio.move_on_after(CLOSE_TIMEOUT):
                    try:
                        await self._exchange(b"DELETE", b"")
                    except ClientError:
                        pass
            self._closed = True
            idle, self._idle = self._idle, []
            for conn in idle:
                await conn.aclose()


# --------------------------------------------------------------------------- the client


class _Waiter:
    """Where a request's reply lands; the requesting task parks on it."""

    __slots__ = ("lost", "message", "task")

    def __init__(self) -> None:
        self.message: _Incoming | None = None
        self.task: Any = None
        self.lost: str | None = None


async def _default_on_request(method: str, params: Any) -> Any:
    if method == "ping":
        return {}
    raise RPCError(-32601, f"Method not found: {method}")


class Client:
    """One MCP session. Made by :func:`connect`; use it only inside that block."""

    def __init__(
        self,
        transport: Any,
        nursery: trio.Nursery,
        *,
        on_notification: NotificationHandler | None,
        on_request: RequestHandler | None,
    ) -> None:
        self._transport = transport
        self._nursery = nursery
        self._on_notification = on_notification
        self._notify_async = on_notification is not None and inspect.iscoroutinefunction(on_notification)
        self._on_request = on_request or _default_on_request
        self._pending: dict[Any, _Waiter] = {}
        self._next_id = 0
        self._lost: str | None = None
        #: The ``initialize`` result, once :meth:`initialize` has run.
        self.initialize_result: dict[str, Any] | None = None
        self.protocol_version: str | None = None
        if isinstance(transport, _HTTPTransport):
            transport.deliver = self._deliver

    # -- what the caller sees

    @property
    def pid(self) -> int | None:
        """The server's process id when this client spawned it (stdio), else None."""
        return self._transport.pid

    @property
    def session_id(self) -> str | None:
        """The Streamable HTTP session id the server assigned, if any."""
        return getattr(self._transport, "session_id", None)

    @property
    def server_info(self) -> dict[str, Any] | None:
        return (self.initialize_result or {}).get("serverInfo")

    @property
    def server_capabilities(self) -> dict[str, Any] | None:
        return (self.initialize_result or {}).get("capabilities")

    @property
    def lost(self) -> str | None:
        """Why the connection ended, once it has; None while it is up."""
        return self._lost

    async def initialize(
        self,
        *,
        protocol_version: str = LATEST_VERSION,
        capabilities: Mapping[str, Any] | None = None,
        client_info: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The handshake: ``initialize``, then ``notifications/initialized``. Returns the
        server's result; later HTTP requests carry the negotiated protocol version."""
        result = await self.request(
            "initialize",
            {
                "protocolVersion": protocol_version,
                "capabilities": dict(capabilities or {}),
                "clientInfo": dict(client_info or CLIENT_INFO),
            },
        )
        if not isinstance(result, dict):
            raise ProtocolError(f"initialize answered with {type(result).__name__}, not an object")
        self.initialize_result = result
        version = result.get("protocolVersion")
        self.protocol_version = version if isinstance(version, str) else protocol_version
        if isinstance(self._transport, _HTTPTransport):
            self._transport.protocol_version = self.protocol_version
        await self.notify("notifications/initialized")
        return result

    async def request(self, method: str, params: Any = None) -> Any:
        """Send a request and wait for its reply; returns ``result`` or raises
        :class:`RPCError`. ``params`` may be a ``msgspec.Raw`` holding encoded JSON."""
        if self._lost is not None:
            raise ConnectionLost(self._lost)
        self._next_id += 1
        rid = self._next_id
        data = _encoder.encode(_Request("2.0", rid, method, msgspec.UNSET if params is None else params))
        waiter = _Waiter()
        self._pending[rid] = waiter
        try:
            await self._send(data)
            if waiter.message is None and waiter.lost is None:
                if self._transport.inline_answers:
                    raise ProtocolError(f"the server's HTTP answer to {method} carried no reply")
                waiter.task = trio.lowlevel.current_task()

                def abort(_: Any) -> Any:
                    waiter.task = None
                    return trio.lowlevel.Abort.SUCCEEDED

                await trio.lowlevel.wait_task_rescheduled(abort)
        finally:
            del self._pending[rid]
        message = waiter.message
        if message is None:
            raise ConnectionLost(waiter.lost or "connection lost")
        if message.error is not msgspec.UNSET:
            error = message.error if isinstance(message.error, dict) else {}
            code = error.get("code")
            raise RPCError(code if isinstance(code, int) else 0, str(error.get("message", "")), error.get("data"))
        if message.result is msgspec.UNSET:
            raise ProtocolError(f"reply to {method} has neither result nor error")
        return message.result

    async def notify(self, method: str, params: Any = None) -> None:
        """Send a notification (no reply)."""
        if self._lost is not None:
            raise ConnectionLost(self._lost)
        await self._send(_encoder.encode(_Notification("2.0", method, msgspec.UNSET if params is None else params)))

    async def ping(self) -> None:
        await self.request("ping")

    async def list_tools(self) -> dict[str, Any]:
        return await self.request("tools/list", {})

    async def call_tool(self, name: str, arguments: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return await self.request("tools/call", {"name": name, "arguments": dict(arguments or {})})

    async def read_resource(self, uri: str) -> dict[str, Any]:
        return await self.request("resources/read", {"uri": uri})

    async def aclose(self) -> None:
        """Close the transport; requests still waiting fail with :class:`ConnectionLost`."""
        if self._lost is None:
            self._connection_lost("the client was closed")
        await self._transport.aclose()

    # -- internals

    async def _send(self, data: bytes) -> None:
        try:
            await self._transport.send(data)
        except ConnectionLost as exc:
            self._connection_lost(str(exc))
            raise

    def _deliver_raw(self, data: bytes | str) -> None:
        try:
            message = _decoder.decode(data)
        except msgspec.DecodeError as exc:
            raise ProtocolError(f"the server sent a message that is not JSON-RPC: {exc}: {data[:200]!r}") from None
        self._deliver(message)

    def _deliver(self, message: _Incoming) -> None:
        if message.method is msgspec.UNSET:
            waiter = self._pending.get(message.id) if type(message.id) is int else None
            if waiter is None or waiter.message is not None:
                return  # a late reply to a cancelled request, or a duplicate
            waiter.message = message
            if waiter.task is not None:
                trio.lowlevel.reschedule(waiter.task)
                waiter.task = None
        elif message.id is msgspec.UNSET:
            if self._on_notification is not None:
                params = None if message.params is msgspec.UNSET else message.params
                if self._notify_async:
                    self._nursery.start_soon(self._on_notification, message.method, params)
                else:
                    self._on_notification(message.method, params)
        else:
            self._nursery.start_soon(self._answer, message)

    async def _answer(self, message: _Incoming) -> None:
        params = None if message.params is msgspec.UNSET else message.params
        try:
            result = await self._on_request(message.method, params)
            reply = _Response("2.0", message.id, result=result)
        except RPCError as exc:
            reply = _Response("2.0", message.id, error={"code": exc.code, "message": exc.message})
        except Exception as exc:  # noqa: BLE001 - a bug in the handler: tell the server, keep the session
            reply = _Response("2.0", message.id, error={"code": -32603, "message": f"client handler failed: {exc}"})
        try:
            await self._send(_encoder.encode(reply))
        except ClientError:
            pass  # the connection is gone; there is no one to answer

    def _connection_lost(self, reason: str) -> None:
        if self._lost is not None:
            return
        self._lost = reason
        for waiter in self._pending.values():
            if waiter.message is None and waiter.lost is None:
                waiter.lost = reason
                if waiter.task is not None:
                    trio.lowlevel.reschedule(waiter.task)
                    waiter.task = None

    async def _read(self) -> None:
        """The reader task of message transports. It never raises: a broken peer is
        recorded as the reason the connection was lost, and every waiter is woken."""
        try:
            reason = await self._transport.receive_loop(self._deliver_raw)
        except ProtocolError as exc:
            reason = f"protocol error: {exc}"
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            reason = f"connection broke: {exc or type(exc).__name__}"
        self._connection_lost(reason)


# --------------------------------------------------------------------------- connecting


def parse_target(target: str | Sequence[str]) -> tuple[str, Any]:
    """``("stdio", argv)``, ``("ws", url)`` or ``("http", url)``; :class:`TargetError` otherwise."""
    if not isinstance(target, str):
        argv = list(target)
        if not argv:
            raise TargetError("an empty command")
        return "stdio", argv
    if target.startswith("stdio:"):
        argv = shlex.split(target[len("stdio:") :])
        if not argv:
            raise TargetError("stdio: needs a command, e.g. 'stdio:python -m mcp_trio serve'")
        return "stdio", argv
    scheme = target.split("://", 1)[0].lower() if "://" in target else ""
    if scheme in ("ws", "wss"):
        return "ws", target
    if scheme in ("http", "https"):
        return "http", target
    raise TargetError(f"unknown target {target!r}: use stdio:COMMAND, ws://, wss://, http:// or https://")


async def _open_stdio(argv: list[str], stack: AsyncExitStack, *, max_message_size: int, stderr: Any, cwd: Any, env: Any) -> _StdioTransport:
    try:
        process = await trio.lowlevel.open_process(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, cwd=cwd, env=env
        )
    except OSError as exc:
        raise ConnectError(f"cannot start {shlex.join(argv)}: {exc}") from None
    transport = _StdioTransport(process, max_message_size)
    stack.push_async_callback(transport.aclose)
    return transport


async def _open_ws(url: str, stack: AsyncExitStack, *, max_message_size: int, headers: Mapping[str, str], ssl_context: ssl.SSLContext | None) -> _WebSocketTransport:
    transport = await _WebSocketTransport.open(url, headers=headers, ssl_context=ssl_context, max_message_size=max_message_size)
    stack.push_async_callback(transport.aclose)
    return transport


@asynccontextmanager
async def connect(
    target: str | Sequence[str],
    *,
    on_notification: NotificationHandler | None = None,
    on_request: RequestHandler | None = None,
    headers: Mapping[str, str] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    stderr: Any = None,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> AsyncIterator[Client]:
    """Connect to an MCP server and yield a :class:`Client`; close it at the end of the block.

    ``target`` is ``stdio:COMMAND`` (or a list of arguments), ``ws(s)://...`` or
    ``http(s)://...``. ``headers`` go on the WebSocket handshake and every HTTP request
    (``Authorization``, say). ``ssl_context`` replaces the default, verifying one for
    ``wss://``/``https://``. ``stderr``, ``cwd`` and ``env`` apply to a spawned command
    (stderr is inherited by default). The client does not initialize by itself: call
    :meth:`Client.initialize` first (or don't, to test what a server does without it).
    """
    kind, where = parse_target(target)
    headers = dict(headers or {})
    try:
        async with AsyncExitStack() as stack:
            # The transport first: a WebSocket owns a nursery of its own, which must
            # outlive ours.
            transport: Any
            if kind == "stdio":
                transport = await _open_stdio(where, stack, max_message_size=max_message_size, stderr=stderr, cwd=cwd, env=env)
            elif kind == "ws":
                transport = await _open_ws(where, stack, max_message_size=max_message_size, headers=headers, ssl_context=ssl_context)
            else:
                transport = _HTTPTransport(where, headers=headers, ssl_context=ssl_context, max_message_size=max_message_size)
                stack.push_async_callback(transport.aclose)
            async with trio.open_nursery() as nursery:
                client = Client(transport, nursery, on_notification=on_notification, on_request=on_request)
                if kind != "http":
                    nursery.start_soon(client._read)
                try:
                    yield client
                finally:
                    client._connection_lost("the client was closed")
                    await transport.aclose()
                    nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # The reader never raises, so a group holds the block's own exception (or a
        # handler's): hand it back unwrapped, as a plain ``async with`` would.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
