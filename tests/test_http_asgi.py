"""What hypercorn serves: HTTP/2 (``serve_http(http2=True)``) and the app as ASGI (``asgi_app``).

Both run the same HTTP app as the h1 engine, behind the ASGI shim (``h1.AsgiHost``). The
clients are real: the official SDK's Streamable HTTP client, over HTTP/2 through an
``httpx2`` client that speaks only HTTP/2 (h2c, prior knowledge), and over HTTP/1.1 to an
``asgi_app`` mounted in a small ASGI router beside another app, under hypercorn's trio worker.
(``pytest -p tests.engine_hypercorn`` runs the whole HTTP suite through hypercorn.)
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import httpx2
import hypercorn.config
import hypercorn.trio
import trio
import trio_websocket
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

import mcp_trio
from mcp_trio import demo
from tests.test_http import _ws_call, sdk, serving
from tests.test_stdio_sdk import text_of

INIT = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "h2", "version": "1"}}
ACCEPT = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


@sdk
async def test_http2_with_the_sdk_client() -> None:
    versions: list[str] = []

    async def record(response: httpx2.Response) -> None:
        versions.append(response.http_version)

    with trio.fail_after(15):
        async with serving(http2=True) as served:
            async with httpx2.AsyncClient(http1=False, http2=True, event_hooks={"response": [record]}, timeout=10) as http:
                async with Client(streamable_http_client(served.url, http_client=http), mode="legacy") as client:
                    assert text_of(await client.call_tool("echo", {"text": "over h2"})) == "over h2"
                    # A call that reports progress is answered as an SSE stream, over HTTP/2 too.
                    result = await client.call_tool("test_tool_with_progress", {}, progress_callback=_ignore)
                    assert text_of(result) == "Progress test completed"
                    assert (await served.health())["sessions"] == 1
                health = await http.get(served.url.replace("/mcp", "/healthz"))
                assert health.status_code == 200 and health.http_version == "HTTP/2"
            assert versions and set(versions) == {"HTTP/2"}


async def _ignore(*_: Any) -> None:
    pass


async def test_http2_refusals_and_websocket_over_http1() -> None:
    """The gate, body limit and routes are the same app's; ``/ws`` is hypercorn's WebSocket."""
    with trio.fail_after(15):
        async with serving(limits=mcp_trio.Limits(max_message_size=1000), http2=True) as served:
            async with httpx2.AsyncClient(http1=False, http2=True, timeout=10) as http:
                too_big = await http.post(served.url, content=b"x" * 2000, headers=ACCEPT)
                assert too_big.status_code == 413 and too_big.json()["error"]["code"] == -32600
                assert (await http.get(served.url.replace("/mcp", "/%61dmin"))).status_code == 404
                evil = await http.post(served.url, json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": INIT},
                                       headers={**ACCEPT, "origin": "http://evil.example.com"})
                assert evil.status_code == 403
            async with trio_websocket.open_websocket_url(f"ws://127.0.0.1:{served.port}/ws", subprotocols=["mcp"]) as ws:
                assert ws.subprotocol == "mcp"
                assert (await _ws_call(ws, {"jsonrpc": "2.0", "id": 1, "method": "ping"}))["result"] == {}
                assert (await served.health())["websockets"] == 1


# -- asgi_app: mounted in someone else's ASGI stack -------------------------------------------------
async def _hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    body = b"hello from the other app"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


def router(mcp: Any, prefix: str) -> Any:
    """A tiny ASGI router: ``/hello`` is another app, ``prefix/...`` is the MCP server (mounted
    there: ``root_path`` set, the path left whole, as Starlette's ``Mount`` does), and every
    lifespan event is passed on to it."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await mcp(scope, receive, send)
        elif scope["path"] == "/hello":
            await _hello(scope, receive, send)
        elif scope["path"].startswith(prefix + "/"):
            await mcp({**scope, "root_path": scope.get("root_path", "") + prefix}, receive, send)
        else:
            await send({"type": "http.response.start", "status": 404, "headers": [(b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})

    return app


@asynccontextmanager
async def hypercorn_serving(app: Any) -> AsyncIterator[str]:
    config = hypercorn.config.Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.graceful_timeout = 3
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(partial(hypercorn.trio.serve, app, config, shutdown_trigger=stop.wait))
        try:
            yield binds[0]
        finally:
            stop.set()


@sdk
async def test_asgi_app_beside_another_route() -> None:
    mcp = mcp_trio.asgi_app(demo.server, legacy_sse=True)
    with trio.fail_after(20):
        async with hypercorn_serving(router(mcp, "/tools")) as base:
            assert mcp.supervisor is not None  # the lifespan started it
            async with Client(streamable_http_client(f"{base}/tools/mcp"), mode="legacy") as client:
                assert text_of(await client.call_tool("echo", {"text": "mounted"})) == "mounted"
            async with Client(sse_client(f"{base}/tools/sse")) as client:  # its endpoint is under the mount too
                assert text_of(await client.call_tool("echo", {"text": "mounted, 2024"})) == "mounted, 2024"
            async with httpx2.AsyncClient(timeout=10) as http:
                hello = await http.get(f"{base}/hello")
                assert hello.status_code == 200 and hello.text == "hello from the other app"
                health = (await http.get(f"{base}/tools/healthz")).json()
                assert health["status"] == "ok" and health["sessions"] == 0  # the SDK's DELETE ended its session
                assert (await http.get(f"{base}/mcp")).status_code == 404  # not mounted there
        assert mcp.supervisor is None  # the lifespan's shutdown stopped it


async def test_asgi_app_without_lifespan_says_so() -> None:
    """A router that does not pass lifespan events on: every request is 503, with the reason."""
    mcp = mcp_trio.asgi_app(demo.server)

    async def no_lifespan(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        await mcp(scope, receive, send)

    with trio.fail_after(10):
        async with hypercorn_serving(no_lifespan) as base, httpx2.AsyncClient(timeout=10) as http:
            answer = await http.post(f"{base}/mcp", content=json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                                                                       "params": INIT}), headers=ACCEPT)
            assert answer.status_code == 503 and "lifespan" in answer.json()["error"]["message"]
