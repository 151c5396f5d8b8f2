"""``@server.lifespan`` and ``ctx.session_state`` (issue 17, point 1).

The lifespan is entered once per process before anything is served and left after the last
session: in memory, over stdio, WebSocket and Streamable HTTP, in both eras, and in each
``--workers`` process. ``ctx.session_state`` lives as long as its session, one per session; a
2026-07-28 request has no session and is told so. A lifespan that cannot start stops the
server at start with one line; one that fails or hangs as it stops is reported and the
process still stops.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
import trio.testing

from mcp_trio import Context, Limits, Server
from mcp_trio.client import connect as client_connect
from mcp_trio.serving._lifespan import LifespanError
from mcp_trio.serving._supervisor import Supervisor
from mcp_trio.testing import connect
from mcp_trio.transports.websocket import serve_websocket
from tests import lifespan_app
from tests.helpers import child_env
from tests.served import serving
from tests.test_cli import free_port, wait_until_serving

APP = str(Path(lifespan_app.__file__))
SERVE = [sys.executable, "-m", "mcp_trio", "serve", f"{APP}:server"]


def structured(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content
    return result.structured_content  # type: ignore[no-any-return]


# -- in memory ------------------------------------------------------------------------------------
async def test_the_lifespan_wraps_serving_and_session_state_is_per_session() -> None:
    before = list(lifespan_app.ENTERED)
    with trio.fail_after(10):
        async with connect(lifespan_app.server) as first:
            assert lifespan_app.ENTERED == [*before, "start"]  # entered before the first request
            one = structured(await first.call_tool("visit"))
            assert one == {"pid": os.getpid(), "lifespan_pid": os.getpid(), "greeting": "hello from lifespan-app",
                           "entered": before.count("start") + 1, "visits": 1}
            assert structured(await first.call_tool("visit"))["visits"] == 2
            # A second session on the same running server: the same lifespan, its own state.
            async with connect(lifespan_app.server) as second:
                assert structured(await second.call_tool("visit"))["visits"] == 1
            assert structured(await first.call_tool("visit"))["visits"] == 3
        assert lifespan_app.ENTERED == [*before, "start", "stop"]  # left after the last session
        # A new run of the server: a new lifespan, and sessions start from nothing.
        async with connect(lifespan_app.server) as again:
            assert structured(await again.call_tool("visit"))["visits"] == 1


async def test_in_the_stateless_era_the_lifespan_is_there_and_session_state_is_refused() -> None:
    with trio.fail_after(10):
        async with connect(lifespan_app.server, era="stateless") as client:
            assert client.protocol_version == "2026-07-28"
            visited = structured(await client.call_tool("visit"))
            assert visited["greeting"] == "hello from lifespan-app" and visited["visits"] is None

    server = Server("plain")

    @server.tool
    async def remember(ctx: Context) -> str:
        ctx.session_state["seen"] = True
        return "kept"

    async with connect(server, era="stateless") as client:
        refused = await client.call_tool("remember")
    assert refused.is_error
    assert "2026-07-28, which has no session" in refused.content[0].text  # type: ignore[union-attr]


async def test_context_generic_is_a_context_and_no_lifespan_is_said_plainly() -> None:
    server = Server("no-lifespan")

    @server.tool
    async def read(ctx: Context[dict[str, int]]) -> int:
        return ctx.lifespan["x"]

    assert server.registry.tools["read"].wire.input_schema.get("properties", {}) == {}
    async with connect(server) as client:
        result = await client.call_tool("read")
    assert result.is_error
    assert "has no lifespan: decorate an async generator with @server.lifespan" in result.content[0].text  # type: ignore[union-attr]


def test_what_lifespan_accepts() -> None:
    server = Server("shapes")

    with pytest.raises(TypeError, match="is an async function"):
        @server.lifespan
        async def not_a_generator(app: Server) -> None:
            return None

    with pytest.raises(TypeError, match="takes the server or nothing"):
        @server.lifespan
        async def two(a: Any, b: Any) -> AsyncIterator[None]:
            yield None

    @server.lifespan
    async def fine() -> AsyncIterator[int]:
        yield 1

    with pytest.raises(RuntimeError, match="already has a lifespan"):
        server.lifespan(fine)


async def test_a_lifespan_that_fails_at_start_stops_serving_before_it_starts() -> None:
    failing = Server("failing")

    @failing.lifespan
    async def broken() -> AsyncIterator[None]:
        raise ValueError("bad setting")
        yield None

    async with trio.open_nursery() as nursery:
        with pytest.raises(LifespanError, match=r"^the lifespan of server 'failing' failed at start: ValueError: bad setting"):
            await nursery.start(Supervisor(failing).run)
    assert failing._supervisor is None  # nothing is left half-served


async def test_a_lifespan_that_hangs_at_start_is_stopped_by_its_timeout(autojump_clock: trio.testing.MockClock) -> None:
    hanging = Server("hanging")

    @hanging.lifespan
    async def slow() -> AsyncIterator[None]:
        await trio.sleep(31)
        yield None

    async with trio.open_nursery() as nursery:
        with pytest.raises(LifespanError, match="did not start within 30 s"):
            await nursery.start(Supervisor(hanging).run)


async def test_the_clean_up_is_shielded_from_shutdown_and_bounded(autojump_clock: trio.testing.MockClock,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    steps: list[str] = []
    server = Server("slow-to-stop")

    @server.lifespan
    async def slow() -> AsyncIterator[None]:
        try:
            yield None
        finally:
            await trio.sleep(2)  # shielded: the cancellation that ends serving does not cut it
            steps.append("closed")
            await trio.sleep(60)  # past lifespan_timeout: cancelled, and said so
            steps.append("never")

    with caplog.at_level(logging.ERROR, logger="mcp_trio.lifespan"):
        async with trio.open_nursery() as nursery:
            supervisor = await nursery.start(Supervisor(server, Limits(lifespan_timeout=5)).run)
            supervisor.close()
            nursery.cancel_scope.cancel()  # as the transports stop it
    assert steps == ["closed"]
    assert "did not stop within 5 s (lifespan_timeout)" in caplog.text


async def test_a_background_task_of_the_lifespan_that_crashes_stops_serving(autojump_clock: trio.testing.MockClock) -> None:
    server = Server("crashing")

    async def watcher() -> None:
        await trio.sleep(5)
        raise OSError("lost the connection to the message bus")

    @server.lifespan
    async def lifespan() -> AsyncIterator[None]:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watcher)
            yield None

    with pytest.raises(BaseExceptionGroup) as stopped:
        async with trio.open_nursery() as nursery:
            await nursery.start(Supervisor(server).run)
            await trio.sleep_forever()  # serving, until the lifespan's failure ends it
    failure = stopped.value.subgroup(LifespanError)
    assert failure is not None
    while isinstance(failure, BaseExceptionGroup):
        failure = failure.exceptions[0]
    assert str(failure) == "the lifespan of server 'crashing' failed while serving: OSError: lost the connection to the message bus"


# -- every transport ----------------------------------------------------------------------------
async def _visit_twice(where: Any, era: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    async with client_connect(where, era=era) as client:  # type: ignore[arg-type]
        first = structured(await client.call_tool("visit"))
        second = structured(await client.call_tool("visit"))
    async with client_connect(where, era=era) as client:  # type: ignore[arg-type]
        other = structured(await client.call_tool("visit"))
    return first, second, other


@pytest.mark.slow
@pytest.mark.parametrize("era", ["handshake", "auto"])
@pytest.mark.parametrize("transport", ["stdio", "ws", "http"])
async def test_every_transport_and_era(transport: str, era: str) -> None:
    with trio.fail_after(30):
        if transport == "stdio":
            first, second, other = await _visit_twice(SERVE, era)
            assert first["pid"] != os.getpid() and first["entered"] == 1  # its own process, entered once
        elif transport == "ws":
            async with trio.open_nursery() as nursery:
                ws = await nursery.start(lambda task_status: serve_websocket(lifespan_app.server, port=0, task_status=task_status))
                first, second, other = await _visit_twice(f"ws://127.0.0.1:{ws.port}/", era)
                ws.shutdown()
        else:
            async with serving(lifespan_app.server) as served:
                first, second, other = await _visit_twice(f"{served.base}/mcp", era)
    assert first["lifespan_pid"] == first["pid"] and first["greeting"] == "hello from lifespan-app"
    if era == "handshake":
        assert (first["visits"], second["visits"], other["visits"]) == (1, 2, 1)
    else:  # 2026-07-28: no session, no session state
        assert (first["visits"], second["visits"], other["visits"]) == (None, None, None)


@pytest.mark.slow
async def test_each_worker_process_has_its_own_lifespan() -> None:
    port = free_port()
    process = await trio.lowlevel.open_process(
        [*SERVE, "--transport", "http", "--port", str(port), "--workers", "2"], env=child_env(), stderr=subprocess.DEVNULL)
    try:
        with trio.fail_after(30):
            await wait_until_serving(port)
            seen: dict[int, dict[str, Any]] = {}
            while len(seen) < 2:  # new connections until the kernel has sent us to both workers
                async with client_connect(f"http://127.0.0.1:{port}/mcp", era="stateless", max_connections=1) as client:
                    visited = structured(await client.call_tool("visit"))
                seen[visited["pid"]] = visited
            for pid, visited in seen.items():
                assert visited["lifespan_pid"] == pid and visited["entered"] == 1
            process.terminate()
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


# -- failures, from the command line ------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_a_lifespan_failing_at_start_stops_the_server_with_one_line(transport: str) -> None:
    env = {**child_env(), "LIFESPAN_APP_FAIL": "start"}
    done = subprocess.run([*SERVE, "--transport", transport, "--port", "0"], env=env, stdin=subprocess.PIPE,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "mcp-trio: the lifespan of server 'lifespan-app' failed at start: ConnectionRefusedError: no database at "
        "db.invalid:5432 (--log-level debug shows the traceback)"]
    assert done.stdout == ""


@pytest.mark.slow
def test_a_lifespan_failing_at_shutdown_is_one_line_and_the_process_stops() -> None:
    env = {**child_env(), "LIFESPAN_APP_FAIL": "stop"}
    init = msgspec.json.encode({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
    done = subprocess.run(SERVE, env=env, input=init + b"\n", capture_output=True, timeout=30)
    assert msgspec.json.decode(done.stdout.splitlines()[0])["result"]["serverInfo"]["name"] == "lifespan-app"
    assert done.returncode == 1
    assert done.stderr.decode().strip().splitlines() == [
        "mcp-trio: the lifespan of server 'lifespan-app' failed at shutdown: RuntimeError: the pool would not close"]
