"""Timeouts that protect the server: a default for every tool, and sync tools' threads given up.

A tool with no ``timeout=`` of its own gets ``Limits.tool_timeout``; a sync (``def``) tool past
its timeout is answered at once, its thread abandoned (it cannot be stopped) and counted; past
``max_abandoned_threads_per_tool`` (or the server's ``max_abandoned_threads``) new calls are
refused until threads finish. The clock is a ``MockClock``; the threads are real (they block on
a ``threading.Event``, so the clock jumps to the timeout at once, deterministically).
"""

from __future__ import annotations

import math
import threading
from typing import Any

import pytest
import trio
import trio.testing

from mcp_trio import Limits, Server
from mcp_trio._cli import build_parser
from mcp_trio._config import load_config, overrides_from_args
from mcp_trio._limits import DEFAULT_MAX_ABANDONED_THREADS, DEFAULT_MAX_ABANDONED_THREADS_PER_TOOL, DEFAULT_TOOL_TIMEOUT
from tests.helpers import RawClient, serve_in_memory


async def call(client: RawClient, name: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    return await client.request("tools/call", {"name": name, "arguments": arguments or {}})


async def test_the_server_wide_default_bounds_every_tool_without_its_own(autojump_clock: trio.testing.MockClock) -> None:
    app = Server("defaults")

    @app.tool
    async def hangs() -> str:
        await trio.sleep_forever()
        return "never"

    @app.tool
    async def slow(seconds: float) -> str:  # no timeout of its own
        await trio.sleep(seconds)
        return "done"

    @app.tool(timeout=50)
    async def patient(seconds: float) -> str:  # its own timeout, longer than the default, wins
        await trio.sleep(seconds)
        return "done"

    @app.tool(timeout=math.inf)
    async def unbounded(seconds: float) -> str:  # opted out
        await trio.sleep(seconds)
        return "done"

    with trio.fail_after(10_000):
        async with serve_in_memory(app, Limits(tool_timeout=5)) as (client, supervisor, _):
            await client.initialize()
            started = trio.current_time()
            reply = await call(client, "hangs")
            assert trio.current_time() - started == pytest.approx(5)
            assert reply["error"]["code"] == -32001
            assert reply["error"]["message"] == "tool 'hangs' timed out after 5 s"
            assert reply["error"]["data"] == {"tool": "hangs", "timeout": 5}
            assert (await call(client, "patient", {"seconds": 20}))["result"]["content"][0]["text"] == "done"
            assert (await call(client, "patient", {"seconds": 60}))["error"]["code"] == -32001
            assert (await call(client, "unbounded", {"seconds": 3600}))["result"]["content"][0]["text"] == "done"
            assert supervisor.metrics.tools["hangs"].timeouts == 1

        # The named default applies when nothing is set; 0 turns it off.
        async with serve_in_memory(app) as (client, _, _):
            await client.initialize()
            started = trio.current_time()
            assert (await call(client, "hangs"))["error"]["code"] == -32001
            assert trio.current_time() - started == pytest.approx(DEFAULT_TOOL_TIMEOUT)
        async with serve_in_memory(app, Limits(tool_timeout=0)) as (client, _, _):
            await client.initialize()
            assert (await call(client, "slow", {"seconds": 3600}))["result"]["content"][0]["text"] == "done"


async def test_a_hung_sync_tool_is_answered_its_thread_abandoned_counted_and_capped(autojump_clock: trio.testing.MockClock) -> None:
    app = Server("threads")
    gate = threading.Event()  # the hung tools wait on it: a lock never released, say
    ended = threading.Semaphore(0)

    def wait_for_gate() -> str:
        try:
            gate.wait(30)  # bounded: a failing test must not leave a thread behind for ever
            return "released"
        finally:
            ended.release()

    @app.tool
    def hang() -> str:
        return wait_for_gate()

    @app.tool
    def stall() -> str:
        return wait_for_gate()

    @app.tool
    def quick() -> int:
        return 1

    @app.tool
    async def nimble() -> int:
        return 2

    limits = Limits(tool_timeout=2, max_abandoned_threads=3, max_abandoned_threads_per_tool=2)
    with trio.fail_after(60):
        async with serve_in_memory(app, limits) as (client, supervisor, _):
            await client.initialize()
            metrics = supervisor.metrics
            for expected in (1, 2):
                started = trio.current_time()
                reply = await call(client, "hang")
                assert trio.current_time() - started == pytest.approx(2)  # answered at its timeout
                assert reply["error"]["code"] == -32001
                assert reply["error"]["message"] == ("tool 'hang' timed out after 2 s; its thread was abandoned "
                                                     "and runs on until the function returns")
                assert metrics.abandoned_threads == expected
            # The tool's cap is reached: refused at once, saying why, before any thread starts.
            refused = await call(client, "hang")
            assert refused["error"]["code"] == -32030
            assert "max_abandoned_threads_per_tool = 2" in refused["error"]["message"]
            assert refused["error"]["data"] == {"tool": "hang", "abandonedThreads": 2}
            # Another sync tool still runs; one more abandoned thread reaches the server's cap.
            assert (await call(client, "stall"))["error"]["code"] == -32001
            assert metrics.abandoned_threads == 3
            server_cap = await call(client, "quick")
            assert server_cap["error"]["code"] == -32030
            assert "max_abandoned_threads = 3" in server_cap["error"]["message"]
            # Async tools take no thread: unaffected.
            assert (await call(client, "nimble"))["result"]["structuredContent"] == {"result": 2}

            text = metrics.render({})
            assert "mcp_abandoned_threads 3" in text and "mcp_abandoned_threads_total 3" in text
            assert 'mcp_tool_abandoned_threads{tool="hang"} 2' in text
            assert 'mcp_tool_refused_total{tool="hang"} 1' in text and 'mcp_tool_refused_total{tool="quick"} 1' in text
            assert metrics.tools["hang"].snapshot()["abandoned_threads"] == 2

            # The threads finish: they are counted out, and the tools are served again. (From
            # here on the clock runs in real time: waiting on a thread, autojump would fire the
            # test's own deadline.)
            autojump_clock.autojump_threshold, autojump_clock.rate = math.inf, 1.0
            gate.set()
            for _ in range(3):
                await trio.to_thread.run_sync(ended.acquire)
            while metrics.abandoned_threads:  # the last report is on its way to this thread
                await trio.sleep(0.001)
            assert supervisor.threads.abandoned == {}
            assert metrics.tools["hang"].abandoned == 0 and metrics.abandoned_threads_total == 3
            assert (await call(client, "hang"))["result"]["content"][0]["text"] == "released"
            assert (await call(client, "quick"))["result"]["structuredContent"] == {"result": 1}
            assert "mcp_abandoned_threads 0" in metrics.render({})


async def test_a_client_cancelling_a_sync_tool_does_not_wait_for_its_thread(autojump_clock: trio.testing.MockClock) -> None:
    app = Server("cancel")
    gate = threading.Event()
    ended = threading.Event()

    @app.tool
    def hang() -> str:
        try:
            gate.wait(30)
            return "late"
        finally:
            ended.set()

    with trio.fail_after(60):
        async with serve_in_memory(app, Limits(tool_timeout=0)) as (client, supervisor, connection):
            await client.initialize()
            request_id = client.new_id()
            await client.send({"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": {"name": "hang"}})
            while not connection.in_flight:
                await trio.sleep(0.001)
            await client.notify("notifications/cancelled", {"requestId": request_id})
            while connection.in_flight:  # the request ends with its thread still blocked
                await trio.sleep(0.001)
            assert not ended.is_set() and supervisor.metrics.abandoned_threads == 1
            assert (await client.request("ping"))["result"] == {}
            autojump_clock.autojump_threshold, autojump_clock.rate = math.inf, 1.0  # real time: threads
            gate.set()
            await trio.to_thread.run_sync(ended.wait)
            while supervisor.metrics.abandoned_threads:
                await trio.sleep(0.001)


async def test_the_timeouts_are_settings_with_named_defaults(tmp_path: Any) -> None:
    limits = load_config(env={}).to_limits()
    assert (limits.tool_timeout, limits.max_abandoned_threads, limits.max_abandoned_threads_per_tool) == (
        DEFAULT_TOOL_TIMEOUT, DEFAULT_MAX_ABANDONED_THREADS, DEFAULT_MAX_ABANDONED_THREADS_PER_TOOL)
    # Abandoned threads keep their worker-thread tokens: at the cap, live calls still find some.
    assert DEFAULT_MAX_ABANDONED_THREADS < trio.to_thread.current_default_thread_limiter().total_tokens
    config = tmp_path / "server.toml"
    config.write_text("[limits]\ntool_timeout = 30\nmax_abandoned_threads_per_tool = 2\n")
    env = {"MCP_TRIO_LIMITS_MAX_ABANDONED_THREADS": "8"}
    args = build_parser().parse_args(["serve", "--tool-timeout", "12.5"])
    limits = load_config(config, env, overrides_from_args(args)).to_limits()
    assert (limits.tool_timeout, limits.max_abandoned_threads, limits.max_abandoned_threads_per_tool) == (12.5, 8, 2)
    with pytest.raises(ValueError, match="tool_timeout must not be negative"):
        Limits(tool_timeout=-1)
    with pytest.raises(ValueError, match="max_abandoned_threads_per_tool must be at least 1"):
        Limits(max_abandoned_threads_per_tool=0)


class _Methods:
    async def computes(self) -> int:
        return 1

    async def waits(self) -> None:
        await trio.sleep(0)

    async def __call__(self) -> int:
        return 1


def test_only_tools_that_cannot_suspend_run_without_a_deadline_scope() -> None:
    """``never_waits`` is read from the function's own code: any ``await``, ``async with`` or
    ``async for`` (or a callable it cannot read) keeps the timeout scope."""
    import functools

    from mcp_trio.offer._registry import never_waits

    async def computes(text: str) -> str:
        return "".join(part for part in text.split())  # a generator of its own: still no await

    async def awaits() -> None:
        await trio.sleep(0)

    async def awaits_late(flag: bool) -> None:
        if flag:
            await trio.sleep(0)

    async def with_async_with() -> None:
        async with trio.open_nursery():
            pass

    async def with_async_for(items: Any) -> None:
        async for _ in items:
            pass

    def sync() -> None:
        return None

    assert never_waits(computes) and never_waits(_Methods().computes)
    for fn in (awaits, awaits_late, with_async_with, with_async_for, sync, _Methods().waits, _Methods(),
               functools.partial(computes, "x")):
        assert not never_waits(fn), fn


async def test_a_tool_that_computes_then_waits_is_still_bounded(autojump_clock: trio.testing.MockClock) -> None:
    app = Server("computes-then-waits")

    @app.tool
    async def late(wait: bool) -> str:
        if wait:
            await trio.sleep_forever()
        return "quick"

    @app.tool
    async def echo(text: str) -> str:
        return text

    assert not app.registry.tools["late"].never_waits and app.registry.tools["echo"].never_waits
    with trio.fail_after(10_000):
        async with serve_in_memory(app, Limits(tool_timeout=5)) as (client, _, _):
            await client.initialize()
            assert (await call(client, "late", {"wait": False}))["result"]["content"][0]["text"] == "quick"
            assert (await call(client, "late", {"wait": True}))["error"]["code"] == -32001
            assert (await call(client, "echo", {"text": "hi"}))["result"]["content"][0]["text"] == "hi"
