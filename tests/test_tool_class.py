"""Tools defined as classes (``Tool``) and by a JSON Schema and a handler: the schema in both
forms (data, or derived from a typed ``run``), argument checking, metadata and definition
mistakes, registration on a ``Server`` and a ``Plugin``, and an end-to-end call by the
official SDK client.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
import trio

from mcp_trio import Context, Plugin, Server
from mcp_trio.offer._jsonschema import SchemaError
from mcp_trio.offer._schema import InvalidArguments, build_parser
from mcp_trio.offer._tool_class import SchemaArgumentParser, SchemaTool, Tool, ToolDefinitionError, add_tool_from_schema

ZIP_SCHEMA = {
    "type": "object",
    "required": ["zip"],
    "additionalProperties": False,
    "properties": {"zip": {"type": "string", "pattern": "^[0-9]{5}$"}, "days": {"type": "integer", "minimum": 1, "maximum": 7}},
}


class Forecast(Tool):
    """Weather forecast for a zip code."""

    name = "forecast"
    title = "Forecast"
    version = "2.1"
    tags = {"weather"}
    category = "weather"
    examples = [{"zip": "75001"}, {"zip": "10115", "days": 3}]
    timeout = 10
    read_only = True
    scopes = ("read",)
    input_schema = ZIP_SCHEMA
    output_schema = {"type": "object", "properties": {"zip": {"type": "string"}, "days": {"type": "integer"}}}

    async def run(self, arguments: dict[str, Any], ctx: Any) -> dict[str, Any]:
        await ctx.report_progress(1, 1)
        return {"zip": arguments["zip"], "days": arguments.get("days", 1)}


class GetTimeInCity(Tool):
    """The time in a city."""

    destructive = False
    annotations = {"idempotentHint": True, "openWorldHint": False}

    async def run(self, city: str, utc_offset: int = 0, ctx: Context | None = None) -> str:
        return f"{city}: UTC{utc_offset:+d}"


# -- the class alone: no server ------------------------------------------------------------------
def test_the_schema_form_checks_arguments_and_carries_metadata() -> None:
    tool = Forecast()
    target, options = tool.tool_options()
    assert target == tool.run and tool.schema_defined
    assert {k: options[k] for k in ("name", "title", "description", "version", "category", "timeout", "read_only", "scopes")} == {
        "name": "forecast", "title": "Forecast", "description": "Weather forecast for a zip code.", "version": "2.1",
        "category": "weather", "timeout": 10, "read_only": True, "scopes": ("read",)}
    assert options["tags"] == {"weather"} and options["examples"] == ({"zip": "75001"}, {"zip": "10115", "days": 3})
    assert options["input_schema"] == ZIP_SCHEMA and options["output_schema"]["properties"]["days"] == {"type": "integer"}
    parser = options["parser"]
    assert isinstance(parser, SchemaArgumentParser)
    assert (parser.arguments_param, parser.context_param, parser.schema) == ("arguments", "ctx", ZIP_SCHEMA)
    assert parser.parse(b'{"zip": "75001", "days": 2}') == {"arguments": {"zip": "75001", "days": 2}}
    with pytest.raises(InvalidArguments) as caught:
        parser.parse(b'{"zip": "12", "days": 9, "hourly": true}')
    assert caught.value.message == (
        "invalid arguments for tool 'forecast': zip must match pattern '^[0-9]{5}$' (got \"12\"); "
        "days must be at most 7 (got 9); hourly is not an allowed property (got true)")
    with pytest.raises(InvalidArguments, match="zip is required"):
        parser.parse(None)


def test_the_typed_form_derives_the_schema_from_run() -> None:
    tool = GetTimeInCity()
    target, options = tool.tool_options()
    assert not tool.schema_defined and options["parser"] is None and options["input_schema"] is None
    assert options["name"] == "get_time_in_city" and options["description"] == "The time in a city."
    assert (options["destructive"], options["idempotent"], options["open_world"], options["read_only"]) == (False, True, False, None)
    parser = build_parser(target, "tool 'get_time_in_city'", Context)  # what the server does with it
    assert parser.context_param == "ctx"
    assert parser.schema == {"type": "object", "properties": {"city": {"type": "string"}, "utc_offset": {"type": "integer", "default": 0}},
                             "required": ["city"], "additionalProperties": False}
    assert parser.parse(msgspec.Raw(b'{"city": "Oslo"}')) == {"city": "Oslo", "utc_offset": 0}


def test_names_and_per_instance_options() -> None:
    class HTTPFetchURL(Tool):
        input_schema = {"type": "object"}

        async def run(self, arguments: dict[str, Any], ctx: Any) -> str:
            return "ok"

    assert HTTPFetchURL().tool_name == "http_fetch_url"
    eu = Forecast(name="forecast.eu", timeout=5, tags={"eu"})
    _, options = eu.tool_options()
    assert (options["name"], options["timeout"], options["tags"]) == ("forecast.eu", 5, {"eu"})
    assert Forecast().tool_options()[1]["timeout"] == 10  # the class is untouched


@pytest.mark.parametrize(("make", "reason"), [
    (lambda: type("NoRun", (Tool,), {"input_schema": {"type": "object"}})(), "must define async def run"),
    (lambda: type("SyncRun", (Tool,), {"run": lambda self, arguments, ctx: 1})(), "run must be an async function"),
    (lambda: Forecast(name="has space"), "a tool name is 1 to 128"),
    (lambda: Forecast(name="x" * 129), "a tool name is 1 to 128"),
    (lambda: Forecast(timeout=0), "timeout must be positive"),
    (lambda: Forecast(colour="red"), r"unknown tool option\(s\) \['colour'\]"),
    (lambda: Forecast(annotations={"readOnly": True}), r"unknown annotation\(s\) \['readOnly'\]"),
    (lambda: Forecast(annotations={"readOnlyHint": False}), "contradicts read_only=True"),
    (lambda: SchemaTool("t", {"type": "object"}, lambda a, b, c: None), r"must take \(arguments\) or \(arguments, ctx\)"),
    (lambda: SchemaTool("t", {"type": "object"}, 42), "the handler must be callable"),
])
def test_definition_mistakes_are_one_line_at_once(make: Any, reason: str) -> None:
    with pytest.raises(ToolDefinitionError, match=reason) as caught:
        make()
    assert "\n" not in str(caught.value)


def test_an_unusable_schema_is_refused_at_definition() -> None:
    with pytest.raises(SchemaError, match="tool 'forecast': the input schema is not usable"):
        Forecast(input_schema={"type": "object", "properties": {"zip": {"pattern": "(["}}})


# -- registered on a server ----------------------------------------------------------------------
def test_add_tool_takes_an_instance() -> None:
    app = Server("classes")
    forecast = app.add_tool(Forecast())
    assert forecast.wire.input_schema == ZIP_SCHEMA and forecast.wire.title == "Forecast"
    assert forecast.wire.meta == {"tags": ["weather"], "category": "weather", "version": "2.1",
                                  "examples": [{"zip": "75001"}, {"zip": "10115", "days": 3}]}
    assert forecast.timeout == 10 and forecast.scopes == {"read"} and forecast.is_async
    assert forecast.wire.annotations.read_only_hint is True
    typed = app.add_tool(GetTimeInCity(), timeout=3)  # options given here fill in what it leaves unset
    assert typed.timeout == 3 and typed.wire.input_schema["required"] == ["city"]
    tagged = app.add_tool(Forecast(name="tagged"), tags={"extra"}, timeout=99)
    assert tagged.tags == {"weather", "extra"} and tagged.timeout == 10  # the Tool's own timeout stays
    assert typed.wire.annotations.idempotent_hint is True and typed.parser.context_param == "ctx"
    with pytest.raises(ValueError, match="example 1 does not match"):
        app.add_tool(Forecast(name="bad_examples", examples=[{"zip": "nope"}]))


def test_plugin_tags_add_to_the_tools_own() -> None:
    plugin = Plugin("weather-pack", tags={"pack"}, category="packs")
    definition = plugin.add_tool(Forecast())
    assert definition.tags == {"weather", "pack"} and definition.category == "weather"
    assert plugin.add_tool(GetTimeInCity()).category == "packs"


def test_add_tool_from_schema_with_a_plain_function() -> None:
    app = Server("schemas")

    def echo_zip(arguments: dict[str, Any]) -> str:
        """Say the zip back."""
        return arguments["zip"]

    definition = app.add_tool_from_schema("echo_zip", ZIP_SCHEMA, echo_zip, tags=["geo"])
    assert definition.fn is echo_zip and not definition.is_async and definition.parser.context_param is None
    assert definition.wire.description == "Say the zip back." and definition.tags == {"geo"}
    also = add_tool_from_schema(app, "echo_zip2", ZIP_SCHEMA, echo_zip)
    assert also.name == "echo_zip2" and set(app.registry.tools) == {"echo_zip", "echo_zip2"}


# -- end to end: the official SDK client ---------------------------------------------------------
import mcp_types as types  # noqa: E402
from mcp.shared.exceptions import MCPError  # noqa: E402

from tests.test_http import sdk, sdk_session  # noqa: E402
from tests.test_stdio_sdk import INVALID_PARAMS, Inbox, text_of  # noqa: E402


@sdk
async def test_sdk_client_calls_class_and_schema_tools() -> None:
    app = Server("class-tools")
    app.add_tool(Forecast(scopes=()))
    app.add_tool(GetTimeInCity())

    async def shout(arguments: dict[str, Any], ctx: Context) -> str:
        await ctx.info(f"shouting {arguments['text']}")
        return arguments["text"].upper()

    app.add_tool_from_schema("shout", {"type": "object", "required": ["text"], "properties": {"text": {"type": "string", "maxLength": 10}}}, shout)
    progress = Inbox()

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.add(value)

    with trio.fail_after(15):
        async with sdk_session(app) as (client, _, _):
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
            assert set(tools) == {"forecast", "get_time_in_city", "shout"}
            assert tools["forecast"].input_schema == ZIP_SCHEMA and tools["forecast"].output_schema is not None
            result = await client.call_tool("forecast", {"zip": "75001", "days": 2}, progress_callback=on_progress)
            assert result.structured_content == {"zip": "75001", "days": 2}
            await progress.wait_for(lambda items: items == [1])
            assert text_of(await client.call_tool("get_time_in_city", {"city": "Oslo", "utc_offset": 1})) == "Oslo: UTC+1"
            assert text_of(await client.call_tool("shout", {"text": "hey"})) == "HEY"
            # SEP-1303: arguments that do not fit the schema are a result the model reads, naming the path.
            refused = await client.call_tool("forecast", {"zip": "12", "days": 9})
            assert refused.is_error and refused.content[0].text == (
                "invalid arguments for tool 'forecast': zip must match pattern '^[0-9]{5}$' (got \"12\"); "
                "days must be at most 7 (got 9)")
            assert [(d["path"], d["constraint"]) for d in refused.meta["invalidArguments"]] == [("zip", "pattern"), ("days", "maximum")]
            too_long = await client.call_tool("shout", {"text": "far too long"})
            assert too_long.is_error and "text must be at most 10 characters long" in too_long.content[0].text
            with pytest.raises(MCPError) as caught:  # an unknown tool stays the client program's mistake
                await client.call_tool("nope", {})
            assert caught.value.code == INVALID_PARAMS
            assert isinstance(await client.send_ping(), types.EmptyResult)


# -- discovered in plugin files ------------------------------------------------------------------
TOOLS_PLUGIN = '''
    from typing import Any

    from mcp_trio import Tool


    class Lookup(Tool):
        """A base for lookups: it has no run, so it is not a tool."""

        tags = {"lookup"}


    class Zip(Lookup):
        """Say a zip back."""

        input_schema = {"type": "object", "required": ["zip"], "properties": {"zip": {"type": "string"}}}

        async def run(self, arguments: dict[str, Any], ctx: Any) -> str:
            return "zip " + arguments["zip"]


    class City(Lookup):
        """Say a city back."""

        async def run(self, city: str) -> str:
            return "city " + city


    city_eu = City(name="city_eu")     # City has an instance: the class itself is not registered again
    _hidden = Zip(name="hidden")       # private names are never registered


    class NeedsClient(Tool):
        def __init__(self, client: Any) -> None:   # cannot be made without arguments: skipped
            super().__init__()

        async def run(self, arguments: dict[str, Any], ctx: Any) -> str:
            return "no"
'''


async def test_plugin_files_register_their_tool_instances_and_classes(tmp_path: Any) -> None:
    from tests.helpers import serve_in_memory
    from tests.served import write_plugin

    write_plugin(tmp_path, "lookups", TOOLS_PLUGIN)
    write_plugin(tmp_path, "empty", "X = 1\n")
    app = Server("plugged")
    app.use_plugins(tmp_path, watch=False)
    with trio.fail_after(10):
        async with serve_in_memory(app) as (client, _, _):
            await client.initialize()
            listed = {tool["name"]: tool for tool in (await client.request("tools/list"))["result"]["tools"]}
            assert set(listed) == {"zip", "city_eu"}
            assert listed["zip"]["_meta"]["tags"] == ["lookup"]
            reply = await client.request("tools/call", {"name": "zip", "arguments": {"zip": "75001"}})
            assert reply["result"]["content"][0]["text"] == "zip 75001"
            reply = await client.request("tools/call", {"name": "city_eu", "arguments": {"city": "Oslo"}})
            assert reply["result"]["content"][0]["text"] == "city Oslo"
            assert app.plugins.owner_of_tool("zip") == "lookups"  # type: ignore[union-attr]
            (empty,) = [p for p in app.plugins.status()["plugins"] if p["name"] == "empty"]  # type: ignore[union-attr]
            assert "neither `plugin = Plugin(...)`, `register(plugin)` nor a Tool" in empty["error"]


async def test_the_readme_shop_example_runs_as_written() -> None:
    """README, "Tools as classes, and from a JSON Schema": the ``shop.py`` block, served."""
    import re
    import types as pytypes
    from pathlib import Path

    from tests.helpers import serve_in_memory

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    (source,) = re.findall(r"```python\n(# shop\.py\n.*?)```", readme, re.S)
    module = pytypes.ModuleType("shop")
    exec(compile(source, "README.md:shop.py", "exec"), module.__dict__)
    with trio.fail_after(10):
        async with serve_in_memory(module.server) as (client, _, _):
            await client.initialize()
            reply = await client.request("tools/call", {"name": "stock", "arguments": {"sku": "x"}})
            assert reply["result"]["isError"] and reply["result"]["content"][0]["text"] == (
                "invalid arguments for tool 'stock': sku must match pattern '^[A-Z]{3}-[0-9]{4}$' (got \"x\")")
            assert reply["result"]["content"][0]["text"] in readme
            reply = await client.request("tools/call", {"name": "stock", "arguments": {"sku": "ABC-1234"}})
            assert reply["result"]["structuredContent"] == {"sku": "ABC-1234", "units": 12}
            reply = await client.request("tools/call", {"name": "price", "arguments": {"sku": "ABC-1234"}})
            assert reply["result"]["content"][0]["text"] == "ABC-1234: 9.90 EUR"
