"""Both protocol eras end to end, with the official SDK ``Client`` on every transport.

The same scenario runs with ``mode="auto"`` (the SDK probes ``server/discover``, adopts
2026-07-28 and speaks the stateless revision: per-request ``_meta``, ``InputRequiredResult``
rounds driven by its callbacks, ``subscriptions/listen``) and ``mode="legacy"`` (the
``initialize`` handshake, server-to-client requests), over stdio (a child process), Streamable
HTTP and WebSocket (the standalone WebSocket transport and ``/ws`` of the HTTP server; the SDK
has no WebSocket client, ``sdk_ws_transport`` is a minimal one). The tools are the demo app's,
written once: under 2026-07-28 ``ctx.elicit`` makes the call answer ``InputRequiredResult``
and the tool runs again on the SDK's retry; under 2025-11-25 it is a request to the client.

Two server processes sharing a ``requestState`` key serve one stateless exchange between them
(the second never saw the client); with different keys the second refuses the state.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
import trio
from mcp import Client
from mcp.client.session import ClientRequestContext
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from mcp_trio import demo
from mcp_trio.transports.websocket import serve_websocket
from tests.http_client import request
from tests.sdk_ws_transport import ws_transport
from tests.test_http import serving
from tests.test_stdio_sdk import Wire, _recording, assert_argument_errors
from tests.test_stdio_sdk import connect as stdio_connect

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning"),
]

REPO = Path(__file__).resolve().parent.parent
MODES = {"auto": "2026-07-28", "legacy": "2025-11-25"}


class Callbacks:
    """The client side of sampling, elicitation and roots, recording what the server asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, Any]] = []
        self.logs: list[types.LoggingMessageNotificationParams] = []

    async def elicitation(self, context: ClientRequestContext, params: types.ElicitRequestParams) -> types.ElicitResult:
        assert isinstance(params, types.ElicitRequestFormParams)
        self.asked.append(("elicitation", params.message))
        properties = params.requested_schema.get("properties", {})
        content: dict[str, Any] = {}
        for name, schema in properties.items():
            content[name] = True if schema.get("type") == "boolean" else f"{name}-answer"
        return types.ElicitResult(action="accept", content=content)

    async def sampling(self, context: ClientRequestContext, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        content = params.messages[0].content
        assert isinstance(content, types.TextContent)
        self.asked.append(("sampling", content.text))
        return types.CreateMessageResult(role="assistant", content=types.TextContent(type="text", text="Paris"), model="test-model")

    async def roots(self, context: ClientRequestContext) -> types.ListRootsResult:
        self.asked.append(("roots", None))
        return types.ListRootsResult(roots=[types.Root(uri="file:///work", name="work")])

    async def log(self, params: types.LoggingMessageNotificationParams) -> None:
        self.logs.append(params)

    def options(self, **extra: Any) -> dict[str, Any]:
        return {"elicitation_callback": self.elicitation, "sampling_callback": self.sampling,
                "list_roots_callback": self.roots, "logging_callback": self.log, **extra}


def text_of(result: Any) -> str:
    assert not result.is_error, result
    return result.content[0].text


async def exercise(client: Client, callbacks: Callbacks, mode: str, wire: Wire | None = None) -> None:
    """One tour of the demo app, the same in both eras; era-specific checks at the end."""
    assert client.protocol_version == MODES[mode]
    assert text_of(await client.call_tool("echo", {"text": "héllo"})) == "héllo"
    assert "test_input_required_result_elicitation" in {t.name for t in (await client.list_tools()).tools}
    await assert_argument_errors(client)  # SEP-1303: isError results the model reads, in both eras

    assert text_of(await client.call_tool("test_input_required_result_elicitation")) == "Hello, name-answer!"
    assert text_of(await client.call_tool("test_input_required_result_sampling")) == "The model says: Paris"
    assert text_of(await client.call_tool("test_input_required_result_list_roots")) == "Roots: file:///work"
    assert text_of(await client.call_tool("test_input_required_result_multi_round")) == "name-answer likes color-answer"
    callbacks.asked.clear()
    assert text_of(await client.call_tool("test_input_required_result_multiple_inputs")) == "Paris name-answer (1 roots)"
    assert sorted(kind for kind, _ in callbacks.asked) == ["elicitation", "roots", "sampling"]
    # The original fixtures, written before the stateless revision, serve it unchanged.
    assert text_of(await client.call_tool("test_sampling", {"prompt": "Capital?"})) == "LLM response: Paris"
    assert text_of(await client.call_tool("test_elicitation", {"message": "Who?"})).startswith("User response: action=accept")

    prompt = await client.get_prompt("test_input_required_result_prompt")
    assert prompt.messages[0].content.text == "Write about: context-answer"  # type: ignore[union-attr]
    read = await client.read_resource("test://static-text")
    assert read.contents[0].text == "This is the content of the static text resource."  # type: ignore[union-attr]
    with pytest.raises(MCPError) as missing:
        await client.read_resource("test://no-such-resource")
    # SEP-2164: -32602 under 2026-07-28; the handshake era keeps its -32002.
    assert missing.value.code == (-32602 if mode == "auto" else -32002)

    if mode == "auto":
        result = await client.call_tool("test_logging_tool")  # no log level asked for: no log lines
        assert text_of(result) == "Logging test completed" and callbacks.logs == []
        async with client.listen(tools_list_changed=True) as subscription:
            assert subscription.honored is not None and subscription.honored.tools_list_changed
            await client.call_tool("test_trigger_tool_change")
            with trio.fail_after(5):
                async for event in subscription:
                    assert type(event).__name__ == "ToolsListChanged"
                    break
        if wire is not None:
            assert "initialize" not in [m.get("method") for m in wire.sent]
            stamped = [m["result"] for m in wire.received if "result" in m]
            assert stamped and all("resultType" in r for r in stamped)
            # An invalid-arguments result's own _meta and the stamp's are one object.
            invalid = [r for r in stamped if "invalidArguments" in r.get("_meta", {})]
            assert invalid and all("io.modelcontextprotocol/serverInfo" in r["_meta"] for r in invalid)


# -- stdio ------------------------------------------------------------------------------------
@pytest.mark.usefixtures("stdio_io")
@pytest.mark.parametrize("mode", list(MODES))
async def test_stdio(tmp_path: Path, mode: str) -> None:
    callbacks = Callbacks()
    with trio.fail_after(30):
        async with stdio_connect(tmp_path, mode=mode, **callbacks.options()) as (client, wire):
            await exercise(client, callbacks, mode, wire)


@pytest.mark.usefixtures("stdio_io")
async def test_stdio_log_level_opt_in(tmp_path: Path) -> None:
    callbacks = Callbacks()
    with trio.fail_after(15):
        async with stdio_connect(tmp_path, mode="auto", **callbacks.options(log_level="info")) as (client, wire):
            assert text_of(await client.call_tool("test_logging_tool")) == "Logging test completed"
            assert [log.data for log in callbacks.logs] == ["Tool execution started", "Tool processing data", "Tool execution completed"]
            # Every request after the probe opts in (the probe itself carries no level).
            levels = {m["params"]["_meta"].get("io.modelcontextprotocol/logLevel")
                      for m in wire.sent if m.get("method") not in (None, "server/discover") and "id" in m}
            assert levels == {"info"}


# -- Streamable HTTP --------------------------------------------------------------------------
@asynccontextmanager
async def http_client(mode: str, **options: Any) -> AsyncIterator[tuple[Client, Wire]]:
    async with serving() as served:
        wire = Wire()
        async with Client(_recording(streamable_http_client(served.url), wire), mode=mode, **options) as client:
            yield client, wire
        assert (await served.health())["sessions"] == 0 or mode == "legacy"


@pytest.mark.parametrize("mode", list(MODES))
async def test_http(mode: str) -> None:
    callbacks = Callbacks()
    with trio.fail_after(30):
        async with http_client(mode, **callbacks.options()) as (client, wire):
            await exercise(client, callbacks, mode, wire)


# -- WebSocket --------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", list(MODES))
async def test_websocket(mode: str) -> None:
    callbacks = Callbacks()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            ws = await nursery.start(partial(serve_websocket, demo.server, port=0))
            log: dict[str, list[Any]] = {}
            async with Client(ws_transport(f"ws://127.0.0.1:{ws.port}/", log), mode=mode, **callbacks.options()) as client:
                await exercise(client, callbacks, mode)
            methods = [m.get("method") for m in log["sent"]]
            assert ("initialize" in methods) == (mode == "legacy")
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize("mode", list(MODES))
async def test_websocket_on_the_http_port(mode: str) -> None:
    callbacks = Callbacks()
    with trio.fail_after(30):
        async with serving() as served:
            async with Client(ws_transport(f"ws://127.0.0.1:{served.port}/ws"), mode=mode, **callbacks.options()) as client:
                await exercise(client, callbacks, mode)


# -- two processes, one stateless exchange ----------------------------------------------------
META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}},
    "io.modelcontextprotocol/clientInfo": {"name": "two-workers", "version": "1"},
}


