"""The WebSocket transport: one MCP session per connection, one JSON-RPC message per text frame.

::

    TCP ─► handshake (h11: Host, Origin, capacity, auth) ─► WebSocketChannel ─► Connection actors
                                                                  ▲
                                  reaper (one task per server): heartbeat pings, idle timeout

The wire protocol is wsproto's, the sans-io WebSocket library trio-websocket is built on; the
I/O around it is ours, because a trio-websocket connection runs a reader task of its own and
hands messages to the session's reader through a memory channel. Here the session's reader
(``Connection``'s) *is* the WebSocket reader: ``WebSocketChannel.receive`` reads the socket and
turns wsproto frames into whole messages. That saves a task, a channel and a trip through the
scheduler per message, and lets us bound what a partial message costs: trio-websocket keeps
every fragment as an object of its own (one 1 MB message in 2-byte frames: ~30 MB held), here
a partial message is one ``bytearray`` of its size.

Choices a client can see:

* The subprotocol ``mcp`` is selected when the client offers it; a client offering none gets
  none. Every path is served (``/``, ``/ws``, ``/mcp``...).
* A binary frame closes the connection with 1003 (unsupported data) and a reason: the client's
  WebSocket library surfaces a close code and reason at once, whereas a JSON-RPC error with a
  null id would be unmatched by any request and could leave the client waiting forever.
  Requests already read are still answered before the close frame goes out.
* A message larger than ``Limits.max_message_size``, or in more than
  ``Limits.max_message_fragments`` frames, closes the connection with 1009 (message too big).
  A partial message is kept in one ``bytearray``, so it never costs more than its size.
* A request that is not a WebSocket upgrade gets 426; a forbidden ``Host`` or ``Origin`` 403;
  a server at ``Limits.max_connections`` (or shutting down) 503 with ``Retry-After``; a refused
  credential 401/403 with ``WWW-Authenticate`` (when an ``Authenticator`` is configured).
* Idle for ``Limits.idle_timeout`` (no message either way and nothing in flight): closed with
  1000 and reason ``idle timeout``. Quiet for ``Limits.heartbeat_interval``: pinged; no pong
  (nor anything else) within another interval: the TCP connection is dropped. Graceful
  shutdown: requests in flight get ``Limits.grace_period``, then the close code is 1001.
* A client's close frame is answered at once with the client's own code and reason (RFC 6455
  §5.5.1), also while the session drains at shutdown (then our 1001 is never sent).
* A client that stops reading stalls only its own writer; after ``Limits.send_timeout`` the
  connection is dropped (a frame is never half-sent and then continued).

Origin and Host (DNS rebinding defence) are checked at the handshake; see ``HandshakePolicy``.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import ipaddress
import logging
import math
import os
import socket as socket_module
import struct
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import h11
import trio
from wsproto.frame_protocol import FrameProtocol, Opcode, ParseFailed
from wsproto.utilities import generate_accept_token

from .._connection import Connection
from .._containment import run_session
from .._limiter import RateLimits
from .._limits import Limits
from .._server import Server
from .._supervisor import Supervisor
from ..protocol._errors import QuotaExceeded
from ._gate import check_head, parse_authority

if TYPE_CHECKING:
    import ssl

    from ..auth import Authenticator

logger = logging.getLogger("mcp_trio.websocket")

#: The subprotocol selected when the client offers it.
SUBPROTOCOL = "mcp"
#: Bytes asked of the socket per read.
RECEIVE_SIZE = 65536
#: Largest HTTP upgrade request head (request line and headers) we read, in bytes.
MAX_HANDSHAKE_SIZE = 16 * 1024
#: Seconds a client refused with 503 is asked to wait before it retries.
RETRY_AFTER = 5

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_TOO_BIG = 1009

_TEXT = Opcode.TEXT
_BINARY = Opcode.BINARY
_PING = Opcode.PING
_CLOSE = Opcode.CLOSE
_PING_PAYLOAD = b"mcp-trio"
#: A text frame's header for each payload length below 126 (the usual small message).
_SHORT_HEADERS = tuple(bytes((0x81, n)) for n in range(126))
#: accept() errors that mean "out of resources for now": wait and retry (as trio does).
_ACCEPT_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})


def _text_frame(payload: bytes) -> list[bytes]:
    """An unmasked, unfragmented text frame (what a server sends), as header + payload."""
    size = len(payload)
    if size < 126:
        return [_SHORT_HEADERS[size], payload]
    if size < 65536:
        return [struct.pack("!BBH", 0x81, 126, size), payload]
    return [struct.pack("!BBQ", 0x81, 127, size), payload]


# -- socket I/O ---------------------------------------------------------------------------------
class SocketIO(trio.abc.Stream):
    """A connected TCP socket with one trip through the scheduler per operation at most.

    ``trio.SocketStream`` checkpoints after every read that did not wait and after every
    write, and parks a reader six coroutine frames deep. As stdio's ``PipeStream`` does for
    pipes: a read that had to wait returns as soon as the data is there; one that did not
    still yields once (``cancel_shielded_checkpoint``, so no data is lost to a cancellation);
    a write that completes at once does not yield (the writer has just yielded receiving
    what it writes). ``close_now`` closes synchronously (the reaper drops dead peers with it).
    """

    __slots__ = ("_sock",)

    def __init__(self, sock: socket_module.socket) -> None:
        sock.setblocking(False)
        self._sock = sock

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        sock = self._sock
        await trio.lowlevel.checkpoint_if_cancelled()
        waited = False
        while True:
            try:
                data = sock.recv(max_bytes or RECEIVE_SIZE)
            except BlockingIOError:
                if sock.fileno() < 0:
                    raise trio.ClosedResourceError("socket closed") from None
                await trio.lowlevel.wait_readable(sock)
                waited = True
            except OSError as exc:
                if sock.fileno() < 0:
                    raise trio.ClosedResourceError("socket closed") from None
                raise trio.BrokenResourceError(f"receive failed: {exc}") from exc
            else:
                break
        if not waited:
            await trio.lowlevel.cancel_shielded_checkpoint()
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        sock = self._sock
        await trio.lowlevel.checkpoint_if_cancelled()
        with memoryview(data) as view:
            sent = 0
            total = len(view)
            while sent < total:
                try:
                    sent += sock.send(view[sent:])
                except BlockingIOError:
                    await trio.lowlevel.wait_writable(sock)
                except OSError as exc:
                    if sock.fileno() < 0:
                        raise trio.ClosedResourceError("socket closed") from None
                    raise trio.BrokenResourceError(f"send failed: {exc}") from exc

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.wait_writable(self._sock)

    async def send_eof(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket_module.SHUT_WR)
        await trio.lowlevel.checkpoint()

    def close_now(self) -> None:
        if self._sock.fileno() >= 0:
            trio.lowlevel.notify_closing(self._sock)
            self._sock.close()

    async def aclose(self) -> None:
        self.close_now()
        await trio.lowlevel.checkpoint()

    def peer_host(self) -> str | None:
        try:
            return str(self._sock.getpeername()[0])
        except OSError:
            return None


def _close_now(stream: trio.abc.Stream) -> bool:
    """Close ``stream``'s socket at once, without awaiting; False if it has none."""
    while isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    if isinstance(stream, SocketIO):
        stream.close_now()
    elif isinstance(stream, trio.SocketStream):
        stream.socket.close()
    else:
        return False
    return True


