"""Cluster mode served: two HTTP servers in one test, sharing a real redis-server.

A handshake-era session opened on one server is served by the other request by request (the
hop a round-robin balancer makes): its profile, log level and subscriptions are in Redis; its
GET stream's events reach whichever server holds it and replay from either; a client's answer
to sampling reaches the server running the tool; DELETE on one ends it on both. The control
plane (switches, list_changed, plugin reloads), tasks and shared rate limits act on both.
(tests/test_cluster_multihost.py does the same with real processes behind HAProxy.)
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from mcp_trio._limiter import RateLimits
from mcp_trio.cluster import ClusterSettings
from tests.cluster_app import make_app
from tests.cluster_fixtures import RedisServer
from tests.http_client import McpHttp, request
from tests.served import Served, serving, write_plugin
from tests.test_stateless import TASKS
from tests.test_stateless import post as stateless_post

CALL = "tools/call"


@asynccontextmanager
async def two_servers(redis: RedisServer, prefix: str, **options: Any) -> AsyncIterator[tuple[Served, Served]]:
    settings = ClusterSettings(redis_url=redis.url, key_prefix=prefix)
    async with serving(make_app(), cluster=settings, **options) as one, serving(make_app(), cluster=settings, **options) as two:
        yield one, two


class Hopping(McpHttp):
    """One session whose requests go to each server in turn, as a round-robin balancer sends them."""

    def __init__(self, *ports: int) -> None:
        super().__init__(ports[0])
        self.ports = ports
        self.turn = 0

    def hop(self) -> int:
        self.port = self.ports[self.turn % len(self.ports)]
        self.turn += 1
        return self.port

    async def post(self, message: Any, **extra: str) -> Any:
        self.hop()
        return await super().post(message, **extra)


async def first_message(exchange: Any) -> dict[str, Any]:
    """The first SSE event with data on ``exchange`` (priming events skipped), decoded."""
    while True:
        event = await exchange.next_event()
        assert event is not None, "the stream ended"
        if event.data:
            return event.json()  # type: ignore[no-any-return]


def sampling_answer(asked: dict[str, Any], text: str = "4") -> dict[str, Any]:
    assert asked["method"] == "sampling/createMessage", asked
    return {"jsonrpc": "2.0", "id": asked["id"],
            "result": {"role": "assistant", "content": {"type": "text", "text": text}, "model": "m"}}


def text_of(reply: dict[str, Any]) -> str:
    assert "result" in reply, reply
    return reply["result"]["content"][0]["text"]


async def test_a_session_hops_between_servers(redis_server: RedisServer) -> None:
    with trio.fail_after(20):
        async with two_servers(redis_server, "hop:") as (one, two):
            mcp = Hopping(one.port, two.port)
            await mcp.initialize()  # initialize on one, notifications/initialized on two
            nodes = {text_of(await mcp.call(CALL, {"name": "where", "arguments": {}})) for _ in range(4)}
            assert len(nodes) == 2, nodes  # both served it
            assert text_of(await mcp.call(CALL, {"name": "echo", "arguments": {"text": "hi"}})) == "hi"
            # The log level set on one server applies on the other.
            assert (await mcp.call("logging/setLevel", {"level": "warning"}))["result"] == {}
            for _ in range(2):
                response = await mcp.post(mcp.message(CALL, {"name": "say", "arguments": {}}))
                logged = [e.json()["params"]["level"] for e in response.events() if e.data and "method" in e.json()]
                assert logged == ["warning"], logged
            # DELETE on one ends it on both.
            mcp.hop()
            assert (await mcp.delete()).status == 204
            for _ in range(2):
                response = await mcp.post(mcp.message("ping"))
                assert response.status == 404, response.body


async def test_sampling_answer_reaches_the_server_running_the_tool(redis_server: RedisServer) -> None:
    with trio.fail_after(20):
        async with two_servers(redis_server, "ask:") as (one, two):
            mcp = Hopping(one.port, two.port)
            await mcp.initialize()
            for _ in range(2):  # the question on one server, the answer posted to the other; and back
                call = mcp.message(CALL, {"name": "ask", "arguments": {"prompt": "2+2?"}})
                mcp.hop()
                async with mcp.post_streaming(call) as stream:
                    answer = sampling_answer(await first_message(stream))
                    assert (await mcp.post(answer)).status == 202  # lands on the other server
                    final = await stream.next_event()
                    assert final is not None and text_of(final.json()).endswith("heard 4")


async def test_the_get_stream_hears_every_server_and_replays_anywhere(redis_server: RedisServer) -> None:
    with trio.fail_after(20):
        async with two_servers(redis_server, "get:") as (one, two):
            mcp = Hopping(one.port, two.port)
            await mcp.initialize()
            mcp.port = two.port
            assert (await mcp.call("resources/subscribe", {"uri": "note://a"}))["result"] == {}
            mcp.port = one.port
            async with mcp.get_stream() as get:  # held by server one
                assert get.status == 200
                priming = await get.next_event()
                assert priming is not None and priming.data == ""
                # A switch made on server two: server one's session hears list_changed.
                assert (await two.admin("POST", "/admin/tools/beta/disable")).status == 200
                # A resource touched on server two: the subscriber's stream on one hears it.
                mcp.port = two.port
                await mcp.call(CALL, {"name": "touch", "arguments": {"uri": "note://a"}})
                seen: dict[str, str] = {}
                while len(seen) < 2:
                    event = await get.next_event()
                    assert event is not None
                    if event.data:
                        seen[event.json()["method"]] = event.id or ""
            assert set(seen) == {"notifications/tools/list_changed", "notifications/resources/updated"}
            first = min(seen.values(), key=lambda i: tuple(map(int, i.split("-"))))
            # Resume after the first event on the other server: the second is replayed.
            mcp.port = two.port
            async with mcp.get_stream(last_event_id=first) as again:
                assert again.status == 200
                event = await again.next_event()
                while event is not None and not event.data:
                    event = await again.next_event()
                assert event is not None and event.id == max(seen.values(), key=lambda i: tuple(map(int, i.split("-"))))
            # The switch holds on both servers: beta is gone from both lists.
            for served in (one, two):
                mcp.port = served.port
                tools = [t["name"] for t in (await mcp.call("tools/list"))["result"]["tools"]]
                assert "beta" not in tools and "echo" in tools


async def test_a_closed_request_stream_resumes_on_the_other_server(redis_server: RedisServer) -> None:
    with trio.fail_after(20):
        async with two_servers(redis_server, "poll:") as (one, two):
            mcp = Hopping(one.port, two.port)
            await mcp.initialize()
            mcp.port = one.port
            response = await McpHttp.post(mcp, mcp.message(CALL, {"name": "poll_me", "arguments": {}}))
            events = response.events()
            assert events[0].data == "" and events[-1].retry == 50, response.body  # closed: poll
            last = [e for e in events if e.id][-1].id
            mcp.port = two.port
            async with mcp.get_stream(last_event_id=last) as get:
                assert get.status == 200
                rest = []
                while (event := await get.next_event()) is not None:
                    if event.data:
                        rest.append(event.json())
            assert rest[0]["params"]["data"] == "after the pause"
            assert text_of(rest[-1]).startswith("answered by")


async def test_shared_rate_limits_hold_across_servers(redis_server: RedisServer) -> None:
    with trio.fail_after(20):
        async with two_servers(redis_server, "rl:", rate_limits=RateLimits(rate=0.001, burst=5)) as (one, two):
            mcp = Hopping(one.port, two.port)
            await mcp.initialize()  # 1 token (initialize is charged), notifications are not
            codes = []
            for _ in range(8):
                response = await mcp.post(mcp.message(CALL, {"name": "echo", "arguments": {"text": "x"}}))
                codes.append((response.status, response.json().get("error", {}).get("code", 0)))
            # burst + 1 = 6 tokens in all, initialize's included, whichever server decides
            assert codes == [(200, 0)] * 5 + [(429, -32029)] * 3, codes


async def test_a_plugin_reload_on_one_server_reaches_the_other(redis_server: RedisServer, tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    with trio.fail_after(20):
        settings = ClusterSettings(redis_url=redis_server.url, key_prefix="plug:")
        one_app, two_app = make_app(), make_app()
        one_app.use_plugins(plugins, watch=False)
        two_app.use_plugins(plugins, watch=False)
        async with serving(one_app, cluster=settings) as one, serving(two_app, cluster=settings) as two:
            write_plugin(plugins, "late", '''
                from mcp_trio import Plugin
                plugin = Plugin("late")

                @plugin.tool
                async def late() -> str:
                    return "late"
            ''')
            assert (await one.admin("POST", "/admin/reload")).status == 200
            mcp = McpHttp(two.port)
            await mcp.initialize()
            with trio.fail_after(2):
                while True:
                    reply = await mcp.call(CALL, {"name": "late", "arguments": {}})
                    if "result" in reply and not reply["result"].get("isError"):
                        break
                    await trio.sleep(0.02)
            assert text_of(reply) == "late"


async def test_admin_stats_show_the_cluster(redis_server: RedisServer) -> None:
    with trio.fail_after(20):
        async with two_servers(redis_server, "stats:") as (one, two):
            for served in (one, two):
                mcp = served.client()
                await mcp.initialize()
                await mcp.call(CALL, {"name": "echo", "arguments": {"text": "x"}})
            with trio.fail_after(5):
                while True:
                    stats = (await one.admin("GET", "/admin/stats")).json()
                    if stats["cluster"]["tools"].get("echo", {}).get("calls") == 2:
                        break
                    await trio.sleep(0.1)
            assert stats["tools"]["echo"]["calls"] == 1  # this process's own
            assert len(stats["cluster"]["nodes"]) == 2
            metrics = (await request(two.port, "GET", "/metrics")).body.decode()
            assert 'mcp_cluster_tool_calls_total{tool="echo"} 2' in metrics, metrics


async def test_tasks_are_read_and_cancelled_from_the_other_server(redis_server: RedisServer) -> None:
    """2026-07-28 tasks: created on one server, read and cancelled through the other."""
    with trio.fail_after(20):
        async with two_servers(redis_server, "task:") as (one, two):
            created = await envelope_call(one.port, CALL, {"name": "brew", "arguments": {"seconds": 0.2}})
            task_id = created["result"]["taskId"]
            with trio.fail_after(5):
                while True:
                    got = await envelope_call(two.port, "tasks/get", {"taskId": task_id})
                    if got["result"]["status"] == "completed":
                        break
                    await trio.sleep(0.05)
            assert json.dumps(got["result"]["result"]).count("brewed by") == 1
            slow = await envelope_call(one.port, CALL, {"name": "brew", "arguments": {"seconds": 30}})
            slow_id = slow["result"]["taskId"]
            await envelope_call(two.port, "tasks/cancel", {"taskId": slow_id})
            with trio.fail_after(5):
                while True:
                    got = await envelope_call(one.port, "tasks/get", {"taskId": slow_id})
                    if got["result"]["status"] == "cancelled":
                        break
                    await trio.sleep(0.05)
            assert one.supervisor.stateless.tasks.tasks[slow_id].status == "cancelled"


async def envelope_call(port: int, method: str, params: dict[str, Any]) -> dict[str, Any]:
    """A 2026-07-28 request (its own envelope, the tasks extension declared) to one server."""
    response = await stateless_post(port, method, params, name=params.get("name") or params.get("taskId"),
                                    clientCapabilities=TASKS)
    assert response.status == 200, response.body
    return response.json()


async def test_redis_stopped_mid_run_fails_closed_then_recovers(redis_server: RedisServer) -> None:
    """``on_unavailable = "closed"`` (the default): a limit that cannot be checked is not lifted;
    the request is refused with 503 and Retry-After, and served again once Redis is back."""
    settings = ClusterSettings(redis_url=redis_server.url, key_prefix="down:", probe_interval=0.2, command_timeout=0.5)
    with trio.fail_after(30):
        async with serving(make_app(), cluster=settings, rate_limits=RateLimits(rate=100, burst=100)) as served:
            mcp = served.client()
            await mcp.initialize()
            echo = {"name": "echo", "arguments": {"text": "x"}}
            assert text_of(await mcp.call(CALL, echo)) == "x"
            redis_server.stop()
            response = await mcp.post(mcp.message(CALL, echo))
            assert response.status == 503 and response.headers["retry-after"] == "1", response.body
            error = response.json()["error"]
            assert error["code"] == -32030 and "shared rate limits unavailable" in error["message"]
            assert error["data"] == {"retryAfterMs": 200}
            # A new session cannot be stored either: 503, not a session only this process knows.
            fresh = served.client()
            refused = await fresh.post(fresh.message("initialize", {
                "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}))
            assert refused.status == 503, refused.body
            redis_server.start()  # the same port, empty (no persistence): the old session is gone
            with trio.fail_after(10):
                while True:
                    again = served.client()
                    try:
                        await again.initialize()
                        if "result" in await again.call(CALL, echo):
                            break
                    except AssertionError:
                        pass
                    await trio.sleep(0.1)


async def test_redis_stopped_mid_run_with_the_local_fallback(redis_server: RedisServer) -> None:
    """``on_unavailable = "local"``: while Redis is away this process's own buckets decide."""
    settings = ClusterSettings(redis_url=redis_server.url, key_prefix="local:", on_unavailable="local",
                               probe_interval=0.2, command_timeout=0.5)
    with trio.fail_after(30):
        async with serving(make_app(), cluster=settings, rate_limits=RateLimits(rate=0.001, burst=3)) as served:
            mcp = served.client()
            await mcp.initialize()  # one token of the shared bucket
            redis_server.stop()
            statuses = []
            for _ in range(6):  # four tokens in this process's own bucket, which knows nothing of the shared one
                statuses.append((await mcp.post(mcp.message(CALL, {"name": "echo", "arguments": {"text": "x"}}))).status)
            assert statuses == [200] * 4 + [429] * 2, statuses
            assert served.supervisor.cluster.limiter.statistics.local == 6


