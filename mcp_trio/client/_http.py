"""Streamable HTTP: each message is one POST; the answer comes back on it, as JSON or as an
SSE stream (which may carry notifications and server requests first).

* **A bounded pool.** At most ``max_connections`` keep-alive connections are in use or idle
  (``DEFAULT_MAX_CONNECTIONS``); a request finding them all busy waits for one. An idle
  connection older than ``POOL_IDLE_TIMEOUT`` is closed rather than reused, and a reused
  connection the server closed meanwhile is retried once on a fresh one (nothing answered is
  ever sent twice). Long streams (the GET listen stream, ``subscriptions/listen``) get a
  connection of their own, outside the pool.
* **Resuming.** A POST's SSE stream that ends before the request's answer (the server closed
  it to save a connection, SEP-1699, or it broke) is resumed with ``GET`` and
  ``Last-Event-ID`` after the server's ``retry`` delay; the GET listen stream
  (:meth:`HTTPTransport.listen`) reconnects the same way for as long as the client is open.
* **Auth.** Static headers go on every request; a token provider is asked for a bearer token
  before the first request and again, once, after a 401.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import msgspec
import trio

from ._errors import ClientError, ConnectionLost, HTTPError, ProtocolError, TargetError
from ._wire import CLOSE_TIMEOUT, READ_SIZE, Incoming, batch_decoder, decoder, open_stream

#: Connections to one server, in use and idle together. A request finding all of them busy
#: waits for one: a client never opens more sockets than this, however many tasks call it.
DEFAULT_MAX_CONNECTIONS = 16
#: An idle pooled connection older than this is closed instead of reused (servers close
#: idle keep-alive connections too; hypercorn after 5 s by default).
POOL_IDLE_TIMEOUT = 30.0
#: Wait before reconnecting an SSE stream when the server gave no ``retry`` field.
SSE_RECONNECT_DELAY = 1.0
#: The longest wait between reconnection attempts of the GET stream after failures.
MAX_RECONNECT_DELAY = 30.0
#: How many times in a row one request's stream is resumed without delivering anything new.
MAX_RESUMES = 5
_ERROR_BODY_LIMIT = 4096  # bytes of an HTTP error body kept for the exception message

#: ``async provider(refresh) -> token``: a bearer token for the ``Authorization`` header;
#: ``refresh`` is True when the server refused the last one (401).
TokenProvider = Callable[[bool], Awaitable[str]]
Deliver = Callable[[Incoming, Any], None]


class _HTTPConnection:
    """One keep-alive HTTP/1.1 connection driven by h11."""

    def __init__(self, stream: trio.abc.Stream, max_event: int) -> None:
        import h11

        self.stream = stream
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=max_event)
        self.used = False
        self.idle_since = 0.0

    async def next_event(self) -> Any:
        import h11

        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            data = await self.stream.receive_some(READ_SIZE)
            self.h11.receive_data(data)

    def reusable(self) -> bool:
        import h11

        conn = self.h11
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
            return True
        return False

    def close_now(self) -> None:
        """Drop the socket with no checkpoint (the connection is spent or we are closing)."""
        stream = getattr(self.stream, "transport_stream", self.stream)
        sock = getattr(stream, "socket", None)
        if sock is not None:
            sock.close()

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            await self.stream.aclose()


class _Stream:
    """Where an SSE stream got to: the last event id and the server's reconnection delay."""

    __slots__ = ("delivered", "last_id", "retry")

    def __init__(self) -> None:
        self.last_id: bytes | None = None
        self.retry: float | None = None
        self.delivered = 0


