"""``mcp_trio.client`` against our own server, in both protocol eras, over stdio, WebSocket and
Streamable HTTP: typed results, callbacks, progress and logs, list changes, subscriptions,
cancellation, timeouts, limits, credentials.

The server is the demo app (``python -m mcp_trio serve`` for stdio, ``serve_http`` in this
process for WebSocket (``/ws``) and HTTP (``/mcp``)). ``test_client_peers.py`` runs the same
client against servers we did not write.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

from mcp_trio import Context, Limits, Server, demo
from mcp_trio.auth import ApiKey, ApiKeyStore, Authenticator, generate_api_key
from mcp_trio.client import (
    CallToolResult,
    Client,
    ConnectError,
    ConnectionLost,
    EraError,
    HTTPError,
    LoggingMessageParams,
    McpError,
    PromptRef,
    ProtocolError,
    RequestTimeout,
    ResourceTemplateRef,
    Root,
    TextContent,
    connect,
)
from tests.http_client import open_request
from tests.served import serving

pytestmark = pytest.mark.slow

SERVE = [sys.executable, "-m", "mcp_trio", "serve"]
ERAS = {"auto": "stateless", "handshake": "handshake"}


class Asked:
    """The client side of sampling, elicitation and roots, recording what the server asked."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def sampling(self, params: Any) -> dict[str, Any]:
        self.asked.append("sampling")
        assert params.max_tokens > 0 and params.messages
        return {"role": "assistant", "content": {"type": "text", "text": "Hi"}, "model": "m"}

    async def elicitation(self, params: Any) -> dict[str, Any]:
        self.asked.append("elicitation")
        properties = params.requested_schema.get("properties", {})
        return {"action": "accept", "content": {k: "Ada" if v.get("type") == "string" else True for k, v in properties.items()}}

    async def roots(self) -> list[Root]:
        self.asked.append("roots")
        return [Root(uri="file:///work", name="work")]


@asynccontextmanager
async def target(transport: str, app: Server = demo.server, **options: Any) -> AsyncIterator[Any]:
    """Where the demo app is served over ``transport``: a command, or a URL of ours."""
    if transport == "stdio":
        yield SERVE
        return
    async with serving(app, **options) as served:
        yield served.ws_url if transport == "ws" else f"{served.base}/mcp"


