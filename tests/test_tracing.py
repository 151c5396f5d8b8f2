"""OpenTelemetry tracing: the span tree of a request, its attributes, trace context in and out.

Spans are collected with the SDK's own in-memory exporter (``InMemorySpanExporter``). In
memory first (a raw client answering the server's sampling request), then over real HTTP:
our client with its tracer calling a traced server whose tool calls a second traced server
(an upstream, through the client's hook), and a traceparent sent only as an HTTP header. Then
``mcp-trio serve --tracing`` exporting over OTLP/HTTP to a receiver, and a child process
proving nothing of OpenTelemetry is imported while tracing is off.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from functools import partial
from typing import Any

import h11
import pytest
import trio
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from mcp_trio import Context, Limits, Server, Tracing
from mcp_trio._limiter import RateLimits
from mcp_trio.client import McpError, OtelRequestTracer, connect
from mcp_trio.transports.http import serve_http
from tests.helpers import child_env, serve_in_memory, spawn_stdio, stdio_command
from tests.http_client import McpHttp

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


def collect(server: Server) -> tuple[InMemorySpanExporter, TracerProvider]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    server.tracing = Tracing(provider)
    return exporter, provider


def by_name(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    spans = exporter.get_finished_spans()
    named = {span.name: span for span in spans}
    assert len(named) == len(spans), [span.name for span in spans]
    return named


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def traceparent_parts(value: str) -> tuple[int, int]:
    _, trace_id, span_id, _ = value.split("-")
    return int(trace_id, 16), int(span_id, 16)


# -- the span tree ---------------------------------------------------------------------------------
async def test_a_tool_call_is_a_tree_of_spans_with_the_mcp_attributes() -> None:
    app = Server("traced")
    exporter, _ = collect(app)

    @app.middleware
    async def audit(request: Any, call_next: Any) -> Any:
        return await call_next(request)

    @app.tool
    async def summarize(text: str, ctx: Context) -> str:
        answer = await ctx.sample(f"summarize: {text}")
        return answer.content["text"]  # type: ignore[index]

    with trio.fail_after(10):
        async with serve_in_memory(app, rate_limits=RateLimits(rate=100, burst=10)) as (client, _, connection):
            connection.peer = "198.51.100.7"
            await client.initialize()
            await client.send({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
                "name": "summarize", "arguments": {"text": "a long story"},
                "_meta": {"traceparent": TRACEPARENT, "tracestate": "rojo=00f067aa0ba902b7"}}})
            ask = await client.receive_until(lambda m: m.get("method") == "sampling/createMessage")
            asked_with = ask["params"]["_meta"]["traceparent"]
            await client.send({"jsonrpc": "2.0", "id": ask["id"], "result": {
                "role": "assistant", "content": {"type": "text", "text": "short"}, "model": "test"}})
            reply = await client.reply_to(7)
            assert reply["result"]["content"][0]["text"] == "short"

    spans = by_name(exporter)
    assert set(spans) == {"tools/call summarize", "admission", "middleware test_a_tool_call_is_a_tree_of_spans_with_the_mcp_attributes.<locals>.audit",
                          "execute_tool summarize", "sampling/createMessage"}
    request = spans["tools/call summarize"]
    middleware = spans["middleware test_a_tool_call_is_a_tree_of_spans_with_the_mcp_attributes.<locals>.audit"]
    tool, sampling, admission = spans["execute_tool summarize"], spans["sampling/createMessage"], spans["admission"]
    # The caller's context is the parent, tracestate included; one trace throughout.
    assert request.kind is SpanKind.SERVER
    assert request.context.trace_id == int(TRACE_ID, 16) and parent_of(request) == int(PARENT_ID, 16)
    assert request.parent is not None and request.parent.trace_state.get("rojo") == "00f067aa0ba902b7"
    assert {span.context.trace_id for span in spans.values()} == {int(TRACE_ID, 16)}
    assert parent_of(admission) == parent_of(middleware) == request.context.span_id
    assert parent_of(tool) == middleware.context.span_id
    assert parent_of(sampling) == tool.context.span_id and sampling.kind is SpanKind.CLIENT
    # The client was asked within the sampling span's context.
    assert traceparent_parts(asked_with) == (int(TRACE_ID, 16), sampling.context.span_id)
    assert dict(request.attributes or {}) == {
        "mcp.method.name": "tools/call", "jsonrpc.request.id": "7", "mcp.session.id": connection.session_id,
        "mcp.protocol.version": "2025-11-25", "client.address": "198.51.100.7", "gen_ai.tool.name": "summarize",
        "gen_ai.operation.name": "execute_tool", "mcp_trio.outcome": "ok"}
    assert tool.attributes == {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "summarize"}
    assert admission.attributes == {"mcp.method.name": "tools/call", "gen_ai.tool.name": "summarize"}
    assert request.status.status_code is StatusCode.UNSET and tool.status.status_code is StatusCode.UNSET


async def test_failures_mark_their_spans_as_errors(autojump_clock: trio.testing.MockClock) -> None:
    app = Server("failing")
    exporter, _ = collect(app)

    @app.tool
    async def breaks() -> str:
        raise ValueError("the disk is full")

    @app.tool(timeout=2)
    async def hangs() -> str:
        await trio.sleep_forever()
        return "never"

    @app.resource("note://{name}")
    async def note(name: str) -> str:
        return name

    with trio.fail_after(100):
        async with serve_in_memory(app, rate_limits=RateLimits(rate=0.001, burst=4)) as (client, _, _):
            await client.initialize()
            assert (await client.request("tools/call", {"name": "breaks"}))["result"]["isError"] is True
            assert (await client.request("tools/call", {"name": "nope"}))["error"]["code"] == -32602
            assert (await client.request("tools/call", {"name": "hangs"}))["error"]["code"] == -32001
            assert "result" in await client.request("resources/read", {"uri": "note://a"})
            assert (await client.request("ping"))["error"]["code"] == -32029  # the bucket is empty now

    spans = exporter.get_finished_spans()
    named = {span.name: span for span in spans}
    # A tool that raises: its own span holds the exception; the request's is a tool_error.
    tool = named["execute_tool breaks"]
    assert tool.status.status_code is StatusCode.ERROR and tool.status.description == "the disk is full"
    assert tool.attributes is not None and tool.attributes["error.type"] == "ValueError"
    assert [event.name for event in tool.events] == ["exception"]
    request = named["tools/call breaks"]
    assert request.status.status_code is StatusCode.ERROR
    assert request.attributes is not None
    assert (request.attributes["error.type"], request.attributes["mcp_trio.outcome"]) == ("tool_error", "tool_error")
    # A protocol error: its JSON-RPC code and message.
    unknown = named["tools/call nope"]
    assert unknown.attributes is not None and unknown.attributes["error.type"] == "-32602"
    assert unknown.attributes["rpc.response.status_code"] == "-32602"
    assert unknown.status.description == "unknown tool: 'nope'"
    # A timeout: the tool's span was cancelled, the request answered -32001.
    assert named["execute_tool hangs"].attributes["error.type"] == "cancelled"  # type: ignore[index]
    assert named["tools/call hangs"].attributes["error.type"] == "-32001"  # type: ignore[index]
    assert named["resources/read"].attributes["mcp.resource.uri"] == "note://a"  # type: ignore[index]
    # Refused at admission: that span says so, and so does the request's.
    refused = [span for span in spans if span.name == "admission" and span.status.status_code is StatusCode.ERROR]
    assert len(refused) == 1 and refused[0].attributes["error.type"] == "-32029"  # type: ignore[index]
    assert named["ping"].attributes["error.type"] == "-32029"  # type: ignore[index]


# -- context for a tool's own calls --------------------------------------------------------------
async def test_a_tools_own_calls_join_the_trace_with_tracing_on_and_off() -> None:
    seen: dict[str, Any] = {}

    def build() -> Server:
        app = Server("headers")

        @app.tool
        async def fetch(ctx: Context) -> str:
            seen["async"] = ctx.trace_headers()
            seen["async_current"] = trace.get_current_span().get_span_context()
            return "ok"

        @app.tool
        def blocking(ctx: Context) -> str:  # a sync tool: its worker thread sees the span too
            seen["thread"] = trace.get_current_span().get_span_context()
            seen["thread_headers"] = ctx.trace_headers()
            return "ok"

        return app

    meta = {"_meta": {"traceparent": TRACEPARENT, "tracestate": "rojo=1"}}
    with trio.fail_after(10):
        off = build()
        async with serve_in_memory(off) as (client, _, _):
            await client.initialize()
            await client.request("tools/call", {"name": "fetch", **meta})
            assert seen["async"] == {"traceparent": TRACEPARENT, "tracestate": "rojo=1"}  # passed through
            await client.request("tools/call", {"name": "fetch"})
            assert seen["async"] == {}
            assert not seen["async_current"].is_valid
        on = build()
        exporter, _ = collect(on)
        async with serve_in_memory(on) as (client, _, _):
            await client.initialize()
            await client.request("tools/call", {"name": "fetch", **meta})
            await client.request("tools/call", {"name": "blocking", **meta})
    spans = by_name(exporter)
    fetch_span, blocking_span = spans["execute_tool fetch"], spans["execute_tool blocking"]
    assert traceparent_parts(seen["async"]["traceparent"]) == (int(TRACE_ID, 16), fetch_span.context.span_id)
    assert seen["async"]["tracestate"] == "rojo=1"
    assert seen["async_current"].span_id == fetch_span.context.span_id
    assert seen["thread"].span_id == blocking_span.context.span_id
    assert traceparent_parts(seen["thread_headers"]["traceparent"])[1] == blocking_span.context.span_id


# -- over HTTP: headers, our client's tracer, an upstream ----------------------------------------------
async def test_trace_context_over_http_through_a_gateway_to_an_upstream(nursery: trio.Nursery) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    upstream = Server("upstream")
    upstream.tracing = Tracing(provider)

    @upstream.tool
    async def echo(text: str) -> str:
        return text

    gateway = Server("gateway")
    gateway.tracing = Tracing(provider)
    upstream_port = await nursery.start(partial(serve_http, upstream, Limits(), port=0))

    @gateway.tool
    async def relay(text: str) -> str:
        # What the gateway of issue 15 does for each proxied call: the client's tracer hook.
        async with connect(f"http://127.0.0.1:{upstream_port}/mcp", tracer=gateway.tracing.client_tracer) as remote:
            result = await remote.call_tool("echo", {"text": text})
        return result.content[0].text  # type: ignore[union-attr]

    port = await nursery.start(partial(serve_http, gateway, Limits(), port=0))
    tracer = provider.get_tracer("test")
    with trio.fail_after(20):
        with tracer.start_as_current_span("agent step") as root:
            async with connect(f"http://127.0.0.1:{port}/mcp", era="handshake", tracer=OtelRequestTracer(provider)) as client:
                assert (await client.call_tool("relay", {"text": "hi"})).content[0].text == "hi"  # type: ignore[union-attr]
                with pytest.raises(McpError):
                    await client.call_tool("missing", {})

    spans = exporter.get_finished_spans()
    tree = [(span.name, span.kind) for span in spans if span.context.trace_id == root.get_span_context().trace_id]

    def one(name: str, kind: SpanKind) -> ReadableSpan:
        found = [span for span in spans if span.name == name and span.kind is kind
                 and span.context.trace_id == root.get_span_context().trace_id]
        assert len(found) == 1, (name, kind, tree)
        return found[0]

    agent_call = one("tools/call relay", SpanKind.CLIENT)
    served = one("tools/call relay", SpanKind.SERVER)
    relay = one("execute_tool relay", SpanKind.INTERNAL)
    upstream_call = one("tools/call echo", SpanKind.CLIENT)
    upstream_served = one("tools/call echo", SpanKind.SERVER)
    echoed = one("execute_tool echo", SpanKind.INTERNAL)
    assert parent_of(agent_call) == root.get_span_context().span_id
    assert parent_of(served) == agent_call.context.span_id
    assert parent_of(relay) == served.context.span_id
    assert parent_of(upstream_call) == relay.context.span_id
    assert parent_of(upstream_served) == upstream_call.context.span_id
    assert parent_of(echoed) == upstream_served.context.span_id
    failed = one("tools/call missing", SpanKind.CLIENT)
    assert failed.status.status_code is StatusCode.ERROR and failed.attributes["error.type"] == "-32602"  # type: ignore[index]

    # A traceparent sent only as an HTTP header is the parent; with one in _meta too, a link.
    exporter.clear()
    with trio.fail_after(10):
        http = McpHttp(port)
        await http.initialize()
        header_parent = f"00-{'a' * 32}-{'b' * 16}-01"
        await http.call("tools/list", {}, traceparent=header_parent)
        await http.call("tools/list", {"_meta": {"traceparent": TRACEPARENT}}, traceparent=header_parent)
    listed = [span for span in exporter.get_finished_spans() if span.name == "tools/list"]
    assert [(span.context.trace_id, parent_of(span)) for span in listed] == [
        (int("a" * 32, 16), int("b" * 16, 16)), (int(TRACE_ID, 16), int(PARENT_ID, 16))]
    assert [link.context.span_id for link in listed[1].links] == [int("b" * 16, 16)]
    assert listed[0].links == ()


async def test_the_gateway_carries_the_trace_to_its_upstream(nursery: trio.Nursery) -> None:
    """``server.mount(Remote(...))`` with tracing on: each proxied call is a CLIENT span under
    the tool call's SERVER span, and the upstream's spans continue that trace."""
    from mcp_trio import Remote

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    upstream = Server("upstream")
    upstream.tracing = Tracing(provider)

    @upstream.tool
    async def echo(text: str) -> str:
        return text

    upstream_port = await nursery.start(partial(serve_http, upstream, Limits(), port=0))
    gateway = Server("gateway")
    gateway.tracing = Tracing(provider)
    gateway.mount(Remote(f"http://127.0.0.1:{upstream_port}/mcp"), prefix="up")
    port = await nursery.start(partial(serve_http, gateway, Limits(), port=0))
    with trio.fail_after(20):
        async with connect(f"http://127.0.0.1:{port}/mcp", era="handshake") as client:
            assert (await client.call_tool("up_echo", {"text": "hi"})).content[0].text == "hi"  # type: ignore[union-attr]

    spans = exporter.get_finished_spans()
    served = [span for span in spans if span.name == "tools/call up_echo" and span.kind is SpanKind.SERVER]
    assert len(served) == 1, [(span.name, span.kind) for span in spans]
    trace_id = served[0].context.trace_id
    proxied = [span for span in spans if span.kind is SpanKind.CLIENT and span.name == "tools/call echo"]
    assert len(proxied) == 1 and proxied[0].context.trace_id == trace_id
    upstream_served = [span for span in spans if span.kind is SpanKind.SERVER and span.name == "tools/call echo"]
    assert len(upstream_served) == 1 and parent_of(upstream_served[0]) == proxied[0].context.span_id


# -- nothing when off ----------------------------------------------------------------------------
def test_no_opentelemetry_module_is_imported_while_tracing_is_off() -> None:
    script = textwrap.dedent("""
        import sys, trio
        from mcp_trio import Context, Server
        from tests.helpers import serve_in_memory

        app = Server("plain")

        @app.tool
        async def echo(text: str, ctx: Context) -> str:
            ctx.trace_headers()
            return text

        async def main():
            async with serve_in_memory(app) as (client, _, _):
                await client.initialize()
                meta = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
                reply = await client.request("tools/call", {"name": "echo", "arguments": {"text": "x"}, "_meta": meta})
                assert reply["result"]["content"][0]["text"] == "x"

        trio.run(main)
        print(sorted(name for name in sys.modules if name.startswith("opentelemetry")))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=child_env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# -- OTLP export from `mcp-trio serve` -------------------------------------------------------------
