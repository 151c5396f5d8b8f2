"""End to end over stdio, with the official MCP SDK as the client.

Each test spawns ``python -m mcp_trio serve`` (the demo app, or ``stdio_sdk_app.py`` for what
the demo cannot show) as a child process and drives it with ``mcp.Client``. The transport is
wrapped to record every JSON-RPC message both ways, so a test can check the wire as well as
what the SDK made of it (order of progress against the result, the cancel notification, a
response that must never come).

Every session also checks on the way out that the server wrote nothing but JSON-RPC to stdout,
exited promptly on stdin EOF, and logged no error or traceback on stderr.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
import trio
from mcp import Client
from mcp.client.session import ClientRequestContext
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage

from mcp_trio import demo

pytestmark = [
    pytest.mark.slow,
    pytest.mark.usefixtures("stdio_io"),  # every test over both of stdio's I/O paths
    # ping, logging/setLevel, subscribe and roots are deprecated for the 2026 revision only;
    # this server speaks 2025-11-25, where they are current.
    pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning"),
]

REPO = Path(__file__).resolve().parent.parent
TEST_APP = f"{Path(__file__).with_name('stdio_sdk_app.py')}:server"
INVALID_PARAMS = -32602
RESOURCE_NOT_FOUND = -32002
#: The SDK gives the server 2 s after closing its stdin before it sends SIGTERM.
PROMPT_EXIT = 1.5

DEMO_TOOLS = {
    "echo", "sleep", "test_simple_text", "test_image_content", "test_audio_content",
    "test_embedded_resource", "test_multiple_content_types", "test_tool_with_logging",
    "test_error_handling", "test_tool_with_progress", "test_sampling", "test_elicitation",
    "test_elicitation_sep1034_defaults", "test_elicitation_sep1330_enums", "json_schema_2020_12_tool",
    "test_reconnection",
    # protocol revision 2026-07-28 (stateless) fixtures
    "test_input_required_result_elicitation", "test_input_required_result_sampling",
    "test_input_required_result_list_roots", "test_input_required_result_request_state",
    "test_input_required_result_multiple_inputs", "test_input_required_result_multi_round",
    "test_input_required_result_tampered_state", "test_input_required_result_capabilities",
    "test_missing_capability", "test_streaming_elicitation", "test_logging_tool", "test_trigger_tool_change",
    "test_trigger_prompt_change", "test_header_parameter",
    # the tasks extension (2026-07-28)
    "greet", "slow_compute", "failing_job", "protocol_error_job", "confirm_delete", "multi_input", "test_tool_with_task",
    # the second server the demo mounts under the prefix "units"
    "units_convert",
}


# -- plumbing ---------------------------------------------------------------------------------
class Inbox:
    """Things a callback received, with a way to wait for enough of them."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._changed = trio.Event()

    def add(self, item: Any) -> None:
        self.items.append(item)
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(self, predicate: Callable[[list[Any]], bool], timeout: float = 5) -> None:
        with trio.fail_after(timeout):
            while not predicate(self.items):
                await self._changed.wait()


@dataclass
class Wire:
    """Every JSON-RPC message of a session, as dicts, in wire order."""

    sent: list[dict[str, Any]] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)

    def requests(self, method: str) -> list[dict[str, Any]]:
        return [m for m in self.sent if m.get("method") == method and "id" in m]

    def notifications_sent(self, method: str) -> list[dict[str, Any]]:
        return [m for m in self.sent if m.get("method") == method and "id" not in m]

    def notifications_received(self, method: str, since: int = 0) -> list[dict[str, Any]]:
        return [m for m in self.received[since:] if m.get("method") == method]

    def reply_index(self, request_id: Any) -> int:
        """Where the response to our request ``request_id`` is in ``received``."""
        for index, message in enumerate(self.received):
            if message.get("id") == request_id and "method" not in message:
                return index
        raise AssertionError(f"no response to request {request_id!r}")

    def last_request(self, method: str) -> dict[str, Any]:
        return self.requests(method)[-1]


def _dump(item: SessionMessage | Exception) -> dict[str, Any]:
    if isinstance(item, Exception):
        return {"exception": repr(item)}
    return item.message.model_dump(by_alias=True, mode="json", exclude_none=True)


