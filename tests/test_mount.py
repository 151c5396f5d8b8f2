"""``Server.mount``: another server's tools, resources, templates, prompts and completions under
a prefix (``weather_forecast``, ``weather+data://cities/{id}``), its changes reaching the host's
sessions, its scopes and middleware still applied, names that clash or run over 128 characters
refused at mount time, nested mounts, and the official SDK client calling through it all.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio

import mcp_types as types
from mcp.shared.exceptions import MCPError
from mcp_trio import Context, Server
from mcp_trio.auth import ApiKey, ApiKeyStore, Authenticator, generate_api_key
from mcp_trio.client import McpError, connect
from mcp_trio.offer._mount import MountError
from tests.helpers import serve_in_memory
from tests.served import serving
from tests.test_http import sdk, sdk_session
from tests.test_stdio_sdk import text_of


def weather_server(seen: list[tuple[str, Any]] | None = None) -> Server:
    weather = Server("weather")

    @weather.tool(tags={"forecasts"})
    async def forecast(city: str, days: int = 1) -> str:
        """Forecast for a city."""
        return f"sunny in {city} for {days} day(s)"

    @weather.tool(scopes="admin")
    async def reset() -> str:
        return "reset"

    @weather.resource("data://cities", mime_type="application/json")
    async def cities() -> list[str]:
        """Every city."""
        return ["Paris", "Oslo"]

    @weather.resource("data://cities/{id}")
    async def city(id: str, ctx: Context) -> dict[str, str]:
        return {"id": id, "request": str(ctx.request_id)}

    @weather.prompt
    async def plan(city: str) -> str:
        """Plan around the weather."""
        return f"plan {city}"

    @weather.completion(prompt="plan", argument="city")
    async def cities_like(value: str, context: dict[str, str]) -> list[str]:
        return [c for c in ("Paris", "Prague", "Oslo") if c.startswith(value)]

    if seen is not None:
        @weather.middleware
        async def record(request: Any, call_next: Any) -> Any:
            """Written for the weather server alone: it sees its own names."""
            seen.append((request.method, getattr(request, "name", getattr(request, "uri", None))))
            if request.method == "tools/call" and request.name == "forecast" and "days" not in request.arguments:
                request.arguments = {**request.arguments, "days": 3}
            return await call_next(request)

    return weather


def host_with_weather(seen: list[tuple[str, Any]] | None = None) -> tuple[Server, Server]:
    host = Server("host")

    @host.tool
    async def echo(text: str) -> str:
        return text

    weather = weather_server(seen)
    host.mount(weather, prefix="weather")
    return host, weather


async def test_names_follow_the_prefix_scheme() -> None:
    host, _ = host_with_weather()
    with trio.fail_after(10):
        async with serve_in_memory(host) as (client, _, _):
            await client.initialize()
            tools = {t["name"]: t for t in (await client.request("tools/list"))["result"]["tools"]}
            assert set(tools) == {"echo", "weather_forecast", "weather_reset"}
            assert tools["weather_forecast"]["description"] == "Forecast for a city."
            assert tools["weather_forecast"]["_meta"]["tags"] == ["forecasts"]
            resources = (await client.request("resources/list"))["result"]["resources"]
            assert [(r["uri"], r["name"]) for r in resources] == [("weather+data://cities", "weather_cities")]
            templates = (await client.request("resources/templates/list"))["result"]["resourceTemplates"]
            assert [(t["uriTemplate"], t["name"]) for t in templates] == [("weather+data://cities/{id}", "weather_city")]
            prompts = (await client.request("prompts/list"))["result"]["prompts"]
            assert [p["name"] for p in prompts] == ["weather_plan"]

            reply = await client.request("tools/call", {"name": "weather_forecast", "arguments": {"city": "Paris"}})
            assert reply["result"]["content"][0]["text"] == "sunny in Paris for 1 day(s)"
            bad = await client.request("tools/call", {"name": "weather_forecast", "arguments": {"town": "Paris"}})
            assert bad["result"]["isError"] and "invalid arguments for tool 'weather_forecast'" in bad["result"]["content"][0]["text"]
            read = await client.request("resources/read", {"uri": "weather+data://cities/7"})
            (contents,) = read["result"]["contents"]
            assert contents["uri"] == "weather+data://cities/7" and '"id":"7"' in contents["text"]
            assert (await client.request("resources/read", {"uri": "data://cities/7"}))["error"]["code"] == -32002
            prompt = await client.request("prompts/get", {"name": "weather_plan", "arguments": {"city": "Oslo"}})
            assert prompt["result"]["messages"][0]["content"]["text"] == "plan Oslo"
            done = await client.request("completion/complete", {"ref": {"type": "ref/prompt", "name": "weather_plan"},
                                                                "argument": {"name": "city", "value": "P"}})
            assert done["result"]["completion"]["values"] == ["Paris", "Prague"]


async def test_changes_of_the_mounted_server_reach_the_hosts_sessions() -> None:
    host, weather = host_with_weather()
    with trio.fail_after(10):
        async with serving(host) as served:
            changes: list[str] = []
            updated: list[str] = []
            async with connect(f"{served.base}/mcp", era="handshake", on_list_changed=changes.append,
                               on_resource_updated=updated.append) as client:
                await client.subscribe("weather+data://cities")

                @weather.tool
                async def radar() -> str:
                    return "radar"

                while "tools" not in changes:
                    await trio.sleep(0.01)
                assert "weather_radar" in {t.name for t in await client.list_tools()}
                assert (await client.call_tool("weather_radar")).content[0].text == "radar"  # type: ignore[union-attr]
                weather.remove_tool("radar")
                assert "weather_radar" not in {t.name for t in await client.list_tools()}

                weather.notify_resource_updated("data://cities")
                while not updated:
                    await trio.sleep(0.01)
                assert updated == ["weather+data://cities"]


async def test_the_mounted_servers_scopes_and_middleware_apply() -> None:
    seen: list[tuple[str, Any]] = []
    host, _ = host_with_weather(seen)
    outer: list[Any] = []

    @host.middleware
    async def host_audit(request: Any, call_next: Any) -> Any:
        outer.append(getattr(request, "name", request.method))
        return await call_next(request)

    key, digest = generate_api_key()
    authenticator = Authenticator(api_keys=ApiKeyStore([ApiKey("reader", digest, frozenset({"read"}))]))
    with trio.fail_after(10):
        async with serving(host, authenticator=authenticator) as served:
            async with connect(f"{served.base}/mcp", headers={"Authorization": f"Bearer {key}"}) as client:
                names = {t.name for t in await client.list_tools()}
                assert "weather_reset" not in names and "weather_forecast" in names  # its scopes: admin only
                with pytest.raises(McpError) as caught:
                    await client.call_tool("weather_reset")
                assert caught.value.code == -32003
                # Its middleware sees its own names, and may change the arguments.
                result = await client.call_tool("weather_forecast", {"city": "Oslo"})
                assert result.content[0].text == "sunny in Oslo for 3 day(s)"  # type: ignore[union-attr]
                await client.read_resource("weather+data://cities/9")
                await client.get_prompt("weather_plan", {"city": "Rome"})
                await client.call_tool("echo", {"text": "mine"})  # the host's own tool: not its business
    assert seen == [("tools/call", "forecast"), ("resources/read", "data://cities/9"), ("prompts/get", "plan")]
    assert "weather_forecast" in outer and "echo" in outer  # the host's middleware sees the host's names


def test_clashes_long_names_bad_prefixes_and_circles_are_refused_at_mount_time(caplog: pytest.LogCaptureFixture) -> None:
    host, weather = host_with_weather()

    @host.tool(name="other_forecast")
    async def taken() -> str:
        return "mine"

    with pytest.raises(MountError, match=r"mount 'other' \(weather\): already defined in this server: tool 'other_forecast'"):
        host.mount(weather_server(), prefix="other")
    assert "other_reset" not in host.registry.tools  # nothing half-mounted

    with pytest.raises(MountError, match=r"prefix 'bad_prefix': use 1 to 32 letters"):
        host.mount(weather_server(), prefix="bad_prefix")
    with pytest.raises(MountError, match="over the 128 the specification allows"):
        long = Server("long")
        long.add_tool(lambda: None, name="t" * 120)
        host.mount(long, prefix="long-prefix")
    with caplog.at_level(logging.WARNING, "mcp_trio.mount"):
        wordy = Server("wordy")
        wordy.add_tool(lambda: None, name="w" * 60)
        host.mount(wordy, prefix="wordy")
    assert "model APIs commonly accept 64 at most" in caplog.text
    with pytest.raises(MountError, match="a circle"):
        weather.mount(host, prefix="host")
    with pytest.raises(TypeError, match="mount takes a Server or a Remote"):
        host.mount("weather", prefix="x")  # type: ignore[arg-type]

    # A later change of the mounted server that would clash in the host is refused, unapplied.
    @host.tool(name="weather_radar")
    async def radar_here() -> str:
        return "mine"

    with pytest.raises(MountError, match="tool 'weather_radar'"):
        weather.add_tool(lambda: None, name="radar")
    assert "radar" not in weather.registry.tools and host.registry.tools["weather_radar"].fn is radar_here


async def test_nested_mounts_apply_each_levels_middleware_with_its_names() -> None:
    seen: list[tuple[str, Any]] = []
    region = Server("region")
    region.mount(weather_server(seen), prefix="weather")
    levels: list[Any] = []

    @region.middleware
    async def region_level(request: Any, call_next: Any) -> Any:
        levels.append(getattr(request, "name", None))
        return await call_next(request)

    top = Server("top")
    top.mount(region, prefix="eu")
    with trio.fail_after(10):
        async with serve_in_memory(top) as (client, _, _):
            await client.initialize()
            reply = await client.request("tools/call", {"name": "eu_weather_forecast", "arguments": {"city": "Bern"}})
            assert reply["result"]["content"][0]["text"] == "sunny in Bern for 3 day(s)"
            read = await client.request("resources/read", {"uri": "eu+weather+data://cities/1"})
            assert read["result"]["contents"][0]["uri"] == "eu+weather+data://cities/1"
    assert levels == ["weather_forecast", None] and seen == [("tools/call", "forecast"), ("resources/read", "data://cities/1")]


@sdk
async def test_sdk_client_calls_through_a_mount() -> None:
    host, _ = host_with_weather()
    with trio.fail_after(15):
        async with sdk_session(host) as (client, _, _):
            tools = {tool.name for tool in (await client.list_tools()).tools}
            assert {"echo", "weather_forecast"} <= tools
            assert text_of(await client.call_tool("weather_forecast", {"city": "Lima", "days": 2})) == "sunny in Lima for 2 day(s)"
            read = await client.read_resource("weather+data://cities")
            assert read.contents[0].text == '["Paris","Oslo"]'  # type: ignore[union-attr]
            prompt = await client.get_prompt("weather_plan", {"city": "Kyiv"})
            assert prompt.messages[0].content.text == "plan Kyiv"  # type: ignore[union-attr]
            with pytest.raises(MCPError):
                await client.call_tool("forecast", {"city": "Lima"})  # only under its prefix
            assert isinstance(await client.send_ping(), types.EmptyResult)


async def test_a_mounted_servers_plugins_are_loaded_by_the_host(tmp_path: Any) -> None:
    from tests.served import write_plugin

    write_plugin(tmp_path, "radar", '''
        from mcp_trio import Plugin

        plugin = Plugin("radar")

        @plugin.tool
        async def radar() -> str:
            return "radar"
    ''')
    host, weather = host_with_weather()
    weather.use_plugins(tmp_path, watch=False)
    with trio.fail_after(10):
        async with serve_in_memory(host) as (client, _, _):
            await client.initialize()
            reply = await client.request("tools/call", {"name": "weather_radar", "arguments": {}})
            assert reply["result"]["content"][0]["text"] == "radar"