async def test_a_session_belongs_to_its_caller_on_every_server(redis_server: RedisServer) -> None:
    """Another caller holding the session id finds no session, on the server that made it or any
    other (whether that one has served the session yet or not)."""
    import hashlib

    from mcp_trio.auth import ApiKey, ApiKeyStore, Authenticator

    keys = {"ann": "mcpk_" + "a" * 40, "bob": "mcpk_" + "b" * 40}
    store = ApiKeyStore([ApiKey(name, hashlib.sha256(key.encode()).hexdigest(), frozenset()) for name, key in keys.items()])
    with trio.fail_after(20):
        async with two_servers(redis_server, "own:", authenticator=Authenticator(api_keys=store)) as (one, two):
            ann = McpHttp(one.port)
            bearer = {"authorization": f"Bearer {keys['ann']}"}
            response = await ann.post(ann.message("initialize", {"protocolVersion": "2025-11-25", "capabilities": {},
                                                                  "clientInfo": {"name": "t", "version": "1"}}), **bearer)
            ann.session_id = response.headers["mcp-session-id"]
            bob = McpHttp(two.port, session_id=ann.session_id)
            for port in (two.port, one.port):  # two: not served there yet; one: ann's own
                bob.port = port
                stolen = await bob.post(bob.message("ping"), authorization=f"Bearer {keys['bob']}")
                assert stolen.status == 404, stolen.body
            ann.port = two.port
            assert (await ann.post(ann.message("ping"), **bearer)).status == 200
            bob.port = two.port  # now two serves it (for ann): still not bob's
            assert (await bob.post(bob.message("ping"), authorization=f"Bearer {keys['bob']}")).status == 404