class _RecordingRead:
    def __init__(self, inner: Any, log: list[dict[str, Any]]) -> None:
        self._inner, self._log = inner, log

    async def receive(self) -> Any:
        item = await self._inner.receive()
        self._log.append(_dump(item))
        return item

    async def aclose(self) -> None:
        await self._inner.aclose()

    def __aiter__(self) -> _RecordingRead:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> _RecordingRead:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class _RecordingWrite:
    def __init__(self, inner: Any, log: list[dict[str, Any]]) -> None:
        self._inner, self._log = inner, log

    async def send(self, item: SessionMessage) -> None:
        self._log.append(_dump(item))
        await self._inner.send(item)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> _RecordingWrite:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


@asynccontextmanager
async def _recording(transport: Any, wire: Wire) -> AsyncIterator[tuple[Any, Any]]:
    """A ``Transport`` that is ``transport`` with every message logged into ``wire``."""
    async with transport as (read_stream, write_stream):
        yield _RecordingRead(read_stream, wire.received), _RecordingWrite(write_stream, wire.sent)


_session_numbers = itertools.count()


@asynccontextmanager
async def connect(tmp_path: Path, *serve_args: str, mode: str = "legacy", **options: Any) -> AsyncIterator[tuple[Client, Wire]]:
    """An SDK client on a freshly spawned ``python -m mcp_trio serve *serve_args``."""
    stderr_path = tmp_path / f"server-{next(_session_numbers)}.stderr"
    # Unbuffered, so that anything stray written to stdout shows up mid-session, not at exit.
    # The SDK passes the child only a few variables of ours: the stdio I/O path explicitly.
    env = {"PYTHONUNBUFFERED": "1", **{k: v for k, v in os.environ.items() if k == "MCP_TRIO_SERVER_STDIO_IO"}}
    params = StdioServerParameters(command=sys.executable, args=["-m", "mcp_trio", "serve", *serve_args],
                                   cwd=str(REPO), env=env)
    wire = Wire()
    with stderr_path.open("w") as errlog:
        client = Client(_recording(stdio_client(params, errlog=errlog), wire), mode=mode, **options)
        async with client:
            yield client, wire
            closing = trio.current_time()
        took = trio.current_time() - closing
    # Every line the server wrote to stdout parsed as a JSON-RPC message.
    unparsed = [m["exception"] for m in wire.received if "exception" in m]
    assert not unparsed, unparsed
    stderr = stderr_path.read_text()
    assert "Traceback" not in stderr and " ERROR " not in stderr and " CRITICAL " not in stderr, stderr
    assert took < PROMPT_EXIT, f"the server took {took:.2f} s to exit after stdin closed"


def text_of(result: types.CallToolResult) -> str:
    assert not result.is_error, result
    assert len(result.content) == 1 and isinstance(result.content[0], types.TextContent), result.content
    return result.content[0].text


# -- lifecycle --------------------------------------------------------------------------------
async def test_initialize_legacy_and_ping(tmp_path: Path) -> None:
    with trio.fail_after(15):
        async with connect(tmp_path, mode="legacy") as (client, wire):
            assert client.protocol_version == "2025-11-25"
            assert client.server_info is not None
            assert (client.server_info.name, client.server_info.version) == ("mcp-trio-demo", "0.1.0")
            assert client.instructions == demo.server.instructions
            caps = client.server_capabilities
            assert caps.tools is not None and caps.tools.list_changed
            assert caps.resources is not None and caps.resources.subscribe and caps.resources.list_changed
            assert caps.prompts is not None and caps.prompts.list_changed
            assert caps.logging is not None and caps.completions is not None

            assert [m.get("method") for m in wire.sent[:2]] == ["initialize", "notifications/initialized"]
            assert wire.received[0]["result"]["protocolVersion"] == "2025-11-25"

            assert isinstance(await client.send_ping(), types.EmptyResult)
            assert wire.received[wire.reply_index(wire.last_request("ping")["id"])]["result"] == {}


async def test_initialize_auto_probes_discover_and_goes_stateless(tmp_path: Path) -> None:
    with trio.fail_after(15):
        async with connect(tmp_path, mode="auto") as (client, wire):
            # The probe went first and was answered: the SDK adopted 2026-07-28, no handshake.
            assert wire.sent[0]["method"] == "server/discover"
            probe_reply = wire.received[wire.reply_index(wire.sent[0]["id"])]
            assert "2026-07-28" in probe_reply["result"]["supportedVersions"], probe_reply
            assert client.session.discover_result is not None
            assert client.session.initialize_result is None
            assert client.protocol_version == "2026-07-28"
            assert text_of(await client.call_tool("echo", {"text": "stateless"})) == "stateless"
            assert "initialize" not in [m.get("method") for m in wire.sent]