def _peer_host(stream: trio.abc.Stream) -> str | None:
    while isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    if isinstance(stream, SocketIO):
        return stream.peer_host()
    if isinstance(stream, trio.SocketStream):
        try:
            return str(stream.socket.getpeername()[0])
        except OSError:
            return None
    return None


# -- the channel --------------------------------------------------------------------------------
class WebSocketChannel(trio.abc.Channel[bytes]):
    """One accepted WebSocket as a channel of whole messages: ``receive`` returns one text
    message's UTF-8 bytes (``trio.EndOfChannel`` when the peer closes, or when a limit ended
    the session: ``close_code`` then says which); ``send``/``send_batch`` write text frames.

    The session's reader calls ``receive``, so reading the socket, answering pings and the
    peer's close frame all happen in that one task, on wsproto's ``FrameProtocol`` (its
    parser, without the event objects a ``wsproto.Connection`` builds per message). The
    session's writer calls ``send_batch``; the reaper's ping tasks and ``aclose`` write
    control frames. Writes take turns (a frame is never interleaved with another), and
    ``aclose`` runs the closing handshake, bounded by ``Limits.handshake_timeout``.
    """

    __slots__ = (
        "_close_timeout",
        "_closed",
        "_fragments",
        "_frames",
        "_got_close",
        "_listener",
        "_listener_done",
        "_max_fragments",
        "_max_size",
        "_parser_ok",
        "_parts",
        "_proto",
        "_read_done",
        "_reading",
        "_send_timeout",
        "_sent_close",
        "_shutting_down",
        "_stopped",
        "_stream",
        "_torn",
        "_turn",
        "_writing",
        "activity",
        "close_code",
        "close_reason",
        "closing",
        "connection",
        "dead",
        "idle_since",
        "ping_at",
        "quiet_since",
        "received",
        "seen_activity",
        "seen_received",
    )

    def __init__(self, stream: trio.abc.Stream, limits: Limits, shutting_down: trio.Event, *, trailing_data: bytes = b"") -> None:
        self._stream = stream
        self._proto = FrameProtocol(False, [])  # a server, no extensions (no compression)
        self._shutting_down = shutting_down
        self._max_size = limits.max_message_size
        self._max_fragments = limits.max_message_fragments
        self._send_timeout = limits.send_timeout
        self._close_timeout = limits.handshake_timeout
        self._frames: Any = None  # wsproto's frames from the data read last
        if trailing_data:  # frames the client sent right behind its upgrade request
            self._proto.receive_bytes(trailing_data)
            self._frames = self._proto.received_frames()
        self._parts: bytearray | None = None  # the message being gathered from fragments
        self._fragments = 0
        self._stopped = False  # receive() ended the session (peer closed or a limit crossed)
        self._parser_ok = True  # False once wsproto found a protocol error: read no more
        self._sent_close = False
        self._got_close = False
        self._writing = False
        self._turn: trio.Event | None = None  # set when the write in progress is done
        self._torn = False  # a write was cut short: the stream can carry nothing more
        self._reading = False
        self._read_done: trio.Event | None = None
        self._closed = False
        self._listener: trio.CancelScope | None = None  # answer_peer_close, while it runs
        self._listener_done: trio.Event | None = None
        #: Code and reason of our close frame (None: 1000, or 1001 when shutting down).
        self.close_code: int | None = None
        self.close_reason = ""
        #: The session on this channel (set by the server once it is built).
        self.connection: Connection | None = None
        # Counters the reaper compares between its rounds (an int increment on the hot path).
        self.received = 0  # socket reads that returned data
        self.activity = 0  # messages received or sent
        self.dead = False  # dropped without a closing handshake (no pong, or a stuck write)
        self.closing = False  # the reaper has asked the session to end
        self.seen_received = 0
        self.quiet_since = 0.0
        self.ping_at: float | None = None
        self.seen_activity = 0
        self.idle_since = 0.0

    # -- receiving --------------------------------------------------------------------------
    async def receive(self) -> bytes:
        """The next whole text message's bytes; ``trio.EndOfChannel`` when the session ends."""
        while True:
            frames = self._frames
            if frames is not None:
                try:
                    for opcode, payload, frame_finished, message_finished in frames:
                        if opcode is _TEXT:
                            data = payload.encode()
                            if message_finished and self._parts is None:
                                if len(data) > self._max_size:
                                    self._refuse(CLOSE_TOO_BIG, f"message of {len(data)} bytes exceeds the limit of {self._max_size} bytes")
                                self.activity += 1
                                return data
                            message = self._gather(data, frame_finished, message_finished)
                            if message is not None:
                                self.activity += 1
                                return message
                        elif opcode is _PING:
                            await self._send_control(self._proto.pong(payload))
                        elif opcode is _CLOSE:
                            await self._on_close(*payload)
                        elif opcode is _BINARY:
                            self._refuse(CLOSE_UNSUPPORTED_DATA, "binary frames are not supported: send each JSON-RPC message as one text frame")
                        # PONG: any data from the peer already counts as a sign of life.
                except ParseFailed as exc:
                    self._parser_ok = False
                    self._refuse(exc.code, f"protocol error: {exc}")
                self._frames = None
            if self._stopped:
                raise trio.EndOfChannel
            self._reading = True
            try:
                data = await self._stream.receive_some(RECEIVE_SIZE)
            finally:
                self._reading = False
                if self._read_done is not None:
                    self._read_done.set()
            if not data:
                self._stopped = True
                raise trio.EndOfChannel  # TCP closed without a close frame (1006)
            self.received += 1
            self._proto.receive_bytes(data)
            self._frames = self._proto.received_frames()

    def _gather(self, data: bytes, frame_finished: bool, message_finished: bool) -> bytes | None:
        """Add a piece of a fragmented (or partly received) message; the message when whole."""
        parts = self._parts
        if parts is None:
            parts = self._parts = bytearray()
            self._fragments = 0
        if len(parts) + len(data) > self._max_size:
            self._parts = None
            self._refuse(CLOSE_TOO_BIG, f"message of at least {len(parts) + len(data)} bytes exceeds the limit of {self._max_size} bytes")
        parts += data
        if message_finished:
            self._parts = None
            return bytes(parts)
        if frame_finished:
            self._fragments += 1
            if self._fragments >= self._max_fragments:
                self._parts = None
                self._refuse(CLOSE_TOO_BIG, f"message in more than {self._max_fragments} fragments")
        return None

    def _refuse(self, code: int, reason: str) -> None:
        """End the session because of what the peer sent: stop reading, close with ``code``.

        Requests already read still get their answers before the close frame.
        """
        logger.info("closing the connection (%d): %s", code, reason)
        self.close_code = code
        self.close_reason = reason
        self._stopped = True
        self._frames = None
        raise trio.EndOfChannel

    async def _on_close(self, code: int, reason: str) -> None:
        """The peer's close frame: answer it at once (nothing but our close frame may be sent
        after it, so waiting for requests in flight would only keep the peer waiting)."""
        await self._answer_close(code, reason)
        raise trio.EndOfChannel

    async def _answer_close(self, code: int, reason: str) -> None:
        """Reply to the peer's close frame with its own code and reason (RFC 6455 §5.5.1)."""
        logger.debug("peer closed the connection (%s %s)", code, reason)
        self._got_close = True
        self._stopped = True
        self._frames = None
        if not self._sent_close:
            self._sent_close = True
            await self._send_control(self._proto.close(code, reason))

    async def answer_peer_close(self) -> None:
        """Listen on while the session drains after it stopped reading (shutdown, idle timeout).

        The session's reader stops as soon as shutdown begins, while our close frame waits for
        the requests in flight (up to ``Limits.grace_period``). A peer that closes meanwhile
        gets its own close code back at once, as RFC 6455 §5.5.1 asks, not our 1001 seconds
        later as if we had closed first; its pings are answered. Its messages are dropped:
        the session takes no new request once it has stopped reading. Started by the server
        for the sessions it stops; ``aclose`` ends it before the closing handshake reads.
        """
        connection = self.connection
        assert connection is not None
        done = self._listener_done = trio.Event()
        try:
            with trio.CancelScope() as self._listener:
                await connection.input_done.wait()
                await self._listen_for_close()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the peer is gone: the writer finds out by itself
        finally:
            self._listener = None
            done.set()

    async def _listen_for_close(self) -> None:
        while not (self._stopped or self._sent_close or self._torn or self._closed or not self._parser_ok):
            frames = self._frames
            if frames is not None:
                try:
                    for frame in frames:
                        if frame.opcode is _CLOSE:
                            await self._answer_close(*frame.payload)
                            return
                        if frame.opcode is _PING:
                            await self._send_control(self._proto.pong(frame.payload))
                except ParseFailed as exc:
                    self._parser_ok = False
                    self.close_code, self.close_reason = exc.code, f"protocol error: {exc}"
                    return
                self._frames = None
            data = await self._stream.receive_some(RECEIVE_SIZE)
            if not data:
                self._stopped = True
                return
            self.received += 1
            self._proto.receive_bytes(data)
            self._frames = self._proto.received_frames()

    # -- sending ----------------------------------------------------------------------------
    async def send(self, data: bytes) -> None:
        """Write one message as one text frame."""
        await self._write(b"".join(_text_frame(data)), data_frame=True)

    async def send_batch(self, messages: list[bytes]) -> None:
        """Write several messages, one text frame each, with one write."""
        if len(messages) == 1:
            frame = b"".join(_text_frame(messages[0]))
        else:
            parts: list[bytes] = []
            for message in messages:
                parts += _text_frame(message)
            frame = b"".join(parts)
        await self._write(frame, data_frame=True)

    async def _write(self, frame: bytes | bytearray, *, data_frame: bool = False) -> None:
        """Write ``frame`` when no other write is under way (a frame is never interleaved)."""
        while self._writing:
            if self._turn is None:
                self._turn = trio.Event()
            await self._turn.wait()
        if self._torn:
            raise trio.BrokenResourceError("the connection was dropped")
        if data_frame and self._sent_close:
            if self._closed:
                raise trio.ClosedResourceError("the channel is closed")
            raise trio.BrokenResourceError("the WebSocket is closing")
        self._writing = True
        self._torn = True  # until the write completes: cut short, the stream is done
        try:
            await self._stream.send_all(frame)
            self._torn = False
        finally:
            self._writing = False
            turn = self._turn
            if turn is not None:
                self._turn = None
                turn.set()
        if data_frame:
            self.activity += 1

    async def _send_control(self, frame: bytes | bytearray) -> None:
        """Write a control frame from a task other than the writer: shielded, bounded."""
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + self._send_timeout
            await self._write(frame)
        if scope.cancelled_caught:
            raise trio.BrokenResourceError(f"the peer did not read for {self._send_timeout:g} s")

    async def ping(self) -> None:
        """Send a heartbeat ping (run by the reaper as a short task of its own)."""
        if self._closed or self._torn or self._sent_close:
            return
        try:
            await self._send_control(self._proto.ping(_PING_PAYLOAD))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            await self.drop()

    # -- closing ----------------------------------------------------------------------------
    def abort(self) -> bool:
        """Drop the TCP connection now, without a closing handshake (the peer sees 1006).

        Synchronous, so the reaper can call it: the session's reader then wakes with
        ``ClosedResourceError`` and the session ends as if the peer had gone. False when the
        stream has no socket to close at once (an in-memory one): then ``drop`` it.
        """
        self.dead = True
        self._torn = True
        return _close_now(self._stream)

    async def drop(self) -> None:
        """``abort``, for any stream."""
        if not self.abort():
            await trio.aclose_forcefully(self._stream)

    async def aclose(self) -> None:
        """Send our close frame (unless the peer's was answered), wait for the reply, close TCP.

        Called by the session's writer once everything has been written; idempotent. The
        closing handshake is bounded by ``Limits.handshake_timeout``, shielded or not.
        """
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._closed = True
        try:
            with trio.move_on_after(self._close_timeout):
                await self._closing_handshake()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(self._stream)

    async def _closing_handshake(self) -> None:
        if self._listener_done is not None:  # answer_peer_close is reading, or may start to
            if self._listener is not None:
                self._listener.cancel()
            await self._listener_done.wait()
        if self._torn or self._sent_close:
            return
        code = self.close_code
        if code is None:
            code, self.close_reason = (CLOSE_GOING_AWAY, "server shutting down") if self._shutting_down.is_set() else (CLOSE_NORMAL, "")
        self._sent_close = True
        await self._write(self._proto.close(code, self.close_reason))
        if not self._parser_ok:
            return  # nothing the peer sends can be understood any more
        if self._reading:  # the session's reader is still leaving receive_some: let it
            self._read_done = trio.Event()
            await self._read_done.wait()
        # Read on until the peer's close frame (or EOF), discarding anything else.
        while not self._got_close:
            if self._frames is not None:
                try:
                    for frame in self._frames:
                        if frame.opcode is _CLOSE:
                            self._got_close = True
                            break
                except ParseFailed:
                    return
                self._frames = None
                if self._got_close:
                    break
            data = await self._stream.receive_some(RECEIVE_SIZE)
            if not data:
                break
            self._proto.receive_bytes(data)
            self._frames = self._proto.received_frames()


