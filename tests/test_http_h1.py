"""The HTTP app on the lean engine (``serve_http``'s default) end to end: what is the engine's.

The whole HTTP suite runs on the engine; these tests keep what belongs to the wiring between
the two: the engine's own refusals as JSON-RPC errors, WebSocket upgrades handed to the
WebSocket transport's session code (its refusals, its heartbeat), streamed answers that close
the connection when asked, graceful shutdown.
"""

from __future__ import annotations

import json

import pytest
import trio
import trio_websocket

from mcp_trio import Limits
from tests.http_client import open_request, request
from tests.test_http import INVALID_REQUEST, _ws_call, sdk, sdk_session, serving
from tests.test_stdio_sdk import text_of

async def test_streamable_http_json_and_sse_answers() -> None:
    with trio.fail_after(10):
        async with serving() as served:
            mcp = served.client()
            await mcp.initialize()
            assert (await mcp.call("tools/call", {"name": "echo", "arguments": {"text": "lean"}}))["result"]["content"][0]["text"] == "lean"
            streamed = await mcp.post(mcp.message("tools/call", {"name": "test_tool_with_progress", "arguments": {},
                                                                 "_meta": {"progressToken": "t"}}))
            assert streamed.status == 200 and streamed.content_type == "text/event-stream"
            assert [e.json().get("method") for e in streamed.events()[1:]] == ["notifications/progress"] * 3 + [None]
            health = await served.health()
            assert health["sessions"] == 1 and health["websockets"] == 0