# -- tools ------------------------------------------------------------------------------------
async def test_tools_list(tmp_path: Path) -> None:
    with trio.fail_after(15):
        async with connect(tmp_path) as (client, wire):
            listing = await client.list_tools()
            assert listing.next_cursor is None
            tools = {tool.name: tool for tool in listing.tools}
            assert set(tools) == DEMO_TOOLS
            for tool in tools.values():
                assert tool.description, tool.name
                assert tool.input_schema["type"] == "object", tool.name
            assert tools["echo"].input_schema["properties"]["text"]["type"] == "string"
            assert tools["echo"].input_schema["required"] == ["text"]
            assert tools["echo"].annotations is not None and tools["echo"].annotations.read_only_hint is True
            assert "ctx" not in tools["sleep"].input_schema.get("properties", {})

            # The 2020-12 schema is kept exactly: on the wire and as the SDK hands it over.
            assert tools["json_schema_2020_12_tool"].input_schema == demo._ADDRESS_SCHEMA
            raw = wire.received[wire.reply_index(wire.last_request("tools/list")["id"])]["result"]["tools"]
            raw_tool = next(t for t in raw if t["name"] == "json_schema_2020_12_tool")
            assert raw_tool["inputSchema"] == demo._ADDRESS_SCHEMA


async def test_call_every_content_tool(tmp_path: Path) -> None:
    with trio.fail_after(15):
        async with connect(tmp_path) as (client, _):
            assert text_of(await client.call_tool("echo", {"text": "héllo\nwörld"})) == "héllo\nwörld"
            assert text_of(await client.call_tool("test_simple_text")) == "This is a simple text response for testing."

            image = (await client.call_tool("test_image_content")).content
            assert len(image) == 1 and isinstance(image[0], types.ImageContent)
            assert image[0].mime_type == "image/png"
            assert base64.b64decode(image[0].data) == demo.PNG and demo.PNG.startswith(b"\x89PNG")

            audio = (await client.call_tool("test_audio_content")).content
            assert len(audio) == 1 and isinstance(audio[0], types.AudioContent)
            assert audio[0].mime_type == "audio/wav"
            assert base64.b64decode(audio[0].data) == demo.WAV and demo.WAV.startswith(b"RIFF")

            embedded = (await client.call_tool("test_embedded_resource")).content
            assert len(embedded) == 1 and isinstance(embedded[0], types.EmbeddedResource)
            resource = embedded[0].resource
            assert isinstance(resource, types.TextResourceContents)
            assert (resource.uri, resource.mime_type, resource.text) == (
                "test://embedded-resource", "text/plain", "This is an embedded resource content.")

            mixed = await client.call_tool("test_multiple_content_types")
            assert not mixed.is_error
            assert [type(c) for c in mixed.content] == [types.TextContent, types.ImageContent, types.EmbeddedResource]
            assert mixed.content[0].text == "Multiple content types test:"  # type: ignore[union-attr]
            assert base64.b64decode(mixed.content[1].data) == demo.PNG  # type: ignore[union-attr]
            mixed_resource = mixed.content[2].resource  # type: ignore[union-attr]
            assert mixed_resource.uri == "test://mixed-content-resource"
            assert json.loads(mixed_resource.text) == {"test": "data", "value": 123}

            address = {"street": "1 Main St", "city": "Springfield"}
            assert text_of(await client.call_tool("json_schema_2020_12_tool", {"name": "Ada", "address": address})) == (
                f"name=Ada, address={json.dumps(address, separators=(',', ':'))}")


async def test_tool_errors(tmp_path: Path) -> None:
    with trio.fail_after(15):
        async with connect(tmp_path) as (client, _):
            failed = await client.call_tool("test_error_handling")
            assert failed.is_error is True
            assert len(failed.content) == 1 and isinstance(failed.content[0], types.TextContent)
            assert "intentionally returns an error" in failed.content[0].text

            # Bad arguments are the model's to fix: results with isError naming the argument, the
            # rule and the value (SEP-1303, revision 2025-11-25); an unknown tool stays -32602.
            await assert_argument_errors(client)

            # A protocol error does not end the session.
            assert text_of(await client.call_tool("echo", {"text": "still here"})) == "still here"


