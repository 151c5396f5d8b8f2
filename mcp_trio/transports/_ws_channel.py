"""One accepted WebSocket as a channel of whole messages, on wsproto: shared by every server.

``WebSocketChannel`` is the session's ``trio.abc.Channel[bytes]`` for a WebSocket whatever
accepted it: the WebSocket server (``websocket.py``, its own handshake) and ``/ws`` on the
HTTP port (``http.py``, the h1 engine's upgrade hand-off). The session's reader *is* the
WebSocket reader: ``receive`` reads the socket and turns wsproto frames into whole messages
(no reader task of its own, no channel hop), bounding what a partial message costs (one
``bytearray`` of its size). Both read a ``_sockets.SocketStream``, one trip through the
scheduler per operation at most.
"""

from __future__ import annotations

import logging
import struct
from typing import Any

import trio
from wsproto.frame_protocol import FrameProtocol, Opcode, ParseFailed

from .._limits import Limits
from ._sockets import READ_SIZE as RECEIVE_SIZE
from ._sockets import SocketStream

logger = logging.getLogger("mcp_trio.websocket")

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


def _text_frame(payload: bytes) -> list[bytes]:
    """An unmasked, unfragmented text frame (what a server sends), as header + payload."""
    size = len(payload)
    if size < 126:
        return [_SHORT_HEADERS[size], payload]
    if size < 65536:
        return [struct.pack("!BBH", 0x81, 126, size), payload]
    return [struct.pack("!BBQ", 0x81, 127, size), payload]


def _close_now(stream: trio.abc.Stream) -> bool:
    """Close ``stream``'s socket at once, without awaiting; False if it has none."""
    while isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    if isinstance(stream, trio.SocketStream):
        stream.socket.close()
        return True
    close_now = getattr(stream, "close_now", None)  # our SocketStream
    if close_now is None:
        return False
    close_now()
    return True


def _peer_host(stream: trio.abc.Stream) -> str | None:
    while isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    if isinstance(stream, SocketStream):
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
        "_kept",
        "_kept_started",
        "_write_nowait",
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
        "send_batch_nowait",
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
        #: The session on this channel (``serving.Connection``), set once it is built.
        self.connection: Any = None
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
        # Writing without waiting (``_channel.NowaitChannel``), on a plain socket only.
        self._kept: bytes | None = None  # what send_batch_nowait could not write yet
        self._kept_started = False  # part of it is on the wire: it holds the turn to write
        # A plain socket (ours, or the h1 engine's on /ws of the HTTP port): not TLS.
        self._write_nowait: Any = getattr(stream, "write_nowait", None)
        self.send_batch_nowait = self._send_batch_nowait if self._write_nowait is not None else None

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
        await self.flush()
        await self._write(b"".join(_text_frame(data)), data_frame=True)

    async def send_batch(self, messages: list[bytes]) -> None:
        """Write several messages, one text frame each, with one write."""
        await self.flush()
        if len(messages) == 1:
            frame = b"".join(_text_frame(messages[0]))
        else:
            parts: list[bytes] = []
            for message in messages:
                parts += _text_frame(message)
            frame = b"".join(parts)
        await self._write(frame, data_frame=True)

    def _send_batch_nowait(self, messages: list[bytes]) -> bool:
        """Write ``messages`` (one text frame each) now if the socket takes them all, when no
        other write is under way; else keep the rest for ``flush``. Never waits, never raises."""
        parts: list[bytes] = []
        for message in messages:
            parts += _text_frame(message)
        frame = b"".join(parts)
        if self._kept is not None:
            self._kept += frame
            return False
        if self._writing or self._torn or self._sent_close:
            self._kept = frame  # flush waits its turn, or raises what _write would
            return False
        sent = self._write_nowait(frame)
        if sent == len(frame):
            self.activity += 1
            return True
        self._kept = frame[sent:]
        if sent:
            # Part of a frame is on the wire: nothing else may be written before the rest.
            self._kept_started = True
            self._writing = True
            self._torn = True
        return False

    async def flush(self) -> None:
        """Write what ``send_batch_nowait`` kept (raising as ``send_batch`` would)."""
        kept = self._kept
        if kept is None:
            return
        self._kept = None
        if not self._kept_started:
            await self._write(kept, data_frame=True)
            return
        self._kept_started = False
        try:  # the rest of a frame already begun: it holds the turn (_writing) already
            await self._stream.send_all(kept)
            self._torn = False
        finally:
            self._end_write()
        self.activity += 1

    def _end_write(self) -> None:
        """Give up the turn to write: the next waiting writer goes on."""
        self._writing = False
        turn = self._turn
        if turn is not None:
            self._turn = None
            turn.set()

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
            self._end_write()
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
