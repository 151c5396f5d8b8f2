"""A raw HTTP/1.1 client for tests (h11 over trio sockets): exact headers and bodies, SSE.

``request`` sends one request on a fresh connection and returns the whole response.
``open_request`` yields the response head and reads the body as it comes (SSE streams).
``McpHttp`` speaks MCP Streamable HTTP by hand on top: it keeps the session id and sends
the protocol version header, so a test sends exactly the message it means.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import h11
import trio

ACCEPT_BOTH = "application/json, text/event-stream"
INIT_PARAMS = {
    "protocolVersion": "2025-11-25",
    "capabilities": {"sampling": {}, "elicitation": {}, "roots": {"listChanged": True}},
    "clientInfo": {"name": "raw-http-test-client", "version": "1.0"},
}


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip()

    def events(self) -> list[SseEvent]:
        return parse_sse(self.body)


@dataclass
class SseEvent:
    id: str | None = None
    event: str = "message"
    data: str = ""
    retry: int | None = None

    def json(self) -> Any:
        return json.loads(self.data)


def parse_sse(text: bytes) -> list[SseEvent]:
    """Events of a complete SSE body (comments skipped; a retry-only block is kept)."""
    events = []
    for block in text.decode().replace("\r\n", "\n").split("\n\n"):
        event = SseEvent()
        seen = False
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            seen = True
            if name == "id":
                event.id = value
            elif name == "event":
                event.event = value
            elif name == "data":
                event.data = f"{event.data}\n{value}" if event.data else value
            elif name == "retry":
                event.retry = int(value)
        if seen:
            events.append(event)
    return events


class Exchange:
    """One request on its own connection; the response is read as it arrives."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.CLIENT)
        self.status = 0
        self.headers: dict[str, str] = {}
        self._buffer = b""
        self.ended = False

    async def _next_event(self) -> Any:
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                data = await self.stream.receive_some(65536)
                self.conn.receive_data(data)
                continue
            return event

    async def read_head(self) -> None:
        event = await self._next_event()
        while isinstance(event, h11.InformationalResponse):
            event = await self._next_event()
        if isinstance(event, h11.ConnectionClosed):
            raise ConnectionError("server closed the connection without a response")
        assert isinstance(event, h11.Response), event
        self.status = event.status_code
        self.headers = {k.decode().lower(): v.decode() for k, v in event.headers}

    async def read_chunk(self) -> bytes | None:
        """The next piece of the body, or None at its end."""
        if self.ended:
            return None
        event = await self._next_event()
        if isinstance(event, h11.Data):
            return bytes(event.data)
        self.ended = True
        return None

    async def read_body(self) -> bytes:
        parts = []
        while (chunk := await self.read_chunk()) is not None:
            parts.append(chunk)
        return b"".join(parts)

    async def next_event(self) -> SseEvent | None:
        """The next SSE event (comments skipped), or None when the stream ends."""
        while True:
            end = self._buffer.find(b"\n\n")
            if end >= 0:
                block, self._buffer = self._buffer[: end + 2], self._buffer[end + 2 :]
                events = parse_sse(block)
                if events:
                    return events[0]
                continue
            chunk = await self.read_chunk()
            if chunk is None:
                return None
            self._buffer += chunk


def _head(method: str, path: str, port: int, headers: dict[str, str] | None, body: bytes | None) -> h11.Request:
    merged = {"host": f"127.0.0.1:{port}"}
    for name, value in (headers or {}).items():
        merged[name.lower()] = value
    if body is not None and "content-length" not in merged and "transfer-encoding" not in merged:
        merged["content-length"] = str(len(body))
    return h11.Request(method=method, target=path, headers=list(merged.items()))


@asynccontextmanager
async def open_request(port: int, method: str, path: str = "/mcp", headers: dict[str, str] | None = None,
                       body: bytes | None = None) -> AsyncIterator[Exchange]:
    """Send a request; yields the exchange with the response head read."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        exchange = Exchange(stream)
        head = _head(method, path, port, headers, body)
        data = exchange.conn.send(head)
        if body is not None:
            data += exchange.conn.send(h11.Data(data=body)) + exchange.conn.send(h11.EndOfMessage())
        elif method in ("GET", "DELETE", "HEAD"):
            data += exchange.conn.send(h11.EndOfMessage())
        await stream.send_all(data)
        await exchange.read_head()
        yield exchange


async def request(port: int, method: str, path: str = "/mcp", headers: dict[str, str] | None = None,
                  body: bytes | None = None) -> Response:
    async with open_request(port, method, path, headers, body) as exchange:
        return Response(exchange.status, exchange.headers, await exchange.read_body())


@dataclass
class McpHttp:
    """MCP over Streamable HTTP by hand: one session, exact messages."""

    port: int
    session_id: str | None = None
    protocol_version: str | None = "2025-11-25"
    ids: Any = field(default_factory=lambda: itertools.count(1))

    def headers(self, **extra: str) -> dict[str, str]:
        headers = {"accept": ACCEPT_BOTH, "content-type": "application/json"}
        if self.session_id is not None:
            headers["mcp-session-id"] = self.session_id
        if self.protocol_version is not None:
            headers["mcp-protocol-version"] = self.protocol_version
        headers.update({k.replace("_", "-"): v for k, v in extra.items()})
        return headers

    async def post(self, message: dict[str, Any] | bytes, **extra: str) -> Response:
        body = message if isinstance(message, bytes) else json.dumps(message).encode()
        return await request(self.port, "POST", headers=self.headers(**extra), body=body)

    @asynccontextmanager
    async def post_streaming(self, message: dict[str, Any], **extra: str) -> AsyncIterator[Exchange]:
        async with open_request(self.port, "POST", headers=self.headers(**extra), body=json.dumps(message).encode()) as exchange:
            yield exchange

    @asynccontextmanager
    async def get_stream(self, **extra: str) -> AsyncIterator[Exchange]:
        headers = self.headers(**{"accept": "text/event-stream", **extra})
        headers.pop("content-type")
        async with open_request(self.port, "GET", headers=headers) as exchange:
            yield exchange

    def message(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": next(self.ids), "method": method}
        if params is not None:
            message["params"] = params
        return message

    async def call(self, method: str, params: dict[str, Any] | None = None, **extra: str) -> Any:
        """A request whose answer is JSON or SSE; returns the final reply as a dict."""
        message = self.message(method, params)
        response = await self.post(message, **extra)
        assert response.status == 200, (response.status, response.body)
        if response.content_type == "application/json":
            return response.json()
        replies = [e.json() for e in response.events() if e.data and "method" not in e.json()]
        assert len(replies) == 1, response.body
        return replies[0]

    async def notify(self, method: str, params: dict[str, Any] | None = None) -> Response:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        return await self.post(message)

    async def initialize(self, params: dict[str, Any] | None = None) -> Response:
        saved, self.protocol_version = self.protocol_version, None
        response = await self.post(self.message("initialize", params or INIT_PARAMS))
        self.protocol_version = saved
        assert response.status == 200, (response.status, response.body)
        self.session_id = response.headers.get("mcp-session-id")
        assert (await self.notify("notifications/initialized")).status == 202
        return response

    async def delete(self) -> Response:
        headers = self.headers()
        headers.pop("content-type")
        return await request(self.port, "DELETE", headers=headers)
