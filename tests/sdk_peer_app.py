"""The official Python SDK's server (``MCPServer``) as a peer of ``mcp_trio.client``'s tests.

``python tests/sdk_peer_app.py stdio`` serves over stdio; ``python tests/sdk_peer_app.py http
[--json] [--port N]`` binds 127.0.0.1 port N (default 0: any), prints the port on one line,
then serves ``/mcp`` with uvicorn until killed (SSE answers, or JSON with ``--json``). The SDK answers both protocol
eras by itself: the ``initialize`` handshake and 2026-07-28 (``server/discover``).

Tools: ``echo``; ``progress`` (reports 1/2 and 2/2); ``logs`` (an info log line, then an
answer); ``ask_name`` (elicits a name: a request to the client in the handshake era, an
``InputRequiredResult`` round in 2026-07-28, as the SDK has tools spell it); ``slow(marker)``
(waits until cancelled, then writes "cancelled" to the file ``marker``). A resource
``test://hello``, a prompt ``greet(name)``.
"""

import socket
import warnings
import sys

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import ElicitRequest, ElicitRequestFormParams, InputRequiredResult
from pydantic import BaseModel

warnings.simplefilter("ignore")  # the SDK warns that logging is deprecated in 2026-07-28
server = MCPServer("sdk-peer", log_level="WARNING")
STATELESS = "2026-07-28"


class Name(BaseModel):
    name: str


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


@server.tool()
async def logs(ctx: Context) -> str:
    """Log one info line, then answer."""
    await ctx.info("working on it")
    return "logged"


@server.tool()
async def ask_name(ctx: Context) -> str | InputRequiredResult:
    """Ask the client for a name and greet it."""
    if ctx.protocol_version == STATELESS:
        answers = ctx.input_responses or {}
        answer = answers.get("name")
        if answer is None:
            ask = ElicitRequest(params=ElicitRequestFormParams(
                message="Your name?", requested_schema=Name.model_json_schema()))
            return InputRequiredResult(input_requests={"name": ask}, request_state="asked")
        content = answer.content if hasattr(answer, "content") else answer["content"]
        return f"Hello, {content['name']}!"
    result = await ctx.elicit("Your name?", schema=Name)
    return f"Hello, {result.data.name}!" if result.action == "accept" and result.data else "no name"


@server.tool()
async def slow(marker: str) -> str:
    """Wait until cancelled; say so in the file ``marker``."""
    import anyio

    try:
        await anyio.sleep(60)
    finally:
        with open(marker, "w") as out:
            out.write("cancelled")
    return "never"


@server.resource("test://hello")
def hello() -> str:
    """A static text resource."""
    return "hello"


@server.prompt()
def greet(name: str) -> str:
    """Greet someone."""
    return f"Hello {name}"


if __name__ == "__main__":
    if sys.argv[1:2] == ["stdio"]:
        server.run("stdio")
    else:
        import uvicorn

        app = server.streamable_http_app(json_response="--json" in sys.argv)
        sock = socket.socket()
        port = int(sys.argv[sys.argv.index("--port") + 1]) if "--port" in sys.argv else 0
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(128)
        print(sock.getsockname()[1], flush=True)
        uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
