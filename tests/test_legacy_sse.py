"""The 2024-11-05 HTTP+SSE transport (``GET /sse`` + ``POST /messages``), behind ``legacy_sse``.

The client is the official SDK's ``sse_client``, a real client of that transport; the
server runs in-process (``serve_http(..., legacy_sse=True)``). Off by default: both paths
are 404.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx2
import pytest
import trio
from mcp import Client
from mcp.client.sse import sse_client

from mcp_trio import Limits
from mcp_trio.auth import ApiKey, ApiKeyStore, Authenticator, generate_api_key
from tests.http_client import request
from tests.test_http import sdk, serving
from tests.test_stdio_sdk import text_of


@asynccontextmanager
async def open_stream(port: int, **headers: str) -> AsyncIterator[tuple[httpx2.AsyncClient, httpx2.Response, str]]:
    """A raw ``GET /sse``: a client, the open response, and the endpoint its first event names."""
    async with httpx2.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
        request = http.build_request("GET", "/sse", headers={"accept": "text/event-stream", **headers})
        response = await http.send(request, stream=True)
        try:
            assert response.status_code == 200, response.status_code
            assert response.headers["content-type"] == "text/event-stream"
            event, data = (await next_event(response)).split(b"\n")
            assert event == b"event: endpoint" and data.startswith(b"data: /messages?session_id=")
            yield http, response, data[len(b"data: "):].decode()
        finally:
            await response.aclose()


async def next_event(response: httpx2.Response) -> bytes:
    """The next SSE event's text (one iterator per response: leaving ``aiter_raw`` closes it)."""
    state = response.extensions.setdefault("test-sse", {"chunks": response.aiter_raw(), "buffer": b""})
    while b"\n\n" not in state["buffer"]:
        state["buffer"] += await state["chunks"].__anext__()
    event, _, state["buffer"] = state["buffer"].partition(b"\n\n")
    return event


async def test_off_by_default() -> None:
    with trio.fail_after(10):
        async with serving() as served:
            assert (await request(served.port, "GET", "/sse", headers={"accept": "text/event-stream"})).status == 404
            assert (await request(served.port, "POST", "/messages?session_id=x", body=b"{}",
                                  headers={"content-type": "application/json"})).status == 404


@sdk
async def test_the_sdk_sse_client_calls_a_tool() -> None:
    with trio.fail_after(15):
        async with serving(legacy_sse=True) as served:
            url = f"http://127.0.0.1:{served.port}/sse"
            async with Client(sse_client(url)) as client:
                assert text_of(await client.call_tool("echo", {"text": "over SSE"})) == "over SSE"
                tools = await client.list_tools()
                assert "echo" in {tool.name for tool in tools.tools}
                health = await served.health()
                assert health["legacy_sse_sessions"] == 1 and health["sessions"] == 0 and health["connections"] == 1
            with trio.fail_after(2):  # closing the stream ends the session
                while (await served.health())["legacy_sse_sessions"]:
                    await trio.sleep(0.01)


async def test_posts_are_checked() -> None:
    with trio.fail_after(10):
        async with serving(legacy_sse=True) as served:
            async with open_stream(served.port) as (http, stream, endpoint):
                ping = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}).encode()
                json_type = {"content-type": "application/json"}
                assert (await http.post(endpoint, content=ping, headers=json_type)).status_code == 202
                assert (await http.post("/messages", content=ping, headers=json_type)).status_code == 400
                assert (await http.post("/messages?session_id=unknown", content=ping, headers=json_type)).status_code == 404
                assert (await http.post(endpoint, content=ping, headers={"content-type": "text/plain"})).status_code == 415
                assert (await http.get(endpoint)).status_code == 405
                assert (await http.post("/sse", content=ping, headers=json_type)).status_code == 405
                # The answer to the ping came on the stream.
                event, data = (await next_event(stream)).split(b"\n")
                assert event == b"event: message" and json.loads(data[len(b"data: "):]) == {"jsonrpc": "2.0", "id": 1, "result": {}}


async def test_sessions_count_against_the_limits() -> None:
    """``max_sessions`` counts legacy sessions with Streamable HTTP ones (503 past it); the
    idle timeout ends a legacy session that says nothing."""
    with trio.fail_after(10):
        async with serving(limits=Limits(max_sessions=1, idle_timeout=0.4), legacy_sse=True) as served:
            async with open_stream(served.port) as (_, stream, _):
                assert (await request(served.port, "GET", "/sse", headers={"accept": "text/event-stream"})).status == 503
                refused = await served.client().post(served.client().message("initialize", {
                    "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "x", "version": "1"}}))
                assert refused.status == 503
                # Idle for the timeout: the server ends the session, and with it the stream.
                with trio.fail_after(3), pytest.raises(StopAsyncIteration):
                    await next_event(stream)
                assert (await served.health())["legacy_sse_sessions"] == 0


async def test_a_session_belongs_to_its_caller() -> None:
    ada_key, ada_digest = generate_api_key()
    bob_key, bob_digest = generate_api_key()
    authenticator = Authenticator(api_keys=ApiKeyStore([ApiKey("ada", ada_digest), ApiKey("bob", bob_digest)]),
                                  resource="http://127.0.0.1/mcp")
    with trio.fail_after(10):
        async with serving(authenticator=authenticator, legacy_sse=True) as served:
            assert (await request(served.port, "GET", "/sse", headers={"accept": "text/event-stream"})).status == 401
            async with open_stream(served.port, **{"x-api-key": ada_key}) as (http, _, endpoint):
                ping = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}).encode()
                posted = {"content-type": "application/json"}
                assert (await http.post(endpoint, content=ping, headers=posted)).status_code == 401
                assert (await http.post(endpoint, content=ping, headers={**posted, "x-api-key": bob_key})).status_code == 404
                assert (await http.post(endpoint, content=ping, headers={**posted, "x-api-key": ada_key})).status_code == 202


@pytest.mark.parametrize("http2", [False, True], ids=["h1", "hypercorn"])
async def test_shutdown_ends_the_stream(http2: bool) -> None:
    with trio.fail_after(10):
        async with serving(legacy_sse=True, http2=http2) as served:
            async with open_stream(served.port) as (_, stream, _):
                served.supervisor.shutdown()
                with pytest.raises(StopAsyncIteration):  # the session drained and the response ended
                    await next_event(stream)
            with trio.fail_after(3):
                await served.stopped.wait()
