"""JSON-RPC on the wire for the client: message structs, one encoder, one decoder, a writer.

Built once at import (msgspec's advice): every transport decodes with the same decoder and
the client encodes with the same encoder.
"""

from __future__ import annotations

import ssl
from typing import Any

import msgspec
import trio

from ._errors import ConnectError, ConnectionLost

#: Largest message accepted from a server (a stdio line, a WebSocket message, an HTTP body
#: or SSE event); the server's own default limit is the same.
DEFAULT_MAX_MESSAGE_SIZE = 4 * 1024 * 1024
#: How long closing may take: the child's exit after EOF on its stdin, the WebSocket close
#: handshake, the HTTP DELETE that ends the session. Then the child is killed / we give up.
CLOSE_TIMEOUT = 5.0
#: How long opening a transport may take: spawning the command, the TCP connection, TLS and
#: the WebSocket handshake.
DEFAULT_CONNECT_TIMEOUT = 30.0
#: Kept for callers of the first client: the same as ``DEFAULT_CONNECT_TIMEOUT``.
CONNECT_TIMEOUT = DEFAULT_CONNECT_TIMEOUT

READ_SIZE = 65536


class Incoming(msgspec.Struct):
    """Any JSON-RPC message; which fields are set tells what it is."""

    id: Any = msgspec.UNSET
    method: Any = msgspec.UNSET
    params: Any = msgspec.UNSET
    result: Any = msgspec.UNSET
    error: Any = msgspec.UNSET


class OutRequest(msgspec.Struct):
    jsonrpc: str
    id: int
    method: str
    params: Any = msgspec.UNSET  # a dict, or msgspec.Raw bytes already encoded


class OutNotification(msgspec.Struct):
    jsonrpc: str
    method: str
    params: Any = msgspec.UNSET


class OutResponse(msgspec.Struct):
    jsonrpc: str
    id: Any
    result: Any = msgspec.UNSET
    error: Any = msgspec.UNSET


encoder = msgspec.json.Encoder()
decoder = msgspec.json.Decoder(Incoming)
batch_decoder = msgspec.json.Decoder(Incoming | list[Incoming])


class Writer:
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


async def open_stream(host: str, port: int, ssl_context: ssl.SSLContext | None, timeout: float) -> trio.abc.Stream:
    """A TCP connection, with TLS when given a context; :class:`ConnectError` if it fails."""
    try:
        with trio.fail_after(timeout):
            stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)  # TCP_NODELAY is trio's default
            if ssl_context is not None:
                tls = trio.SSLStream(stream, ssl_context, server_hostname=host, https_compatible=True)
                await tls.do_handshake()
                stream = tls
    except trio.TooSlowError:
        raise ConnectError(f"cannot connect to {host}:{port}: no answer within {timeout:g} s") from None
    except (OSError, trio.BrokenResourceError) as exc:
        raise ConnectError(f"cannot connect to {host}:{port}: {exc or type(exc).__name__}") from None
    return stream
