"""mcp_trio.client: over stdio against ``python -m mcp_trio serve``, over WebSocket against a
raw trio-websocket server run in the test, over Streamable HTTP against the official SDK's
server (JSON and SSE answers)."""

from __future__ import annotations

import os
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket

from mcp_trio.client import (
    ConnectError,
    ConnectionLost,
    HTTPError,
    RPCError,
    TargetError,
    TextContent,
    connect,
    parse_target,
)

TESTS = Path(__file__).resolve().parent
SERVE = [sys.executable, "-m", "mcp_trio", "serve"]
pytestmark = pytest.mark.slow


# --------------------------------------------------------------------------- targets


def test_parse_target() -> None:
    assert parse_target("stdio:python -m mcp_trio serve --log-level 'debug'") == (
        "stdio", ["python", "-m", "mcp_trio", "serve", "--log-level", "debug"])
    assert parse_target(["a", "b"]) == ("stdio", ["a", "b"])
    assert parse_target("ws://h:1/x") == ("ws", "ws://h:1/x")
    assert parse_target("WSS://h/") == ("ws", "WSS://h/")
    assert parse_target("https://h/mcp") == ("http", "https://h/mcp")
    for bad in ("ftp://h/", "stdio:", "localhost:8000", ""):
        with pytest.raises(TargetError):
            parse_target(bad)


# --------------------------------------------------------------------------- stdio


@pytest.mark.usefixtures("stdio_io")
async def test_stdio_session_against_our_server() -> None:
    progress: list[Any] = []
    with trio.fail_after(20):
        async with connect(SERVE, era=None, on_notification=lambda method, params: progress.append((method, params))) as client:
            assert client.pid is not None
            result = await client.initialize()
            assert result["serverInfo"]["name"] == "mcp-trio-demo"
            assert client.protocol_version == result["protocolVersion"] == "2025-11-25"
            assert (await client.call_tool("echo", {"text": "hi"})).content == [TextContent(text="hi")]
            names = {tool.name for tool in await client.list_tools()}
            assert {"echo", "sleep"} <= names

            # Many requests in flight on one session, each answered with its own reply.
            answers: dict[int, Any] = {}

            async def one(n: int) -> None:
                answers[n] = await client.call_tool("echo", {"text": f"n{n}"})

            async with trio.open_nursery() as nursery:
                for n in range(50):
                    nursery.start_soon(one, n)
            assert {n: a.content[0].text for n, a in answers.items()} == {n: f"n{n}" for n in range(50)}

            with pytest.raises(RPCError) as info:
                await client.request("no/such/method", {})
            assert info.value.code == -32601

            # Notifications reach the callback, in order, before the answer.
            done = await client.request("tools/call", {"name": "test_tool_with_progress", "arguments": {},
                                                       "_meta": {"progressToken": "p1"}})
            assert done["content"][0]["text"] == "Progress test completed"
            steps = [p["progress"] for m, p in progress if m == "notifications/progress" and p["progressToken"] == "p1"]
            assert steps == [0, 50, 100]


@pytest.mark.usefixtures("stdio_io")
async def test_stdio_server_requests_go_to_on_request() -> None:
    asked: list[Any] = []

    async def on_request(method: str, params: Any) -> Any:
        asked.append(method)
        if method == "sampling/createMessage":
            return {"role": "assistant", "content": {"type": "text", "text": "forty-two"}, "model": "m"}
        raise RPCError(-32601, "no")

    with trio.fail_after(20):
        async with connect(SERVE, era=None, on_request=on_request) as client:
            await client.initialize(capabilities={"sampling": {}})
            result = await client.call_tool("test_sampling", {"prompt": "the answer?"})
    assert result.content[0].text == "LLM response: forty-two"
    assert asked == ["sampling/createMessage"]


