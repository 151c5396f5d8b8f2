"""WebSocket: one JSON-RPC message per text frame, subprotocol ``mcp`` offered."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import trio

from ._errors import ClientError, ConnectError, ConnectionLost, ProtocolError, TargetError
from ._wire import CLOSE_TIMEOUT, READ_SIZE, Writer, open_stream


class WebSocketTransport:
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
        self._writer = Writer(stream, "the WebSocket")
        self.subprotocol: str | None = None

    @classmethod
    async def open(cls, url: str, *, headers: Mapping[str, str], ssl_context: ssl.SSLContext | None,
                   max_message_size: int, timeout: float) -> WebSocketTransport:
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
        stream = await open_stream(host, port, (ssl_context or ssl.create_default_context()) if tls else None, timeout)
        ws = WSConnection(ConnectionType.CLIENT)
        try:
            with trio.fail_after(timeout):
                await stream.send_all(ws.send(Request(
                    host=host_header, target=target, subprotocols=["mcp"], extra_headers=list(headers.items()),
                )))
                rejected: int | None = None
                body = b""
                while True:
                    chunk = await stream.receive_some(READ_SIZE)
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
            raise ConnectError(f"no WebSocket handshake answer from {url} within {timeout:g} s") from None
        except (trio.BrokenResourceError, OSError) as exc:
            await stream.aclose()
            raise ConnectError(f"cannot open {url}: {exc or type(exc).__name__}") from None
        except BaseException:
            await stream.aclose()
            raise

    async def send(self, data: bytes, headers: Any = None, call: Any = None) -> None:
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
                chunk = await self._stream.receive_some(READ_SIZE)
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