async def test_idle_replicas_give_way_at_max_sessions(redis_server: RedisServer) -> None:
    """A replica is a cache of the store: at ``max_sessions`` the least recently used idle one
    is let go for a session that needs serving, and comes back when its session does."""
    from mcp_trio import Limits

    settings = ClusterSettings(redis_url=redis_server.url, key_prefix="room:")
    with trio.fail_after(20):
        async with serving(make_app(), cluster=settings) as one, \
                serving(make_app(), Limits(max_sessions=1), cluster=settings) as two:
            first, second = McpHttp(one.port), McpHttp(one.port)
            await first.initialize()
            await second.initialize()
            for _ in range(2):
                for mcp in (first, second):
                    mcp.port = two.port
                    assert text_of(await mcp.call(CALL, {"name": "echo", "arguments": {"text": "x"}})) == "x"
                    assert (await request(two.port, "GET", "/healthz")).json()["sessions"] == 1


async def test_websocket_servers_share_limits_and_switches(redis_server: RedisServer) -> None:
    """Cluster mode on the WebSocket transport: a session is its connection, and its process's
    limits, switches and list_changed are the cluster's."""
    from mcp_trio._limiter import ToolLimit
    from mcp_trio.client import McpError, connect
    from mcp_trio.transports.websocket import serve_websocket

    settings = ClusterSettings(redis_url=redis_server.url, key_prefix="ws:")
    policy = RateLimits(tools={"limited": ToolLimit(rate=0.001, burst=3)})
    one_app, two_app = make_app(), make_app()
    changed = trio.Event()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            one = await nursery.start(lambda task_status: serve_websocket(one_app, port=0, cluster=settings,
                                                                          rate_limits=policy, task_status=task_status))
            two = await nursery.start(lambda task_status: serve_websocket(two_app, port=0, cluster=settings,
                                                                          rate_limits=policy, task_status=task_status))
            async with connect(f"ws://127.0.0.1:{one.port}/", era="handshake") as a, \
                    connect(f"ws://127.0.0.1:{two.port}/", era="handshake",
                            on_list_changed=lambda kind: changed.set() if kind == "tools" else None) as b:
                outcomes = []
                for client in (a, b, a, b, a, b):
                    try:
                        await client.call_tool("limited")
                        outcomes.append(0)
                    except McpError as error:
                        outcomes.append(error.code)
                assert outcomes == [0, 0, 0, 0, -32029, -32029], outcomes  # burst 3: four, over both
                await one_app._supervisor.switch(False, tags=["beta"])  # type: ignore[union-attr]
                with trio.fail_after(5):
                    await changed.wait()
                assert "beta" not in {tool.name for tool in await b.list_tools()}
            nursery.cancel_scope.cancel()


