"""The official SDK's Streamable HTTP server on a free port, for ``test_client.py``.

``python tests/sdk_http_app.py [--json]`` binds 127.0.0.1 port 0, prints the port on one
line, then serves ``/mcp`` with uvicorn until killed. ``--json`` answers POSTs with JSON;
without it, with SSE streams (the SDK's default). Tools: ``echo`` and ``progress`` (reports
progress twice before answering, so its answer comes on an SSE stream with notifications).
"""

import socket
import sys

import uvicorn
from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("sdk-http-test", log_level="WARNING")


@server.tool()
def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@server.tool()
async def progress(ctx: Context) -> str:
    """Report progress 1/2 and 2/2, then answer."""
    await ctx.report_progress(1, 2)
    await ctx.report_progress(2, 2)
    return "done"


if __name__ == "__main__":
    app = server.streamable_http_app(json_response="--json" in sys.argv)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    print(sock.getsockname()[1], flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