class HTTPTransport:
    """The Streamable HTTP client side of one session (see the module docstring)."""

    inline_answers = True
    pid = None

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str],
        ssl_context: ssl.SSLContext | None,
        max_message_size: int,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        connect_timeout: float,
        token_provider: TokenProvider | None = None,
    ) -> None:
        parts = urlsplit(url)
        if not parts.hostname:
            raise TargetError(f"no host in {url!r}")
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._tls = parts.scheme.lower() == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._tls else 80)
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        netloc = f"[{self._host}]" if ":" in self._host else self._host
        default_port = self._port == (443 if self._tls else 80)
        self._host_header = (netloc if default_port else f"{netloc}:{self._port}").encode()
        self._extra = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        self._ssl = ssl_context if ssl_context is not None else (ssl.create_default_context() if self._tls else None)
        self._max = max_message_size
        self._connect_timeout = connect_timeout
        self._idle: list[_HTTPConnection] = []
        self._slots = trio.Semaphore(max_connections)
        self.max_connections = max_connections
        self._streams: set[_HTTPConnection] = set()
        self._provider = token_provider
        self._token: bytes | None = None
        self._closed = False
        self.deliver: Deliver = lambda message, call: None
        self.session_id: str | None = None
        self.protocol_version: str | None = None
        #: Connections opened so far (pooled and dedicated), for tests and statistics.
        self.opened = 0

    # -- connections --------------------------------------------------------------------------
    async def _open(self) -> _HTTPConnection:
        stream = await open_stream(self._host, self._port, self._ssl, self._connect_timeout)
        self.opened += 1
        return _HTTPConnection(stream, self._max + 65536)

    async def _acquire(self) -> _HTTPConnection:
        try:
            self._slots.acquire_nowait()
        except trio.WouldBlock:
            await self._slots.acquire()
        try:
            now = trio.current_time()
            while self._idle:
                conn = self._idle.pop()
                if now - conn.idle_since < POOL_IDLE_TIMEOUT:
                    return conn
                conn.close_now()
            return await self._open()
        except BaseException:
            self._slots.release()
            raise

    def _release(self, conn: _HTTPConnection, pooled: bool) -> None:
        if pooled:
            self._slots.release()
        if pooled and not self._closed and conn.reusable():
            conn.idle_since = trio.current_time()
            self._idle.append(conn)
        else:
            self._streams.discard(conn)
            conn.close_now()

    async def _discard(self, conn: _HTTPConnection, pooled: bool) -> None:
        if pooled:
            self._slots.release()
        self._streams.discard(conn)
        await conn.aclose()

    # -- requests -----------------------------------------------------------------------------
    def _headers(self, method: bytes, length: int, extra: Sequence[tuple[bytes, bytes]] | None,
                 last_event_id: bytes | None) -> list[tuple[bytes, bytes]]:
        headers = [(b"host", self._host_header)]
        if method == b"POST":
            headers += [
                (b"content-type", b"application/json"),
                (b"accept", b"application/json, text/event-stream"),
                (b"content-length", b"%d" % length),
            ]
        elif method == b"GET":
            headers.append((b"accept", b"text/event-stream"))
        if self.session_id is not None:
            headers.append((b"mcp-session-id", self.session_id.encode()))
        if self.protocol_version is not None:
            headers.append((b"mcp-protocol-version", self.protocol_version.encode()))
        if last_event_id is not None:
            headers.append((b"last-event-id", last_event_id))
        if extra:
            headers += extra
        if self._token is not None:
            headers.append((b"authorization", b"Bearer " + self._token))
        return headers + self._extra

    async def _refresh_token(self, refresh: bool) -> None:
        assert self._provider is not None
        token = await self._provider(refresh)
        if not isinstance(token, str) or not token:
            raise ClientError("the token provider returned no token: it must return the bearer token as a non-empty str")
        self._token = token.encode()

    async def send(self, data: bytes, headers: Sequence[tuple[bytes, bytes]] | None = None, call: Any = None) -> None:
        """POST one message; deliver what comes back (with ``call``, the request it answers)."""
        await self._request(b"POST", data, headers, call, pooled=True)

    async def send_dedicated(self, data: bytes, headers: Sequence[tuple[bytes, bytes]] | None = None, call: Any = None) -> None:
        """POST a request whose answer is a long stream (``subscriptions/listen``), on a
        connection of its own so that it holds no pool slot."""
        await self._request(b"POST", data, headers, call, pooled=False)

    async def _request(self, method: bytes, body: bytes, extra: Any, call: Any, *, pooled: bool) -> None:
        if self._provider is not None and self._token is None:
            await self._refresh_token(False)
        stream = _Stream()
        try:
            await self._exchange(method, body, extra, call, stream, pooled=pooled)
        except HTTPError as exc:
            if exc.status != 401 or self._provider is None:
                raise
            await self._refresh_token(True)  # refused before it ran: safe to send again
            await self._exchange(method, body, extra, call, stream, pooled=pooled)
        if call is None or stream.last_id is None:
            return
        # The stream ended before the answer: resume it where it stopped (SEP-1699).
        resumes = 0
        while call.message is None and call.lost is None and stream.last_id is not None:
            if resumes >= MAX_RESUMES:
                raise ConnectionLost(f"the server's SSE stream for a request ended {MAX_RESUMES} times "
                                     "without news or its answer")
            await trio.sleep(SSE_RECONNECT_DELAY if stream.retry is None else stream.retry)
            before = stream.delivered
            await self._exchange(b"GET", b"", None, call, stream, pooled=False)
            resumes = 0 if stream.delivered > before else resumes + 1

    async def _exchange(self, method: bytes, body: bytes, extra: Any, call: Any, stream: _Stream, *, pooled: bool) -> None:
        """One HTTP request. A reused connection the server closed while it was idle
        (keep-alive timeout) fails before any answer; the request then goes on the next
        pooled connection, or a fresh one. Nothing answered is retried."""
        import h11

        if self._closed:
            raise ConnectionLost("the client is closed")
        while True:
            conn = await self._acquire() if pooled else await self._open()
            if not pooled:
                self._streams.add(conn)
            reused = conn.used
            conn.used = True
            answered = False
            try:
                request = h11.Request(method=method, target=self._path,
                                      headers=self._headers(method, len(body), extra, stream.last_id if method == b"GET" else None))
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
                await self._read_response(conn, response, call, stream)
            except (trio.BrokenResourceError, trio.ClosedResourceError, h11.RemoteProtocolError, OSError) as exc:
                await self._discard(conn, pooled)
                if reused and not answered:
                    continue
                if isinstance(exc, h11.RemoteProtocolError):
                    raise ProtocolError(f"bad HTTP from the server: {exc}") from None
                if stream.last_id is not None and call is not None:
                    return  # a stream that broke mid-way: the caller resumes it
                raise ConnectionLost(f"the HTTP connection broke: {exc or type(exc).__name__}") from None
            except HTTPError:
                self._release(conn, pooled)  # the error body was read whole: the connection is fine
                raise
            except ConnectionLost:
                await self._discard(conn, pooled)
                if stream.last_id is not None and call is not None:
                    return
                raise
            except BaseException:
                await self._discard(conn, pooled)  # an unread or half-read response: the connection is spent
                raise
            self._release(conn, pooled)
            return

    async def _read_response(self, conn: _HTTPConnection, response: Any, call: Any, stream: _Stream) -> None:
        status = response.status_code
        headers = {name.lower(): value for name, value in response.headers}
        if not 200 <= status < 300:
            retry_after = headers.get(b"retry-after")
            try:
                seconds = float(retry_after) if retry_after is not None else None
            except ValueError:
                seconds = None
            body = await self._read_body(conn, _ERROR_BODY_LIMIT, truncate=True)
            if call is not None and body.startswith(b"{"):
                # 2026-07-28 answers a refused request with a status *and* its JSON-RPC error:
                # the error is the answer (McpError); a body naming no request of ours is not.
                try:
                    message = decoder.decode(body)
                except msgspec.DecodeError:
                    message = None
                if message is not None and message.error is not msgspec.UNSET and type(message.id) is int:
                    self.deliver(message, call)
                    if call.message is not None:
                        return
            raise HTTPError(status, body, seconds)
        session = headers.get(b"mcp-session-id")
        if session is not None:
            self.session_id = session.decode("ascii", "replace")
        content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if content_type == b"text/event-stream":
            await self._read_sse(conn, call, stream)
            return
        body = await self._read_body(conn, self._max)
        if content_type == b"application/json" and body.strip():
            try:
                decoded = batch_decoder.decode(body)
            except msgspec.DecodeError as exc:
                raise ProtocolError(f"the server answered with bad JSON: {exc}") from None
            for message in decoded if isinstance(decoded, list) else (decoded,):
                self.deliver(message, call)

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

    async def _read_sse(self, conn: _HTTPConnection, call: Any, stream: _Stream) -> None:
        """Deliver each ``message`` event's data as it arrives, until the server ends the
        stream (it does after the answer to our request, or to make us reconnect)."""
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
                self._sse_event(block, call, stream)
            if len(buffer) > self._max:
                raise ProtocolError(f"an SSE event longer than {self._max} bytes")

    def _sse_event(self, block: bytes, call: Any, stream: _Stream) -> None:
        kind = b"message"
        data: list[bytes] = []
        for line in block.split(b"\n"):
            if line.startswith(b"data:"):
                data.append(line[6:] if line[5:6] == b" " else line[5:])
            elif line.startswith(b"event:"):
                kind = line[6:].strip()
            elif line.startswith(b"id:"):
                value = line[3:].strip()
                if b"\0" not in value:
                    stream.last_id = value or None
            elif line.startswith(b"retry:"):
                value = line[6:].strip()
                if value.isdigit():
                    stream.retry = int(value) / 1000
        if kind != b"message" or not data:
            return  # comments, priming events with no data, retry hints
        payload = b"\n".join(data)
        if not payload.strip():
            return
        try:
            message = decoder.decode(payload)
        except msgspec.DecodeError as exc:
            raise ProtocolError(f"an SSE event is not a JSON-RPC message: {exc}") from None
        stream.delivered += 1
        self.deliver(message, call)

    # -- the GET listen stream ----------------------------------------------------------------
    async def listen(self) -> str:
        """Hold the session's standalone GET stream (server-initiated notifications and
        requests) until the client closes, reconnecting with ``Last-Event-ID`` after the
        server's ``retry`` delay, or after failures with a delay that doubles up to
        ``MAX_RECONNECT_DELAY``. Returns why it stopped for good: the server offers no GET
        stream (405), or the session is gone (404)."""
        stream = _Stream()
        failures = 0
        stale = False
        while not self._closed:
            try:
                if self._provider is not None and (self._token is None or stale):
                    await self._refresh_token(stale)
                    stale = False
                await self._exchange(b"GET", b"", None, None, stream, pooled=False)
                failures = 0
            except HTTPError as exc:
                if exc.status == 405:
                    return "the server offers no GET stream (HTTP 405)"
                if exc.status == 404:
                    return "the server ended the session (HTTP 404 on the GET stream)"
                if exc.status == 401:
                    stale = True  # the provider is asked for a fresh token on the next attempt
                if exc.status == 400 and stream.last_id is not None:
                    stream.last_id = None  # the stream to resume is gone: start a new one
                failures += 1
            except ClientError:  # a broken connection, a refused one, a bad stream: try again
                if self._closed:
                    break
                failures += 1
            if failures:
                delay = min(MAX_RECONNECT_DELAY, SSE_RECONNECT_DELAY * 2 ** (failures - 1))
            else:
                delay = SSE_RECONNECT_DELAY if stream.retry is None else stream.retry
            await trio.sleep(delay)
        return "the client was closed"

    # -- closing ------------------------------------------------------------------------------
    async def aclose(self) -> None:
        """End the session with a DELETE (best effort), then drop every connection."""
        if self._closed:
            return
        with trio.CancelScope(shield=True):
            if self.session_id is not None:
                with trio.move_on_after(CLOSE_TIMEOUT):
                    try:
                        await self._exchange(b"DELETE", b"", None, None, _Stream(), pooled=True)
                    except ClientError:
                        pass
            self._closed = True
            idle, self._idle = self._idle, []
            for conn in idle:
                conn.close_now()
            for conn in list(self._streams):
                conn.close_now()
