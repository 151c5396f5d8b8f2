"""The WebSocket transport, end to end: trio-websocket's client (and a raw frame-level one)
against ``serve_websocket`` with the demo app.

Tests that cross a time limit run on in-memory streams (``WebSocketServer.accept_stream``)
under ``autojump_clock``, so they are exact and fast; the others use real sockets on port 0.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import tracemalloc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import pytest
import trio
import trio.testing
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    WebSocketConnection,
    open_websocket_url,
    wrap_client_stream,
)
from wsproto.frame_protocol import FrameProtocol, Opcode

from mcp_trio import Limits, Server
from mcp_trio.demo import server as demo
from mcp_trio.protocol._errors import SHUTTING_DOWN
from mcp_trio.serving._connection import _MAX_BATCH, _WRITER_SLACK
from mcp_trio.transports.websocket import (
    WebSocketServer,
    serve_websocket,
)

from mcp_trio.transports._gate import HostPolicy as HandshakePolicy

from .helpers import INIT_PARAMS, JsonRpcPeer

ECHO = {"name": "echo", "arguments": {"text": "hello"}}


# -- peers -------------------------------------------------------------------------------------
class WsClient(JsonRpcPeer):
    """JSON-RPC over a trio-websocket connection: the same conveniences as ``RawClient``."""

    def __init__(self, ws: WebSocketConnection) -> None:
        super().__init__()
        self.ws = ws

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_message(json.dumps(message))

    async def receive_fresh(self) -> dict[str, Any]:
        return json.loads(await self.ws.get_message())

    async def closed(self) -> ConnectionClosed:
        """Read until the server closes; the close (code and reason)."""
        with pytest.raises(ConnectionClosed) as info:
            while True:
                self.backlog.append(await self.receive_fresh())
        return info.value


class RawWs:
    """A frame-level WebSocket client on any stream, for what trio-websocket will not send:
    fragments, binary frames, bad frames, pings left unanswered."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.proto = FrameProtocol(True, [])
        self._frames: Any = iter(())
        self.pings = 0

    async def handshake(self, *, host: str = "localhost", origin: str | None = None, extra: bytes = b"") -> tuple[int, dict[str, str], bytes]:
        key = base64.b64encode(os.urandom(16)).decode()
        head = f"GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mcp\r\n"
        if origin is not None:
            head += f"Origin: {origin}\r\n"
        await self.stream.send_all((head + "\r\n").encode() + extra)
        return await read_http_response(self.stream, self.proto)

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def send_text(self, text: str, *, fin: bool = True) -> None:
        await self.stream.send_all(self.proto.send_data(text, fin))

    async def send_json(self, message: dict[str, Any]) -> None:
        await self.send_text(json.dumps(message))

    async def receive_frame(self) -> Any:
        """The next frame (``None`` at EOF); answers nothing by itself."""
        while True:
            frame = next(self._frames, None)
            if frame is not None:
                if frame.opcode is Opcode.PING:
                    self.pings += 1
                return frame
            data = await self.stream.receive_some(65536)
            if not data:
                return None
            self.proto.receive_bytes(data)
            self._frames = self.proto.received_frames()

    async def receive_json(self) -> dict[str, Any]:
        while True:
            frame = await self.receive_frame()
            assert frame is not None, "connection closed"
            if frame.opcode is Opcode.TEXT:
                return json.loads(frame.payload)

    async def close_frame(self) -> tuple[int, str] | None:
        """Read until the server's close frame: (code, reason), or None at EOF without one."""
        while True:
            frame = await self.receive_frame()
            if frame is None:
                return None
            if frame.opcode is Opcode.CLOSE:
                return frame.payload  # type: ignore[no-any-return]


