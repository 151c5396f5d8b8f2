"""Icons (revision 2025-11-25, SEP-973) and ``@server.on_roots_changed`` (issue 17, point 4).

Icons on tools, resources, templates, prompts and the server, read by the official SDK client
as its own types; an ``src`` a client should not fetch (``http:``, ``javascript:``, a ``data:``
URI that is not base64 image data) is refused where it is registered. A roots change sent by
the official SDK client reaches the server's hook, which asks the client again
(``roots/list``, answered by the SDK's callback); runs are coalesced, a failing hook leaves the
session working.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

import mcp_types as types
import pytest
import trio
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from mcp_trio import Context, Icon, Server
from mcp_trio.offer._icons import MAX_DATA_ICON_BYTES, MAX_ICONS
from tests.helpers import INIT_PARAMS, serve_in_memory
from tests.served import serving

sdk = pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")

PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()
LOGO = {"src": "https://example.com/logo.svg", "mimeType": "image/svg+xml", "sizes": ["any"], "theme": "light"}


def iconic_server() -> Server:
    app = Server("iconic", icons=[LOGO, Icon(src=PNG, mime_type="image/png", sizes=["16x16", "32x32"], theme="dark")])

    @app.tool(icons=[{"src": PNG, "sizes": ["48x48"]}])
    async def shine() -> str:
        return "bright"

    @app.resource("icons://static", icons=[LOGO])
    async def static() -> str:
        return "s"

    @app.resource("icons://items/{name}", icons=[{"src": "https://cdn.example.com/item.png"}])
    async def item(name: str) -> str:
        return name

    @app.prompt(icons=[{"src": PNG, "theme": "light"}])
    async def greet(who: str) -> str:
        return f"Hello {who}"

    @app.tool
    async def plain() -> str:
        return "no icon"

    return app


@sdk
async def test_the_official_client_reads_every_icon() -> None:
    with trio.fail_after(15):
        async with serving(iconic_server()) as served, Client(streamable_http_client(f"{served.base}/mcp"), mode="legacy") as client:
            assert client.protocol_version == "2025-11-25"
            info = client.server_info
            assert info is not None and info.icons is not None
            assert [(i.src, i.mime_type, i.sizes, i.theme) for i in info.icons] == [
                ("https://example.com/logo.svg", "image/svg+xml", ["any"], "light"),
                (PNG, "image/png", ["16x16", "32x32"], "dark")]
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
            assert [(i.src, i.sizes) for i in tools["shine"].icons or []] == [(PNG, ["48x48"])]
            assert tools["plain"].icons is None  # none registered, none sent
            resource = (await client.list_resources()).resources[0]
            assert isinstance(resource.icons[0], types.Icon) and resource.icons[0].src == LOGO["src"]  # type: ignore[index]
            template = (await client.list_resource_templates()).resource_templates[0]
            assert template.icons is not None and template.icons[0].src == "https://cdn.example.com/item.png"
            prompt = (await client.list_prompts()).prompts[0]
            assert prompt.icons is not None and (prompt.icons[0].src, prompt.icons[0].theme) == (PNG, "light")


@pytest.mark.parametrize(("icon", "complaint"), [
    ({"src": "http://example.com/i.png"}, "only https: URLs and base64 data: URIs"),
    ({"src": "javascript:alert(1)"}, "only https: URLs and base64 data: URIs"),
    ({"src": "file:///etc/passwd"}, "only https: URLs and base64 data: URIs"),
    ({"src": "https:///no-host.png"}, "has no host"),
    ({"src": "data:text/html;base64,PGI+"}, "must hold an image/ type"),
    ({"src": "data:image/svg+xml,<svg/>"}, "must be base64"),
    ({"src": "data:image/png;base64,not base64!"}, "not valid base64"),
    ({"src": "data:image/png;base64," + "A" * (MAX_DATA_ICON_BYTES * 4 // 3 + 8)}, "larger than"),
    ({"src": PNG, "mimeType": "text/plain"}, "not an image/ type"),
    ({"src": PNG, "sizes": ["big"]}, "neither WxH"),
    ({"src": PNG, "theme": "sepia"}, "not an icon"),
    ({"mimeType": "image/png"}, "not an icon"),
])
def test_icons_a_client_should_not_fetch_are_refused_at_registration(icon: dict[str, Any], complaint: str) -> None:
    app = Server("strict")
    with pytest.raises(ValueError, match=complaint):
        @app.tool(icons=[icon])
        async def tool() -> str:
            return ""
    assert "tool" not in app.registry.tools


def test_icon_counts_and_shapes() -> None:
    app = Server("counts")
    with pytest.raises(ValueError, match=f"more than the {MAX_ICONS} allowed"):
        app.add_prompt(lambda: "x", name="many", icons=[{"src": PNG}] * (MAX_ICONS + 1))
    with pytest.raises(ValueError, match="must be a list of icons"):
        app.add_prompt(lambda: "x", name="one", icons={"src": PNG})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="server 'bad'"):
        Server("bad", icons=[{"src": "ftp://example.com/x.png"}])


# -- roots ----------------------------------------------------------------------------------------
def roots_server(seen: list[Any], gate: trio.Event | None = None) -> Server:
    app = Server("roots")

    @app.on_roots_changed
    async def remember(ctx: Context) -> None:
        if gate is not None:
            await gate.wait()
        roots = await ctx.list_roots()
        seen.append([root.uri for root in roots])
        ctx.session_state["roots"] = [root.uri for root in roots]
        await ctx.info(f"{len(roots)} root(s)")

    @app.tool
    async def where(ctx: Context) -> list:
        return ctx.session_state.get("roots", [])

    return app


@sdk
async def test_the_official_client_changes_its_roots_and_the_hook_asks_again() -> None:
    seen: list[Any] = []
    shared = [types.Root(uri="file:///home/ada/notes", name="notes")]

    async def list_roots(context: Any) -> types.ListRootsResult:
        return types.ListRootsResult(roots=list(shared))

    with trio.fail_after(15):
        async with serving(roots_server(seen)) as served, Client(
                streamable_http_client(f"{served.base}/mcp"), mode="legacy", list_roots_callback=list_roots) as client:
            assert (await client.call_tool("where", {})).structured_content == {"result": []}
            shared.append(types.Root(uri="file:///home/ada/trips", name="trips"))
            await client.send_roots_list_changed()
            while not seen:
                await trio.sleep(0.01)
            assert seen == [["file:///home/ada/notes", "file:///home/ada/trips"]]
            where = await client.call_tool("where", {})
            assert where.structured_content == {"result": ["file:///home/ada/notes", "file:///home/ada/trips"]}


async def test_roots_changes_are_coalesced_and_a_failing_hook_leaves_the_session(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[Any] = []
    gate = trio.Event()
    app = roots_server(seen, gate)
    failures: list[str] = []

    @app.on_roots_changed
    def broken(ctx: Context) -> None:  # a plain function: runs in a worker thread
        failures.append("ran")
        raise RuntimeError("hook bug")

    with trio.fail_after(10), caplog.at_level(logging.WARNING, logger="mcp_trio.roots"):
        async with serve_in_memory(app) as (client, _, _):
            await client.initialize()
            for _ in range(50):  # one run starts (and waits on the gate); the rest owe one more
                await client.notify("notifications/roots/list_changed")
            gate.set()
            for _ in range(2):
                asked = await client.receive_until(lambda m: m.get("method") == "roots/list")
                await client.send({"jsonrpc": "2.0", "id": asked["id"], "result": {"roots": [{"uri": "file:///x"}]}})
            while len(failures) < 2:
                await trio.sleep(0.01)
            assert seen == [["file:///x"], ["file:///x"]] and failures == ["ran", "ran"]
            assert (await client.request("ping"))["result"] == {}  # the session goes on
    assert caplog.text.count("on_roots_changed hook") == 2 and "hook bug" in caplog.text


def test_a_hook_takes_the_context() -> None:
    app = Server("shape")
    with pytest.raises(TypeError, match="must take one parameter"):
        @app.on_roots_changed
        async def nothing() -> None:
            pass


async def test_a_client_without_roots_gets_the_hook_error_logged_not_a_broken_session(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[Any] = []
    with trio.fail_after(10), caplog.at_level(logging.WARNING, logger="mcp_trio.roots"):
        async with serve_in_memory(roots_server(seen)) as (client, _, _):
            await client.initialize({**INIT_PARAMS, "capabilities": {}})
            await client.notify("notifications/roots/list_changed")
            while "on_roots_changed hook" not in caplog.text:
                await trio.sleep(0.01)
            assert (await client.request("ping"))["result"] == {}
    assert "did not declare the 'roots' capability" in caplog.text and seen == []