async def test_json_responses_put_a_requests_questions_on_the_get_stream_of_another_server(redis_server: RedisServer) -> None:
    """With JSON answers, what a request sends before its reply goes on the session's GET
    stream, wherever that is held; a GET opened later still gets what came before it."""
    with trio.fail_after(20):
        async with two_servers(redis_server, "json:", json_response=True) as (one, two):
            mcp = Hopping(one.port, two.port)
            await mcp.initialize()
            mcp.port = one.port
            call = mcp.message(CALL, {"name": "ask", "arguments": {"prompt": "2+2?"}})
            async with trio.open_nursery() as nursery:
                answered: list[Any] = []

                async def post() -> None:
                    answered.append(await McpHttp.post(mcp, call))

                nursery.start_soon(post)
                await trio.sleep(0.2)  # the question is asked before any GET is open
                mcp.port = two.port
                async with mcp.get_stream() as get:
                    answer = sampling_answer(await first_message(get))
                    assert (await McpHttp.post(mcp, answer)).status == 202  # to two; the tool runs on one
            assert text_of(answered[0].json()).endswith("heard 4")


async def test_concurrent_first_requests_make_one_replica(redis_server: RedisServer) -> None:
    """Requests of a session arriving together at a process that does not serve it yet share
    one replica (none is left running unlisted)."""
    with trio.fail_after(20):
        async with two_servers(redis_server, "race:") as (one, two):
            mcp = McpHttp(one.port)
            await mcp.initialize()
            mcp.port = two.port
            before = len(two.supervisor.connections)
            async with trio.open_nursery() as nursery:
                for _ in range(8):
                    nursery.start_soon(mcp.call, CALL, {"name": "echo", "arguments": {"text": "x"}})
            assert len(two.supervisor.connections) == before + 1