async def read_http_response(stream: trio.abc.Stream, proto: FrameProtocol | None = None) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of an HTTP response (bytes after a 101 go to ``proto``)."""
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        data = await stream.receive_some(65536)
        if not data:
            raise EOFError(f"connection closed during the HTTP response: {buffer!r}")
        buffer += data
    head, _, rest = buffer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    if status == 101:
        if proto is not None and rest:
            proto.receive_bytes(rest)
        return status, headers, b""
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        data = await stream.receive_some(65536)
        if not data:
            break
        rest += data
    return status, headers, rest


# -- servers -----------------------------------------------------------------------------------
@asynccontextmanager
async def serving(limits: Limits | None = None, *, app: Server = demo, **options: Any) -> AsyncIterator[WebSocketServer]:
    """Run ``serve_websocket`` on port 0 (or on ``listeners=[]``: in memory) for the block;
    leaving it shuts the server down gracefully and waits until ``serve_websocket`` returns."""
    options.setdefault("port", 0)
    async with trio.open_nursery() as nursery:
        endpoint: WebSocketServer = await nursery.start(partial(serve_websocket, app, limits, **options))
        endpoint.test_streams = []  # type: ignore[attr-defined]
        try:
            yield endpoint
        finally:
            endpoint.shutdown()
            # Raw clients answer no close frame: let the server see them go instead of
            # waiting out its closing handshake.
            for stream in endpoint.test_streams:  # type: ignore[attr-defined]
                await trio.aclose_forcefully(stream)


def memory_stream(endpoint: WebSocketServer, pair: Callable[[], Any] = trio.testing.memory_stream_pair) -> trio.abc.Stream:
    """A client stream whose other end the server serves (handshake included)."""
    client, server = pair()
    endpoint.accept_stream(server)
    endpoint.test_streams.append(client)  # type: ignore[attr-defined]
    return client  # type: ignore[no-any-return]


async def connect_memory(endpoint: WebSocketServer, nursery: trio.Nursery, pair: Callable[[], Any] = trio.testing.memory_stream_pair) -> WsClient:
    ws = await wrap_client_stream(nursery, memory_stream(endpoint, pair), "localhost", "/", subprotocols=["mcp"])
    return WsClient(ws)


def url(endpoint: WebSocketServer) -> str:
    return f"ws://127.0.0.1:{endpoint.port}/"


async def wait_for(predicate: Callable[[], bool], step: float = 0.01) -> None:
    while not predicate():
        await trio.sleep(step)


# -- end to end --------------------------------------------------------------------------------
async def test_session_end_to_end_over_trio_websocket() -> None:
    """initialize, tools/call, progress, cancellation and sampling, on the demo app."""
    with trio.fail_after(20):
        async with serving() as endpoint, open_websocket_url(url(endpoint), subprotocols=["mcp"]) as ws:
            assert ws.subprotocol == "mcp"
            client = WsClient(ws)
            init = await client.initialize()
            assert init["result"]["serverInfo"]["name"] == "mcp-trio-demo"

            reply = await client.request("tools/call", ECHO)
            assert reply["result"]["content"] == [{"type": "text", "text": "hello"}]

            # progress: notifications tagged with our token, then the result
            reply_id = client.new_id()
            await client.send({"jsonrpc": "2.0", "id": reply_id, "method": "tools/call",
                               "params": {"name": "sleep", "arguments": {"seconds": 0.3}, "_meta": {"progressToken": "p1"}}})
            reply = await client.reply_to(reply_id)
            assert reply["result"]["content"][0]["text"] == "slept 0.3 s"
            progress = [m for m in client.backlog if m.get("method") == "notifications/progress"]
            assert len(progress) >= 2
            assert all(m["params"]["progressToken"] == "p1" for m in progress)
            assert progress[-1]["params"]["progress"] == pytest.approx(0.3)
            client.backlog.clear()

            # cancellation: the cancelled call is never answered, the session goes on
            cancelled_id = client.new_id()
            await client.send({"jsonrpc": "2.0", "id": cancelled_id, "method": "tools/call",
                               "params": {"name": "sleep", "arguments": {"seconds": 60}}})
            await wait_for(lambda: endpoint.supervisor.statistics()["in_flight"] == 1)
            await client.notify("notifications/cancelled", {"requestId": cancelled_id, "reason": "changed my mind"})
            await wait_for(lambda: endpoint.supervisor.statistics()["in_flight"] == 0)
            assert (await client.request("ping"))["result"] == {}
            assert all(m.get("id") != cancelled_id for m in client.backlog)

            # sampling: the server asks us, we answer, the tool returns what we said
            call_id = client.new_id()
            await client.send({"jsonrpc": "2.0", "id": call_id, "method": "tools/call",
                               "params": {"name": "test_sampling", "arguments": {"prompt": "ping?"}}})
            sampling = await client.receive_until(lambda m: m.get("method") == "sampling/createMessage")
            assert sampling["params"]["messages"][0]["content"]["text"] == "ping?"
            await client.send({"jsonrpc": "2.0", "id": sampling["id"], "result": {
                "role": "assistant", "content": {"type": "text", "text": "pong!"}, "model": "test-model"}})
            reply = await client.reply_to(call_id)
            assert reply["result"]["content"][0]["text"] == "LLM response: pong!"


async def test_subprotocol_is_optional() -> None:
    with trio.fail_after(10):
        async with serving() as endpoint, open_websocket_url(url(endpoint)) as ws:
            assert ws.subprotocol is None
            client = WsClient(ws)
            await client.initialize()
            assert (await client.request("tools/call", ECHO))["result"]["content"][0]["text"] == "hello"


async def test_one_message_per_text_frame_and_pipelining() -> None:
    """Many requests written at once are all answered, each reply in a frame of its own."""
    with trio.fail_after(10):
        async with serving() as endpoint:
            stream = await trio.open_tcp_stream("127.0.0.1", endpoint.port)
            endpoint.test_streams.append(stream)  # type: ignore[attr-defined]
            raw = RawWs(stream)
            assert (await raw.handshake(host=f"127.0.0.1:{endpoint.port}"))[0] == 101
            await raw.send_json({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": INIT_PARAMS})
            assert (await raw.receive_json())["id"] == 0
            frames = b"".join(raw.proto.send_data(json.dumps({"jsonrpc": "2.0", "id": i, "method": "tools/call",
                                                              "params": {"name": "echo", "arguments": {"text": str(i)}}}))
                              for i in range(1, 101))
            await raw.send_raw(frames)
            replies = {}
            while len(replies) < 100:
                message = await raw.receive_json()
                replies[message["id"]] = message["result"]["content"][0]["text"]
            assert replies == {i: str(i) for i in range(1, 101)}
            await stream.aclose()


async def test_frames_sent_with_the_upgrade_request_are_not_lost() -> None:
    with trio.fail_after(10):
        async with serving(listeners=[]) as endpoint:
            raw = RawWs(memory_stream(endpoint))
            early = FrameProtocol(True, []).send_data(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
            status, headers, _ = await raw.handshake(extra=bytes(early))
            assert status == 101 and headers["sec-websocket-protocol"] == "mcp"
            assert await raw.receive_json() == {"jsonrpc": "2.0", "id": 1, "result": {}}


async def test_peer_close_ends_the_session() -> None:
    with trio.fail_after(10):
        async with serving() as endpoint:
            async with open_websocket_url(url(endpoint), subprotocols=["mcp"]) as ws:
                await WsClient(ws).initialize()
                assert endpoint.statistics()["connections"] == 1
            await wait_for(lambda: endpoint.statistics()["connections"] == 0)
            assert endpoint.supervisor.statistics()["connections"] == 0


# -- the closing handshake (RFC 6455 §5.5.1) ------------------------------------------------------
# trio-websocket's client keeps the close frame that answers its own in ``ws.closed``.
@pytest.mark.parametrize("code", [1000, 4000])
async def test_client_close_is_answered_with_the_clients_code(code: int) -> None:
    with trio.fail_after(10):
        async with serving() as endpoint, open_websocket_url(url(endpoint)) as ws:
            await WsClient(ws).initialize()
            await ws.aclose(code, "done")
            assert ws.closed is not None
            assert (ws.closed.code, ws.closed.reason) == (code, "done")


async def draining(endpoint: WebSocketServer, nursery: trio.Nursery, seconds: float) -> WsClient:
    """A session with a ``sleep(seconds)`` call in flight, on a server that has begun to shut down."""
    client = await connect_memory(endpoint, nursery)
    await client.initialize()
    await client.send({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "sleep", "arguments": {"seconds": seconds}}})
    await wait_for(lambda: endpoint.supervisor.statistics()["in_flight"] == 1)
    endpoint.shutdown()
    return client


async def test_client_close_during_graceful_shutdown_is_answered_at_once_with_its_code(autojump_clock: trio.testing.MockClock) -> None:
    """Shutdown stops the session's reader at once, while our close waits out the grace period
    for the call in flight: the client's close (sent in that window) still gets its own code
    back, at once, not our 1001 once the grace period is over."""
    with trio.fail_after(100):
        async with serving(Limits(grace_period=30), listeners=[]) as endpoint, trio.open_nursery() as nursery:
            client = await draining(endpoint, nursery, 60)
            await trio.sleep(1)
            closing = trio.current_time()
            await client.ws.aclose(1000)
            assert client.ws.closed is not None
            assert (client.ws.closed.code, client.ws.closed.reason) == (1000, None)
            assert trio.current_time() - closing < 1  # not at the end of the 30 s grace period
            await wait_for(lambda: endpoint.statistics()["connections"] == 0)


async def test_pings_during_graceful_shutdown_are_answered(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(100):
        async with serving(Limits(grace_period=30), listeners=[]) as endpoint, trio.open_nursery() as nursery:
            client = await draining(endpoint, nursery, 5)
            with trio.fail_after(1):
                await client.ws.ping(b"still there?")
            # Then the call is answered and the server closes, as the one going away (1001).
            closed = await client.closed()
            assert (closed.reason.code, closed.reason.reason) == (1001, "server shutting down")
            assert client.backlog[0]["result"]["content"][0]["text"] == "slept 5 s"


# -- bad input -------------------------------------------------------------------------------
async def test_binary_frame_closes_with_1003_after_answering_what_was_read() -> None:
    with trio.fail_after(10):
        async with serving() as endpoint, open_websocket_url(url(endpoint)) as ws:
            client = WsClient(ws)
            await client.initialize()
            await client.send({"jsonrpc": "2.0", "id": 50, "method": "tools/call",
                               "params": {"name": "sleep", "arguments": {"seconds": 0.2}}})
            await wait_for(lambda: endpoint.supervisor.statistics()["in_flight"] == 1)
            await ws.send_message(b'{"jsonrpc": "2.0", "id": 51, "method": "ping"}')
            closed = await client.closed()
            assert closed.reason.code == 1003
            assert "text frame" in (closed.reason.reason or "")
            assert [m["id"] for m in client.backlog] == [50]  # answered before the close
            assert "result" in client.backlog[0]


async def test_oversized_message_closes_with_1009() -> None:
    with trio.fail_after(10):
        async with serving(Limits(max_message_size=1000)) as endpoint, open_websocket_url(url(endpoint)) as ws:
            client = WsClient(ws)
            await client.initialize()
            fits = {"name": "echo", "arguments": {"text": "x" * 800}}
            assert (await client.request("tools/call", fits))["result"]["content"][0]["text"] == "x" * 800
            await client.send({"jsonrpc": "2.0", "id": 99, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "x" * 1000}}})
            closed = await client.closed()
            assert closed.reason.code == 1009
            assert "exceeds the limit of 1000 bytes" in (closed.reason.reason or "")


async def test_oversized_fragmented_message_closes_with_1009_before_it_is_whole() -> None:
    with trio.fail_after(10):
        async with serving(Limits(max_message_size=1000), listeners=[]) as endpoint:
            raw = RawWs(memory_stream(endpoint))
            assert (await raw.handshake())[0] == 101
            for _ in range(11):
                await raw.send_text("x" * 100, fin=False)  # never finished: 1100 bytes so far
            assert await raw.close_frame() == (1009, "message of at least 1100 bytes exceeds the limit of 1000 bytes")


async def test_message_in_too_many_fragments_closes_with_1009() -> None:
    with trio.fail_after(10):
        async with serving(Limits(max_message_fragments=8), listeners=[]) as endpoint:
            raw = RawWs(memory_stream(endpoint))
            assert (await raw.handshake())[0] == 101
            text = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"})
            pieces = [text[i:i + 4] for i in range(0, len(text), 4)]
            assert len(pieces) > 8
            # Exactly the limit: accepted.
            head, tail = "".join(pieces[:-7]), pieces[-7:]
            await raw.send_text(head, fin=False)
            for index, piece in enumerate(tail):
                await raw.send_text(piece, fin=index == len(tail) - 1)
            assert await raw.receive_json() == {"jsonrpc": "2.0", "id": 1, "result": {}}
            # One fragment more: refused.
            for piece in pieces[:9]:
                await raw.send_text(piece, fin=False)
            assert await raw.close_frame() == (1009, "message in more than 8 fragments")


async def test_partial_message_memory_is_its_size_not_its_fragment_count() -> None:
    """One message in 20,000 one-byte frames: trio-websocket would keep 20,000 objects
    (about 60 bytes each); the channel keeps one bytearray of 20,000 bytes."""
    fragments = 20_000
    with trio.fail_after(30):
        async with serving(Limits(max_message_fragments=fragments + 10), listeners=[]) as endpoint:
            raw = RawWs(memory_stream(endpoint))
            assert (await raw.handshake())[0] == 101
            await raw.send_json({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": INIT_PARAMS})
            await raw.receive_json()
            (channel,) = endpoint.channels
            opening = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"'
            tracemalloc.start()
            try:
                await raw.send_text(opening, fin=False)
                before = tracemalloc.get_traced_memory()[0]
                batch = b"".join(bytes(raw.proto.send_data("y", False)) for _ in range(1000))
                for _ in range(fragments // 1000):
                    await raw.send_raw(batch)
                await wait_for(lambda: channel._parts is not None and len(channel._parts) == len(opening) + fragments)
                grown = tracemalloc.get_traced_memory()[0] - before
            finally:
                tracemalloc.stop()
            assert grown < 200_000, f"a partial message of {fragments} bytes costs {grown} bytes"
            await raw.send_text('"}}}', fin=True)
            reply = await raw.receive_json()
            assert reply["result"]["content"][0]["text"] == "y" * fragments


async def test_protocol_errors_close_with_their_code() -> None:
    with trio.fail_after(10):
        async with serving(listeners=[]) as endpoint:
            unmasked = RawWs(memory_stream(endpoint))
            assert (await unmasked.handshake())[0] == 101
            await unmasked.send_raw(b"\x81\x02hi")  # a client must mask its frames
            assert (await unmasked.close_frame())[0] == 1002  # type: ignore[index]

            bad_utf8 = RawWs(memory_stream(endpoint))
            assert (await bad_utf8.handshake())[0] == 101
            frame = bytearray(bad_utf8.proto.send_data(b"\xff\xfe"))
            frame[0] = 0x81  # turn the binary frame into a text frame with invalid UTF-8
            await bad_utf8.send_raw(bytes(frame))
            assert (await bad_utf8.close_frame())[0] == 1007  # type: ignore[index]


# -- the handshake -----------------------------------------------------------------------------
async def test_plain_http_and_bad_upgrades_get_a_clear_status() -> None:
    with trio.fail_after(10):
        async with serving() as endpoint:
            host = f"127.0.0.1:{endpoint.port}"
            cases = {
                f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n": (426, "serves MCP over WebSocket"),
                f"POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\n\r\n": (405, "GET"),
                (f"GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n"): (426, "version"),
                (f"GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Version: 13\r\n\r\n"): (400, "Sec-WebSocket-Key"),
                f"GET / HTTP/1.1\r\nHost: {host}\r\nX-Padding: " + "a" * 20000: (431, "bad HTTP request"),  # no end in sight
            }
            for request, (status, text) in cases.items():
                stream = await trio.open_tcp_stream("127.0.0.1", endpoint.port)
                await stream.send_all(request.encode())
                got, _headers, body = await read_http_response(stream)
                assert (got, text in body.decode()) == (status, True), (request[:60], got, body)
                await stream.aclose()
            assert endpoint.statistics()["refused"] == {426: 2, 405: 1, 400: 1, 431: 1}


async def test_origin_and_host_are_checked_at_the_handshake() -> None:
    with trio.fail_after(10):
        async with serving(listeners=[]) as endpoint:
            for host, origin, expected in [
                ("localhost", None, 101),
                ("127.0.0.1:8765", "http://localhost:5173", 101),
                ("[::1]:8765", "http://127.0.0.1", 101),
                ("localhost", "https://evil.example", 403),
                ("localhost", "null", 403),
                ("evil.example", None, 403),  # DNS rebinding: the name of the attacker's page
                ("evil.example:8765", "http://evil.example:8765", 403),
            ]:
                status, _, body = await RawWs(memory_stream(endpoint)).handshake(host=host, origin=origin)
                assert status == expected, (host, origin, body)
                if expected == 403:
                    assert b"not allowed" in body
        async with serving(listeners=[], allowed_origins=["https://app.example"], allowed_hosts=["mcp.example"]) as endpoint:
            for host, origin, expected in [
                ("mcp.example", "https://app.example", 101),
                ("MCP.example:443", "https://APP.example/", 101),
                ("localhost", None, 403),  # an explicit list is exact, for hosts as for origins (as on HTTP)
                ("mcp.example", "http://localhost:5173", 403),  # an explicit list is exact
                ("other.example", "https://app.example", 403),
            ]:
                status, _, body = await RawWs(memory_stream(endpoint)).handshake(host=host, origin=origin)
                assert status == expected, (host, origin, body)


def test_handshake_policy_defaults() -> None:
    loopback = HandshakePolicy("127.0.0.1")
    assert loopback.host_allowed("localhost:8765") and loopback.host_allowed("app.localhost")
    assert loopback.host_allowed("127.0.0.5") and loopback.host_allowed("[::1]")
    assert not loopback.host_allowed("example.com") and not loopback.host_allowed("127.0.0.1.evil.example")
    assert not loopback.host_allowed("localhost:80:80")
    assert HandshakePolicy("::1").host_allowed("[::1]:8765") and not HandshakePolicy("[::1]").host_allowed("example.com")
    listed = HandshakePolicy("10.1.2.3", allowed_hosts=["10.1.2.3", "mcp.example"])
    assert listed.host_allowed("10.1.2.3:8765") and listed.host_allowed("mcp.example") and not listed.host_allowed("localhost")
    assert not listed.host_allowed("10.1.2.4")
    for public in ("0.0.0.0", "10.1.2.3"):  # names unknown: Host unchecked, Origin still is
        assert HandshakePolicy(public).host_allowed("anything.example")
        assert not HandshakePolicy(public).origin_allowed("https://anything.example")
    assert loopback.origin_allowed(None) and loopback.origin_allowed("https://localhost")
    assert not loopback.origin_allowed("file://") and not loopback.origin_allowed("ws://localhost")
    assert HandshakePolicy("127.0.0.1", allowed_origins=["*"]).origin_allowed("https://x.example")


async def test_connections_past_the_limit_are_refused_with_503() -> None:
    with trio.fail_after(10):
        async with serving(Limits(max_connections=2)) as endpoint:
            async with open_websocket_url(url(endpoint)) as first, open_websocket_url(url(endpoint)):
                with pytest.raises(ConnectionRejected) as refused:
                    async with open_websocket_url(url(endpoint)):
                        pass
                assert refused.value.status_code == 503
                assert dict(refused.value.headers)[b"retry-after"] == b"5"
                assert b"capacity" in (refused.value.body or b"")
                await WsClient(first).initialize()  # those admitted are served
            await wait_for(lambda: endpoint.statistics()["connections"] == 0)
            async with open_websocket_url(url(endpoint)) as again:
                await WsClient(again).initialize()
            assert endpoint.supervisor.metrics.connections_refused == 1


async def test_handshake_timeout_drops_a_silent_tcp_client() -> None:
    with trio.fail_after(10):
        async with serving(Limits(handshake_timeout=0.3)) as endpoint:
            stream = await trio.open_tcp_stream("127.0.0.1", endpoint.port)
            started = trio.current_time()
            assert await stream.receive_some(100) == b""  # never sent the upgrade: dropped
            assert 0.3 <= trio.current_time() - started < 2
            assert endpoint.statistics() == {"connections": 0, "handshaking": 0, "refused": {408: 1}}
            await stream.aclose()


async def test_handshake_timeout_bounds_the_whole_request(autojump_clock: trio.testing.MockClock) -> None:
    """A client trickling its request a byte at a time is dropped at the deadline all the same."""
    with trio.fail_after(100):
        async with serving(Limits(handshake_timeout=5), listeners=[]) as endpoint:
            stream = memory_stream(endpoint)
            started = trio.current_time()
            dropped = trio.Event()

            async def trickle() -> None:
                with contextlib.suppress(trio.BrokenResourceError):  # dropped mid-request
                    for byte in b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 100:
                        if dropped.is_set():
                            return
                        await stream.send_all(bytes([byte]))
                        await trio.sleep(0.5)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(trickle)
                assert await stream.receive_some(100) == b""
                dropped.set()
            assert trio.current_time() - started == pytest.approx(5, abs=0.6)


async def test_authenticator_is_checked_at_the_handshake() -> None:
    from mcp_trio.auth import AuthError

    class OneKey:
        async def authenticate(self, headers: Any) -> Any:
            if (b"x-api-key", b"right") in list(headers):
                return None  # a trusted caller
            raise AuthError("missing", "authentication required", error=None)

        def refusal_headers(self, error: Any) -> list[tuple[str, str]]:
            return [("WWW-Authenticate", 'Bearer realm="mcp"')]

    with trio.fail_after(10):
        async with serving(authenticator=OneKey()) as endpoint:
            with pytest.raises(ConnectionRejected) as refused:
                async with open_websocket_url(url(endpoint)):
                    pass
            assert refused.value.status_code == 401
            assert dict(refused.value.headers)[b"www-authenticate"] == b'Bearer realm="mcp"'
            async with open_websocket_url(url(endpoint), extra_headers=[(b"X-API-Key", b"right")]) as ws:
                await WsClient(ws).initialize()


# -- time: idle, heartbeat, stalled readers --------------------------------------------------
async def test_idle_session_is_closed_with_1000(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(1000):
        async with serving(Limits(idle_timeout=60, heartbeat_interval=0), listeners=[]) as endpoint, trio.open_nursery() as nursery:
            client = await connect_memory(endpoint, nursery)
            await client.initialize()
            # A request in flight is not idleness, however long it runs.
            started = trio.current_time()
            reply = await client.request("tools/call", {"name": "sleep", "arguments": {"seconds": 100}})
            assert reply["result"]["content"][0]["text"] == "slept 100 s"
            assert trio.current_time() - started == pytest.approx(100, abs=1)
            quiet_from = trio.current_time()
            closed = await client.closed()
            assert (closed.reason.code, closed.reason.reason) == (1000, "idle timeout")
            assert 60 <= trio.current_time() - quiet_from <= 60 + 15 + 1  # within one reaper round
            await wait_for(lambda: endpoint.statistics()["connections"] == 0)


async def test_heartbeat_drops_a_peer_that_never_pongs(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(1000):
        async with serving(Limits(heartbeat_interval=10, idle_timeout=0), listeners=[]) as endpoint:
            raw = RawWs(memory_stream(endpoint))
            assert (await raw.handshake())[0] == 101
            started = trio.current_time()
            frame = await raw.receive_frame()
            assert frame.opcode is Opcode.PING
            assert 10 <= trio.current_time() - started <= 10 + 2.5 + 0.1
            assert await raw.receive_frame() is None  # dropped, no close frame
            assert 20 <= trio.current_time() - started <= 20 + 5 + 0.1
            await wait_for(lambda: endpoint.statistics()["connections"] == 0)


async def test_heartbeat_keeps_a_peer_that_pongs(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(1000):
        async with serving(Limits(heartbeat_interval=10, idle_timeout=0), listeners=[]) as endpoint:
            raw = RawWs(memory_stream(endpoint))
            assert (await raw.handshake())[0] == 101
            with trio.move_on_after(100):
                while True:
                    frame = await raw.receive_frame()
                    assert frame is not None, "a live peer was dropped"
                    if frame.opcode is Opcode.PING:
                        await raw.send_raw(bytes(raw.proto.pong(frame.payload)))
            assert raw.pings >= 4
            await raw.send_json({"jsonrpc": "2.0", "id": 1, "method": "ping"})
            assert await raw.receive_json() == {"jsonrpc": "2.0", "id": 1, "result": {}}
            await raw.stream.aclose()
            await wait_for(lambda: endpoint.statistics()["connections"] == 0)
            # trio-websocket's client answers pings by itself: kept too.
            async with trio.open_nursery() as nursery:
                client = await connect_memory(endpoint, nursery)
                await trio.sleep(100)
                assert (await client.request("ping"))["result"] == {}
                assert endpoint.statistics()["connections"] == 1
                await client.ws.aclose()


async def test_client_pings_are_answered() -> None:
    with trio.fail_after(10):
        async with serving() as endpoint, open_websocket_url(url(endpoint)) as ws:
            with trio.fail_after(2):
                await ws.ping(b"are you there")


async def test_a_client_that_stops_reading_stalls_only_itself(autojump_clock: trio.testing.MockClock) -> None:
    """Its writer waits ``send_timeout``, then the connection is dropped; its reader stops
    taking requests once ``max_in_flight`` are waiting (memory stays bounded); others go on."""
    limits = Limits(send_timeout=10, max_in_flight=4, idle_timeout=0, heartbeat_interval=0)
    with trio.fail_after(1000):
        async with serving(limits, listeners=[]) as endpoint, trio.open_nursery() as nursery:
            stalled = RawWs(memory_stream(endpoint, trio.testing.lockstep_stream_pair))
            assert (await stalled.handshake())[0] == 101
            await stalled.send_json({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": INIT_PARAMS})
            await stalled.receive_json()
            other = await connect_memory(endpoint, nursery)
            await other.initialize()
            # The stalled client sends requests and never reads again.
            sent = 0

            async def flood() -> None:
                nonlocal sent
                try:
                    for request_id in range(1, 1000):
                        await stalled.send_json({"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": ECHO})
                        sent += 1
                except trio.BrokenResourceError:
                    pass  # dropped by the server

            started = trio.current_time()
            async with trio.open_nursery() as flooding:
                flooding.start_soon(flood)
                await trio.sleep(5)
                stalled_session = next(c for c in endpoint.supervisor.connections if c.session_id != "s2")
                # max_in_flight running, plus the one the reader holds while it waits for a slot
                assert stalled_session.in_flight <= limits.max_in_flight + 1
                # The server stopped reading it (its sends block too) after a fixed number: the
                # writer's batch, its queue, the requests in flight and the one the reader holds.
                assert sent <= _MAX_BATCH + limits.max_in_flight + _WRITER_SLACK + limits.max_in_flight + 1, sent
                assert (await other.request("tools/call", ECHO))["result"]["content"][0]["text"] == "hello"
                await wait_for(lambda: endpoint.statistics()["connections"] == 1, step=0.5)
                assert 10 <= trio.current_time() - started <= 10 + 0.6
                flooding.cancel_scope.cancel()
            assert (await other.request("ping"))["result"] == {}
            await other.ws.aclose()


# -- shutdown --------------------------------------------------------------------------------
async def test_graceful_shutdown_answers_in_flight_then_closes_with_1001() -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            endpoint: WebSocketServer = await nursery.start(partial(serve_websocket, demo, Limits(grace_period=1), port=0))
            async with open_websocket_url(url(endpoint)) as ws_a, open_websocket_url(url(endpoint)) as ws_b:
                quick, slow = WsClient(ws_a), WsClient(ws_b)
                await quick.initialize()
                await slow.initialize()
                await quick.send({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "sleep", "arguments": {"seconds": 0.3}}})
                await slow.send({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "sleep", "arguments": {"seconds": 30}}})
                await wait_for(lambda: endpoint.supervisor.statistics()["in_flight"] == 2)
                started = trio.current_time()
                endpoint.shutdown()
                closed = await quick.closed()
                assert (closed.reason.code, closed.reason.reason) == (1001, "server shutting down")
                assert quick.backlog[0]["result"]["content"][0]["text"] == "slept 0.3 s"
                closed = await slow.closed()
                assert closed.reason.code == 1001
                assert slow.backlog[0]["error"]["code"] == SHUTTING_DOWN  # past the grace period
                assert 1 <= trio.current_time() - started < 3
                with pytest.raises(OSError):  # no longer listening
                    await trio.open_tcp_stream("127.0.0.1", endpoint.port)
        # serve_websocket has returned: the nursery is done.


# -- scale -------------------------------------------------------------------------------------
async def test_a_thousand_concurrent_sessions() -> None:
    sessions = 1000
    with trio.fail_after(120):
        async with serving() as endpoint:
            async with trio.open_nursery() as nursery:
                await _open_many(endpoint, nursery, sessions)
            await wait_for(lambda: endpoint.statistics()["connections"] == 0)


async def _open_many(endpoint: WebSocketServer, nursery: trio.Nursery, sessions: int) -> None:
    if True:
        if True:
            answered: list[str] = []
            connected = trio.Semaphore(100)  # handshakes in progress at once
            all_open = trio.Event()
            clients: list[WebSocketConnection] = []

            async def one(index: int) -> None:
                async with connected:
                    ws = await wrap_client_stream(nursery, await trio.open_tcp_stream("127.0.0.1", endpoint.port),
                                                  f"127.0.0.1:{endpoint.port}", "/", subprotocols=["mcp"])
                clients.append(ws)
                client = WsClient(ws)
                await client.initialize()
                reply = await client.request("tools/call", {"name": "echo", "arguments": {"text": f"#{index}"}})
                answered.append(reply["result"]["content"][0]["text"])
                if len(clients) == sessions:
                    all_open.set()

            async with trio.open_nursery() as opening:
                for index in range(sessions):
                    opening.start_soon(one, index)
            await all_open.wait()
            assert sorted(answered) == sorted(f"#{index}" for index in range(sessions))
            assert endpoint.statistics()["connections"] == sessions
            assert endpoint.supervisor.statistics()["connections"] == sessions
            for ws in clients:
                nursery.start_soon(ws.aclose)


# -- TLS ---------------------------------------------------------------------------------------
def _self_signed(tmp_path: Any) -> tuple[str, str]:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return str(certfile), str(keyfile)


async def test_wss_with_an_ssl_context(tmp_path: Any) -> None:
    import ssl

    certfile, keyfile = _self_signed(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(certfile, keyfile)
    client_context = ssl.create_default_context(cafile=certfile)
    with trio.fail_after(10):
        async with serving(ssl_context=server_context) as endpoint:
            assert endpoint.urls == [f"wss://127.0.0.1:{endpoint.port}/"]
            async with open_websocket_url(f"wss://127.0.0.1:{endpoint.port}/", client_context, subprotocols=["mcp"]) as ws:
                client = WsClient(ws)
                await client.initialize()
                assert (await client.request("tools/call", ECHO))["result"]["content"][0]["text"] == "hello"


# -- signals -----------------------------------------------------------------------------------
_SIGNAL_CHILD = """
import sys, trio
from mcp_trio.demo import server
from mcp_trio.transports.websocket import serve_websocket

async def main():
    async with trio.open_nursery() as nursery:
        endpoint = await nursery.start(lambda task_status: serve_websocket(server, port=0, handle_signals=True, task_status=task_status))
        print(endpoint.port, flush=True)

trio.run(main)
print("exited cleanly", flush=True)
"""


async def test_sigterm_shuts_down_gracefully() -> None:
    import signal
    import subprocess
    import sys

    from .helpers import child_env

    with trio.fail_after(30):
        process = await trio.lowlevel.open_process([sys.executable, "-c", _SIGNAL_CHILD], stdout=subprocess.PIPE, env=child_env())
        assert process.stdout is not None
        try:
            line = b""
            while not line.endswith(b"\n"):
                line += await process.stdout.receive_some(100)
            port = int(line)
            async with open_websocket_url(f"ws://127.0.0.1:{port}/") as ws:
                client = WsClient(ws)
                await client.initialize()
                process.send_signal(signal.SIGTERM)
                closed = await client.closed()
                assert (closed.reason.code, closed.reason.reason) == (1001, "server shutting down")
            assert await process.wait() == 0
            rest = b""
            while chunk := await process.stdout.receive_some(100):
                rest += chunk
            assert b"exited cleanly" in rest
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
