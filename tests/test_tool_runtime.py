"""Tools at run time: metadata, per-tool timeout, statistics, switching off under load, and
tools calling tools (``ctx.call_tool``, ``call_tools``, ``chain_tools``).

In memory (``serve_in_memory``), and on a ``MockClock`` wherever time matters, so latency
figures are exact.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
import trio
import trio.testing

from mcp_trio import CallToolResult, Context, Limits, McpError, Server, ToolCallError
from mcp_trio.serving._compose import MAX_CALL_DEPTH
from mcp_trio.auth import Principal
from tests.helpers import RawClient, connect_in_memory, serve_in_memory


async def call(client: RawClient, name: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    return await client.request("tools/call", {"name": name, "arguments": arguments or {}})


def text_of(reply: dict[str, Any]) -> str:
    assert "result" in reply, reply
    return reply["result"]["content"][0]["text"]


# -- metadata ---------------------------------------------------------------------------------
async def test_metadata_is_listed_in_meta_annotations_and_description() -> None:
    app = Server("meta")

    @app.tool(tags=["files", "danger"], category="storage", version="2.0", dangerous=True,
              deprecated="Use purge_v2 instead.", examples=[{"path": "/tmp/x"}, {"path": "/var", "force": True}])
    async def purge(path: str, force: bool = False) -> str:
        """Delete a tree."""
        return "gone"

    @app.tool(deprecated=True, read_only=True)
    async def legacy() -> str:
        return "old"

    with trio.fail_after(5):
        async with serve_in_memory(app) as (client, supervisor, _):
            await client.initialize()
            tools = {t["name"]: t for t in (await client.request("tools/list"))["result"]["tools"]}
            purge_wire = tools["purge"]
            assert purge_wire["description"] == "DEPRECATED: Use purge_v2 instead.\n\nDelete a tree."
            assert purge_wire["annotations"] == {"destructiveHint": True}
            assert purge_wire["_meta"] == {
                "tags": ["danger", "files"], "category": "storage", "version": "2.0",
                "examples": [{"path": "/tmp/x"}, {"path": "/var", "force": True}],
                "deprecated": True, "deprecationMessage": "Use purge_v2 instead.",
            }
            assert tools["legacy"]["_meta"] == {"deprecated": True, "deprecationMessage": "This tool is deprecated."}
            assert tools["legacy"]["annotations"] == {"readOnlyHint": True}
            definition = supervisor.registry.tools["purge"]
            assert definition.category == "storage" and definition.version == "2.0"
            assert definition.deprecated == "Use purge_v2 instead." and definition.tags == {"files", "danger"}
            # A deprecated tool still works.
            assert text_of(await call(client, "purge", {"path": "/x"})) == "gone"


def test_metadata_mistakes_are_caught_at_registration() -> None:
    app = Server("mistakes")

    async def tool(path: str, depth: int = 1) -> str:
        return path

    with pytest.raises(ValueError, match="example 2 does not match"):
        app.add_tool(tool, examples=[{"path": "ok"}, {"path": "x", "depth": "deep"}])
    with pytest.raises(ValueError, match="example 1 does not match"):
        app.add_tool(tool, examples=[{"nope": 1}])
    with pytest.raises(ValueError, match="read-only tool cannot be destructive"):
        app.add_tool(tool, read_only=True, dangerous=True)
    with pytest.raises(ValueError, match="contradicts"):
        app.add_tool(tool, destructive=False, dangerous=True)
    assert app.add_tool(tool, tags="single").tags == {"single"}  # a lone string is one tag


# -- per-tool timeout -------------------------------------------------------------------------
async def test_a_call_past_its_timeout_is_cancelled_and_answered_with_a_timeout_error(autojump_clock: trio.testing.MockClock) -> None:
    app = Server("timeouts")
    seen: list[str] = []

    @app.tool(timeout=1.5)
    async def slow(ctx: Context) -> str:
        try:
            await trio.sleep(60)
        except trio.Cancelled:
            seen.append("cancelled")
            raise
        return "late"

    with trio.fail_after(100):
        async with serve_in_memory(app) as (client, supervisor, _):
            await client.initialize()
            started = trio.current_time()
            reply = await call(client, "slow")
            assert trio.current_time() - started == pytest.approx(1.5)
            assert reply["error"]["code"] == -32001
            assert reply["error"]["message"] == "tool 'slow' timed out after 1.5 s"
            assert seen == ["cancelled"]
            stats = supervisor.metrics.tools["slow"]
            assert (stats.calls, stats.timeouts, stats.errors, stats.finished) == (1, 1, 0, 1)
            assert (await client.request("ping"))["result"] == {}  # the session goes on


# -- statistics -------------------------------------------------------------------------------
async def test_statistics_counts_are_exact(autojump_clock: trio.testing.MockClock) -> None:
    app = Server("stats")

    @app.tool
    async def work(seconds: float = 0.2) -> str:
        await trio.sleep(seconds)
        return "done"

    @app.tool
    async def fails() -> str:
        await trio.sleep(0.03)
        raise RuntimeError("boom")

    @app.tool(timeout=0.8)
    async def stuck() -> str:
        await trio.sleep(60)
        return "never"

    @app.tool(name='we"ird\\name')
    async def weird() -> str:
        return "ok"

    @app.tool
    async def unused() -> str:
        return "never called"

    with trio.fail_after(100):
        async with serve_in_memory(app) as (client, supervisor, _):
            await client.initialize()
            for _ in range(3):
                assert text_of(await call(client, "work")) == "done"
            for _ in range(2):
                assert (await call(client, "fails"))["result"]["isError"] is True
            # A bad argument is the model's to fix: an isError result (SEP-1303), counted as an error.
            assert (await call(client, "work", {"seconds": "soon"}))["result"]["isError"] is True
            assert (await call(client, "no_such_tool"))["error"]["code"] == -32602  # not a call of any tool
            assert (await call(client, "stuck"))["error"]["code"] == -32001
            assert text_of(await call(client, 'we"ird\\name')) == "ok"
            # One call of work cancelled by the client after 0.4 s.
            request_id = client.new_id()
            await client.send({"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
                               "params": {"name": "work", "arguments": {"seconds": 30}}})
            await trio.sleep(0.4)
            await client.notify("notifications/cancelled", {"requestId": request_id})
            while supervisor.metrics.tools["work"].cancellations == 0:
                await trio.sleep(0.01)

            tools = supervisor.metrics.tools
            assert "unused" not in tools and "no_such_tool" not in tools
            figures = tools["work"].snapshot()
            assert {k: figures[k] for k in ("calls", "errors", "timeouts", "cancellations", "running")} == \
                {"calls": 5, "errors": 1, "timeouts": 0, "cancellations": 1, "running": 0}
            histogram = figures["latency_histogram"]
            assert histogram["0.0005"] == 1  # the bad arguments, refused at once
            assert histogram["0.25"] - histogram["0.1"] == 3  # three runs of 0.2 s
            assert histogram["0.5"] - histogram["0.25"] == 1  # the one cancelled at 0.4 s
            assert histogram["+Inf"] == 5
            assert figures["latency_seconds_sum"] == pytest.approx(3 * 0.2 + 0.4)
            assert figures["last_used"] is not None
            fails_stats = tools["fails"].snapshot()
            assert (fails_stats["calls"], fails_stats["errors"], fails_stats["latency_histogram"]["0.05"]) == (2, 2, 2)
            stuck_stats = tools["stuck"].snapshot()
            assert (stuck_stats["calls"], stuck_stats["timeouts"], stuck_stats["errors"]) == (1, 1, 0)
            assert stuck_stats["latency_histogram"]["0.5"] == 0 and stuck_stats["latency_histogram"]["1"] == 1

            text = supervisor.metrics.render({})
            assert 'mcp_tool_calls_total{tool="work"} 5' in text
            assert 'mcp_tool_errors_total{tool="work"} 1' in text
            assert 'mcp_tool_errors_total{tool="fails"} 2' in text
            assert 'mcp_tool_timeouts_total{tool="stuck"} 1' in text
            assert 'mcp_tool_cancellations_total{tool="work"} 1' in text
            assert 'mcp_tool_call_duration_seconds_bucket{tool="work",le="0.25"} 4' in text
            assert 'mcp_tool_call_duration_seconds_count{tool="work"} 5' in text
            assert 'mcp_tool_calls_total{tool="we\\"ird\\\\name"} 1' in text  # label escaped
            assert 'tool="unused"' not in text and 'tool="no_such_tool"' not in text
            assert 'mcp_tool_last_used_timestamp_seconds{tool="work"}' in text

            # A removed tool's series end with it: only registered tools are labels.
            app.remove_tool("fails")
            assert "fails" not in supervisor.metrics.tools
            assert 'tool="fails"' not in supervisor.metrics.render({})


# -- switching tools off ----------------------------------------------------------------------
async def test_disabling_under_load_loses_no_in_flight_call() -> None:
    app = Server("load")
    release = trio.Event()

    @app.tool(tags=["batch"])
    async def work(n: int) -> int:
        await release.wait()
        return n

    @app.tool
    async def other() -> str:
        return "still here"

    clients, per_client = 4, 10
    with trio.fail_after(10):
        async with serve_in_memory(app, Limits(max_in_flight=per_client)) as (first, supervisor, _):
            await first.initialize()
            async with connect_in_memory(supervisor, "b") as (b, _), connect_in_memory(supervisor, "c") as (c, _), \
                    connect_in_memory(supervisor, "d") as (d, _), connect_in_memory(supervisor, "late") as (late, _):
                sessions = [first, b, c, d]
                for client in (b, c, d, late):
                    await client.initialize()
                sent: list[tuple[RawClient, int, int]] = []
                for index, client in enumerate(sessions):
                    for k in range(per_client):
                        request_id = client.new_id()
                        n = index * per_client + k
                        await client.send({"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
                                           "params": {"name": "work", "arguments": {"n": n}}})
                        sent.append((client, request_id, n))
                while supervisor.metrics.tool("work").calls < clients * per_client:
                    await trio.sleep(0.001)

                assert supervisor.set_enabled(False, tools=["work"]) == ["work"]
                assert supervisor.set_enabled(False, tools=["work"]) == []  # already off: no change, no notice
                refused = await call(late, "work", {"n": -1})
                assert refused["error"]["code"] == -32602
                assert refused["error"]["message"] == "tool 'work' is disabled on this server"
                assert refused["error"]["data"] == {"tool": "work", "disabled": True}
                listed = [t["name"] for t in (await late.request("tools/list"))["result"]["tools"]]
                assert listed == ["other"]
                await late.receive_until(lambda m: m.get("method") == "notifications/tools/list_changed")

                release.set()
                for client, request_id, n in sent:
                    reply = await client.reply_to(request_id)
                    assert reply["result"]["structuredContent"] == {"result": n}, reply
                stats = supervisor.metrics.tools["work"]
                assert (stats.calls, stats.finished, stats.errors, stats.cancellations) == (40, 40, 0, 0)

                # Back on: listed and callable again.
                assert supervisor.set_enabled(True, tools=["work"]) == ["work"]
                assert (await call(late, "work", {"n": 7}))["result"]["structuredContent"] == {"result": 7}


async def test_switches_by_tag_outlive_redefinition() -> None:
    app = Server("tags")

    @app.tool(tags=["beta"])
    async def preview() -> str:
        return "v1"

    @app.tool(tags=["beta", "stable"])
    async def both() -> str:
        return "both"

    with trio.fail_after(5):
        async with serve_in_memory(app) as (client, supervisor, _):
            await client.initialize()
            assert supervisor.set_enabled(False, tags=["beta"]) == ["both", "preview"]
            assert supervisor.disabled_reason("preview") == "tag 'beta' disabled"

            # Redefined while its tag is off: stays off.
            @app.tool(name="preview", tags=["beta"])
            async def preview_v2() -> str:
                return "v2"

            assert not supervisor.registry.tools["preview"].enabled
            # Enabling by name does not override the tag.
            supervisor.set_enabled(True, tools=["preview"])
            assert not supervisor.registry.tools["preview"].enabled
            assert supervisor.set_enabled(True, tags=["beta"]) == ["both", "preview"]
            assert text_of(await call(client, "preview")) == "v2"
            supervisor.set_enabled(False, tools=["both"])
            assert supervisor.disabled_reason("both") == "disabled"
            assert supervisor.statistics()["tools_disabled"] == 1


# -- composition ------------------------------------------------------------------------------
class Place(msgspec.Struct):
    lat: float
    lon: float


def composing_app() -> Server:
    app = Server("compose")

    @app.tool
    async def add(a: int, b: int) -> int:
        return a + b

    @app.tool
    async def geocode(q: str) -> Place:
        return Place(48.85, 2.35) if q == "Paris" else Place(0, 0)

    @app.tool
    async def forecast(lat: float, lon: float) -> str:
        return f"sunny at {lat},{lon}"

    @app.tool
    async def fail(reason: str = "boom") -> str:
        raise RuntimeError(reason)

    @app.tool
    async def slow(seconds: float) -> str:
        await trio.sleep(seconds)
        return "slept"

    @app.tool(scopes=["admin"])
    async def secret() -> str:
        return "classified"

    @app.tool
    async def recurse(ctx: Context) -> str:
        return await ctx.call_tool("recurse")

    return app


async def test_call_tool_returns_the_value_as_a_client_reads_it() -> None:
    app = composing_app()
    seen: dict[str, Any] = {}

    @app.tool
    async def combo(ctx: Context) -> dict:
        seen["sum"] = await ctx.call_tool("add", {"a": 1, "b": 2})
        seen["place"] = await ctx.call_tool("geocode", {"q": "Paris"})
        seen["text"] = await ctx.call_tool("forecast", {"lat": 1, "lon": 2})
        seen["raw"] = await ctx.call_tool("fail", raw=True)
        seen["many"] = await ctx.call_tools(("add", {"a": 1, "b": 1}), ("add", {"a": 2, "b": 3}), ("geocode", {"q": "x"}))
        seen["chain"] = await ctx.chain_tools(("geocode", {"q": "Paris"}), ("forecast", None))
        seen["fed"] = await ctx.chain_tools(("add", {"a": 2, "b": 2}), ("add", lambda v: {"a": v, "b": 10}))
        try:
            await ctx.call_tool("fail", {"reason": "nope"})
        except ToolCallError as exc:
            seen["error"] = (exc.tool, str(exc), exc.result.is_error)
        try:
            await ctx.call_tool("add", {"a": "one", "b": 2})
        except ToolCallError as exc:  # bad arguments: a result with isError, as a client gets it
            seen["invalid"] = str(exc)
        try:
            await ctx.call_tool("no_such_tool", {})
        except McpError as exc:
            seen["unknown"] = type(exc).__name__
        return {"ok": True}

    with trio.fail_after(5):
        async with serve_in_memory(app) as (client, supervisor, _):
            await client.initialize()
            assert (await call(client, "combo"))["result"]["structuredContent"] == {"ok": True}
    assert seen["sum"] == 3
    assert seen["place"] == {"lat": 48.85, "lon": 2.35}  # JSON data, as a client would see it
    assert seen["text"] == "sunny at 1.0,2.0"
    assert isinstance(seen["raw"], CallToolResult) and seen["raw"].is_error
    assert seen["many"] == [2, 5, {"lat": 0.0, "lon": 0.0}]
    assert seen["chain"] == "sunny at 48.85,2.35"
    assert seen["fed"] == 14
    assert seen["error"] == ("fail", "tool 'fail' failed: nope", True)
    assert seen["invalid"] == "tool 'add' failed: invalid arguments for tool 'add': a must be an integer (got \"one\")"
    assert seen["unknown"] == "InvalidParams"
    stats = supervisor.metrics.tools
    assert stats["add"].calls == 6 and stats["add"].errors == 1  # nested calls are counted too
    assert stats["fail"].calls == 2 and stats["fail"].errors == 2


async def test_call_tools_first_error_cancels_the_rest(autojump_clock: trio.testing.MockClock) -> None:
    app = composing_app()
    outcome: dict[str, Any] = {}

    @app.tool
    async def fan_out(ctx: Context) -> str:
        started = trio.current_time()
        try:
            await ctx.call_tools(("slow", {"seconds": 50}), ("slow", {"seconds": 60}), ("fail", {"reason": "first"}))
        except ToolCallError as exc:
            outcome["error"] = str(exc)
        outcome["elapsed"] = trio.current_time() - started
        return "done"

    with trio.fail_after(100):
        async with serve_in_memory(app) as (client, supervisor, _):
            await client.initialize()
            assert text_of(await call(client, "fan_out")) == "done"
            assert outcome == {"error": "tool 'fail' failed: first", "elapsed": 0}
            slow = supervisor.metrics.tools["slow"]
            assert (slow.calls, slow.cancellations) == (2, 2)


async def test_call_tool_refusals_unknown_disabled_forbidden_too_deep() -> None:
    app = composing_app()

    @app.tool
    async def ask(name: str, ctx: Context) -> str:
        return await ctx.call_tool(name)

    with trio.fail_after(5):
        async with serve_in_memory(app) as (client, supervisor, connection):
            await client.initialize()
            reply = await call(client, "ask", {"name": "missing"})
            assert reply["result"]["isError"] and "unknown tool: 'missing'" in text_of(reply)
            supervisor.set_enabled(False, tools=["add"])
            reply = await call(client, "ask", {"name": "add"})
            assert "tool 'add' is disabled" in text_of(reply)
            reply = await call(client, "recurse")
            assert reply["result"]["isError"] and f"nested more than {MAX_CALL_DEPTH} deep" in text_of(reply)
            assert supervisor.metrics.tools["recurse"].calls == MAX_CALL_DEPTH + 1
            # The caller's principal is the nested call's: no admin scope, no secret.
            connection.principal = Principal("user", frozenset({"read"}), kind="api_key")
            reply = await call(client, "ask", {"name": "secret"})
            assert reply["result"]["isError"] and "requires scope(s) admin" in text_of(reply)