async def test_stdio_server_exit_fails_waiting_requests() -> None:
    # Reads the initialize request, then exits without answering.
    argv = [sys.executable, "-c", "import sys; sys.stdin.readline()"]
    with trio.fail_after(20):
        async with connect(argv, era=None) as client:
            with pytest.raises(ConnectionLost, match="closed its stdout"):
                await client.initialize()
            assert client.lost is not None
            with pytest.raises(ConnectionLost):
                await client.ping()


async def test_stdio_command_that_does_not_exist() -> None:
    with trio.fail_after(10), pytest.raises(ConnectError, match="cannot start"):
        async with connect(["/nonexistent/mcp-server"], era=None):
            pass


async def test_stdio_garbage_from_the_server_is_a_protocol_error() -> None:
    argv = [sys.executable, "-c", "import sys; sys.stdin.readline(); print('hello, not json', flush=True); sys.stdin.read()"]
    with trio.fail_after(20):
        async with connect(argv, era=None) as client:
            with pytest.raises(ConnectionLost, match="protocol error"):
                await client.initialize()


# --------------------------------------------------------------------------- WebSocket


class _Echo(msgspec.Struct):
    id: Any = msgspec.UNSET
    method: Any = msgspec.UNSET
    params: Any = None
    result: Any = msgspec.UNSET


async def _echo_server(request: WebSocketRequest) -> None:
    """Answers each request with its params as result; a few methods do more:
    ``held`` waits for ten of them and answers in reverse order, ``notify-first`` sends a
    notification before the answer, ``ask-ping`` pings the client and answers with the
    client's reply, ``close`` closes the connection, ``silent`` never answers."""
    ws = await request.accept(subprotocol="mcp" if "mcp" in request.proposed_subprotocols else None)
    held: list[Any] = []
    try:
        while True:
            message = msgspec.json.decode(await ws.get_message(), type=_Echo)
            if message.id is msgspec.UNSET or message.method is msgspec.UNSET:
                continue
            reply = {"jsonrpc": "2.0", "id": message.id, "result": message.params}
            if message.method == "held":
                held.append(reply)
                if len(held) == 10:
                    for r in reversed(held):
                        await ws.send_message(msgspec.json.encode(r).decode())
                continue
            if message.method == "silent":
                continue
            if message.method == "close":
                await ws.aclose(code=1011, reason="going away")
                return
            if message.method == "notify-first":
                await ws.send_message('{"jsonrpc":"2.0","method":"notifications/message","params":{"n":1}}')
            if message.method == "ask-ping":
                await ws.send_message('{"jsonrpc":"2.0","id":"srv-1","method":"ping"}')
                answer = msgspec.json.decode(await ws.get_message())
                reply["result"] = answer
            if message.method == "subprotocol":
                reply["result"] = ws.subprotocol
            await ws.send_message(msgspec.json.encode(reply).decode())
    except ConnectionClosed:
        pass


async def _reject(request: WebSocketRequest) -> None:
    await request.reject(403, body=b"no thanks")


async def _serve(nursery: trio.Nursery, handler: Any) -> str:
    server = await nursery.start(serve_websocket, handler, "127.0.0.1", 0, None)
    return f"ws://127.0.0.1:{server.port}/mcp"


async def test_ws_requests_notifications_and_server_requests() -> None:
    notes: list[Any] = []
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            url = await _serve(nursery, _echo_server)
            async with connect(url, era=None, on_notification=lambda m, p: notes.append((m, p))) as client:
                result = await client.initialize()
                assert result["protocolVersion"] == "2025-11-25"  # the echo of what we sent
                assert await client.request("subprotocol") == "mcp"

                # Ten in flight, answered in reverse order: each caller gets its own reply.
                got: dict[int, Any] = {}

                async def one(n: int) -> None:
                    got[n] = await client.request("held", {"n": n})

                async with trio.open_nursery() as inner:
                    for n in range(10):
                        inner.start_soon(one, n)
                assert got == {n: {"n": n} for n in range(10)}

                assert await client.request("notify-first", {"x": 1}) == {"x": 1}
                assert notes == [("notifications/message", {"n": 1})]

                # The server pings us; the default handler answers ping with {}.
                assert await client.request("ask-ping") == {"jsonrpc": "2.0", "id": "srv-1", "result": {}}

                # A cancelled request is forgotten; the session goes on.
                with trio.move_on_after(0.05):
                    await client.request("silent")
                assert await client.request("after", [1]) == [1]
            nursery.cancel_scope.cancel()