@asynccontextmanager
async def http_process(env: dict[str, str]) -> AsyncIterator[int]:
    """``python -m mcp_trio serve --transport http --port 0``; yields its port."""
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "mcp_trio", "serve", "--transport", "http", "--port", "0"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **env})
    assert process.stderr is not None
    try:
        buffer = b""
        with trio.fail_after(20):
            while b"/mcp" not in buffer:
                chunk = await process.stderr.receive_some(4096)
                assert chunk, buffer.decode()
                buffer += chunk
        line = next(line for line in buffer.decode().splitlines() if "/mcp" in line)
        yield int(line.rsplit(":", 1)[1].split("/")[0])
    finally:
        process.terminate()
        with trio.move_on_after(10):
            await process.wait()
        if process.returncode is None:
            process.kill()


async def call(port: int, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    body = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {**params, "_meta": META}}
    response = await request(port, "POST", headers={
        "accept": "application/json, text/event-stream", "content-type": "application/json",
        "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": params["name"],
    }, body=json.dumps(body).encode())
    return response.status, response.json()


async def test_second_process_serves_a_retry_with_a_shared_key() -> None:
    """Process A asks; process B, which never saw the client, completes the call."""
    shared = {"MCP_TRIO_REQUEST_STATE_SECRET": "s" * 40}
    with trio.fail_after(60):
        async with http_process(shared) as a, http_process(shared) as b, http_process({}) as stranger:
            status, first = await call(a, {"name": "test_input_required_result_multi_round", "arguments": {}})
            assert status == 200 and first["result"]["resultType"] == "input_required", first
            assert set(first["result"]["inputRequests"]) == {"step1"}
            status, second = await call(b, {
                "name": "test_input_required_result_multi_round", "arguments": {},
                "inputResponses": {"step1": {"action": "accept", "content": {"name": "Ada"}}},
                "requestState": first["result"]["requestState"]})
            assert status == 200 and set(second["result"]["inputRequests"]) == {"step2"}, second
            status, done = await call(a, {
                "name": "test_input_required_result_multi_round", "arguments": {},
                "inputResponses": {"step2": {"action": "accept", "content": {"color": "teal"}}},
                "requestState": second["result"]["requestState"]})
            assert status == 200 and done["result"]["content"][0]["text"] == "Ada likes teal", done

            # A process with a key of its own refuses the state: it cannot vouch for it.
            status, refused = await call(stranger, {
                "name": "test_input_required_result_multi_round", "arguments": {},
                "inputResponses": {"step2": {"action": "accept", "content": {"color": "teal"}}},
                "requestState": second["result"]["requestState"]})
            assert status == 400 and refused["error"]["code"] == -32602, refused
            assert "key" in refused["error"]["message"]