async def test_mcp_trio_serve_exports_spans_over_otlp_http(nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    received: list[Any] = []
    arrived = trio.Event()

    async def collector(stream: trio.SocketStream) -> None:
        """An OTLP/HTTP receiver: POST /v1/traces, protobuf, answered 200."""
        conn = h11.Connection(h11.SERVER)
        body = b""
        target = b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Request):
                target = event.target
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        received.append((target, request))
        arrived.set()
        await stream.send_all(conn.send(h11.Response(status_code=200, headers=[("content-length", "0")])) +
                              conn.send(h11.EndOfMessage()))

    listeners = await nursery.start(partial(trio.serve_tcp, collector, 0, host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    monkeypatch.setenv("MCP_TRIO_TRACING_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("MCP_TRIO_TRACING_SERVICE_NAME", "demo-svc")
    with trio.fail_after(30):
        async with spawn_stdio("--tracing", stderr=None) as (client, process):
            await client.initialize()
            reply = await client.request("tools/call", {"name": "echo", "arguments": {"text": "hi"},
                                                        "_meta": {"traceparent": TRACEPARENT}})
            assert "result" in reply
            await client.close()  # EOF: the server exits, flushing its batch of spans
            await arrived.wait()
            assert await process.wait() == 0
    target, request = received[0]
    assert target == b"/v1/traces"
    resource = request.resource_spans[0].resource
    assert {kv.key: kv.value.string_value for kv in resource.attributes}["service.name"] == "demo-svc"
    names = {span.name: span for scope in request.resource_spans[0].scope_spans for span in scope.spans}
    assert {"tools/call echo", "execute_tool echo"} <= set(names)
    assert names["tools/call echo"].trace_id.hex() == TRACE_ID and names["tools/call echo"].parent_span_id.hex() == PARENT_ID


def test_tracing_that_cannot_work_stops_the_server_at_start() -> None:
    env = {**child_env(), "MCP_TRIO_TRACING_ENABLED": "true", "MCP_TRIO_TRACING_ENDPOINT": "collector:4318"}
    done = subprocess.run(stdio_command(), capture_output=True, text=True, timeout=60, env=env, stdin=subprocess.DEVNULL)
    assert done.returncode != 0
    assert "endpoint must be an http(s) URL" in done.stderr and done.stderr.count("\n") == 1



def test_tracing_without_opentelemetry_installed_stops_the_server_with_the_fix() -> None:
    script = ("import sys; sys.modules['opentelemetry'] = None  # as if not installed\n"
              "from mcp_trio._cli import main; sys.exit(main(['serve', '--tracing']))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=child_env(),
                          stdin=subprocess.DEVNULL)
    assert done.returncode != 0
    assert done.stderr == ("mcp-trio: tracing needs OpenTelemetry, which is not installed: pip install 'mcp-trio[otel]', "
                           "or turn tracing off ([tracing] enabled, --tracing)\n")
