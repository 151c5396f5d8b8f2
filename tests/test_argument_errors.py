"""Tool-argument errors are tool results the model reads (SEP-1303, revision 2025-11-25).

A ``tools/call`` whose arguments do not fit the tool (out of range, wrong type, missing,
unknown) is answered with ``isError: true``, a text naming the argument, the rule and the
value, and the same as data in ``_meta.invalidArguments``; an unknown tool and ``params`` or
``arguments`` that are not objects stay ``-32602``. Lenient coercion (``"5"`` for an integer)
is opt-in, per server and per tool. The SDK-client tours of every transport in both eras
(``test_stdio_sdk``, ``test_http``, ``test_stateless_sdk``) check the same from the outside.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
import pytest
import trio

from mcp_trio import Context, Server, ToolCallError
from tests.helpers import serve_in_memory
from tests.test_stateless import stateless_call

Days = Annotated[int, msgspec.Meta(ge=1, le=7)]


def weather(**options: Any) -> Server:
    app = Server("weather", **options)

    @app.tool
    async def forecast(city: str, days: Days = 3) -> str:
        return f"{city}: {days} days"

    @app.tool
    async def relay(ctx: Context) -> str:
        try:
            await ctx.call_tool("forecast", {"city": "Oslo", "days": 9})
        except ToolCallError as exc:
            return f"relayed: {exc.result.is_error} {exc}"
        return "no error"

    return app


async def call(client: Any, name: str, arguments: Any, *, stateless: bool) -> dict[str, Any]:
    params = {"name": name, "arguments": arguments}
    return await (stateless_call(client, "tools/call", params) if stateless else client.request("tools/call", params))


@pytest.mark.parametrize("stateless", [False, True], ids=["handshake", "2026-07-28"])
async def test_bad_arguments_are_a_result_the_model_reads(stateless: bool) -> None:
    with trio.fail_after(5):
        async with serve_in_memory(weather()) as (client, supervisor, _):
            if not stateless:
                await client.initialize()
            reply = await call(client, "forecast", {"city": "Oslo", "days": 9}, stateless=stateless)
            result = reply["result"]
            assert result["isError"] is True
            assert result["content"] == [{"type": "text", "text": "invalid arguments for tool 'forecast': "
                                                                 "days must be at most 7 (got 9)"}]
            assert result["_meta"]["invalidArguments"] == [{
                "argument": "days", "path": "days", "message": "days must be at most 7 (got 9)",
                "constraint": "maximum", "limit": 7, "received": 9}]
            if stateless:  # one _meta: the stamp's serverInfo merged with ours
                assert result["resultType"] == "complete"
                assert result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "weather"

            several = (await call(client, "forecast", {"days": "3", "town": "Oslo"}, stateless=stateless))["result"]
            assert several["content"][0]["text"] == ("invalid arguments for tool 'forecast': town is unknown; "
                                                     "city is required")

            # Still protocol errors: the client program, not the model, got these wrong.
            for name, arguments in [("no_such_tool", {}), ("forecast", ["Oslo"]), ("forecast", "Oslo")]:
                refused = await call(client, name, arguments, stateless=stateless)
                assert refused["error"]["code"] == -32602, (name, arguments, refused)
            if not stateless:  # (a 2026-07-28 request carries its envelope in params: it must be an object)
                params_not_object = await client.request("tools/call", ["forecast"])  # type: ignore[arg-type]
                assert params_not_object["error"]["code"] == -32602, params_not_object
            assert supervisor.metrics.tools["forecast"].errors == 4  # both kinds count as the tool's errors


def coercing(**options: Any) -> Server:
    app = weather(**options)

    @app.tool(coerce_arguments=True)
    async def lenient(days: Days) -> int:
        return days

    @app.tool(coerce_arguments=False)
    async def strict(days: Days) -> int:
        return days

    return app


async def test_lenient_coercion_is_opt_in_per_server_and_per_tool() -> None:
    with trio.fail_after(5):
        async with serve_in_memory(coercing()) as (client, _, _):
            await client.initialize()
            refused = (await client.request("tools/call", {"name": "forecast", "arguments": {"city": "Oslo", "days": "5"}}))
            assert refused["result"]["content"][0]["text"].endswith('days must be an integer (got "5")')
            accepted = await client.request("tools/call", {"name": "lenient", "arguments": {"days": "5"}})
            assert accepted["result"]["structuredContent"] == {"result": 5}
            still_checked = await client.request("tools/call", {"name": "lenient", "arguments": {"days": "9"}})
            assert still_checked["result"]["_meta"]["invalidArguments"][0]["message"] == 'days must be at most 7 (got "9")'
        async with serve_in_memory(coercing(coerce_arguments=True)) as (client, _, _):
            await client.initialize()
            accepted = await client.request("tools/call", {"name": "forecast", "arguments": {"city": "Oslo", "days": "5"}})
            assert accepted["result"]["content"][0]["text"] == "Oslo: 5 days"
            whole = await client.request("tools/call", {"name": "forecast", "arguments": {"city": "Oslo", "days": 5.0}})
            assert whole["result"]["content"][0]["text"] == "Oslo: 5 days"
            refused = await client.request("tools/call", {"name": "strict", "arguments": {"days": "5"}})
            assert refused["result"]["isError"] is True  # the tool said strict


async def test_a_tool_calling_a_tool_with_bad_arguments_gets_the_same_result() -> None:
    with trio.fail_after(5):
        async with serve_in_memory(weather()) as (client, _, _):
            await client.initialize()
            reply = await client.request("tools/call", {"name": "relay", "arguments": {}})
            assert reply["result"]["content"][0]["text"] == (
                "relayed: True tool 'forecast' failed: invalid arguments for tool 'forecast': days must be at most 7 (got 9)")