async def test_ws_server_closing_fails_waiting_requests() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            url = await _serve(nursery, _echo_server)
            async with connect(url, era=None) as client:
                with pytest.raises(ConnectionLost, match="1011"):
                    await client.request("close")
                with pytest.raises(ConnectionLost):
                    await client.request("echo")
            nursery.cancel_scope.cancel()


async def test_errors_in_the_block_come_out_unwrapped() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            url = await _serve(nursery, _echo_server)
            with pytest.raises(KeyError, match="mine"):
                async with connect(url, era=None) as client:
                    await client.initialize()
                    raise KeyError("mine")
            nursery.cancel_scope.cancel()


async def test_ws_handshake_refused_and_nothing_listening() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            url = await _serve(nursery, _reject)
            with pytest.raises(ConnectError, match="HTTP 403: no thanks"):
                async with connect(url, era=None):
                    pass
            nursery.cancel_scope.cancel()
        with trio.socket.socket() as sock:
            await sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]  # bound, never listening: connection refused
            with pytest.raises(ConnectError, match="cannot connect"):
                async with connect(f"ws://127.0.0.1:{port}/", era=None):
                    pass


# --------------------------------------------------------------------------- Streamable HTTP


def _spawn_sdk_http(*flags: str) -> Iterator[str]:
    process = subprocess.Popen([sys.executable, str(TESTS / "sdk_http_app.py"), *flags],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=dict(os.environ))
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 30)
        line = process.stdout.readline() if ready else b""
        if not line.strip().isdigit():
            pytest.fail(f"the SDK's HTTP server did not start: {line!r}")
        yield f"http://127.0.0.1:{int(line)}/mcp"
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module", params=["sse", "json"])
def sdk_http(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    for url in _spawn_sdk_http(*(["--json"] if request.param == "json" else [])):
        yield url, request.param


async def test_http_session_against_the_official_sdk(sdk_http: tuple[str, str]) -> None:
    sdk_http_url, answers_with = sdk_http
    notes: list[Any] = []
    with trio.fail_after(20):
        async with connect(sdk_http_url, on_notification=lambda m, p: notes.append((m, p))) as client:
            result = await client.initialize()
            assert result["serverInfo"]["name"] == "sdk-http-test"
            session = client.session_id
            assert session and session.isascii()
            assert (await client.call_tool("echo", {"text": "hi"})).content[0].text == "hi"

            answers: dict[int, str] = {}

            async def one(n: int) -> None:
                answers[n] = (await client.call_tool("echo", {"text": f"n{n}"})).content[0].text

            async with trio.open_nursery() as nursery:
                for n in range(20):
                    nursery.start_soon(one, n)
            assert answers == {n: f"n{n}" for n in range(20)}

            with pytest.raises(RPCError):
                await client.request("no/such/method", {})

            done = await client.request("tools/call", {"name": "progress", "arguments": {},
                                                       "_meta": {"progressToken": 7}})
            assert done["content"][0]["text"] == "done"
            if answers_with == "sse":  # the stream carries the notifications before the result
                assert [p["progress"] for m, p in notes if m == "notifications/progress"] == [1, 2]

        # Leaving the block ended the session with a DELETE: the old id is gone now.
        async with connect(sdk_http_url) as other:
            other._transport.session_id = session
            other._transport.protocol_version = "2025-11-25"
            with pytest.raises(HTTPError) as info:
                await other.ping()
            assert info.value.status == 404


async def test_http_nothing_listening_is_a_connect_error() -> None:
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        with trio.fail_after(10):
            async with connect(f"http://127.0.0.1:{port}/mcp", era=None) as client:
                with pytest.raises(ConnectError, match="cannot connect"):
                    await client.initialize()
