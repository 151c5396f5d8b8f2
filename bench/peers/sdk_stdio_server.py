"""The official Python MCP SDK's stdio server, as the peer we compare against.

It exposes the same tool as ``mcp_trio serve``'s demo app, ``echo(text) -> text``,
through the SDK's high-level ``MCPServer`` and its default stdio transport (anyio on
asyncio), i.e. what a user of the SDK gets without tuning. Logging is quieted to
WARNING so log formatting is not part of what we measure; stderr is discarded by the
driver anyway.
"""

from mcp.server.mcpserver import MCPServer

server = MCPServer("sdk-echo", log_level="WARNING")


@server.tool()
def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


if __name__ == "__main__":
    server.run("stdio")