@pytest.mark.parametrize("era", ["auto", "handshake"])
@pytest.mark.parametrize("transport", ["stdio", "ws", "http"])
async def test_the_whole_surface(transport: str, era: str) -> None:
    asked = Asked()
    logs: list[LoggingMessageParams] = []
    changes: list[str] = []
    with trio.fail_after(30):
        async with target(transport) as where, connect(
            where, era=era, sampling=asked.sampling, elicitation=asked.elicitation, roots=asked.roots,
            on_log=logs.append, on_list_changed=changes.append,
        ) as client:
            assert client.era == ERAS[era]
            assert client.protocol_version == ("2026-07-28" if era == "auto" else "2025-11-25")
            assert client.server_info is not None and client.server_info.name == "mcp-trio-demo"
            assert client.server_capabilities["tools"]["listChanged"] is True

            tools = {tool.name: tool for tool in await client.list_tools()}
            assert tools["echo"].input_schema["properties"]["text"]["type"] == "string"
            echoed = await client.call_tool("echo", {"text": "hi"})
            assert isinstance(echoed, CallToolResult) and echoed.content == [TextContent(text="hi")] and not echoed.is_error

            steps: list[tuple[float, float | None]] = []
            done = await client.call_tool("test_tool_with_progress", progress=lambda p, total, message: steps.append((p, total)))
            assert done.content[0].text == "Progress test completed"  # type: ignore[union-attr]
            assert steps == [(0, 100), (50, 100), (100, 100)]

            # Sampling, elicitation and roots: requests to us (handshake) or input rounds (2026-07-28).
            multi = await client.call_tool("test_input_required_result_multiple_inputs")
            assert multi.content[0].text == "Hi Ada (1 roots)"  # type: ignore[union-attr]
            assert sorted(asked.asked) == ["elicitation", "roots", "sampling"]

            failing = await client.call_tool("test_error_handling")
            assert failing.is_error is True
            with pytest.raises(McpError) as unknown:
                await client.call_tool("no_such_tool")
            assert unknown.value.code == -32602 and "no_such_tool" in unknown.value.message

            await client.set_logging_level("info")
            await client.call_tool("test_logging_tool")
            assert [entry.data for entry in logs] == ["Tool execution started", "Tool processing data", "Tool execution completed"]

            resources = {r.uri for r in await client.list_resources()}
            assert "test://static-text" in resources
            templates = await client.list_resource_templates()
            assert templates[0].uri_template == "test://template/{id}/data"
            read = await client.read_resource("test://static-binary")
            assert read.contents[0].blob and read.contents[0].mime_type == "image/png"
            prompts = {p.name for p in await client.list_prompts()}
            assert "test_prompt_with_arguments" in prompts
            prompt = await client.get_prompt("test_prompt_with_arguments", {"arg1": "a", "arg2": "b"})
            assert prompt.messages[0].content.text == "Prompt with arguments: arg1='a', arg2='b'"  # type: ignore[union-attr]
            completion = await client.complete(PromptRef(name="test_prompt_with_arguments"), "arg1", "pa")
            assert completion.values == ["paris", "park", "party"]
            ids = await client.complete(ResourceTemplateRef(uri="test://template/{id}/data"), "id", "")
            assert ids.values
            await client.ping()

            raw = await client.request("tools/call", {"name": "echo", "arguments": {"text": "raw"}})
            assert raw["content"] == [{"type": "text", "text": "raw"}]

            # A list change the server announces reaches on_list_changed (over HTTP on the GET
            # stream, in 2026-07-28 on subscriptions/listen; stdio/WebSocket on the connection).
            await client.call_tool("test_trigger_tool_change")
            while "tools" not in changes:
                await trio.sleep(0.02)


@pytest.mark.parametrize("era", ["auto", "handshake"])
@pytest.mark.parametrize("transport", ["ws", "http"])
async def test_subscriptions_in_both_eras(transport: str, era: str) -> None:
    server = Server("watched")
    version = [0]

    @server.resource("test://watched")
    async def watched() -> str:
        return f"v{version[0]}"

    @server.tool
    async def touch(ctx: Context) -> str:
        version[0] += 1
        ctx.notify_resource_updated("test://watched")
        return "touched"

    updated: list[str] = []
    with trio.fail_after(20):
        async with target(transport, server) as where, connect(where, era=era, on_resource_updated=updated.append) as client:
            await client.subscribe("test://watched")
            if client.era == "stateless":  # the listen stream is (re)opened with the new filter
                while client._listen_scope is None:
                    await trio.sleep(0.01)
                await trio.sleep(0.2)
            await client.call_tool("touch")
            while updated != ["test://watched"]:
                await trio.sleep(0.02)
            assert (await client.read_resource("test://watched")).contents[0].text == "v1"
            await client.unsubscribe("test://watched")
            await trio.sleep(0.2)
            await client.call_tool("touch")
            await trio.sleep(0.3)
            assert updated == ["test://watched"]


def _blocking_server() -> tuple[Server, list[str]]:
    server = Server("blocking")
    events: list[str] = []

    @server.tool
    async def wait_forever() -> str:
        events.append("started")
        try:
            await trio.sleep_forever()
        finally:
            events.append("cancelled")
        return "never"  # pragma: no cover

    return server, events


@pytest.mark.parametrize("era", ["auto", "handshake"])
@pytest.mark.parametrize("transport", ["ws", "http"])
async def test_a_cancelled_call_stops_the_tool(transport: str, era: str) -> None:
    """Handshake era: notifications/cancelled; 2026-07-28 over HTTP: the response is closed."""
    server, events = _blocking_server()
    with trio.fail_after(20):
        async with target(transport, server) as where, connect(where, era=era) as client:
            with trio.move_on_after(0.3):  # the caller's own cancel scope
                await client.call_tool("wait_forever")
            while events != ["started", "cancelled"]:
                await trio.sleep(0.02)
            # A timeout does the same, as a RequestTimeout.
            with pytest.raises(RequestTimeout, match="tools/call got no answer within 0.2 s"):
                await client.call_tool("wait_forever", timeout=0.2)
            while events != ["started", "cancelled"] * 2:
                await trio.sleep(0.02)
            assert (await client.list_tools())[0].name == "wait_forever"  # the session goes on


