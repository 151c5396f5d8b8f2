"""The HTTP/1.1 engine over real sockets (``transports/h1``): every limit and deadline crossed.

The server runs in-process on port 0; clients write raw bytes, so a test sends exactly the
framing it means and sees exactly what comes back, connection closes included. Time-based
limits run under ``autojump_clock`` where both ends are in this process.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest
import trio
import trio_websocket
import trustme
from hypothesis import given, settings
from hypothesis import strategies as st

from mcp_trio import Limits
from mcp_trio.transports.h1 import H1Limits, H1Server, Request, Responder, serve_h1
from mcp_trio.transports.websocket import WebSocketChannel

from .test_h1_parser import SMUGGLING


# -- a raw client -------------------------------------------------------------------------------
@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name), None)


class Raw:
    """One client connection, bytes in and out, responses parsed as they come."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.buffer = b""

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def _more(self) -> None:
        data = await self.stream.receive_some(65536)
        if not data:
            raise EOFError("connection closed")
        self.buffer += data

    async def _take(self, size: int) -> bytes:
        while len(self.buffer) < size:
            await self._more()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    async def _line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            await self._more()
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    async def response(self, *, head: bool = False) -> Response:
        while b"\r\n\r\n" not in self.buffer:
            await self._more()
        raw, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = [(name.lower(), value.strip()) for name, _, value in (line.partition(":") for line in lines[1:])]
        response = Response(status, headers, b"")
        if head or status < 200 or status in (204, 304):
            return response
        if (length := response.header("content-length")) is not None:
            response.body = await self._take(int(length))
        elif response.header("transfer-encoding") == "chunked":
            parts = []
            while size := int((await self._line()).split(b";")[0], 16):
                parts.append(await self._take(size))
                assert await self._take(2) == b"\r\n"
            assert await self._line() == b""
            response.body = b"".join(parts)
        else:  # close-delimited
            try:
                while True:
                    await self._more()
            except EOFError:
                response.body, self.buffer = self.buffer, b""
        return response

    async def closed(self) -> bool:
        """True when the server closes without sending anything more."""
        try:
            await self._more()
        except EOFError:
            return self.buffer == b""
        except trio.BrokenResourceError:
            return True
        return False


@asynccontextmanager
async def connect(port: int) -> AsyncIterator[Raw]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        yield Raw(stream)


# -- servers ------------------------------------------------------------------------------------
seen: list[Request] = []


async def echo(request: Request, responder: Responder) -> None:
    """``METHOD PATH BODY``; ``/sse`` streams two pieces; ``/close`` asks to close."""
    seen.append(request)
    if request.path == b"/sse":
        await responder.start(200, [(b"content-type", b"text/event-stream")], b"data: one\n\n")
        await responder.send(b"data: two\n\n")
        return
    headers = [(b"content-type", b"text/plain")]
    if request.path == b"/close":
        headers.append((b"connection", b"close"))
    await responder.respond(200, headers, b"%b %b %b" % (request.method.encode(), request.path, request.body))


@asynccontextmanager
async def running(handler: Any = echo, limits: H1Limits | None = None, **options: Any) -> AsyncIterator[tuple[H1Server, int]]:
    seen.clear()
    async with trio.open_nursery() as nursery:
        server: H1Server = await nursery.start(partial(serve_h1, handler, limits, **options))
        try:
            yield server, server.addresses[0][1]
        finally:
            nursery.cancel_scope.cancel()


