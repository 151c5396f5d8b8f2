import trio

from mcp_trio.client import TextContent
from mcp_trio.demo import server
from mcp_trio.testing import connect


async def test_echo_in_memory() -> None:
    with trio.fail_after(5):
        async with connect(server) as client:
            assert client.server_info is not None and client.server_info.name == "mcp-trio-demo"
            reply = await client.call_tool("echo", {"text": "hi"})
            assert reply.content == [TextContent(text="hi")] and not reply.is_error