async def test_engine_refusals_are_json_rpc_errors() -> None:
    with trio.fail_after(10):
        async with serving(limits=Limits(max_message_size=1000)) as served:
            mcp = served.client()
            await mcp.initialize()
            async with open_request(served.port, "POST", headers={**mcp.headers(), "content-length": "5000"}, body=None) as exchange:
                assert exchange.status == 413
                assert json.loads(await exchange.read_body())["error"]["code"] == INVALID_REQUEST
            stream = await trio.open_tcp_stream("127.0.0.1", served.port)
            async with stream:
                await stream.send_all(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 3\r\n"
                                      b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /%61dmin HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                answer = b""
                while chunk := await stream.receive_some(65536):
                    answer += chunk
            assert answer.startswith(b"HTTP/1.1 400 ") and answer.count(b"HTTP/1.1") == 1
            assert b"connection: close" in answer and b'"code":-32600' in answer
            assert (await request(served.port, "GET", "/healthz")).status == 200


@sdk
async def test_sdk_client() -> None:
    with trio.fail_after(15):
        async with sdk_session() as (client, _, served):
            assert text_of(await client.call_tool("echo", {"text": "through h1"})) == "through h1"
            assert (await served.health())["sessions"] == 1


async def test_websocket_on_the_same_port() -> None:
    limits = Limits(max_message_size=1000)
    with trio.fail_after(10):
        async with serving(limits=limits) as served:
            url = f"ws://127.0.0.1:{served.port}/ws"
            async with trio_websocket.open_websocket_url(url, subprotocols=["mcp"]) as ws:
                assert ws.subprotocol == "mcp"
                init = await _ws_call(ws, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                    "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "ws", "version": "1"}}})
                assert init["result"]["serverInfo"]["name"] == "mcp-trio-demo"
                assert (await served.health())["websockets"] == 1
                await ws.send_message(json.dumps({"jsonrpc": "2.0", "id": 2, "method": "ping", "params": {"x": "y" * 2000}}))
                with pytest.raises(trio_websocket.ConnectionClosed) as closed:
                    await ws.get_message()
                assert closed.value.reason.code == 1009
            for path, headers, status in (("/elsewhere", [], 404), ("/ws", [("Origin", "http://evil.example.com")], 403)):
                with pytest.raises(trio_websocket.ConnectionRejected) as rejected:
                    async with trio_websocket.open_websocket_url(f"ws://127.0.0.1:{served.port}{path}", extra_headers=headers):
                        pass
                assert rejected.value.status_code == status
            for key, version, status in ((b"", b"13", 400), (b"dGhlIHNhbXBsZSBub25jZQ==", b"8", 426)):
                stream = await trio.open_tcp_stream("127.0.0.1", served.port)
                async with stream:
                    await stream.send_all(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                          b"Sec-WebSocket-Key: %b\r\nSec-WebSocket-Version: %b\r\n\r\n" % (key, version))
                    answer = b""
                    while chunk := await stream.receive_some(65536):
                        answer += chunk
                assert answer.startswith(b"HTTP/1.1 %d " % status) and b"sec-websocket-version: 13" in answer


async def test_graceful_shutdown() -> None:
    with trio.fail_after(10):
        async with serving(limits=Limits(grace_period=5)) as served:
            mcp = served.client()
            await mcp.initialize()
            results: list[dict[str, object]] = []
            async with trio.open_nursery() as nursery:

                async def slow_call() -> None:
                    results.append(await mcp.call("tools/call", {"name": "sleep", "arguments": {"seconds": 0.3}}))

                nursery.start_soon(slow_call)
                await trio.sleep(0.1)
                served.supervisor.shutdown()
            assert results[0]["result"]["content"][0]["text"] == "slept 0.3 s"  # type: ignore[index]
            with trio.fail_after(3):
                await served.stopped.wait()


async def test_connection_close_after_an_sse_answer() -> None:
    """The shape that leaks a descriptor per request under hypercorn (issue 11): an SSE answer
    to a request that said ``Connection: close``. Here the connection closes after it."""
    with trio.fail_after(10):
        async with serving() as served:
            mcp = served.client()
            await mcp.initialize()
            body = json.dumps(mcp.message("tools/call", {"name": "test_tool_with_progress", "arguments": {},
                                                         "_meta": {"progressToken": "t"}})).encode()
            head = "".join(f"{k}: {v}\r\n" for k, v in {**mcp.headers(), "host": f"127.0.0.1:{served.port}",
                                                        "connection": "close", "content-length": str(len(body))}.items())
            for _ in range(3):
                stream = await trio.open_tcp_stream("127.0.0.1", served.port)
                async with stream:
                    await stream.send_all(f"POST /mcp HTTP/1.1\r\n{head}\r\n".encode() + body)
                    answer = b""
                    while chunk := await stream.receive_some(65536):  # ends: the server closed
                        answer += chunk
                assert b"content-type: text/event-stream" in answer and b"connection: close" in answer
                assert answer.endswith(b"0\r\n\r\n") and b"Progress test completed" in answer


async def test_the_engines_limits_are_limits_settings() -> None:
    """``Limits.max_head_size``, ``max_headers`` and ``max_http_connections`` reach the engine."""
    limits = Limits(max_head_size=1024, max_headers=12, max_http_connections=2)
    with trio.fail_after(10):
        async with serving(limits=limits) as served:
            big = await request(served.port, "GET", "/healthz", headers={"x-padding": "p" * 2000})
            assert big.status == 431 and big.json()["error"]["code"] == INVALID_REQUEST
            many = await request(served.port, "GET", "/healthz", headers={f"x-h{i}": "1" for i in range(12)})
            assert many.status == 431
            assert (await request(served.port, "GET", "/healthz")).status == 200
            first = await trio.open_tcp_stream("127.0.0.1", served.port)
            second = await trio.open_tcp_stream("127.0.0.1", served.port)
            async with first, second:
                for stream in (first, second):  # each answered once, and kept open: the server is at its limit
                    await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                    assert (await stream.receive_some(65536)).startswith(b"HTTP/1.1 200 ")
                third = await request(served.port, "GET", "/healthz")
                assert third.status == 503 and third.headers["retry-after"] == "1"


async def test_websocket_heartbeat_on_the_http_port() -> None:
    """``/ws`` runs the WebSocket transport's session code: a quiet peer is pinged, and one
    that never answers is dropped (the same reaper as ``--transport ws``)."""
    with trio.fail_after(10):
        async with serving(limits=Limits(heartbeat_interval=0.2, idle_timeout=0)) as served:
            stream = await trio.open_tcp_stream("127.0.0.1", served.port)
            async with stream:
                await stream.send_all(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                      b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
                received = b""
                while b"\r\n\r\n" not in received:
                    received += await stream.receive_some(65536)
                head, _, received = received.partition(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 101 ") and (await served.health())["websockets"] == 1
                while chunk := await stream.receive_some(65536):  # a ping, unanswered; then the drop
                    received += chunk
                assert received[:1] == b"\x89" and received[2:] == b"mcp-trio"
            with trio.fail_after(2):
                while (await served.health())["websockets"]:
                    await trio.sleep(0.01)
