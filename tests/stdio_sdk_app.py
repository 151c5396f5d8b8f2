"""A small app for ``test_stdio_sdk.py``: what the demo app cannot show over stdio.

Served as ``python -m mcp_trio serve tests/stdio_sdk_app.py:server``. It exercises the paths
that need a tool to reach back into the server or the client: ``roots/list``, resource-updated
notifications, and changing the tool list while serving.
"""

from __future__ import annotations

from mcp_trio import Context, Server

server = Server("stdio-sdk-test-app", version="0.0.1")


@server.tool
async def list_roots(ctx: Context) -> str:
    """The client's roots, one "uri name" per line."""
    roots = await ctx.list_roots()
    return "\n".join(f"{root.uri} {root.name}" for root in roots)


@server.tool
async def touch(uri: str, ctx: Context) -> str:
    """Tell subscribers that ``uri`` changed."""
    ctx.notify_resource_updated(uri)
    return f"touched {uri}"


@server.tool
async def add_greeter(name: str) -> str:
    """Register a new tool ``name`` while serving (clients get tools/list_changed)."""

    async def greet(who: str) -> str:
        return f"hello {who} from {name}"

    server.add_tool(greet, name=name, description="A tool added at runtime.")
    return f"added {name}"


@server.tool
async def remove(name: str) -> str:
    """Remove the tool ``name`` while serving."""
    server.remove_tool(name)
    return f"removed {name}"


@server.resource("test://watched", name="watched", mime_type="text/plain")
async def watched() -> str:
    return "watched"


@server.resource("test://other", name="other", mime_type="text/plain")
async def other() -> str:
    return "other"