# -- the handshake ------------------------------------------------------------------------------
def _hostname(authority: str) -> str | None:
    """``host`` from ``host[:port]`` or ``[v6]:port``, lowercased, without a trailing dot;
    None unless the whole value is one valid authority (``[::1]evil.com`` is not)."""
    parsed = parse_authority(authority)
    if parsed is None:
        return None
    return parsed[0] if ":" in parsed[0] else parsed[0].rstrip(".") or None


def _is_loopback(hostname: str) -> bool:
    if hostname == "localhost" or hostname.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


class HandshakePolicy:
    """Who may open a session, checked on the upgrade request before anything else.

    ``Host`` (DNS rebinding defence: a hostile page whose name resolves to 127.0.0.1 still
    sends its own name): loopback names (``localhost``, ``*.localhost``, ``127.0.0.0/8``,
    ``::1``) are always accepted, plus ``allowed_hosts`` when given (``"*"`` for any). With no
    ``allowed_hosts``, a server bound to loopback accepts nothing else, and a server bound to
    any other address (``0.0.0.0``, a LAN address) accepts any ``Host``: the names it is
    reached by are not known here (``serve_websocket`` logs a warning; the Origin check still
    keeps browsers out). This matches the HTTP transport.

    ``Origin`` (browsers always send it on a WebSocket upgrade; other clients usually do not):
    absent is accepted. With ``allowed_origins`` None, only loopback origins
    (``http://localhost:5173``, ``http://127.0.0.1``...) are accepted, wherever the server is
    bound; otherwise exactly the origins listed (``"https://app.example.com"``, compared
    without a trailing slash and case-insensitively), or any with ``"*"``. The opaque origin
    ``null`` (sandboxed frames, ``file:`` pages) is refused unless listed.
    """

    def __init__(self, bound_host: str | None, *, allowed_origins: Iterable[str] | None = None, allowed_hosts: Iterable[str] | None = None) -> None:
        self.loopback = bound_host is not None and _is_loopback(bound_host.strip("[]").lower())
        if allowed_hosts is not None:
            hosts = {host.strip().lower().strip("[]").rstrip(".") for host in allowed_hosts}
        else:
            hosts = set() if self.loopback else {"*"}
        self.any_host = "*" in hosts
        self.hosts = frozenset(hosts - {"*"})
        self.any_origin = allowed_origins is not None and "*" in allowed_origins
        self.origins = None if allowed_origins is None else frozenset(origin.strip().rstrip("/").lower() for origin in allowed_origins)

    def host_allowed(self, authority: str) -> bool:
        hostname = _hostname(authority)
        if hostname is None:
            return False
        return self.any_host or _is_loopback(hostname) or hostname in self.hosts

    def origin_allowed(self, origin: str | None) -> bool:
        if origin is None:
            return True
        normalized = origin.strip().rstrip("/").lower()
        if self.origins is not None:
            return self.any_origin or normalized in self.origins
        if normalized == "null":
            return False
        try:
            parts = urlsplit(normalized)
        except ValueError:
            return False
        hostname = _hostname(parts.netloc)
        return parts.scheme in ("http", "https") and hostname is not None and _is_loopback(hostname)