async def test_http_pool_is_bounded() -> None:
    server = Server("slow")

    @server.tool
    async def nap() -> str:
        await trio.sleep(0.05)
        return "ok"

    with trio.fail_after(20):
        async with target("http", server) as where, connect(where, era="handshake", max_connections=2) as client:
            results: list[str] = []

            async def one() -> None:
                results.append((await client.call_tool("nap")).content[0].text)  # type: ignore[union-attr]

            async with trio.open_nursery() as nursery:
                for _ in range(12):
                    nursery.start_soon(one)
            assert results == ["ok"] * 12
            assert client._transport.opened <= 2


async def test_resuming_a_post_stream_the_server_closed() -> None:
    """The demo's ``test_reconnection`` ends its POST's SSE stream early (SEP-1699); the
    client resumes it with GET + Last-Event-ID and gets the answer there."""
    with trio.fail_after(20):
        async with target("http") as where, connect(where, era="handshake") as client:
            result = await client.call_tool("test_reconnection")
            assert result.content[0].text == "Reconnection test completed successfully"  # type: ignore[union-attr]


async def test_the_get_stream_reconnects_with_last_event_id() -> None:
    changes: list[str] = []
    with trio.fail_after(20):
        async with serving(demo.server) as served:
            url = f"{served.base}/mcp"
            async with connect(url, era="handshake", on_list_changed=changes.append) as client:
                await client.call_tool("test_trigger_prompt_change")
                while changes != ["prompts"]:
                    await trio.sleep(0.02)
                # Another GET on the session takes the stream over: ours ends, and reconnects.
                headers = {"accept": "text/event-stream", "mcp-session-id": client.session_id or "",
                           "mcp-protocol-version": "2025-11-25"}
                async with open_request(served.port, "GET", headers=headers) as other:
                    assert other.status == 200
                await trio.sleep(1.5)  # the server's retry delay, then the client is back
                await client.call_tool("test_trigger_prompt_change")
                while changes != ["prompts", "prompts"]:
                    await trio.sleep(0.02)
                assert client.listen_stopped is None


async def test_pagination_follows_cursors_with_a_cap() -> None:
    server = Server("many")
    for n in range(7):
        server.add_tool(lambda: "x", name=f"tool_{n}")
    with trio.fail_after(20):
        async with target("ws", server, limits=Limits(page_size=2)) as where, connect(where, era="handshake") as client:
            assert [t.name for t in await client.list_tools()] == [f"tool_{n}" for n in range(7)]
            first = await client.list_tools_page()
            assert len(first.tools) == 2 and isinstance(first.next_cursor, str)
            with pytest.raises(ProtocolError, match="tools/list has more than 2 pages"):
                await client.list_tools(max_pages=2)


async def test_limits_and_errors_in_one_line() -> None:
    with trio.fail_after(30):
        # A message over max_message_size ends a stdio session; over HTTP it fails the request.
        async with connect(SERVE, era="handshake", max_message_size=2000) as client:
            with pytest.raises(ConnectionLost, match="longer than 2000 bytes"):
                await client.call_tool("echo", {"text": "x" * 5000})
        async with target("http") as where, connect(where, era="handshake", max_message_size=2000) as client:
            with pytest.raises(ProtocolError, match="longer than 2000 bytes"):
                await client.call_tool("echo", {"text": "x" * 5000})
            assert (await client.call_tool("echo", {"text": "small"})).content[0].text == "small"  # type: ignore[union-attr]
        # A server that never answers the handshake: a ConnectError naming what it waited for.
        silent = [sys.executable, "-c", "import sys; sys.stdin.read()"]
        with pytest.raises(ConnectError, match="did not answer server/discover or initialize within 0.5 s"):
            async with connect(silent, handshake_timeout=0.5):
                pass
        # 2026-07-28 has no roots/list_changed.
        async with connect(SERVE, era="stateless") as client:
            with pytest.raises(EraError, match="handshake-era"):
                await client.roots_changed()


