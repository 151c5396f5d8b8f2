"""JSON-RPC batches in sessions of protocol revision 2025-03-26 (issue 17, point 4).

2025-03-26 is the one revision with batches (2025-06-18 removed them), and today's SDK clients
never send one (the Python SDK 2.3 has no batch type or code path), so these tests speak raw
JSON-RPC: over stdio (the real process, both I/O paths), a WebSocket and Streamable HTTP, each
batch answered as one array; refused as before in every other session; capped at
``max_batch_size``; ``initialize`` never in one.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
import trio
from trio_websocket import open_websocket_url

from mcp_trio import Context, Limits, Server, demo
from mcp_trio.transports.websocket import serve_websocket
from tests.helpers import INIT_PARAMS, MemoryClient, serve_in_memory, spawn_stdio
from tests.http_client import McpHttp
from tests.served import serving

OLD = {**INIT_PARAMS, "protocolVersion": "2025-03-26"}


def call(request_id: Any, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": {"name": name, "arguments": arguments}}


BATCH = [
    {"jsonrpc": "2.0", "id": "p", "method": "ping"},
    call(7, "echo", {"text": "in a batch"}),
    {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 999}},  # answered by nothing
    42,  # not a JSON-RPC object: its own error, the rest go on
]


def check_batch_reply(reply: Any) -> None:
    assert isinstance(reply, list) and len(reply) == 3, reply
    by_id = {entry["id"]: entry for entry in reply}
    assert by_id["p"]["result"] == {}
    assert by_id[7]["result"]["content"] == [{"type": "text", "text": "in a batch"}]
    assert by_id[None]["error"]["code"] == -32600


@pytest.mark.slow
@pytest.mark.usefixtures("stdio_io")
async def test_stdio_answers_a_batch_with_one_array() -> None:
    with trio.fail_after(15):
        async with spawn_stdio() as (client, process):
            assert (await client.initialize(OLD))["result"]["protocolVersion"] == "2025-03-26"
            await client.send_raw(msgspec.json.encode(BATCH) + b"\n")
            check_batch_reply(await client.receive())
            assert (await client.request("ping"))["result"] == {}  # and one at a time still works


@pytest.mark.slow
async def test_websocket_answers_a_batch_with_one_frame() -> None:
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(lambda task_status: serve_websocket(demo.server, port=0, task_status=task_status))
            async with open_websocket_url(f"ws://127.0.0.1:{server.port}/", subprotocols=["mcp"]) as ws:
                await ws.send_message(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": OLD}))
                assert json.loads(await ws.get_message())["result"]["protocolVersion"] == "2025-03-26"
                await ws.send_message(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}))
                await ws.send_message(json.dumps(BATCH))
                check_batch_reply(json.loads(await ws.get_message()))
            server.shutdown()


async def test_http_answers_a_batch_as_json_or_sse_and_notifications_with_202() -> None:
    with trio.fail_after(15):
        async with serving(demo.server) as served:
            http = McpHttp(served.port, protocol_version=None)
            init = await http.initialize(OLD)
            assert init.json()["result"]["protocolVersion"] == "2025-03-26"
            answered = await http.post(json.dumps(BATCH).encode())
            assert answered.status == 200 and answered.content_type == "application/json"
            check_batch_reply(answered.json())

            # Progress before the replies: the batch's answer is one SSE stream carrying all of it.
            progress = call(8, "test_tool_with_progress", {})
            progress["params"]["_meta"] = {"progressToken": "t"}
            streamed = await http.post(json.dumps([progress, call(9, "echo", {"text": "beside"})]).encode())
            assert streamed.status == 200 and streamed.content_type == "text/event-stream"
            messages = [event.json() for event in streamed.events() if event.data]
            assert [m["params"]["progress"] for m in messages if m.get("method") == "notifications/progress"] == [0, 50, 100]
            assert {m["id"]: m["result"]["content"][0]["text"] for m in messages if "id" in m} == {
                8: "Progress test completed", 9: "beside"}

            only_notes = await http.post(json.dumps([{"jsonrpc": "2.0", "method": "notifications/cancelled",
                                                      "params": {"requestId": 1}}]).encode())
            assert only_notes.status == 202 and only_notes.body == b""
            with_init = await http.post(json.dumps([{"jsonrpc": "2.0", "id": 3, "method": "initialize", "params": OLD}]).encode())
            assert with_init.status == 200
            assert with_init.json()[0]["error"]["message"] == "initialize may not be part of a JSON-RPC batch"


async def test_http_refuses_batches_in_other_revisions_and_past_the_cap() -> None:
    with trio.fail_after(15):
        async with serving(demo.server, Limits(max_batch_size=2)) as served:
            new = McpHttp(served.port)
            await new.initialize()
            refused = await new.post(json.dumps([{"jsonrpc": "2.0", "id": 1, "method": "ping"}]).encode())
            assert refused.status == 400
            assert "part of protocol revision 2025-03-26 only (this session negotiated 2025-11-25)" in refused.json()["error"]["message"]

            old = McpHttp(served.port, protocol_version=None)
            await old.initialize(OLD)
            three = [{"jsonrpc": "2.0", "id": n, "method": "ping"} for n in range(3)]
            too_many = await old.post(json.dumps(three).encode())
            assert too_many.status == 400 and too_many.json()["error"]["code"] == -32600
            assert "3 messages exceeds the limit of 2 (max_batch_size)" in too_many.json()["error"]["message"]
            assert (await old.post(json.dumps(three[:2]).encode())).status == 200  # at the cap: fine

            no_session = McpHttp(served.port, protocol_version=None)
            assert (await no_session.post(json.dumps(three[:1]).encode())).status == 400


# -- in memory: the rules, exactly ---------------------------------------------------------------
async def initialized(client: MemoryClient, params: dict[str, Any] = OLD) -> None:
    await client.initialize(params)


async def test_the_cap_empty_batches_duplicates_and_notifications_only() -> None:
    with trio.fail_after(10):
        async with serve_in_memory(demo.server, Limits(max_batch_size=3)) as (client, _, _):
            await initialized(client)
            pings = [{"jsonrpc": "2.0", "id": n, "method": "ping"} for n in range(4)]
            await client.send_message(msgspec.json.encode(pings))
            over = await client.receive()
            assert over["id"] is None and over["error"]["code"] == -32600
            assert over["error"]["message"] == ("a JSON-RPC batch of 4 messages exceeds the limit of 3 (max_batch_size); "
                                                "send it in smaller batches")
            await client.send_message(msgspec.json.encode(pings[:3]))
            assert sorted(entry["id"] for entry in await client.receive()) == [0, 1, 2]

            await client.send_message(b"[]")
            assert (await client.receive())["error"]["message"] == "an empty JSON-RPC batch"

            twice = [{"jsonrpc": "2.0", "id": "d", "method": "tools/call", "params": {"name": "sleep", "arguments": {"seconds": 0.05}}},
                     {"jsonrpc": "2.0", "id": "d", "method": "ping"}]
            await client.send_message(msgspec.json.encode(twice))
            reply = await client.receive()
            assert len(reply) == 2 and sorted("result" in entry for entry in reply) == [False, True]
            assert any("duplicate request id 'd'" in entry.get("error", {}).get("message", "") for entry in reply)

            # Notifications only: nothing is answered (the next message is the ping's reply).
            await client.send_message(msgspec.json.encode([{"jsonrpc": "2.0", "method": "notifications/initialized"}]))
            assert (await client.request("ping"))["result"] == {}
            assert client.backlog == []


async def test_a_cancelled_request_leaves_its_batch_answered() -> None:
    app = Server("cancel-in-batch")
    started = trio.Event()

    @app.tool
    async def forever(ctx: Context) -> str:
        started.set()
        await trio.sleep_forever()
        return "never"

    with trio.fail_after(10):
        async with serve_in_memory(app) as (client, _, _):
            await initialized(client)
            await client.send_message(msgspec.json.encode([call("f", "forever", {}), {"jsonrpc": "2.0", "id": "p", "method": "ping"}]))
            await started.wait()
            await client.notify("notifications/cancelled", {"requestId": "f"})
            assert await client.receive() == [{"jsonrpc": "2.0", "id": "p", "result": {}}]  # the spec: no reply for "f"


@pytest.mark.parametrize("version", ["2024-11-05", "2025-06-18", "2025-11-25", None])
async def test_refused_everywhere_else(version: str | None) -> None:
    with trio.fail_after(10):
        async with serve_in_memory(demo.server) as (client, _, _):
            if version is not None:
                await initialized(client, {**INIT_PARAMS, "protocolVersion": version})
            await client.send_message(b'[{"jsonrpc":"2.0","id":1,"method":"ping"}]')
            refused = await client.receive()
            assert refused["id"] is None and refused["error"]["code"] == -32600
            expected = f"which negotiated protocol revision {version}" if version else "before initialize"
            assert expected in refused["error"]["message"], refused
            assert (await client.request("ping"))["result"] == {}  # the session goes on