BAD_ARGUMENTS: list[tuple[str, dict[str, Any], str]] = [
    ("echo", {}, "text is required"),                                              # missing
    ("echo", {"text": 5}, "text must be a string (got 5)"),                        # wrong type
    ("echo", {"text": "x", "extra": 1}, "extra is unknown"),                       # unknown argument
    ("sleep", {"seconds": -1}, "seconds must be at least 0 (got -1)"),             # ge=0
]


async def assert_argument_errors(client: Any) -> None:
    """Over any transport, with the SDK's client: argument errors are tool results the model
    reads; an unknown tool is a protocol error."""
    for name, arguments, says in BAD_ARGUMENTS:
        result = await client.call_tool(name, arguments)
        assert result.is_error is True, (name, arguments, result)
        assert len(result.content) == 1 and isinstance(result.content[0], types.TextContent), result
        assert result.content[0].text == f"invalid arguments for tool {name!r}: {says}"
        detail = (result.meta or {})["invalidArguments"][0]
        assert detail["message"] == says and detail["argument"] == says.split()[0], detail
    with pytest.raises(MCPError) as caught:
        await client.call_tool("no_such_tool", {})
    assert caught.value.code == INVALID_PARAMS


# -- progress, logging, cancellation ----------------------------------------------------------
async def test_progress(tmp_path: Path) -> None:
    with trio.fail_after(15):
        async with connect(tmp_path) as (client, wire):
            steps = Inbox()

            async def on_progress(progress: float, total: float | None, message: str | None) -> None:
                steps.add((progress, total, message))

            result = await client.call_tool("test_tool_with_progress", progress_callback=on_progress)
            assert text_of(result) == "Progress test completed"
            await steps.wait_for(lambda items: len(items) >= 3)
            assert sorted(steps.items) == [(0, 100, "step 1 of 3"), (50, 100, "step 2 of 3"), (100, 100, "step 3 of 3")]
            # On the wire, every progress notification comes before the result, tagged with
            # the token the SDK sent (the request id).
            call = wire.last_request("tools/call")
            token = call["params"]["_meta"]["progressToken"]
            reply_at = wire.reply_index(call["id"])
            notes = [m for m in wire.notifications_received("notifications/progress") if m["params"]["progressToken"] == token]
            assert len(notes) == 3
            assert all(wire.received.index(note) < reply_at for note in notes)

            sleep_steps = Inbox()

            async def on_sleep_progress(progress: float, total: float | None, message: str | None) -> None:
                sleep_steps.add((progress, total))

            assert text_of(await client.call_tool("sleep", {"seconds": 0.35}, progress_callback=on_sleep_progress)) == "slept 0.35 s"
            await sleep_steps.wait_for(lambda items: any(p == pytest.approx(0.35) for p, _ in items))
            values = sorted(p for p, _ in sleep_steps.items)
            assert len(values) == 4 and values[-1] == pytest.approx(0.35)
            assert all(total == pytest.approx(0.35) for _, total in sleep_steps.items)

            # Without a progress token, the server sends none.
            before = len(wire.notifications_received("notifications/progress"))
            assert text_of(await client.call_tool("test_tool_with_progress")) == "Progress test completed"
            assert len(wire.notifications_received("notifications/progress")) == before


async def test_logging_levels(tmp_path: Path) -> None:
    logs = Inbox()

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        logs.add(params)

    with trio.fail_after(15):
        async with connect(tmp_path, logging_callback=on_log) as (client, wire):
            await client.set_logging_level("debug")
            assert text_of(await client.call_tool("test_tool_with_logging")) == "Logging test completed"
            expected = ["Tool execution started", "Tool processing data", "Tool execution completed"]
            # In order on the wire; the SDK runs each callback in its own task, so compare as a set.
            assert [m["params"]["data"] for m in wire.notifications_received("notifications/message")] == expected
            await logs.wait_for(lambda items: len(items) >= 3)
            assert sorted(entry.data for entry in logs.items) == sorted(expected)
            assert {entry.level for entry in logs.items} == {"info"}

            await client.set_logging_level("error")
            mark = len(wire.received)
            assert text_of(await client.call_tool("test_tool_with_logging")) == "Logging test completed"
            # The server sends a tool's log messages before its result, so the wire is complete.
            assert wire.notifications_received("notifications/message", since=mark) == []
            assert len(logs.items) == 3


