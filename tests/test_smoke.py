import trio

from mcp_trio.demo import server

from .helpers import serve_in_memory


async def test_echo_in_memory() -> None:
    with trio.fail_after(5):
        async with serve_in_memory(server) as (client, _, _):
            init = await client.initialize()
            assert init["result"]["serverInfo"]["name"] == "mcp-trio-demo"
            reply = await client.request("tools/call", {"name": "echo", "arguments": {"text": "hi"}})
            assert reply["result"]["content"] == [{"type": "text", "text": "hi"}]
