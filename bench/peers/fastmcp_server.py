"""FastMCP's server, as a peer we compare against: the same ``echo(text) -> text`` tool.

Usage::

    python bench/peers/fastmcp_server.py --transport stdio
    python bench/peers/fastmcp_server.py --transport http [--host 127.0.0.1] [--port 8000] [--json-response]

Run with the bench environment's interpreter (``bench/.venv``, made by
``bench/run_standard.py`` from ``bench/peers/requirements.txt``): FastMCP is never a
dependency of mcp_trio. Streamable HTTP is served at ``/mcp`` by uvicorn, FastMCP's
default; the banner and INFO logs are off so that logging is not what we measure.
"""

import argparse
import os

os.environ.setdefault("FASTMCP_SHOW_SERVER_BANNER", "false")
os.environ.setdefault("FASTMCP_LOG_LEVEL", "WARNING")

from fastmcp import FastMCP

server = FastMCP("fastmcp-echo")


@server.tool
def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--json-response", action="store_true", help="answer POSTs with JSON instead of SSE")
    args = parser.parse_args()
    if args.transport == "stdio":
        server.run("stdio", show_banner=False)
    else:
        server.run("http", show_banner=False, host=args.host, port=args.port, path="/mcp",
                   log_level="warning", json_response=args.json_response)
