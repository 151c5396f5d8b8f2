"""``mcp_trio.testing``: a client in session with a ``Server`` in memory, and the pytest plugin
(issue 17, point 2).

The in-memory client is ``mcp_trio.client``'s own over a memory transport, the server side the
``Connection`` every transport runs: both eras, the three server-to-client asks answered by
callbacks, progress and logs recorded, nothing waiting on real time (a tool that sleeps two minutes
of a ``MockClock`` returns at once), a principal for scope checks, and joining a server that
is already being served. The fixtures (``mcp_client``, ``mcp_connect``) are used here as a
user's conftest would use them (``tests/conftest.py`` enables the plugin).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import trio
import trio.testing

from mcp_trio import Context, Server
from mcp_trio.auth import Principal
from mcp_trio.client import CallToolResult, McpError, Root
from mcp_trio.testing import TestClient, connect
from tests.served import serving

server = Server("testing-subject")


@server.tool
async def chatty(steps: int, ctx: Context) -> str:
    """Reports progress and logs at each step."""
    for step in range(steps):
        await ctx.report_progress(step + 1, steps, f"step {step + 1}")
        await ctx.info({"step": step + 1})
    return "done"


@server.tool
async def interview(ctx: Context) -> str:
    """Asks the client everything it can be asked."""
    answer = await ctx.sample("What is the capital of France?")
    form = await ctx.elicit("Who are you?", {"type": "object", "properties": {"name": {"type": "string"}}})
    roots = await ctx.list_roots()
    return f"{answer.content['text']} / {form.content['name']} / {len(roots)} root(s)"  # type: ignore[index]


@server.tool
async def nap(ctx: Context) -> float:
    """Sleeps two minutes of the clock trio runs on."""
    started = trio.current_time()
    await trio.sleep(120)
    return trio.current_time() - started


@server.tool(scopes="admin")
async def restricted() -> str:
    return "secret"


async def sampling(params: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": {"type": "text", "text": "Paris"}, "model": "test"}


async def elicitation(params: Any) -> dict[str, Any]:
    return {"action": "accept", "content": {"name": "Ada"}}


async def roots() -> list[Root]:
    return [Root(uri="file:///work", name="work")]


@pytest.mark.parametrize("era", ["handshake", "stateless"])
async def test_both_eras_callbacks_progress_and_logs(era: str) -> None:
    with trio.fail_after(10):
        async with connect(server, era=era, sampling=sampling, elicitation=elicitation, roots=roots,
                           log_level="info") as client:
            assert isinstance(client, TestClient)
            assert client.era == era and client.server_info is not None and client.server_info.name == "testing-subject"
            asked = await client.call_tool("interview")
            assert asked.content[0].text == "Paris / Ada / 1 root(s)"  # type: ignore[union-attr]

            seen: list[tuple[float, float | None, str | None]] = []
            result = await client.call_tool("chatty", {"steps": 2}, progress=lambda *step: seen.append(step))
    assert isinstance(result, CallToolResult) and result.content[0].text == "done"  # type: ignore[union-attr]
    assert seen == [(1, 2, "step 1"), (2, 2, "step 2")]
    assert [(p.progress, p.total, p.message) for p in client.progress] == [(1, 2, "step 1"), (2, 2, "step 2")]
    assert [entry.data for entry in client.logs] == [{"step": 1}, {"step": 2}]
    assert client.methods().count("notifications/progress") == 2


async def test_nothing_waits_on_real_time(autojump_clock: trio.testing.MockClock) -> None:
    wall = time.perf_counter()
    async with connect(server) as client:
        slept = await client.call_tool("nap")
    assert slept.structured_content == {"result": 120.0}  # two minutes of the mock clock...
    assert time.perf_counter() - wall < 5  # ...in no time at all


async def test_a_principal_is_checked_like_a_transport_would() -> None:
    with trio.fail_after(10):
        async with connect(server, principal=Principal("reader", frozenset({"read"}))) as reader:
            assert "restricted" not in {tool.name for tool in await reader.list_tools()}
            with pytest.raises(McpError) as refused:
                await reader.call_tool("restricted")
            assert refused.value.code == -32003
        async with connect(server, principal=Principal("root", frozenset({"admin"}))) as admin:
            assert (await admin.call_tool("restricted")).content[0].text == "secret"  # type: ignore[union-attr]


async def test_a_session_joins_a_server_already_served() -> None:
    app = Server("served-twice")

    @app.tool
    async def hello() -> str:
        return "hi"

    with trio.fail_after(10):
        async with serving(app) as served, connect(app, on_list_changed=lambda kind: None) as client:
            assert served.supervisor.statistics()["connections"] == 1  # this session, on the HTTP server's supervisor
            app.remove_tool("hello")  # a change while served reaches the in-memory session too
            with trio.fail_after(5):
                while "notifications/tools/list_changed" not in client.methods():
                    await trio.sleep(0.01)
            with pytest.raises(ValueError, match="already being served"):
                async with connect(app, limits=served.supervisor.limits):
                    pass


# -- the pytest plugin, as a user's conftest uses it ---------------------------------------------
@pytest.fixture
def mcp_server() -> Server:
    return server


async def test_the_mcp_client_fixture(mcp_client: TestClient) -> None:
    assert mcp_client.era == "handshake"
    assert (await mcp_client.call_tool("chatty", {"steps": 1})).content[0].text == "done"  # type: ignore[union-attr]
    assert [entry.data for entry in mcp_client.logs] == [{"step": 1}]


@pytest.mark.parametrize("mcp_era", ["stateless"])
async def test_the_era_fixture_is_overridable(mcp_client: TestClient) -> None:
    assert mcp_client.era == "stateless" and mcp_client.protocol_version == "2026-07-28"


async def test_the_connect_fixture(mcp_connect: Any) -> None:
    async with mcp_connect(server, sampling=sampling, elicitation=elicitation, roots=roots) as client:
        assert (await client.call_tool("interview")).content[0].text == "Paris / Ada / 1 root(s)"