def get(path: str, *extra: str, version: str = "1.1") -> bytes:
    lines = [f"GET {path} HTTP/{version}", "Host: 127.0.0.1", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def post(path: str, body: bytes, *extra: str) -> bytes:
    head = "\r\n".join([f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}", *extra])
    return head.encode() + b"\r\n\r\n" + body


# -- keep-alive, pipelining, bodies -----------------------------------------------------------
async def test_keep_alive_and_pipelined_requests_answered_in_order() -> None:
    with trio.fail_after(5):
        async with running() as (_, port), connect(port) as client:
            await client.send(get("/one") + post("/two", b"2nd") + get("/sse") + get("/four"))
            bodies = [(await client.response()).body for _ in range(4)]
            assert bodies == [b"GET /one ", b"POST /two 2nd", b"data: one\n\ndata: two\n\n", b"GET /four "]
            await client.send(get("/five"))  # the connection is still open
            response = await client.response()
            assert response.body == b"GET /five " and response.header("date") is not None


async def test_chunked_request_body() -> None:
    with trio.fail_after(5):
        async with running() as (_, port), connect(port) as client:
            await client.send(b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\nchun\r\n")
            await trio.sleep(0.01)
            await client.send(b"3\r\nked\r\n0\r\nX-Trailer: t\r\n\r\n")
            assert (await client.response()).body == b"POST /c chunked"


async def test_expect_100_continue_only_after_the_size_check() -> None:
    with trio.fail_after(5):
        async with running(limits=H1Limits(max_body_size=100)) as (_, port):
            async with connect(port) as client:
                await client.send(b"POST /e HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
                assert (await client.response()).status == 100
                await client.send(b"body")
                assert (await client.response()).body == b"POST /e body"
            async with connect(port) as client:
                await client.send(b"POST /e HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 101\r\n\r\n")
                refused = await client.response()
                assert refused.status == 413 and refused.header("connection") == "close"
                assert await client.closed()
            async with connect(port) as client:
                await client.send(b"POST /e HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi")
                assert (await client.response()).status == 200  # the body came with the head: no 100


async def test_head_has_the_headers_and_no_body() -> None:
    with trio.fail_after(5):
        async with running() as (_, port), connect(port) as client:
            await client.send(b"HEAD /h HTTP/1.1\r\nHost: a\r\n\r\nHEAD /sse HTTP/1.1\r\nHost: a\r\n\r\n" + get("/after"))
            whole = await client.response(head=True)
            assert whole.status == 200 and whole.header("content-length") == str(len(b"HEAD /h "))
            streamed = await client.response(head=True)
            assert streamed.status == 200 and streamed.header("content-type") == "text/event-stream"
            assert (await client.response()).body == b"GET /after "  # no stray body bytes in between


async def test_the_app_sees_the_raw_path() -> None:
    with trio.fail_after(5):
        async with running() as (_, port), connect(port) as client:
            await client.send(get("/%61dmin?x=%41"))
            assert (await client.response()).body == b"GET /%61dmin "
            assert seen[0].query == b"x=%41"


# -- Connection: close on every path -------------------------------------------------------------
@pytest.mark.parametrize("request_bytes", [
    get("/plain", "Connection: close"),
    get("/sse", "Connection: close"),
    get("/close"),
    get("/plain", version="1.0"),
    get("/sse", version="1.0"),
])
async def test_connection_close_is_honoured_on_every_path(request_bytes: bytes) -> None:
    with trio.fail_after(5):
        async with running() as (_, port), connect(port) as client:
            await client.send(request_bytes + get("/ignored"))
            response = await client.response()
            assert response.status == 200
            assert response.header("connection") == "close" or b"HTTP/1.0" in request_bytes
            assert await client.closed()
            assert all(r.path != b"/ignored" for r in seen)


async def test_http10_keep_alive_is_kept() -> None:
    with trio.fail_after(5):
        async with running() as (_, port), connect(port) as client:
            await client.send(get("/a", "Connection: keep-alive", version="1.0"))
            kept = await client.response()
            assert kept.body == b"GET /a " and kept.header("connection") == "keep-alive"
            await client.send(get("/b"))
            assert (await client.response()).body == b"GET /b "


# -- limits -------------------------------------------------------------------------------------
LIMITS = H1Limits(max_head_size=1024, max_headers=10, max_body_size=100)


@pytest.mark.parametrize(("request_bytes", "status"), [
    (get("/" + "a" * 1100), 431),
    (get("/", "X-Big: " + "v" * 1100), 431),
    (get("/", *(f"X-{i}: v" for i in range(11))), 431),
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\n\r\n", 413),  # refused before any body byte
    (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n70\r\n" + b"x" * 112 + b"\r\n0\r\n\r\n", 413),
    (get("/", "Expect: something"), 417),
])
async def test_each_limit_is_a_status_and_a_closed_connection(request_bytes: bytes, status: int) -> None:
    with trio.fail_after(5):
        async with running(limits=LIMITS) as (server, port), connect(port) as client:
            await client.send(request_bytes)
            refused = await client.response()
            assert refused.status == status and refused.header("connection") == "close"
            assert refused.body.endswith(b"\n") and b"v" * 20 not in refused.body  # one line, no echo
            assert await client.closed()
            assert server.refused == {status: 1} and not seen


async def test_a_header_line_that_never_ends_is_cut_off() -> None:
    with trio.fail_after(5):
        async with running(limits=LIMITS) as (_, port), connect(port) as client:
            await client.send(b"GET / HTTP/1.1\r\nHost: a\r\nX-Endless: ")
            sent = 0

            async def endless() -> None:
                nonlocal sent
                while True:
                    await client.send(b"v" * 16384)
                    sent += 16384

            async with trio.open_nursery() as nursery:
                nursery.start_soon(endless)
                refused = await client.response()
                nursery.cancel_scope.cancel()
            assert refused.status == 431 and refused.header("connection") == "close"
            assert sent < 1024 + 2 * 65536 + 4 * 16384  # cut at the head limit plus one read


async def test_request_deadline_against_a_trickled_body(autojump_clock: trio.testing.MockClock) -> None:
    limits = H1Limits(request_deadline=5.0, keep_alive_timeout=60.0)
    async with running(limits=limits) as (_, port), connect(port) as client:
        await client.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 50\r\n\r\n")
        started = trio.current_time()
        async with trio.open_nursery() as nursery:

            async def trickle() -> None:
                for _ in range(50):
                    await trio.sleep(1)  # each byte is quick; the whole never arrives in time
                    await client.send(b"x")

            nursery.start_soon(trickle)
            answer = await client.response()
            nursery.cancel_scope.cancel()
        assert answer.status == 408 and answer.header("connection") == "close"
        assert 5.0 <= trio.current_time() - started <= 5.0 * 1.5
        assert not seen


async def test_request_deadline_against_a_trickled_head(autojump_clock: trio.testing.MockClock) -> None:
    limits = H1Limits(request_deadline=5.0, keep_alive_timeout=60.0)
    async with running(limits=limits) as (_, port), connect(port) as client:
        started = trio.current_time()
        async with trio.open_nursery() as nursery:

            async def trickle() -> None:
                for byte in get("/slow", *(f"X-{i}: v" for i in range(5))):
                    await client.send(bytes([byte]))
                    await trio.sleep(0.5)

            nursery.start_soon(trickle)
            answer = await client.response()
            nursery.cancel_scope.cancel()
        assert answer.status == 408 and trio.current_time() - started <= 5.0 * 1.5
        assert await client.closed()


async def test_idle_keep_alive_connections_are_closed(autojump_clock: trio.testing.MockClock) -> None:
    limits = H1Limits(keep_alive_timeout=7.0, request_deadline=60.0)
    async with running(limits=limits) as (server, port):
        async with connect(port) as client:
            await client.send(get("/x"))
            await client.response()
            answered = trio.current_time()
            assert await client.closed()  # quietly: no 408 for a connection between requests
            assert 7.0 <= trio.current_time() - answered <= 7.0 * 1.5
        async with connect(port) as client:  # a new connection that never sends anything
            opened = trio.current_time()
            assert await client.closed()
            assert 7.0 <= trio.current_time() - opened <= 7.0 * 1.5
        assert server.refused == {}


async def test_max_connections_answers_503_and_recovers() -> None:
    with trio.fail_after(5):
        async with running(limits=H1Limits(max_connections=2)) as (server, port):
            async with connect(port) as first, connect(port) as second:
                await first.send(get("/1"))
                await second.send(get("/2"))
                await first.response()
                await second.response()
                async with connect(port) as third:
                    await third.send(get("/3"))
                    refused = await third.response()
                    assert refused.status == 503 and refused.header("retry-after") == "1"
                    assert await third.closed()
                assert server.refused == {503: 1}
            with trio.fail_after(2):
                while server.connections:
                    await trio.sleep(0.01)
            async with connect(port) as fourth:
                await fourth.send(get("/4"))
                assert (await fourth.response()).body == b"GET /4 "


async def test_a_client_that_stops_reading_is_dropped_after_send_timeout(autojump_clock: trio.testing.MockClock) -> None:
    outcome: list[BaseException] = []

    async def firehose(request: Request, responder: Responder) -> None:
        await responder.start(200, [(b"content-type", b"text/event-stream")])
        try:
            while True:
                await responder.send(b"x" * 65536)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            outcome.append(exc)
            raise

    limits = H1Limits(send_timeout=10.0, keep_alive_timeout=60.0, request_deadline=60.0)
    async with running(firehose, limits) as (server, port), connect(port) as client:
        await client.send(get("/firehose"))
        started = trio.current_time()
        while server.connections:
            await trio.sleep(1)
        assert outcome and 10.0 <= trio.current_time() - started <= 10.0 * 1.5 + 1


async def test_disconnect_signal_lets_the_app_cancel_its_work() -> None:
    cancelled = trio.Event()
    streaming = trio.Event()

    async def long_stream(request: Request, responder: Responder) -> None:
        await responder.start(200, [(b"content-type", b"text/event-stream")], b": open\n\n")
        async with trio.open_nursery() as nursery:

            async def work() -> None:
                try:
                    streaming.set()
                    await trio.sleep_forever()
                finally:
                    cancelled.set()

            nursery.start_soon(work)
            await responder.wait_disconnected()
            assert responder.disconnected
            nursery.cancel_scope.cancel()

    with trio.fail_after(5):
        async with running(long_stream) as (server, port):
            async with connect(port) as client:
                await client.send(get("/stream"))
                await streaming.wait()
            await cancelled.wait()
            while server.connections:
                await trio.sleep(0.01)


async def test_a_pipelined_request_during_a_stream_is_kept_for_later() -> None:
    release = trio.Event()

    async def app(request: Request, responder: Responder) -> None:
        if request.path == b"/stream":
            await responder.start(200, [], b"first")
            async with trio.open_nursery() as nursery:
                nursery.start_soon(responder.wait_disconnected)
                await release.wait()
                nursery.cancel_scope.cancel()
            await responder.send(b"-last")
            return
        await echo(request, responder)

    with trio.fail_after(5):
        async with running(app) as (_, port), connect(port) as client:
            await client.send(get("/stream"))
            while b"first" not in client.buffer:
                await client._more()
            await client.send(get("/next"))
            await trio.sleep(0.05)
            release.set()
            assert (await client.response()).body == b"first-last"
            assert (await client.response()).body == b"GET /next "


# -- failures -----------------------------------------------------------------------------------
async def test_an_app_failure_is_that_requests_500(caplog: pytest.LogCaptureFixture) -> None:
    async def app(request: Request, responder: Responder) -> None:
        if request.path == b"/boom":
            raise ValueError("the app broke")
        if request.path == b"/silent":
            return
        await echo(request, responder)

    with trio.fail_after(5):
        async with running(app) as (_, port):
            for path in ("/boom", "/silent"):
                async with connect(port) as client:
                    await client.send(get(path))
                    failed = await client.response()
                    assert failed.status == 500 and failed.header("connection") == "close" and b"Traceback" not in failed.body
                    assert await client.closed()
            async with connect(port) as client:
                await client.send(get("/fine"))
                assert (await client.response()).status == 200
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 2 and "'/boom'" in errors[0].getMessage()


async def test_a_header_value_that_would_split_the_response_is_refused() -> None:
    async def app(request: Request, responder: Responder) -> None:
        await responder.respond(200, [(b"x-echo", b"a\r\nset-cookie: evil=1")], b"")

    with trio.fail_after(5):
        async with running(app) as (_, port), connect(port) as client:
            await client.send(get("/"))
            response = await client.response()
            assert response.status == 500 and response.header("set-cookie") is None


# -- request smuggling over the wire -------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(SMUGGLING))
async def test_smuggling_shapes_get_one_answer_and_a_closed_connection(name: str) -> None:
    data, status = SMUGGLING[name]
    with trio.fail_after(5):
        async with running() as (_, port), connect(port) as client:
            await client.send(data + get("/smuggled"))
            refused = await client.response()
            assert refused.status == status and refused.header("connection") == "close"
            assert await client.closed()
            assert not seen


_POISON = st.sampled_from([
    b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
    b"Content-Length: 3\r\nContent-Length: 4\r\n",
    b"X-Folded: a\r\n b\r\n",
    b"X-Space : x\r\n",
    b"X-Ctl: a\x0bb\r\n",
    b"Transfer-Encoding: identity, chunked, gzip\r\n",
])


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from([b"Accept: */*\r\n", b"X-A: 1\r\n", b"User-Agent: fuzz\r\n"]), max_size=4), _POISON,
       st.integers(min_value=0, max_value=4), st.integers(min_value=1, max_value=64))
async def test_fuzzed_smuggling_over_a_socket(lines: list[bytes], poison: bytes, at: int, piece: int) -> None:
    lines.insert(min(at, len(lines)), poison)
    data = b"POST /mcp HTTP/1.1\r\nHost: a\r\n" + b"".join(lines) + b"\r\nabc0\r\n\r\n" + get("/smuggled")
    with trio.fail_after(5):
        async with running() as (_, port), connect(port) as client:
            for start in range(0, len(data), piece):
                try:
                    await client.send(data[start:start + piece])
                except trio.BrokenResourceError:
                    break  # the server may close before the smuggled part is written
            refused = await client.response()
            assert refused.status == 400 and refused.header("connection") == "close"
            assert await client.closed()
            assert not seen


# -- shutdown -----------------------------------------------------------------------------------
async def test_graceful_shutdown() -> None:
    entered = trio.Event()
    release = trio.Event()

    async def app(request: Request, responder: Responder) -> None:
        if request.path == b"/slow":
            entered.set()
            await release.wait()
        await echo(request, responder)

    limits = H1Limits(grace_period=5.0)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            server: H1Server = await nursery.start(partial(serve_h1, app, limits))
            port = server.addresses[0][1]
            async with connect(port) as idle, connect(port) as busy:
                await idle.send(get("/first"))
                await idle.response()
                await busy.send(get("/slow"))
                await entered.wait()
                server.shutdown()
                assert await idle.closed()  # idle keep-alive connections: closed at once
                with pytest.raises(OSError):
                    await trio.open_tcp_stream("127.0.0.1", port)  # no longer accepting
                release.set()
                answer = await busy.response()  # the exchange in flight finishes...
                assert answer.body == b"GET /slow " and answer.header("connection") == "close"
                assert await busy.closed()  # ...and its connection closes after it
        assert not server.connections


async def test_shutdown_cancels_what_outlives_the_grace_period(autojump_clock: trio.testing.MockClock) -> None:
    cancelled = trio.Event()

    async def stuck(request: Request, responder: Responder) -> None:
        try:
            await trio.sleep_forever()
        finally:
            cancelled.set()

    async with trio.open_nursery() as nursery:
        server: H1Server = await nursery.start(partial(serve_h1, stuck, H1Limits(grace_period=3.0)))
        async with connect(server.addresses[0][1]) as client:
            await client.send(get("/stuck"))
            await trio.sleep(1)
            stopping = trio.current_time()
            server.shutdown()
            await cancelled.wait()
            assert trio.current_time() - stopping == pytest.approx(3.0)


# -- TLS ----------------------------------------------------------------------------------------
async def test_https_through_trio_ssl_stream() -> None:
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)
    with trio.fail_after(5):
        async with running(ssl_context=server_context) as (_, port):
            tcp = await trio.open_tcp_stream("127.0.0.1", port)
            async with trio.SSLStream(tcp, client_context, server_hostname="127.0.0.1") as tls:
                client = Raw(tls)
                await client.send(get("/secure") + post("/again", b"tls"))
                assert (await client.response()).body == b"GET /secure "
                assert (await client.response()).body == b"POST /again tls"
                assert seen[0].scheme == "https"
            async with connect(port) as plain:  # plain HTTP to the TLS port: refused by TLS, nothing served
                await plain.send(get("/plain"))
                assert await plain.closed() or plain.buffer[:1] == b"\x15"
            assert [r.path for r in seen] == [b"/secure", b"/again"]


# -- WebSocket hand-off -------------------------------------------------------------------------
async def test_a_websocket_upgrade_is_handed_over_with_the_bytes_read() -> None:
    """The stream and the bytes behind the upgrade request's head go to ``on_upgrade``: here
    the WebSocket transport's own channel takes them (a real wsproto session)."""
    from wsproto.utilities import generate_accept_token

    handed: list[tuple[Request, bytes]] = []
    shutting_down = trio.Event()

    async def on_upgrade(request: Request, stream: trio.abc.Stream, data: bytes) -> None:
        handed.append((request, data))
        key = request.header(b"sec-websocket-key") or b""
        await stream.send_all(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
                              b"sec-websocket-accept: %b\r\n\r\n" % generate_accept_token(key))
        channel = WebSocketChannel(stream, Limits(), shutting_down, trailing_data=data)
        async with channel:
            while True:
                try:
                    message = await channel.receive()
                except trio.EndOfChannel:
                    return
                await channel.send(b"echo " + message)

    with trio.fail_after(5):
        async with running(on_upgrade=on_upgrade) as (_, port):
            async with trio_websocket.open_websocket_url(f"ws://127.0.0.1:{port}/ws") as ws:
                await ws.send_message("hello")
                assert await ws.get_message() == "echo hello"
                await ws.send_message("again")
                assert await ws.get_message() == "echo again"
            assert handed[0][0].path == b"/ws" and handed[0][0].upgrade
            async with connect(port) as client:  # no upgrade handler needed for plain requests
                await client.send(get("/plain"))
                assert (await client.response()).status == 200