async def test_credentials_headers_and_token_provider() -> None:
    key, digest = generate_api_key()
    authenticator = Authenticator(api_keys=ApiKeyStore([ApiKey("ci", digest)]))
    with trio.fail_after(20):
        async with target("http", authenticator=authenticator) as where:
            with pytest.raises(HTTPError) as refused:
                async with connect(where, era="handshake"):
                    pass
            assert refused.value.status == 401 and "Bearer" in str(refused.value)
            async with connect(where, headers={"X-API-Key": key}) as client:
                assert client.era == "stateless"
                assert (await client.call_tool("echo", {"text": "k"})).content[0].text == "k"  # type: ignore[union-attr]
            asked: list[bool] = []

            async def provider(refresh: bool) -> str:
                asked.append(refresh)
                return key if refresh else "mcpk_stale"

            async with connect(where, era="handshake", token_provider=provider) as client:
                assert (await client.call_tool("echo", {"text": "t"})).content[0].text == "t"  # type: ignore[union-attr]
            assert asked == [False, True]  # refused once, refreshed, then kept


async def test_server_requests_for_a_call_go_to_its_asks_over_http() -> None:
    """Over HTTP the server's request arrives on the POST of the call it belongs to: the
    call's own ``asks`` answers it, not the client-wide callback."""
    client_wide = Asked()
    per_call: list[str] = []

    async def asks(method: str, params: Any) -> Any:
        per_call.append(method)
        return await client_wide.elicitation(Elicit(params))

    with trio.fail_after(20):
        for era in ("handshake", "auto"):
            per_call.clear()
            async with target("http") as where, connect(where, era=era, elicitation=client_wide.elicitation) as client:
                result = await client.call_tool("test_elicitation", {"message": "who?"}, asks=asks)
                assert "Ada" in result.content[0].text  # type: ignore[union-attr]
                assert per_call == ["elicitation/create"]


class Elicit:
    """The typed view the client-wide callback expects, for re-use from a raw ``asks``."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.requested_schema = params["requestedSchema"]


def test_client_type_is_public() -> None:
    assert Client.call_tool.__doc__ and "is_error" in Client.call_tool.__doc__


async def test_the_readme_client_script_runs(tmp_path: Any) -> None:
    """README "Using the client", as written, against our server over stdio and HTTP."""
    from tests.test_cli import readme_block

    script = tmp_path / "client_script.py"
    script.write_text(readme_block("# client_script.py"))
    with trio.fail_after(60):
        async with target("http") as url:
            for where in (f"stdio:{sys.executable} -m mcp_trio serve", url):
                done = await trio.run_process([sys.executable, str(script), where], capture_stdout=True, capture_stderr=True)
                out = done.stdout.decode()
                assert out.startswith("stateless mcp-trio-demo\n") and "tool: echo\n" in out, out
                assert "hello\n" in out and 'content={"username":"ada","email":"ada@example.com"}' in out, out
                assert "progress: [0, 50, 100]\n" in out and "refused: -32602 unknown tool: 'no_such_tool'" in out, out


@pytest.mark.parametrize("era", ["auto", "handshake"])
async def test_logs_go_to_the_call_that_caused_them_over_http(era: str) -> None:
    """Over HTTP a log line arrives on the POST of the call it belongs to: the call's own
    ``on_log`` hears it, the client-wide one does not."""
    client_wide: list[LoggingMessageParams] = []
    mine: list[LoggingMessageParams] = []
    with trio.fail_after(20):
        async with target("http") as where, connect(where, era=era, on_log=client_wide.append) as client:
            await client.set_logging_level("info")
            await client.call_tool("test_logging_tool", on_log=mine.append)
            assert [entry.data for entry in mine] == ["Tool execution started", "Tool processing data", "Tool execution completed"]
            assert client_wide == []
