"""Cluster mode with real parts: two "hosts" (``mcp-trio serve --workers 2 --redis URL`` on two
loopback ports: four server processes), a real redis-server, and a real HAProxy in front,
balancing round-robin per request with no stickiness. Driven through the balancer by the
official SDK client (``mcp``) and by ``mcp_trio.client``:

* a handshake-era session goes on across hops (its requests served by several processes):
  tool calls, sampling answered wherever the answer lands, the log level, list_changed on
  the GET stream after an /admin switch made through the balancer;
* a burst spread over the four processes admits exactly the bucket;
* a plugin added on one host is callable through the balancer within 2 s (the other host
  does not watch the directory: the cluster bus tells it);
* ``kill -9`` of a server process loses no session (the client's next request is served by
  another) and no acknowledged task.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
import trio
from mcp import Client
from mcp.client.session import ClientRequestContext
from mcp.client.streamable_http import streamable_http_client

from mcp_trio.client import McpError, connect
from tests.cluster_fixtures import HAProxy, McpHost, RedisServer
from tests.http_client import request
from tests.served import write_plugin

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")]

#: The limited tool's bucket: burst 9 (10 calls), refilling once in 1000 s.
LIMITED = {"limited": {"rate": 0.001, "burst": 9}}


@dataclass
class Deployment:
    redis: RedisServer
    hosts: list[McpHost]
    proxy: HAProxy
    plugins: Path

    @property
    def url(self) -> str:
        return f"{self.proxy.url}/mcp"


def deploy(directory: Path, *, node_ttl: float = 5.0, workers: tuple[int, int] = (2, 2)) -> Iterator[Deployment]:
    redis = RedisServer(directory / "redis")
    redis.start()
    plugins = directory / "plugins"
    plugins.mkdir()
    env = {"MCP_TRIO_RATE_LIMIT_TOOLS": json.dumps(LIMITED), "MCP_TRIO_CLUSTER_NODE_TTL": str(node_ttl),
           "MCP_TRIO_REQUEST_STATE_SECRET": secrets.token_urlsafe(32), "MCP_TRIO_CLUSTER_KEY_PREFIX": "multi:"}
    # Host a watches the plugin directory; host b does not (as on a network file system
    # inotify never hears of): it reloads when the bus says another process did.
    hosts = [McpHost(directory / "a", redis.url, "--plugins", str(plugins), workers=workers[0], env=env),
             McpHost(directory / "b", redis.url, "--plugins", str(plugins), "--no-watch", workers=workers[1], env=env)]
    proxy = None
    try:
        for host in hosts:
            host.start()
        proxy = HAProxy(directory / "haproxy", [host.address for host in hosts], health="/healthz")
        proxy.start()
        yield Deployment(redis, hosts, proxy, plugins)
    finally:
        if proxy is not None:
            proxy.stop()
        for host in hosts:
            host.stop()
        redis.stop()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    yield from deploy(tmp_path_factory.mktemp("cluster"))


def text_of(result: Any) -> str:
    """The text of a tool's result: a typed one, or a raw one (a task's, from ``tasks/get``)."""
    return result["content"][0]["text"] if isinstance(result, dict) else result.content[0].text


async def test_the_sdk_clients_session_goes_on_across_hops(deployment: Deployment) -> None:
    notes: list[str] = []
    logs: list[str] = []
    list_changed = trio.Event()

    async def sampling(context: ClientRequestContext, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        return types.CreateMessageResult(role="assistant", content=types.TextContent(type="text", text="4"), model="m")

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        logs.append(params.level)

    async def on_message(message: Any) -> None:
        method = getattr(getattr(message, "root", message), "method", None)
        if method is not None:
            notes.append(method)
            if method == "notifications/tools/list_changed":
                list_changed.set()

    with trio.fail_after(30):
        async with Client(streamable_http_client(deployment.url), mode="legacy", sampling_callback=sampling,
                          logging_callback=on_log, message_handler=on_message) as client:
            served_by = {text_of(await client.call_tool("where")).split("/")[0] for _ in range(16)}
            assert len(served_by) >= 3, served_by  # four processes take turns; every one knows the session
            for _ in range(3):  # the question from one process, the answer through the balancer
                assert text_of(await client.call_tool("ask", {"prompt": "2+2?"})).endswith("heard 4")
            await client.set_logging_level("warning")
            for _ in range(4):
                assert text_of(await client.call_tool("say"))
            assert logs and set(logs) == {"warning"}, logs
            # A switch through the balancer lands on one process: the client's GET stream,
            # wherever it is held, hears list_changed, and no process lists the tool.
            switched = await request(deployment.proxy.port, "POST", "/admin/tools/beta/disable", body=b"")
            assert switched.status == 200, switched.body
            with trio.fail_after(5):
                await list_changed.wait()
            for _ in range(4):
                assert "beta" not in {tool.name for tool in (await client.list_tools()).tools}
            assert (await request(deployment.proxy.port, "POST", "/admin/tools/beta/enable", body=b"")).status == 200


async def test_limits_hold_exactly_and_plugins_reach_every_host(deployment: Deployment) -> None:
    with trio.fail_after(30):
        async with connect(deployment.url, era="handshake") as client:
            served_by = {text_of(await client.call_tool("where")).split("/")[0] for _ in range(16)}
            assert len(served_by) >= 3, served_by
            # 16 calls at once, spread over the four processes: exactly the bucket passes.
            outcomes: list[int] = []

            async def call() -> None:
                try:
                    await client.call_tool("limited")
                    outcomes.append(0)
                except McpError as error:
                    outcomes.append(error.code)

            async with trio.open_nursery() as nursery:
                for _ in range(16):
                    nursery.start_soon(call)
            assert sorted(outcomes) == [-32029] * 6 + [0] * 10, outcomes
            admitted_by = {text_of(await client.call_tool("where")).split("/")[0] for _ in range(4)}
            assert len(admitted_by) >= 2, admitted_by  # still spread: the bucket is the cluster's, not one process's

            write_plugin(deployment.plugins, "late", '''
                from mcp_trio import Plugin
                plugin = Plugin("late")

                @plugin.tool
                async def late() -> str:
                    return "late"
            ''')
            with trio.fail_after(2):  # callable on every process, four calls in a row
                streak = 0
                while streak < 4:
                    try:
                        result = await client.call_tool("late")
                    except McpError:
                        result = None
                    if result is not None and not result.is_error:
                        streak += 1
                    else:
                        streak = 0
                        await trio.sleep(0.02)


async def test_kill_9_loses_no_session_and_no_acknowledged_task(tmp_path: Path) -> None:
    # Host a is one process (the victim: the tasks it acknowledged are known), host b two.
    for deployment in deploy(tmp_path, node_ttl=1.0, workers=(1, 2)):
        victim_host = deployment.hosts[0]
        victim = victim_host.pids()[0]
        tasks_extension = {"extensions": {"io.modelcontextprotocol/tasks": {}}}
        with trio.fail_after(45):
            async with connect(deployment.url, era="handshake") as session, \
                    connect(deployment.url, era="stateless", capabilities=tasks_extension) as tasks, \
                    connect(f"http://127.0.0.1:{victim_host.port}/mcp", era="stateless", capabilities=tasks_extension) as direct:
                assert text_of(await session.call_tool("where"))
                # Acknowledged by the victim: one done before it dies, two still running then;
                # and eight through the balancer, on every process.
                done = (await direct.request("tools/call", {"name": "brew", "arguments": {"seconds": 0}}))["taskId"]
                running = [(await direct.request("tools/call", {"name": "brew", "arguments": {"seconds": 60}}))["taskId"]
                           for _ in range(2)]
                spread = [(await tasks.request("tools/call", {"name": "brew", "arguments": {"seconds": 1.0}}))["taskId"]
                          for _ in range(8)]
                while (await tasks.request("tasks/get", {"taskId": done}))["status"] != "completed":
                    await trio.sleep(0.05)
                assert f"cluster                {deployment.redis.url.removesuffix('/0')} (key prefix 'multi:')" in victim_host.log.read_text()
                victim_host.kill9(victim)
                # The session goes on: every next request is served by a process still alive.
                after = {text_of(await session.call_tool("where")).split("/")[0] for _ in range(8)}
                assert str(victim) not in after and len(after) >= 2, (victim, after)
                # Every acknowledged task is known wherever it is asked for, and settles:
                # completed (its result kept), or failed because the process running it died.
                settled: dict[str, Any] = {}
                while len(settled) < 1 + len(running) + len(spread):
                    for task_id in [done, *running, *spread]:
                        if task_id not in settled:
                            got = await tasks.request("tasks/get", {"taskId": task_id})
                            if got["status"] in ("completed", "failed", "cancelled"):
                                settled[task_id] = got
                    await trio.sleep(0.1)
                assert text_of(settled[done]["result"]).startswith(f"brewed by {victim}/"), settled[done]
                stopped = "the server process running this task stopped"
                for task_id in running:
                    assert settled[task_id]["status"] == "failed" and settled[task_id]["error"]["message"].startswith(stopped), \
                        settled[task_id]
                outcomes = {(got["status"], text_of(got["result"]).split("/")[0] if "result" in got else got["error"]["message"])
                            for got in (settled[task_id] for task_id in spread)}
                assert all(status == "completed" and brewer != f"brewed by {victim}" or status == "failed" and brewer.startswith(stopped)
                           for status, brewer in outcomes), outcomes
                assert any(status == "completed" for status, _ in outcomes), outcomes
