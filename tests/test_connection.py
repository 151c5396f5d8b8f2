"""In-process tests of the connection actors and the supervisor (no processes, no sockets)."""

from __future__ import annotations

import io
import json
import logging
import threading

import pytest
import trio
import trio.testing

from mcp_trio import Context, Limits, Server
from mcp_trio._logging import configure_logging
from mcp_trio.demo import server as demo

from .helpers import connect_in_memory, serve_in_memory


def _tool_names(reply: dict) -> list[str]:
    return [tool["name"] for tool in reply["result"]["tools"]]


async def test_tools_list_pages_cover_every_tool_once() -> None:
    with trio.fail_after(5):
        async with serve_in_memory(demo, Limits(page_size=4)) as (client, _, _):
            await client.initialize()
            seen: list[str] = []
            cursor = None
            pages = 0
            while True:
                reply = await client.request("tools/list", {"cursor": cursor} if cursor else {})
                names = _tool_names(reply)
                assert len(names) <= 4
                seen += names
                pages += 1
                cursor = reply["result"].get("nextCursor")
                if cursor is None:
                    break
            assert sorted(seen) == sorted(demo.registry.tools)
            assert len(seen) == len(set(seen))
            assert pages == -(-len(demo.registry.tools) // 4)


async def test_invalid_cursor_is_invalid_params() -> None:
    with trio.fail_after(5):
        async with serve_in_memory(demo) as (client, _, _):
            await client.initialize()
            reply = await client.request("tools/list", {"cursor": "not-ours"})
            assert reply["error"]["code"] == -32602
            assert "cursor" in reply["error"]["message"]


async def test_parked_request_gives_back_its_slot() -> None:
    """With one slot, a tool waiting on the client's sampling answer must not block a ping:
    otherwise the reader stalls on the full dispatcher and never reads the answer."""
    with trio.fail_after(5):
        async with serve_in_memory(demo, Limits(max_in_flight=1)) as (client, _, connection):
            await client.initialize()
            call_id = client.new_id()
            await client.send({"jsonrpc": "2.0", "id": call_id, "method": "tools/call",
                               "params": {"name": "test_sampling", "arguments": {"prompt": "hi"}}})
            sampling = await client.receive_until(lambda m: m.get("method") == "sampling/createMessage")
            assert sampling["params"]["maxTokens"] == 100
            ping = await client.request("ping")
            assert ping["result"] == {}
            await client.send({"jsonrpc": "2.0", "id": sampling["id"], "result": {
                "role": "assistant", "content": {"type": "text", "text": "pong"}, "model": "test"}})
            reply = await client.reply_to(call_id)
            assert reply["result"]["content"][0]["text"] == "LLM response: pong"
            assert connection.statistics()["slots_free"] == 1


async def test_client_request_timeout_becomes_tool_error(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(500):
        async with serve_in_memory(demo, Limits(client_request_timeout=5)) as (client, _, _):
            await client.initialize()
            call_id = client.new_id()
            await client.send({"jsonrpc": "2.0", "id": call_id, "method": "tools/call",
                               "params": {"name": "test_sampling", "arguments": {"prompt": "hi"}}})
            sampling = await client.receive_until(lambda m: m.get("method") == "sampling/createMessage")
            started = trio.current_time()
            cancel = await client.receive_until(lambda m: m.get("method") == "notifications/cancelled")
            assert cancel["params"]["requestId"] == sampling["id"]
            reply = await client.reply_to(call_id)
            assert 5 <= trio.current_time() - started < 6
            assert reply["result"]["isError"] is True
            assert "did not answer sampling/createMessage" in reply["result"]["content"][0]["text"]


async def test_tool_timeout_is_a_timeout_error(autojump_clock: trio.testing.MockClock) -> None:
    app = Server("timeouts")

    @app.tool(timeout=2)
    async def slow() -> str:
        await trio.sleep(10)
        return "never"

    with trio.fail_after(100):
        async with serve_in_memory(app) as (client, _, _):
            await client.initialize()
            started = trio.current_time()
            reply = await client.request("tools/call", {"name": "slow"})
            assert reply["error"]["code"] == -32001
            assert reply["error"]["data"] == {"tool": "slow", "timeout": 2}
            assert trio.current_time() - started == pytest.approx(2)


async def test_sync_tool_runs_in_a_worker_thread() -> None:
    app = Server("threads")
    main_thread = threading.get_ident()

    @app.tool
    def where() -> bool:
        return threading.get_ident() != main_thread

    with trio.fail_after(5):
        async with serve_in_memory(app) as (client, _, _):
            await client.initialize()
            reply = await client.request("tools/call", {"name": "where"})
            assert reply["result"]["structuredContent"] == {"result": True}


async def test_list_changed_reaches_every_session_once() -> None:
    app = Server("changes")

    @app.tool
    async def first() -> str:
        return "1"

    with trio.fail_after(5):
        async with serve_in_memory(app) as (one, supervisor, _):
            await one.initialize()
            async with connect_in_memory(supervisor, "second") as (two, _):
                await two.initialize()
                # Three changes in a row while nobody reads: coalesced per session.
                app.add_tool(first, name="second")
                app.add_tool(first, name="third")
                app.remove_tool("first")
                for client in (one, two):
                    note = await client.receive_until(lambda m: m.get("method") == "notifications/tools/list_changed")
                    assert "id" not in note
                    reply = await client.request("tools/list")
                    assert sorted(_tool_names(reply)) == ["second", "third"]
                    assert not any(m.get("method") == "notifications/tools/list_changed" for m in client.backlog)


async def test_json_logs_carry_session_and_request_ids() -> None:
    app = Server("logs")
    logger = logging.getLogger("test.app")

    @app.tool
    async def noisy() -> str:
        logger.warning("inside the tool")
        return "ok"

    stream = io.StringIO()
    configure_logging("warning", "json", stream)
    try:
        with trio.fail_after(5):
            async with serve_in_memory(app) as (client, _, _):
                await client.initialize()
                reply = await client.request("tools/call", {"name": "noisy"})
    finally:
        logging.getLogger().handlers.clear()
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert line["message"] == "inside the tool"
    assert line["session"] == "test"
    assert line["request"] == reply["id"]
    assert line["level"] == "warning"


async def test_metrics_count_requests_by_method_and_outcome() -> None:
    with trio.fail_after(5):
        async with serve_in_memory(demo) as (client, supervisor, _):
            await client.initialize()
            await client.request("tools/call", {"name": "echo", "arguments": {"text": "x"}})
            # Bad arguments are answered with a result (isError, SEP-1303): the request went well,
            # the tool counts an error. Arguments that are not an object are a protocol error.
            await client.request("tools/call", {"name": "echo", "arguments": {"text": 1}})
            await client.request("tools/call", {"name": "echo", "arguments": ["x"]})
            await client.request("no/such/method")
            text = supervisor.metrics.render({"mcp_connections": ("Open connections.", 1)})
    assert 'mcp_requests_total{method="tools/call",outcome="ok"} 2' in text
    assert 'mcp_requests_total{method="tools/call",outcome="error"} 1' in text
    assert 'mcp_requests_total{method="other",outcome="error"} 1' in text
    assert 'mcp_tool_errors_total{tool="echo"} 2' in text
    assert "mcp_request_duration_seconds_count 4" in text
    assert "mcp_connections 1" in text


async def test_server_to_client_requests_are_capped_per_connection() -> None:
    """With max_client_requests=1 a second tool waits for the first one's sampling answer
    before its own sampling request goes out: the cap bounds what we ask of one client."""
    with trio.fail_after(5):
        async with serve_in_memory(demo, Limits(max_client_requests=1)) as (client, _, connection):
            await client.initialize()
            calls = [client.new_id(), client.new_id()]
            for call_id in calls:
                await client.send({"jsonrpc": "2.0", "id": call_id, "method": "tools/call",
                                   "params": {"name": "test_sampling", "arguments": {"prompt": f"p{call_id}"}}})
            first = await client.receive_until(lambda m: m.get("method") == "sampling/createMessage")
            await client.request("ping")  # both calls are running by now
            assert connection.statistics()["client_requests_pending"] == 1
            assert not any(m.get("method") == "sampling/createMessage" for m in client.backlog)
            await client.send({"jsonrpc": "2.0", "id": first["id"], "result": {
                "role": "assistant", "content": {"type": "text", "text": "one"}, "model": "test"}})
            second = await client.receive_until(lambda m: m.get("method") == "sampling/createMessage")
            assert second["id"] != first["id"]
            await client.send({"jsonrpc": "2.0", "id": second["id"], "result": {
                "role": "assistant", "content": {"type": "text", "text": "two"}, "model": "test"}})
            texts = sorted([(await client.reply_to(call_id))["result"]["content"][0]["text"] for call_id in calls])
            assert texts == ["LLM response: one", "LLM response: two"]