class _Refused(Exception):
    """The upgrade request is refused with an HTTP status (and a plain-text reason)."""

    def __init__(self, status: int, reason: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = tuple(headers)


async def _send_refusal(stream: trio.abc.Stream, refused: _Refused) -> None:
    from http import HTTPStatus

    try:
        phrase = HTTPStatus(refused.status).phrase
    except ValueError:
        phrase = "Error"
    body = (refused.reason + "\n").encode()
    head = [f"HTTP/1.1 {refused.status} {phrase}", "Content-Type: text/plain; charset=utf-8",
            f"Content-Length: {len(body)}", "Connection: close"]
    head += [f"{name}: {value}" for name, value in refused.headers]
    await stream.send_all(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)


def _tokens(headers: list[tuple[bytes, bytes]], name: bytes) -> list[str]:
    """The comma-separated tokens of every ``name`` header, stripped and lowercased."""
    return [token.strip().lower() for key, value in headers if key == name for token in value.decode("latin-1").split(",") if token.strip()]


def _one(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    values = [value for key, value in headers if key == name]
    if len(values) > 1:
        raise _Refused(400, f"more than one {name.decode()} header")
    return values[0].decode("latin-1") if values else None


# -- the server ---------------------------------------------------------------------------------
class WebSocketServer:
    """A running WebSocket endpoint, as ``serve_websocket`` reports it through ``task_status``.

    ``port`` is the first bound port (the one to use after binding port 0), ``addresses`` all
    of them; ``shutdown()`` starts the graceful shutdown; ``statistics()`` gives the counts.
    """

    def __init__(
        self,
        supervisor: Supervisor,
        policy: HandshakePolicy,
        *,
        authenticator: Authenticator | None = None,
        scheme: str = "ws",
    ) -> None:
        self.supervisor = supervisor
        self.limits = supervisor.limits
        self.policy = policy
        self.authenticator = authenticator
        self.scheme = scheme
        self.addresses: list[tuple[str, int]] = []
        #: Live sessions (accepted WebSockets).
        self.channels: set[WebSocketChannel] = set()
        #: TCP connections still in the opening handshake.
        self.handshaking = 0
        self.refused: dict[int, int] = {}
        self._handshakes: set[trio.CancelScope] = set()
        self._nursery: trio.Nursery | None = None
        self._accepting = trio.CancelScope()
        self._reaping = trio.CancelScope()

    @property
    def port(self) -> int:
        return self.addresses[0][1]

    @property
    def urls(self) -> list[str]:
        return [f"{self.scheme}://{f'[{host}]' if ':' in host else host}:{port}/" for host, port in self.addresses]

    def shutdown(self) -> None:
        """Begin graceful shutdown (the same as ``supervisor.shutdown()``)."""
        self.supervisor.shutdown()

    def accept_stream(self, stream: trio.abc.Stream) -> None:
        """Serve one connection accepted elsewhere (any trio ``Stream``: in-memory in tests,
        a socket handed over by another listener), handshake included, like a TCP one."""
        if self._nursery is None or self.supervisor.shutting_down.is_set():
            raise trio.ClosedResourceError("the server is not accepting connections")
        self._nursery.start_soon(self._handle, stream)

    def statistics(self) -> dict[str, Any]:
        return {"connections": len(self.channels), "handshaking": self.handshaking, "refused": dict(self.refused)}

    # -- serving ----------------------------------------------------------------------------
    async def _serve(self, listeners: Sequence[trio.abc.Listener[Any]], *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Accept connections until shutdown, then let the sessions drain (bounded)."""
        limits = self.limits
        async with trio.open_nursery() as sessions:
            self._nursery = sessions
            for listener in listeners:
                inner = listener.transport_listener if isinstance(listener, trio.SSLListener) else listener
                if isinstance(inner, trio.SocketListener):
                    host, port = inner.socket.getsockname()[:2]
                    self.addresses.append((str(host), int(port)))
            sessions.start_soon(self._accept, listeners)
            sessions.start_soon(self._reap)
            task_status.started()
            await self.supervisor.shutting_down.wait()
            logger.info("websocket: shutting down; %d session(s) draining", len(self.channels))
            self._accepting.cancel()
            self._reaping.cancel()
            for scope in list(self._handshakes):
                scope.cancel()
            for channel in list(self.channels):
                sessions.start_soon(channel.answer_peer_close)
            # Sessions drain by themselves (grace period, then the writer, then the closing
            # handshake); this bound only catches what would outlive all three.
            sessions.cancel_scope.deadline = trio.current_time() + limits.grace_period + limits.send_timeout + limits.handshake_timeout + 1.0

    async def _accept(self, listeners: Sequence[trio.abc.Listener[Any]]) -> None:
        with self._accepting:
            async with trio.open_nursery() as nursery:
                for listener in listeners:
                    nursery.start_soon(self._accept_from, listener)

    async def _accept_from(self, listener: trio.abc.Listener[Any]) -> None:
        """Accept connections (like ``trio.serve_listeners``, minus a frame per connection)."""
        sessions = self._nursery
        assert sessions is not None
        async with listener:
            while True:
                try:
                    stream = await listener.accept()
                except OSError as exc:
                    if exc.errno not in _ACCEPT_CAPACITY_ERRNOS:
                        raise
                    logger.error("accept: %s (out of file descriptors?); retrying in 100 ms", os.strerror(exc.errno or 0))
                    await trio.sleep(0.1)
                    continue
                if isinstance(stream, trio.SocketStream):
                    stream = SocketIO(socket_module.socket(fileno=stream.socket.detach()))
                sessions.start_soon(self._handle, stream)

    def _refuse(self, status: int) -> None:
        self.refused[status] = self.refused.get(status, 0) + 1
        if status in (503, 408):
            self.supervisor.metrics.connections_refused += 1

    async def _handle(self, stream: trio.abc.Stream) -> None:
        """One TCP connection: the opening handshake, then one MCP session."""
        try:
            if self.handshaking >= self.limits.max_connections:
                self._refuse(503)  # a flood of connections that never finish their handshake
                return
            opened = await self._open(stream)
            if opened is None:
                return
            trailing, principal, quota = opened
            try:
                channel = WebSocketChannel(stream, self.limits, self.supervisor.shutting_down, trailing_data=trailing)
                connection = Connection(self.supervisor, channel, principal=principal, peer=_peer_host(stream))
                channel.connection = connection
                channel.quiet_since = channel.idle_since = trio.current_time()
                self.channels.add(channel)
                try:
                    await run_session(f"WebSocket session {connection.session_id}", connection.run)
                finally:
                    self.channels.discard(channel)
            finally:
                self.supervisor.quotas.release("sessions", quota)
        except Exception:
            logger.exception("websocket connection failed")
        finally:
            await trio.aclose_forcefully(stream)

    async def _open(self, stream: trio.abc.Stream) -> tuple[bytes, Any, Any] | None:
        """The opening handshake, bounded by ``Limits.handshake_timeout``; None if refused."""
        self.handshaking += 1
        try:
            with trio.move_on_after(self.limits.handshake_timeout) as scope:
                self._handshakes.add(scope)
                try:
                    return await self._handshake(stream)
                finally:
                    self._handshakes.discard(scope)
            if not self.supervisor.shutting_down.is_set():
                logger.debug("handshake not completed within %g s; dropped", self.limits.handshake_timeout)
                self._refuse(408)
            return None
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return None
        finally:
            self.handshaking -= 1

    async def _handshake(self, stream: trio.abc.Stream) -> tuple[bytes, Any, Any] | None:
        """(bytes after the upgrade request, the principal, the session quota it holds), or None."""
        http = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HANDSHAKE_SIZE)
        request: h11.Request | None = None
        try:
            while True:
                event = http.next_event()
                if event is h11.NEED_DATA:
                    http.receive_data(await stream.receive_some(RECEIVE_SIZE))
                elif type(event) is h11.Request:
                    request = event
                    refusal = check_head(list(event.headers))  # before waiting for any body
                    if refusal is not None:
                        raise _Refused(refusal.status, refusal.message)
                elif type(event) is h11.Data:
                    raise _Refused(400, "a WebSocket upgrade request has no body")
                elif type(event) is h11.EndOfMessage or event is h11.PAUSED:
                    break
                else:  # ConnectionClosed: the peer left before finishing its request
                    return None
            assert request is not None
            key, subprotocol, principal = await self._check(request)
            try:
                quota = self.supervisor.quotas.acquire("sessions", principal, _peer_host(stream))
            except QuotaExceeded as exc:
                raise _Refused(429, exc.message) from None
        except h11.RemoteProtocolError as exc:
            # Never quote h11's message: it holds the offending line, which may carry a token.
            self._refuse(exc.error_status_hint)
            await _send_refusal(stream, _Refused(exc.error_status_hint, "bad HTTP request: malformed request line or header"))
            return None
        except _Refused as refused:
            self._refuse(refused.status)
            logger.debug("upgrade refused (%d): %s", refused.status, refused.reason)
            await _send_refusal(stream, refused)
            return None
        head = ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade",
                f"Sec-WebSocket-Accept: {generate_accept_token(key.encode()).decode()}"]
        if subprotocol is not None:
            head.append(f"Sec-WebSocket-Protocol: {subprotocol}")
        trailing, _ = http.trailing_data
        try:
            await stream.send_all(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        except BaseException:
            self.supervisor.quotas.release("sessions", quota)
            raise
        return bytes(trailing), principal, quota

    async def _check(self, request: h11.Request) -> tuple[str, str | None, Any]:
        """Validate the upgrade request: (key, subprotocol, principal), or ``_Refused``."""
        headers = list(request.headers)
        if request.method != b"GET":
            raise _Refused(405, "a WebSocket upgrade is a GET request", [("Allow", "GET")])
        if "websocket" not in _tokens(headers, b"upgrade") or "upgrade" not in _tokens(headers, b"connection"):
            raise _Refused(426, f'this endpoint serves MCP over WebSocket: connect with a WebSocket client (subprotocol "{SUBPROTOCOL}")',
                           [("Upgrade", "websocket"), ("Connection", "Upgrade")])
        if _one(headers, b"sec-websocket-version") != "13":
            raise _Refused(426, "unsupported WebSocket version: 13 is supported", [("Sec-WebSocket-Version", "13")])
        key = _one(headers, b"sec-websocket-key")
        try:
            valid_key = key is not None and len(base64.b64decode(key.strip(), validate=True)) == 16
        except ValueError:
            valid_key = False
        if not valid_key:
            raise _Refused(400, "missing or malformed Sec-WebSocket-Key")
        host = _one(headers, b"host") or ""
        if not self.policy.host_allowed(host):
            raise _Refused(403, "the Host header names a host that is not allowed (DNS rebinding protection)")
        origin = _one(headers, b"origin")
        if not self.policy.origin_allowed(origin):
            raise _Refused(403, "the Origin header names an origin that is not allowed")
        if self.supervisor.shutting_down.is_set():
            raise _Refused(503, "server shutting down", [("Retry-After", str(RETRY_AFTER))])
        if len(self.channels) >= self.limits.max_connections:
            raise _Refused(503, f"server at capacity ({self.limits.max_connections} connections)", [("Retry-After", str(RETRY_AFTER))])
        principal = None
        if self.authenticator is not None:
            from ..auth import AuthError

            try:
                principal = await self.authenticator.authenticate(headers)
            except AuthError as exc:
                raise _Refused(exc.status, exc.description, self.authenticator.refusal_headers(exc)) from None
        subprotocol = SUBPROTOCOL if SUBPROTOCOL in _tokens(headers, b"sec-websocket-protocol") else None
        return key.strip(), subprotocol, principal  # type: ignore[union-attr]

    # -- heartbeat and idle timeout ---------------------------------------------------------
    async def _reap(self) -> None:
        """One task for every session: pings quiet peers, drops dead ones, closes idle ones.

        Each round compares counters the sessions bump (an int increment on the hot path, no
        clock read), so a deadline is met to within a round: a quarter of the shortest of
        ``heartbeat_interval`` and ``idle_timeout`` (0 disables either).
        """
        heartbeat = self.limits.heartbeat_interval
        idle = self.limits.idle_timeout
        periods = [period for period in (heartbeat, idle) if 0 < period < math.inf]
        if not periods:
            return
        with self._reaping:
            while True:
                await trio.sleep(min(periods) / 4)
                now = trio.current_time()
                for channel in self.channels:
                    if not channel.closing and not channel.dead:
                        self._watch(channel, now, heartbeat, idle)

    def _watch(self, channel: WebSocketChannel, now: float, heartbeat: float, idle: float) -> None:
        if channel.received != channel.seen_received or not channel._reading:
            # Heard from the peer (or not listening to it: then its silence proves nothing).
            channel.seen_received = channel.received
            channel.quiet_since = now
            channel.ping_at = None
        elif heartbeat > 0:
            if channel.ping_at is None:
                if now - channel.quiet_since >= heartbeat:
                    channel.ping_at = now
                    assert self._nursery is not None
                    self._nursery.start_soon(channel.ping)
            elif now - channel.ping_at >= heartbeat:
                assert channel.connection is not None
                logger.info("session %s: no pong within %g s; dropping the connection", channel.connection.session_id, heartbeat)
                if not channel.abort():
                    assert self._nursery is not None
                    self._nursery.start_soon(channel.drop)
                return
        connection = channel.connection
        assert connection is not None
        if channel.activity != channel.seen_activity or connection.in_flight:
            channel.seen_activity = channel.activity
            channel.idle_since = now
        elif idle > 0 and now - channel.idle_since >= idle:
            logger.debug("session %s idle for %g s; closing", connection.session_id, idle)
            channel.closing = True
            channel.close_code = CLOSE_NORMAL
            channel.close_reason = "idle timeout"
            connection.stop_reading()
            assert self._nursery is not None
            self._nursery.start_soon(channel.answer_peer_close)


async def serve_websocket(
    server: Server,
    limits: Limits | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    allowed_origins: Iterable[str] | None = None,
    allowed_hosts: Iterable[str] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    authenticator: Authenticator | None = None,
    handle_signals: bool = False,
    listeners: Sequence[trio.abc.Listener[Any]] | None = None,
    reuse_port: bool = False,
    rate_limits: RateLimits | None = None,
    task_status: trio.TaskStatus[WebSocketServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``server`` over WebSocket (``wss://`` with ``ssl_context``) until shut down.

    Reports a ``WebSocketServer`` through ``task_status`` once listening (its ``port`` is the
    real one when ``port`` is 0). Returns after a graceful shutdown (``supervisor.shutdown()``,
    or SIGINT/SIGTERM when ``handle_signals``): new connections are refused, sessions stop
    reading, requests in flight get ``Limits.grace_period``, then each connection closes with
    1001. ``allowed_origins``/``allowed_hosts``: see ``HandshakePolicy``. ``authenticator``:
    checked once per connection at the handshake; its principal applies to the whole session.
    ``listeners``: accept from these instead of binding ``host``/``port`` (pre-bound sockets;
    an empty list serves only the streams given to ``WebSocketServer.accept_stream``).
    ``reuse_port``: bind with ``SO_REUSEPORT``, so several processes (``--workers``) share
    the port and the kernel spreads connections over them.
    """
    limits = limits or Limits()
    if listeners is not None:
        bound: list[Any] = list(listeners)
    elif reuse_port:
        bound = await _reuse_port_listeners(host, port, ssl_context)
    elif ssl_context is None:
        bound = await trio.open_tcp_listeners(port, host=host)
    else:
        bound = await trio.open_ssl_over_tcp_listeners(port, ssl_context, host=host, https_compatible=True)
    policy = HandshakePolicy(host, allowed_origins=allowed_origins, allowed_hosts=allowed_hosts)
    if policy.any_host and allowed_hosts is None:
        logger.warning("serving on %s with no allowed_hosts: the Host header is not checked (DNS rebinding)", host)
    async with trio.open_nursery() as nursery:
        supervisor: Supervisor = await nursery.start(Supervisor(server, limits, rate_limits=rate_limits).run)
        if handle_signals:
            nursery.start_soon(supervisor.watch_signals)
        endpoint = WebSocketServer(supervisor, policy, authenticator=authenticator, scheme="ws" if ssl_context is None else "wss")
        try:
            async with trio.open_nursery() as serving:
                await serving.start(endpoint._serve, bound)
                if endpoint.addresses:
                    logger.info("serving MCP over WebSocket at %s", ", ".join(endpoint.urls))
                task_status.started(endpoint)
            # _serve has returned: shutdown has begun and every session has ended.
        finally:
            supervisor.close()
            nursery.cancel_scope.cancel()


async def _reuse_port_listeners(host: str, port: int, ssl_context: ssl.SSLContext | None) -> list[Any]:
    """One listening socket on ``host:port`` with ``SO_REUSEPORT`` set before ``bind``."""
    family = trio.socket.AF_INET6 if ":" in host else trio.socket.AF_INET
    sock = trio.socket.socket(family, trio.socket.SOCK_STREAM)
    try:
        sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEADDR, 1)
        sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEPORT, 1)
        await sock.bind((host, port))
        sock.listen(socket_module.SOMAXCONN)
    except OSError:
        sock.close()
        raise
    listener: trio.abc.Listener[Any] = trio.SocketListener(sock)
    if ssl_context is not None:
        listener = trio.SSLListener(listener, ssl_context, https_compatible=True)
    return [listener]
