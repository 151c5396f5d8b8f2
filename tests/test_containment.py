"""Containment: a user function's failure of any kind but cancellation is its request's error.

``tests/hostile_app.py`` holds functions that raise ``SystemExit`` (argparse, ``sys.exit``),
``KeyboardInterrupt`` (in the request task and in a worker thread, alone or in a nursery's
group), and return text with a lone surrogate that JSON cannot carry. Each is called over
stdio, WebSocket and Streamable HTTP (both eras), and after every call a bystander session
(and, over stdio, the same one) must still be served. Plugins that call ``sys.exit()`` at
import are reported and skipped, at start and at hot reload.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio
from trio_websocket import open_websocket_url

from mcp_trio import Server
from mcp_trio.transports.websocket import serve_websocket
from tests import hostile_app
from tests.helpers import JsonRpcPeer, spawn_stdio
from tests.http_client import McpHttp
from tests.served import serving, write_plugin
from tests.test_stateless import post as stateless_post
from tests.test_websocket import WsClient

Check = Callable[[dict[str, Any]], None]


def tool_error(*needles: str) -> Check:
    def check(reply: dict[str, Any]) -> None:
        result = reply.get("result")
        assert result is not None and result.get("isError") is True, reply
        text = " ".join(block.get("text", "") for block in result["content"])
        for needle in needles:
            assert needle in text, (needle, reply)
    return check


def internal_error(*needles: str) -> Check:
    def check(reply: dict[str, Any]) -> None:
        assert reply.get("error", {}).get("code") == -32603, reply
        for needle in needles:
            assert needle in reply["error"]["message"], (needle, reply)
    return check


#: (method, params, what the caller gets). The surrogate is never sent: the error names it.
HOSTILE: list[tuple[str, dict[str, Any], Check]] = [
    ("tools/call", {"name": "parse_flags", "arguments": {"argv": ["--count", "many"]}}, tool_error("SystemExit(2)")),
    ("tools/call", {"name": "exits", "arguments": {"code": 3}}, tool_error("SystemExit(3)")),
    ("tools/call", {"name": "exits_in_a_nursery", "arguments": {}}, tool_error("SystemExit(5)")),
    ("tools/call", {"name": "interrupts", "arguments": {}}, tool_error("KeyboardInterrupt()")),
    ("tools/call", {"name": "interrupts_in_a_thread", "arguments": {}}, tool_error("KeyboardInterrupt()")),
    ("tools/call", {"name": "lone_surrogate", "arguments": {}}, tool_error("U+DCFF", "not valid Unicode")),
    ("tools/call", {"name": "lone_surrogate_structured", "arguments": {}}, tool_error("not JSON-serialisable")),
    ("tools/call", {"name": "fails_quoting_a_surrogate", "arguments": {}}, tool_error("U+DCFF")),
    ("tools/call", {"name": "takes_flags", "arguments": {"flags": {"count": -1}}}, internal_error()),
    ("resources/read", {"uri": "hostile://exit"}, internal_error()),
    ("resources/read", {"uri": "hostile://items/x"}, internal_error()),
    ("resources/read", {"uri": "hostile://surrogate"}, internal_error("U+DCFF")),
    ("prompts/get", {"name": "exiting_prompt"}, internal_error()),
    ("prompts/get", {"name": "surrogate_prompt"}, internal_error("U+DCFF")),
    ("completion/complete", {"ref": {"type": "ref/prompt", "name": "plan"}, "argument": {"name": "city", "value": "P"}},
     internal_error()),
]


async def echo(peer: JsonRpcPeer | McpHttp, text: str) -> None:
    if isinstance(peer, McpHttp):
        reply = await peer.call("tools/call", {"name": "echo", "arguments": {"text": text}})
    else:
        reply = await peer.request("tools/call", {"name": "echo", "arguments": {"text": text}})
    assert reply["result"]["content"][0]["text"] == text, reply


async def hostile_calls(caller: Callable[[str, dict[str, Any]], Any], *bystanders: JsonRpcPeer | McpHttp) -> None:
    """Every hostile call gets its own error; every bystander is served after each."""
    for index, (method, params, check) in enumerate(HOSTILE):
        check(await caller(method, params))
        for bystander in bystanders:
            await echo(bystander, f"still here after {index}")


async def test_stdio_a_hostile_function_costs_its_request_only() -> None:
    with trio.fail_after(30):
        async with spawn_stdio("tests/hostile_app.py:server") as (client, process):
            await client.initialize()
            assert "error" not in await client.request("logging/setLevel", {"level": "debug"})
            await hostile_calls(client.request, client)  # stdio has one session: it goes on
            logged = await client.request("tools/call", {"name": "logs_a_surrogate", "arguments": {}})
            assert logged["result"]["content"][0]["text"] == "logged"  # the log line was dropped, not the session
            assert process.returncode is None


async def test_websocket_a_hostile_function_costs_its_request_only() -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            endpoint = await nursery.start(lambda task_status: serve_websocket(hostile_app.server, port=0, task_status=task_status))
            url = f"ws://127.0.0.1:{endpoint.port}/"
            async with open_websocket_url(url) as hostile_ws, open_websocket_url(url) as bystander_ws:
                hostile, bystander = WsClient(hostile_ws), WsClient(bystander_ws)
                await hostile.initialize()
                await bystander.initialize()
                await hostile_calls(hostile.request, bystander, hostile)
            assert endpoint.statistics()["connections"] >= 0
            endpoint.shutdown()


async def test_http_a_hostile_function_costs_its_request_only() -> None:
    """Sessions of the handshake era run in the app's nursery: one crashing took every
    session and /ws with it. Both eras, with a session, a WebSocket on /ws and a stateless
    caller looking on."""
    with trio.fail_after(40):
        async with serving(hostile_app.server, expect_errors=True) as served:
            hostile, bystander = served.client(), served.client()
            await hostile.initialize()
            await bystander.initialize()
            async with open_websocket_url(served.ws_url) as ws:
                on_ws = WsClient(ws)
                await on_ws.initialize()
                await hostile_calls(hostile.call, bystander, on_ws, hostile)

                async def stateless(method: str, params: dict[str, Any]) -> dict[str, Any]:
                    name = params.get("name") if method != "resources/read" else params["uri"]
                    response = await stateless_post(served.port, method, params, name=name if method != "completion/complete" else None)
                    return response.json()

                await hostile_calls(stateless, bystander, on_ws)
                assert (await served.client().post(b"{}")).status in (400, 404)  # the app still answers


PLUGIN_EXITS = "import sys\nsys.exit(3)\n"
PLUGIN_GOOD = '''
    from mcp_trio import Plugin

    plugin = Plugin("greetings")

    @plugin.tool
    async def greet(name: str) -> str:
        return f"hello {name}"
'''


def _plugin_app() -> Server:
    app = Server("with-plugins")

    @app.tool
    async def echo(text: str) -> str:
        return text

    return app


async def test_a_plugin_calling_sys_exit_is_skipped_at_start_and_at_reload_over_http(tmp_path: Path) -> None:
    write_plugin(tmp_path, "exits", PLUGIN_EXITS)
    write_plugin(tmp_path, "greetings", PLUGIN_GOOD)
    app = _plugin_app()
    app.use_plugins(tmp_path, watch=False)
    with trio.fail_after(20):
        async with serving(app, expect_errors=True) as served:
            client = served.client()
            await client.initialize()
            assert (await client.call("tools/call", {"name": "greet", "arguments": {"name": "a"}}))["result"]["content"][0]["text"] == "hello a"
            failed = {p["name"]: p["error"] for p in app.plugins.status()["plugins"] if p["error"]}  # type: ignore[union-attr]
            assert "SystemExit(3)" in failed["exits"], failed
            write_plugin(tmp_path, "greetings", PLUGIN_EXITS)  # an edit that exits, at hot reload
            reloaded = await served.admin("POST", "/admin/reload")
            assert reloaded.status == 200, reloaded.body
            assert "SystemExit(3)" in reloaded.json()["failed"]["greetings"]
            # The last good version stays, and the server goes on.
            assert (await client.call("tools/call", {"name": "greet", "arguments": {"name": "b"}}))["result"]["content"][0]["text"] == "hello b"


async def test_a_plugin_calling_sys_exit_is_skipped_over_stdio_and_websocket(tmp_path: Path, caplog: Any) -> None:
    write_plugin(tmp_path, "exits", PLUGIN_EXITS)
    caplog.set_level(logging.ERROR, logger="mcp_trio.plugins")
    with trio.fail_after(30):
        async with spawn_stdio("tests/hostile_app.py:server", "--plugins", str(tmp_path), "--no-watch") as (client, process):
            await client.initialize()
            await echo(client, "alive")
            assert process.returncode is None
        app = _plugin_app()
        write_plugin(tmp_path, "greetings", PLUGIN_GOOD)
        app.use_plugins(tmp_path, watch=False)
        async with trio.open_nursery() as nursery:
            endpoint = await nursery.start(lambda task_status: serve_websocket(app, port=0, task_status=task_status))
            async with open_websocket_url(f"ws://127.0.0.1:{endpoint.port}/") as ws:
                peer = WsClient(ws)
                await peer.initialize()
                write_plugin(tmp_path, "greetings", PLUGIN_EXITS)
                report = await app.plugins.reload()  # type: ignore[union-attr]
                assert "SystemExit(3)" in report.failed["greetings"]
                await echo(peer, "alive")
                greeted = await peer.request("tools/call", {"name": "greet", "arguments": {"name": "c"}})
                assert greeted["result"]["content"][0]["text"] == "hello c"
            endpoint.shutdown()
    assert any("exits" in json.dumps(r.args) for r in caplog.records)


async def test_a_tool_cancelled_inside_its_own_nursery_is_a_timeout_not_an_escape() -> None:
    """A nursery wraps the ``Cancelled`` its timeout raises in a group: that group is
    cancellation, not a ``BaseException`` escaping the function (it was answered as
    ``the function raised Cancelled(...), which would stop the server``)."""
    from tests.helpers import serve_in_memory

    app = Server("nursery-timeout")

    @app.tool(timeout=0.05)
    async def waits_in_a_nursery() -> str:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.sleep_forever)
            await trio.sleep_forever()
        return "never"

    with trio.fail_after(5):
        async with serve_in_memory(app) as (client, _, _):
            await client.initialize()
            reply = await client.request("tools/call", {"name": "waits_in_a_nursery", "arguments": {}})
            assert reply["error"]["code"] == -32001 and "timed out after 0.05 s" in reply["error"]["message"], reply
