"""The official Python MCP SDK's Streamable HTTP server, as the peer we compare against.

    python bench/peers/sdk_http_server.py --port N

The same tool as ``mcp_trio``'s demo app, ``echo(text) -> text``, through the SDK's
high-level ``MCPServer`` served by its own ``run("streamable-http")`` (Starlette on uvicorn,
anyio on asyncio): what a user of the SDK gets. ``json_response=True``, so it answers each
call with one JSON body like the workload it is compared on; ``--sse`` keeps its default, an
SSE stream per call. Logging is quieted to WARNING.
"""

import argparse

from mcp.server.mcpserver import MCPServer

server = MCPServer("sdk-echo", log_level="WARNING")


@server.tool()
def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--sse", action="store_true", help="answer with an SSE stream per call (the SDK's default)")
    args = parser.parse_args()
    server.run("streamable-http", host="127.0.0.1", port=args.port, json_response=not args.sse)