async def test_cancel_a_running_tool_from_the_client(tmp_path: Path) -> None:
    with trio.fail_after(15):
        async with connect(tmp_path) as (client, wire):
            started = Inbox()

            async def on_progress(progress: float, total: float | None, message: str | None) -> None:
                started.add(progress)

            call_scope = trio.CancelScope()

            async def call_sleep(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
                with call_scope:
                    task_status.started()
                    await client.call_tool("sleep", {"seconds": 30}, progress_callback=on_progress)

            async with trio.open_nursery() as nursery:
                await nursery.start(call_sleep)
                await started.wait_for(lambda items: len(items) >= 1)  # the tool is really running
                asked = trio.current_time()
                # Cancelling the scope around call_tool is how an SDK caller cancels: the SDK
                # then sends notifications/cancelled (shielded) before the call unwinds.
                call_scope.cancel()
            assert call_scope.cancelled_caught
            assert trio.current_time() - asked < 1.0

            # The SDK told the server, naming the call.
            call = wire.last_request("tools/call")
            assert call["params"]["arguments"] == {"seconds": 30}
            cancels = wire.notifications_sent("notifications/cancelled")
            assert [note["params"]["requestId"] for note in cancels] == [call["id"]]

            # The server's reader saw the cancel before this ping, so once the ping is answered
            # the tool is gone: no more progress from it and (spec) no response to it, ever.
            await client.send_ping()
            answered_at = wire.reply_index(wire.last_request("ping")["id"])
            await trio.sleep(0.35)  # a running sleep tool reports progress every 0.1 s
            token = call["params"]["_meta"]["progressToken"]
            late = [m for m in wire.notifications_received("notifications/progress", since=answered_at)
                    if m["params"]["progressToken"] == token]
            assert late == []
            assert not any(m.get("id") == call["id"] and "method" not in m for m in wire.received)

            # The session goes on.
            assert text_of(await client.call_tool("echo", {"text": "alive"})) == "alive"


async def test_cancel_while_the_server_waits_on_the_client(tmp_path: Path) -> None:
    """Cancelling a tool parked on elicitation also cancels the server's own request."""
    asked = trio.Event()
    callback_cancelled = trio.Event()

    async def elicitation(context: ClientRequestContext, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.set()
        try:
            await trio.sleep_forever()
        finally:
            callback_cancelled.set()

    with trio.fail_after(15):
        async with connect(tmp_path, elicitation_callback=elicitation) as (client, wire):
            call_scope = trio.CancelScope()

            async def call() -> None:
                with call_scope:
                    await client.call_tool("test_elicitation", {"message": "never answered"})

            async with trio.open_nursery() as nursery:
                nursery.start_soon(call)
                await asked.wait()
                call_scope.cancel()
            # The server passes the cancel on to its pending elicitation/create, and the SDK
            # cancels the callback that was serving it.
            with trio.fail_after(2):
                await callback_cancelled.wait()
            elicit_request = next(m for m in wire.received if m.get("method") == "elicitation/create")
            server_cancels = wire.notifications_received("notifications/cancelled")
            assert [note["params"]["requestId"] for note in server_cancels] == [elicit_request["id"]]
            call = wire.last_request("tools/call")
            await client.send_ping()
            assert not any(m.get("id") == call["id"] and "method" not in m for m in wire.received)
            assert text_of(await client.call_tool("echo", {"text": "alive"})) == "alive"


async def test_calls_run_concurrently(tmp_path: Path) -> None:
    with trio.fail_after(15):
        async with connect(tmp_path) as (client, _):
            results: list[str] = []

            async def nap() -> None:
                results.append(text_of(await client.call_tool("sleep", {"seconds": 0.3})))

            started = trio.current_time()
            async with trio.open_nursery() as nursery:
                for _ in range(10):
                    nursery.start_soon(nap)
            # Ten 0.3 s calls take 3 s one after another; over one stdio session they overlap.
            assert trio.current_time() - started < 1.5
            assert results == ["slept 0.3 s"] * 10


# -- server -> client requests ----------------------------------------------------------------
async def test_sampling_callback(tmp_path: Path) -> None:
    asked: list[types.CreateMessageRequestParams] = []

    async def sampling(context: ClientRequestContext, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        asked.append(params)
        content = params.messages[0].content
        assert isinstance(content, types.TextContent)
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text=f"answer to {content.text!r}"), model="test-model")

    with trio.fail_after(15):
        async with connect(tmp_path, sampling_callback=sampling) as (client, _):
            result = await client.call_tool("test_sampling", {"prompt": "What is 2+2?"})
            assert text_of(result) == "LLM response: answer to 'What is 2+2?'"
            assert len(asked) == 1
            assert asked[0].max_tokens == 100
            assert [m.role for m in asked[0].messages] == ["user"]


async def test_elicitation_callback(tmp_path: Path) -> None:
    asked: list[tuple[str, dict[str, Any]]] = []
    answers: list[types.ElicitResult] = []

    async def elicitation(context: ClientRequestContext, params: types.ElicitRequestParams) -> types.ElicitResult:
        assert isinstance(params, types.ElicitRequestFormParams)
        asked.append((params.message, params.requested_schema))
        return answers.pop(0)

    with trio.fail_after(15):
        async with connect(tmp_path, elicitation_callback=elicitation) as (client, wire):
            answers.append(types.ElicitResult(action="accept", content={"username": "ada", "email": "ada@example.com"}))
            result = await client.call_tool("test_elicitation", {"message": "Who are you?"})
            assert text_of(result) == 'User response: action=accept, content={"username":"ada","email":"ada@example.com"}'
            message, schema = asked[-1]
            assert message == "Who are you?"
            assert schema["required"] == ["username", "email"]
            assert set(schema["properties"]) == {"username", "email"}

            answers.append(types.ElicitResult(action="decline"))
            result = await client.call_tool("test_elicitation", {"message": "Again?"})
            assert text_of(result) == "User response: action=decline, content=null"

            # SEP-1034: every field's default reaches the client.
            answers.append(types.ElicitResult(action="accept", content={"name": "John Doe", "age": 30}))
            result = await client.call_tool("test_elicitation_sep1034_defaults")
            assert text_of(result) == 'Elicitation completed: action=accept, content={"name":"John Doe","age":30}'
            _, schema = asked[-1]
            defaults = {name: prop.get("default") for name, prop in schema["properties"].items()}
            assert defaults == {"name": "John Doe", "age": 30, "score": 95.5, "status": "active", "verified": True}
            assert schema["properties"]["status"]["enum"] == ["active", "inactive", "pending"]
            assert type(defaults["age"]) is int and type(defaults["verified"]) is bool

            # SEP-1330: the five enum shapes arrive intact (checked on the wire too).
            answers.append(types.ElicitResult(action="accept", content={"untitledSingle": "option2", "untitledMulti": ["option1", "option3"]}))
            result = await client.call_tool("test_elicitation_sep1330_enums")
            assert text_of(result) == (
                'Elicitation completed: action=accept, content={"untitledSingle":"option2","untitledMulti":["option1","option3"]}')
            _, schema = asked[-1]
            props = schema["properties"]
            options = ["option1", "option2", "option3"]
            titled = [{"const": f"value{i}", "title": t} for i, t in enumerate(["First Option", "Second Option", "Third Option"], 1)]
            assert props["untitledSingle"]["enum"] == options
            assert props["titledSingle"]["oneOf"] == titled
            assert props["legacyEnum"]["enum"] == options
            assert props["legacyEnum"]["enumNames"] == ["Option One", "Option Two", "Option Three"]
            assert props["untitledMulti"]["type"] == "array" and props["untitledMulti"]["items"]["enum"] == options
            assert (props["untitledMulti"]["minItems"], props["untitledMulti"]["maxItems"]) == (1, 3)
            assert props["titledMulti"]["items"]["anyOf"] == titled
            wire_request = [m for m in wire.received if m.get("method") == "elicitation/create"][-1]
            assert wire_request["params"]["requestedSchema"] == schema


async def test_roots_and_roots_list_changed(tmp_path: Path) -> None:
    calls = 0

    async def list_roots(context: ClientRequestContext) -> types.ListRootsResult:
        nonlocal calls
        calls += 1
        return types.ListRootsResult(roots=[
            types.Root(uri="file:///work/project", name="project"),
            types.Root(uri=f"file:///work/scratch{calls}", name="scratch"),
        ])

    with trio.fail_after(15):
        async with connect(tmp_path, TEST_APP, list_roots_callback=list_roots) as (client, wire):
            assert text_of(await client.call_tool("list_roots")) == "file:///work/project project\nfile:///work/scratch1 scratch"
            roots_request = [m for m in wire.received if m.get("method") == "roots/list"]
            assert len(roots_request) == 1

            # The client says its roots changed: the server accepts the notification (no
            # reply, no error) and the session goes on, asking afresh.
            await client.send_roots_list_changed()
            assert wire.notifications_sent("notifications/roots/list_changed")
            await client.send_ping()
            assert not any("error" in m for m in wire.received)
            assert text_of(await client.call_tool("list_roots")) == "file:///work/project project\nfile:///work/scratch2 scratch"
            assert calls == 2


async def test_roots_refused_by_the_client_is_a_tool_error(tmp_path: Path) -> None:
    async def refuse(context: ClientRequestContext) -> types.ErrorData:
        return types.ErrorData(code=-32603, message="no roots for you")

    with trio.fail_after(15):
        async with connect(tmp_path, TEST_APP, list_roots_callback=refuse) as (client, _):
            result = await client.call_tool("list_roots")
            assert result.is_error is True
            assert "no roots for you" in result.content[0].text  # type: ignore[union-attr]


# -- resources --------------------------------------------------------------------------------
async def test_resources(tmp_path: Path) -> None:
    with trio.fail_after(15):
        async with connect(tmp_path) as (client, wire):
            listing = await client.list_resources()
            resources = {str(r.uri): r for r in listing.resources}
            assert set(resources) == {"test://static-text", "test://static-binary", "test://watched-resource",
                                      "units+units://lengths"}  # the mounted units server's
            assert (resources["test://static-text"].name, resources["test://static-text"].mime_type) == ("static-text", "text/plain")
            assert resources["test://static-binary"].mime_type == "image/png"

            templates = (await client.list_resource_templates()).resource_templates
            assert [(t.uri_template, t.name, t.mime_type) for t in templates] == [
                ("test://template/{id}/data", "template", "application/json")]

            text = (await client.read_resource("test://static-text")).contents
            assert len(text) == 1 and isinstance(text[0], types.TextResourceContents)
            assert (str(text[0].uri), text[0].mime_type, text[0].text) == (
                "test://static-text", "text/plain", "This is the content of the static text resource.")

            blob = (await client.read_resource("test://static-binary")).contents
            assert len(blob) == 1 and isinstance(blob[0], types.BlobResourceContents)
            assert blob[0].mime_type == "image/png" and base64.b64decode(blob[0].blob) == demo.PNG

            templated = (await client.read_resource("test://template/123/data")).contents
            assert len(templated) == 1 and isinstance(templated[0], types.TextResourceContents)
            assert str(templated[0].uri) == "test://template/123/data"
            assert json.loads(templated[0].text) == {"id": "123", "templateTest": True, "data": "Data for ID: 123"}

            with pytest.raises(MCPError) as caught:
                await client.read_resource("test://no-such-resource")
            assert caught.value.code == RESOURCE_NOT_FOUND
            assert "test://no-such-resource" in caught.value.error.message

            assert isinstance(await client.subscribe_resource("test://watched-resource"), types.EmptyResult)
            assert isinstance(await client.unsubscribe_resource("test://watched-resource"), types.EmptyResult)
            for method in ("resources/subscribe", "resources/unsubscribe"):
                request = wire.last_request(method)
                assert request["params"]["uri"] == "test://watched-resource"
                assert wire.received[wire.reply_index(request["id"])]["result"] == {}


async def test_resource_updated_reaches_subscribers_only(tmp_path: Path) -> None:
    updates = Inbox()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            updates.add(str(message.params.uri))

    with trio.fail_after(15):
        async with connect(tmp_path, TEST_APP, message_handler=on_message) as (client, wire):
            await client.subscribe_resource("test://watched")
            assert text_of(await client.call_tool("touch", {"uri": "test://watched"})) == "touched test://watched"
            await updates.wait_for(lambda items: len(items) >= 1)
            assert updates.items == ["test://watched"]

            # Not subscribed to this one; then no longer subscribed to the first.
            await client.call_tool("touch", {"uri": "test://other"})
            await client.unsubscribe_resource("test://watched")
            await client.call_tool("touch", {"uri": "test://watched"})
            await client.send_ping()
            await trio.sleep(0.2)
            assert updates.items == ["test://watched"]
            assert len(wire.notifications_received("notifications/resources/updated")) == 1


# -- prompts and completion -------------------------------------------------------------------
async def test_prompts_and_completion(tmp_path: Path) -> None:
    with trio.fail_after(15):
        async with connect(tmp_path) as (client, _):
            prompts = {p.name: p for p in (await client.list_prompts()).prompts}
            assert set(prompts) == {"test_simple_prompt", "test_prompt_with_arguments",
                                    "test_prompt_with_embedded_resource", "test_prompt_with_image",
                                    "test_input_required_result_prompt"}
            args = prompts["test_prompt_with_arguments"].arguments
            assert args is not None
            assert [(a.name, a.description, a.required) for a in args] == [
                ("arg1", "First test argument", True), ("arg2", "Second test argument", True)]
            assert not prompts["test_simple_prompt"].arguments

            simple = await client.get_prompt("test_simple_prompt")
            assert [(m.role, m.content.text) for m in simple.messages] == [  # type: ignore[union-attr]
                ("user", "This is a simple prompt for testing.")]

            with_args = await client.get_prompt("test_prompt_with_arguments", {"arg1": "alpha", "arg2": "beta"})
            assert [(m.role, m.content.text) for m in with_args.messages] == [  # type: ignore[union-attr]
                ("user", "Prompt with arguments: arg1='alpha', arg2='beta'")]

            embedded = await client.get_prompt("test_prompt_with_embedded_resource", {"resourceUri": "test://my-resource"})
            first, second = embedded.messages
            assert isinstance(first.content, types.EmbeddedResource)
            assert str(first.content.resource.uri) == "test://my-resource"
            assert isinstance(second.content, types.TextContent) and second.content.text == "Please process the embedded resource above."

            image = await client.get_prompt("test_prompt_with_image")
            assert isinstance(image.messages[0].content, types.ImageContent)
            assert image.messages[0].content.mime_type == "image/png"
            assert base64.b64decode(image.messages[0].content.data) == demo.PNG

            for name, arguments in [("test_prompt_with_arguments", {"arg1": "only one"}), ("no_such_prompt", {})]:
                with pytest.raises(MCPError) as caught:
                    await client.get_prompt(name, arguments)
                assert caught.value.code == INVALID_PARAMS, name

            completion = (await client.complete(
                types.PromptReference(type="ref/prompt", name="test_prompt_with_arguments"), {"name": "arg1", "value": "par"})).completion
            assert completion.values == ["paris", "park", "party"]
            assert completion.has_more is False

            template = (await client.complete(
                types.ResourceTemplateReference(type="ref/resource", uri="test://template/{id}/data"), {"name": "id", "value": "12"})).completion
            assert template.values == ["12", "123"]


# -- the tool list changing while serving -----------------------------------------------------
async def test_tools_list_changed(tmp_path: Path) -> None:
    changes = Inbox()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changes.add(message)

    with trio.fail_after(15):
        async with connect(tmp_path, TEST_APP, message_handler=on_message) as (client, _):
            before = {t.name for t in (await client.list_tools()).tools}
            assert before == {"list_roots", "touch", "add_greeter", "remove"}

            assert text_of(await client.call_tool("add_greeter", {"name": "greet_ada"})) == "added greet_ada"
            await changes.wait_for(lambda items: len(items) >= 1)
            tools = {t.name: t for t in (await client.list_tools()).tools}
            assert set(tools) == before | {"greet_ada"}
            assert tools["greet_ada"].input_schema["required"] == ["who"]
            assert text_of(await client.call_tool("greet_ada", {"who": "Bob"})) == "hello Bob from greet_ada"

            await client.call_tool("remove", {"name": "greet_ada"})
            await changes.wait_for(lambda items: len(items) >= 2)
            assert {t.name for t in (await client.list_tools()).tools} == before
            with pytest.raises(MCPError) as caught:
                await client.call_tool("greet_ada", {"who": "Bob"})
            assert caught.value.code == INVALID_PARAMS