async def test_a_batched_answer_reaches_the_server_running_the_tool(redis_server: RedisServer) -> None:
    """Revision 2025-03-26 batches: an answer inside a batch posted to the other server is
    relayed like a single one."""
    with trio.fail_after(20):
        async with two_servers(redis_server, "batch:") as (one, two):
            mcp = McpHttp(one.port, protocol_version="2025-03-26")
            await mcp.initialize({"protocolVersion": "2025-03-26", "capabilities": {"sampling": {}},
                                  "clientInfo": {"name": "t", "version": "1"}})
            call = mcp.message(CALL, {"name": "ask", "arguments": {"prompt": "2+2?"}})
            async with mcp.post_streaming(call) as stream:
                answer = sampling_answer(await first_message(stream))
                mcp.port = two.port
                response = await mcp.post(json.dumps([answer]).encode())
                assert response.status == 202, response.body
                final = await stream.next_event()
                assert final is not None and text_of(final.json()).endswith("heard 4")


async def test_a_session_hops_between_the_h1_engine_hypercorn_and_asgi_app(redis_server: RedisServer) -> None:
    """The session hooks are the HTTP app's, whichever server runs it: the h1 engine (the
    default), hypercorn (``http2=True``) and ``asgi_app`` mounted under hypercorn serve one
    session in turn, its sampling answers and its GET stream crossing between them."""
    from mcp_trio import asgi_app
    from tests.test_http_asgi import hypercorn_serving

    settings = ClusterSettings(redis_url=redis_server.url, key_prefix="engines:")
    mounted = asgi_app(make_app(), cluster=settings)
    with trio.fail_after(20):
        async with serving(make_app(), cluster=settings) as h1, serving(make_app(), cluster=settings, http2=True) as h2, \
                hypercorn_serving(mounted) as base:
            mcp = Hopping(h1.port, h2.port, int(base.rpartition(":")[2]))
            await mcp.initialize()
            nodes = {text_of(await mcp.call(CALL, {"name": "where", "arguments": {}})) for _ in range(6)}
            assert len(nodes) == 3, nodes
            for _ in range(3):  # each asks; the answer is posted to the next
                call = mcp.message(CALL, {"name": "ask", "arguments": {"prompt": "2+2?"}})
                mcp.hop()
                async with mcp.post_streaming(call) as stream:
                    assert (await mcp.post(sampling_answer(await first_message(stream)))).status == 202
                    final = await stream.next_event()
                    assert final is not None and text_of(final.json()).endswith("heard 4")
            mcp.port = h2.port
            async with mcp.get_stream() as get:  # held by hypercorn; the switch made on the h1 engine
                assert get.status == 200
                assert (await h1.admin("POST", "/admin/tools/beta/disable")).status == 200
                while not (event := await get.next_event()) or not event.data:
                    assert event is not None, "the GET stream ended"
                assert event.json()["method"] == "notifications/tools/list_changed"
            mcp.port = int(base.rpartition(":")[2])
            assert (await mcp.delete()).status == 204  # through asgi_app: ended on the others too
            for port in (h1.port, h2.port):
                mcp.port = port
                assert (await McpHttp.post(mcp, mcp.message("ping"))).status == 404
