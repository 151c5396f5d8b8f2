"""Middleware and custom methods: through the one answer kernel, both eras, every transport.

Each test runs against every (transport, era) pair: stdio (a connection on an in-process
stream pair, the stdio line channel), WebSocket (``serve_websocket``, a real socket), HTTP
(``serve_http``: a Streamable HTTP session for the handshake era, one POST per request for the
stateless one). The three middleware are the documented examples (docs/middleware.md): an
audit log, per-tool argument redaction, and a cache for a read-only tool.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
import trio_websocket

from mcp_trio import CallToolResult, Context, InvalidParams, Limits, Plugin, Server
from mcp_trio.offer._middleware import Request, ToolCall
from mcp_trio.transports.websocket import serve_websocket
from tests.helpers import INIT_PARAMS, JsonRpcPeer, serve_in_memory
from tests.http_client import McpHttp, request
from tests.served import serving, write_plugin
from tests.test_stateless import META, VERSION, headers_for

ERAS = ("handshake", "stateless")
TRANSPORTS = ("stdio", "websocket", "http")


# -- the documented examples -------------------------------------------------------------------
def audit_log(records: list[dict[str, Any]]) -> Callable[..., Awaitable[Any]]:
    """Example 1: one record per request: who, what, how long, and how it ended."""

    async def audit(request: Request, call_next: Callable[[Request], Awaitable[Any]]) -> Any:
        started = time.perf_counter()
        outcome = "error"
        try:
            result = await call_next(request)
            outcome = "isError" if getattr(result, "is_error", False) else "ok"
            return result
        finally:
            records.append({"method": request.method, "tool": getattr(request, "name", None),
                            "principal": None if request.principal is None else request.principal.subject,
                            "stateless": request.stateless, "outcome": outcome,
                            "ms": (time.perf_counter() - started) * 1000})

    return audit


#: Example 2: per tool, the arguments to mask before the tool (or anything after it) sees them.
REDACT = {"pay": {"card_number"}}


async def redact(request: Request, call_next: Callable[[Request], Awaitable[Any]]) -> Any:
    if isinstance(request, ToolCall) and request.name in REDACT:
        arguments = request.arguments
        for name in REDACT[request.name] & arguments.keys():
            arguments[name] = "****" + str(arguments[name])[-4:]
        request.arguments = arguments
    return await call_next(request)


def read_only_cache(server: Server) -> Callable[..., Awaitable[Any]]:
    """Example 3: results of read-only tools cached by (tool, arguments)."""
    cache: dict[tuple[str, str], CallToolResult] = {}

    async def cache_read_only(request: Request, call_next: Callable[[Request], Awaitable[Any]]) -> Any:
        if not isinstance(request, ToolCall):
            return await call_next(request)
        tool = server.registry.tools.get(request.name)
        annotations = tool.wire.annotations if tool is not None else msgspec.UNSET
        if annotations is msgspec.UNSET or not annotations.read_only_hint:
            return await call_next(request)
        key = (request.name, json.dumps(request.arguments, sort_keys=True))
        if key not in cache:
            result = await call_next(request)
            if result.is_error:
                return result
            cache[key] = result
        return cache[key]

    return cache_read_only


class Echo(msgspec.Struct):
    text: str
    times: int = 1


def build_app() -> tuple[Server, dict[str, Any]]:
    seen: dict[str, Any] = {"records": [], "charged": [], "forecasts": 0, "pings": []}
    app = Server("middleware-test")
    app.add_middleware(audit_log(seen["records"]))
    app.middleware(redact)
    app.middleware(read_only_cache(app))

    @app.middleware
    async def refuse_forbidden(request: Request, call_next: Callable[[Request], Awaitable[Any]]) -> Any:
        if isinstance(request, ToolCall) and request.arguments.get("forbidden"):
            raise InvalidParams("refused by middleware", {"why": "forbidden"})
        if isinstance(request, ToolCall) and request.name == "pay" and request.arguments.get("amount", 0) > 1000:
            return request.error_result("amount over the limit")
        return await call_next(request)

    @app.tool
    async def pay(card_number: str, amount: int) -> str:
        return f"charged {amount} to {card_number}"

    @app.tool(read_only=True)
    async def forecast(city: str) -> str:
        seen["forecasts"] += 1
        return f"sunny in {city}"

    @app.method("acme/echo")
    async def echo(params: Echo, ctx: Context) -> dict[str, Any]:
        return {"text": params.text * params.times, "stateless": ctx.client is not None and ctx.client.protocol_version == VERSION}

    @app.method("acme/ping")
    async def ping(params: dict[str, Any]) -> None:
        seen["pings"].append(params.get("n"))

    return app, seen


# -- one client per (transport, era) -----------------------------------------------------------
class Caller:
    """``call(method, params)`` -> the JSON-RPC reply; ``notify`` sends a notification."""

    def __init__(self, call: Callable[..., Awaitable[dict[str, Any]]], notify: Callable[..., Awaitable[None]]) -> None:
        self.call = call
        self.notify = notify


def _params(era: str, params: dict[str, Any] | None) -> dict[str, Any]:
    return {**(params or {}), "_meta": META} if era == "stateless" else dict(params or {})


async def _over_peer(peer: JsonRpcPeer, era: str) -> Caller:
    if era == "handshake":
        await peer.initialize()

    async def call(method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return await peer.request(method, _params(era, params))

    async def notify(method: str, params: dict[str, Any] | None = None) -> None:
        await peer.notify(method, _params(era, params))

    return Caller(call, notify)


class _WebSocketPeer(JsonRpcPeer):
    def __init__(self, ws: trio_websocket.WebSocketConnection) -> None:
        super().__init__()
        self._ws = ws

    async def send(self, message: dict[str, Any]) -> None:
        await self._ws.send_message(json.dumps(message))

    async def receive_fresh(self) -> dict[str, Any]:
        return json.loads(await self._ws.get_message())


@asynccontextmanager
async def connected(app: Server, transport: str, era: str) -> AsyncIterator[Caller]:
    with trio.fail_after(20):
        if transport == "stdio":
            async with serve_in_memory(app) as (client, supervisor, _):
                yield await _over_peer(client, era)
                supervisor.shutdown()
        elif transport == "websocket":
            async with trio.open_nursery() as nursery:
                endpoint = await nursery.start(lambda task_status: serve_websocket(app, Limits(), port=0, task_status=task_status))
                async with trio_websocket.open_websocket_url(f"ws://127.0.0.1:{endpoint.port}/") as ws:
                    yield await _over_peer(_WebSocketPeer(ws), era)
                endpoint.shutdown()
        else:
            async with serving(app) as served:
                if era == "handshake":
                    http = McpHttp(served.port)
                    await http.initialize(INIT_PARAMS)

                    async def call(method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
                        return await http.call(method, params or {})

                    async def notify(method: str, params: dict[str, Any] | None = None) -> None:
                        assert (await http.notify(method, params or {})).status == 202

                    yield Caller(call, notify)
                else:
                    ids = iter(range(1, 1000))

                    def body(method: str, params: dict[str, Any] | None, rid: int | None) -> bytes:
                        message = {"jsonrpc": "2.0", "method": method, "params": _params(era, params)}
                        if rid is not None:
                            message["id"] = rid
                        return json.dumps(message).encode()

                    def names(method: str, params: dict[str, Any] | None) -> str | None:
                        return (params or {}).get("name") if method == "tools/call" else None

                    async def call(method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
                        response = await request(served.port, "POST", headers=headers_for(method, names(method, params)),
                                                 body=body(method, params, next(ids)))
                        if response.content_type == "application/json":
                            return response.json()
                        return [e.json() for e in response.events() if e.data and "method" not in e.json()][0]

                    async def notify(method: str, params: dict[str, Any] | None = None) -> None:
                        response = await request(served.port, "POST", headers=headers_for(method), body=body(method, params, None))
                        assert response.status == 202

                    yield Caller(call, notify)


def text_of(reply: dict[str, Any]) -> str:
    return reply["result"]["content"][0]["text"]


# -- the tests ---------------------------------------------------------------------------------
@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("era", ERAS)
async def test_middleware_audits_redacts_caches_and_short_circuits(transport: str, era: str) -> None:
    app, seen = build_app()
    async with connected(app, transport, era) as client:
        # redaction: the tool sees the masked card number
        paid = await client.call("tools/call", {"name": "pay", "arguments": {"card_number": "4111111111111111", "amount": 5}})
        assert text_of(paid) == "charged 5 to ****1111"
        # caching a read-only tool: the second call is answered from the cache
        for _ in range(2):
            assert text_of(await client.call("tools/call", {"name": "forecast", "arguments": {"city": "Oslo"}})) == "sunny in Oslo"
        assert seen["forecasts"] == 1
        # short-circuit with an error: a JSON-RPC error, the handler never runs
        refused = await client.call("tools/call", {"name": "forecast", "arguments": {"city": "Rome", "forbidden": True}})
        assert refused["error"]["code"] == -32602 and refused["error"]["data"] == {"why": "forbidden"}
        # short-circuit with a result: an isError result the model reads
        over = await client.call("tools/call", {"name": "pay", "arguments": {"card_number": "1", "amount": 5000}})
        assert over["result"]["isError"] is True and text_of(over) == "amount over the limit"
        # every request is seen, in both eras, with its era
        await client.call("tools/list")
    methods = [record["method"] for record in seen["records"]]
    assert methods.count("tools/call") == 5 and "tools/list" in methods
    assert {record["stateless"] for record in seen["records"]} == {era == "stateless"}
    assert [r["outcome"] for r in seen["records"] if r["method"] == "tools/call"] == ["ok", "ok", "ok", "error", "isError"]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("era", ERAS)
async def test_custom_methods_and_notifications(transport: str, era: str) -> None:
    app, seen = build_app()
    async with connected(app, transport, era) as client:
        echoed = await client.call("acme/echo", {"text": "ab", "times": 2})
        result = echoed["result"]
        assert result["text"] == "abab" and result["stateless"] is (era == "stateless")
        if era == "stateless":
            assert result["resultType"] == "complete"  # stamped like every 2026-07-28 result
        bad = await client.call("acme/echo", {"times": 2})
        assert bad["error"]["code"] == -32602 and "acme/echo" in bad["error"]["message"]
        unknown = await client.call("acme/nothing", {})
        assert unknown["error"]["code"] == -32601
        await client.notify("acme/ping", {"n": 7})
        with trio.fail_after(5):
            while not seen["pings"]:
                await trio.sleep(0.01)
        assert seen["pings"] == [7]
    # custom methods pass through middleware too (the notification included); params that do
    # not fit are refused before admission and middleware, as for MCP's own methods
    assert [r["method"] for r in seen["records"]].count("acme/echo") == 1
    assert "acme/ping" in [r["method"] for r in seen["records"]]


async def test_custom_methods_pass_admission() -> None:
    from mcp_trio._limiter import RateLimits

    app, _ = build_app()
    async with serve_in_memory(app, rate_limits=RateLimits(rate=1, burst=0)) as (client, supervisor, _):
        await client.initialize()  # charged: the bucket is empty now
        limited = await client.request("acme/echo", {"text": "x"})
        assert limited["error"]["code"] == -32029
        supervisor.shutdown()


async def test_plugins_may_add_middleware(tmp_path: Path) -> None:
    write_plugin(tmp_path, "stamp", '''
        from mcp_trio import Plugin

        plugin = Plugin("stamp")

        @plugin.middleware
        async def stamp(request, call_next):
            result = await call_next(request)
            if request.method == "tools/call":
                result.content[0].text += " (checked by a plugin)"
            return result
    ''')
    app = Server("host")

    @app.tool
    async def hello() -> str:
        return "hello"

    app.use_plugins(tmp_path, watch=False)
    async with serve_in_memory(app) as (client, supervisor, _):
        await client.initialize()
        reply = await client.request("tools/call", {"name": "hello", "arguments": {}})
        assert text_of(reply) == "hello (checked by a plugin)"
        supervisor.shutdown()


def test_registration_rules() -> None:
    app = Server("rules")
    with pytest.raises(ValueError, match="vendor prefix"):
        app.method("tools/call")
    with pytest.raises(ValueError, match="vendor prefix"):
        app.method("nodash")
    with pytest.raises(TypeError, match="async function"):
        app.add_middleware(lambda request, call_next: None)  # type: ignore[arg-type, return-value]
    plugin = Plugin("p")  # a plugin refuses nothing a server accepts
    plugin.method("acme/x")(lambda params: params)
    plugin.add_middleware(redact)
    assert "acme/x" in plugin.registry.methods and plugin.registry.middleware == (redact,)
