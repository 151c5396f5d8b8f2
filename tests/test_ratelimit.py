"""Admission in the request path: per-principal token buckets, per-tool costs and limits, and
the server-wide concurrency cap, exact on trio's MockClock.

Every test goes through the real request path (``serve_in_memory``: reader, dispatcher,
request task), with the principal a transport would have set on the connection.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from mcp_trio import Server
from mcp_trio._limiter import RateLimits, ToolLimit
from mcp_trio.serving._supervisor import Supervisor
from mcp_trio.auth import Principal
from mcp_trio.protocol import RATE_LIMITED, SERVER_OVERLOADED

from .helpers import INIT_PARAMS, RawClient, connect_in_memory, serve_in_memory

ALICE = Principal("alice", frozenset({"read"}))


def make_server(gate: trio.Event | None = None, entered: trio.Event | None = None) -> Server:
    server = Server("limited")

    @server.tool
    async def echo(text: str = "") -> str:
        return text

    @server.tool
    async def heavy() -> str:
        return "done"

    @server.tool
    async def mail() -> str:
        return "sent"

    @server.tool
    async def block() -> str:
        if entered is not None:
            entered.set()
        if gate is not None:
            await gate.wait()
        return "unblocked"

    return server


async def initialized(client: RawClient, clock: trio.testing.MockClock) -> None:
    """Open the session, then let a minute pass: ``initialize`` is charged like any request,
    and the tests below start from a full bucket."""
    await client.initialize()
    clock.jump(60.0)


async def ping(client: RawClient) -> dict[str, Any]:
    return await client.request("ping")


def ok(reply: dict[str, Any]) -> None:
    assert "result" in reply, reply


def limited(reply: dict[str, Any], retry_after_ms: int) -> None:
    assert "error" in reply, reply
    error = reply["error"]
    assert error["code"] == RATE_LIMITED == -32029
    assert error["data"] == {"retryAfterMs": retry_after_ms}, error
    assert f"retry after {retry_after_ms} ms" in error["message"]


async def test_burst_plus_one_pass_then_the_edges_of_one_interval(mock_clock: trio.testing.MockClock) -> None:
    # 10/s, burst 2: three pass at t=0; the next token is exactly 100 ms later.
    async with serve_in_memory(make_server(), rate_limits=RateLimits(rate=10, burst=2)) as (client, supervisor, connection):
        connection.principal = ALICE
        await initialized(client, mock_clock)
        for _ in range(3):
            ok(await ping(client))
        limited(await ping(client), 100)
        mock_clock.jump(0.099)  # one interval minus 1 ms: still refused, 1 ms to go
        limited(await ping(client), 1)
        mock_clock.jump(0.001)  # one interval: admitted
        ok(await ping(client))
        limited(await ping(client), 100)  # exactly one token came back
        assert supervisor.metrics.rate_limited == 3


async def test_tools_call_is_limited_the_same_way(mock_clock: trio.testing.MockClock) -> None:
    async with serve_in_memory(make_server(), rate_limits=RateLimits(rate=4, burst=1)) as (client, _, connection):
        connection.principal = ALICE
        await initialized(client, mock_clock)
        call = {"name": "echo", "arguments": {"text": "hi"}}
        ok(await client.request("tools/call", call))
        ok(await client.request("tools/call", call))
        limited(await client.request("tools/call", call), 250)
        mock_clock.jump(0.249)
        limited(await client.request("tools/call", call), 1)
        mock_clock.jump(0.001)
        ok(await client.request("tools/call", call))


async def test_a_refusal_does_not_consume_and_the_bucket_refills_to_burst(mock_clock: trio.testing.MockClock) -> None:
    async with serve_in_memory(make_server(), rate_limits=RateLimits(rate=10, burst=4)) as (client, _, connection):
        connection.principal = ALICE
        await initialized(client, mock_clock)
        for _ in range(5):
            ok(await ping(client))
        for _ in range(10):
            limited(await ping(client), 100)
        mock_clock.jump(10.0)  # long idle: back to burst + 1, not more
        for _ in range(5):
            ok(await ping(client))
        limited(await ping(client), 100)


async def test_one_principal_shares_one_bucket_across_connections(mock_clock: trio.testing.MockClock) -> None:
    async with serve_in_memory(make_server(), rate_limits=RateLimits(rate=1, burst=1)) as (first, supervisor, connection):
        connection.principal = ALICE
        await first.initialize()
        async with connect_in_memory(supervisor, "second") as (second, other):
            other.principal = Principal("alice", frozenset({"read"}))  # the same caller, again
            await second.initialize()  # both initializes drew on alice's bucket
            mock_clock.jump(60.0)
            ok(await ping(first))
            ok(await ping(second))
            limited(await ping(second), 1000)
            limited(await ping(first), 1000)
            async with connect_in_memory(supervisor, "third") as (third, bob):
                bob.principal = Principal("bob", frozenset({"read"}))
                await third.initialize()
                ok(await ping(third))  # someone else: a bucket of their own


async def test_anonymous_callers_are_limited_per_remote_address(mock_clock: trio.testing.MockClock) -> None:
    anonymous = Principal("anonymous", frozenset(), kind="anonymous")
    async with serve_in_memory(make_server(), rate_limits=RateLimits(rate=1, burst=0)) as (a1, supervisor, connection):
        connection.principal, connection.peer = anonymous, "203.0.113.7"
        await initialized(a1, mock_clock)
        ok(await ping(a1))
        async with connect_in_memory(supervisor, "same-address") as (a2, c2), \
                connect_in_memory(supervisor, "other-address") as (b, c3):
            c2.principal, c2.peer = anonymous, "203.0.113.7"
            c3.principal, c3.peer = anonymous, "198.51.100.1"
            limited(await a2.request("initialize", INIT_PARAMS), 1000)  # same address: same bucket
            ok(await b.request("initialize", INIT_PARAMS))
    assert Supervisor.rate_key(c2) == ("peer", "203.0.113.7")


def test_rate_keys() -> None:
    class Conn:
        def __init__(self, principal: Any, peer: str | None, session_id: str = "s1") -> None:
            self.principal, self.peer, self.session_id = principal, peer, session_id

    assert Supervisor.rate_key(Conn(ALICE, "10.0.0.1")) == ("jwt", "alice")  # type: ignore[arg-type]
    assert Supervisor.rate_key(Conn(Principal("ci", kind="api_key"), None)) == ("api_key", "ci")  # type: ignore[arg-type]
    assert Supervisor.rate_key(Conn(None, "10.0.0.1")) == ("peer", "10.0.0.1")  # type: ignore[arg-type]
    assert Supervisor.rate_key(Conn(None, None)) == ("session", "s1")  # type: ignore[arg-type]


async def test_a_tool_cost_takes_several_tokens(mock_clock: trio.testing.MockClock) -> None:
    policy = RateLimits(rate=10, burst=2, tools={"heavy": ToolLimit(cost=3)})
    async with serve_in_memory(make_server(), rate_limits=policy) as (client, _, connection):
        connection.principal = ALICE
        await initialized(client, mock_clock)
        heavy = {"name": "heavy", "arguments": {}}
        ok(await client.request("tools/call", heavy))  # all three tokens
        limited(await ping(client), 100)
        limited(await client.request("tools/call", heavy), 300)  # needs all three back
        mock_clock.jump(0.299)
        limited(await client.request("tools/call", heavy), 1)
        mock_clock.jump(0.001)
        ok(await client.request("tools/call", heavy))


async def test_a_tool_limit_of_its_own_charges_nothing_when_it_refuses(mock_clock: trio.testing.MockClock) -> None:
    policy = RateLimits(rate=100, burst=10, tools={"mail": ToolLimit(rate=1, burst=0)})
    async with serve_in_memory(make_server(), rate_limits=policy) as (client, supervisor, connection):
        connection.principal = ALICE
        await initialized(client, mock_clock)
        mail = {"name": "mail", "arguments": {}}
        ok(await client.request("tools/call", mail))
        limited(await client.request("tools/call", mail), 1000)
        limited(await client.request("tools/call", mail), 1000)
        # The caller's own bucket paid for one mail only: 10 more requests pass, then 10 ms.
        for _ in range(10):
            ok(await ping(client))
        limited(await ping(client), 10)
        mock_clock.jump(1.0)
        ok(await client.request("tools/call", mail))
        assert supervisor.metrics.rate_limited == 3


async def test_calls_to_unknown_tools_are_charged_too(mock_clock: trio.testing.MockClock) -> None:
    async with serve_in_memory(make_server(), rate_limits=RateLimits(rate=1, burst=0)) as (client, _, connection):
        connection.principal = ALICE
        await initialized(client, mock_clock)
        reply = await client.request("tools/call", {"name": "nope", "arguments": {}})
        assert reply["error"]["code"] == -32602
        limited(await client.request("tools/call", {"name": "nope", "arguments": {}}), 1000)


async def test_no_principal_and_no_address_is_limited_per_session(mock_clock: trio.testing.MockClock) -> None:
    async with serve_in_memory(make_server(), rate_limits=RateLimits(rate=1, burst=0)) as (client, supervisor, _):
        await initialized(client, mock_clock)
        ok(await ping(client))
        limited(await ping(client), 1000)
        async with connect_in_memory(supervisor, "another") as (other, _):
            ok(await other.request("initialize", INIT_PARAMS))  # a bucket of its own


async def test_retry_after_rounds_up_to_whole_milliseconds(mock_clock: trio.testing.MockClock) -> None:
    async with serve_in_memory(make_server(), rate_limits=RateLimits(rate=3, burst=0)) as (client, _, connection):
        connection.principal = ALICE
        await initialized(client, mock_clock)
        ok(await ping(client))
        limited(await ping(client), 334)  # 333.33 ms: asking again after 333 would be early
        mock_clock.jump(0.3335)
        ok(await ping(client))


async def test_the_concurrency_cap_sheds_load_instead_of_queueing() -> None:
    gate, entered = trio.Event(), trio.Event()
    async with serve_in_memory(make_server(gate, entered), rate_limits=RateLimits(max_concurrent=1)) as (client, supervisor, _):
        await client.initialize()
        request_id = client.new_id()
        await client.send({"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": {"name": "block", "arguments": {}}})
        await entered.wait()
        assert supervisor.running == 1
        shed = await ping(client)
        assert shed["error"]["code"] == SERVER_OVERLOADED == -32030, shed
        assert "overloaded" in shed["error"]["message"]
        async with connect_in_memory(supervisor, "other") as (other, _):
            await other.initialize()
            assert (await other.request("tools/list"))["error"]["code"] == SERVER_OVERLOADED
        assert supervisor.metrics.overloaded == 2 and supervisor.metrics.rate_limited == 0
        gate.set()
        assert (await client.reply_to(request_id))["result"]["content"][0]["text"] == "unblocked"
        ok(await ping(client))
        assert supervisor.running == 0
        assert "mcp_overloaded_total 2" in supervisor.metrics.render({})


async def test_without_a_policy_admission_is_off() -> None:
    async with serve_in_memory(make_server()) as (client, supervisor, connection):
        connection.principal = ALICE
        await client.initialize()
        assert supervisor.admission.active is False and supervisor.request_limiter is None
        for _ in range(200):
            ok(await ping(client))
        assert supervisor.running == 0 and supervisor.metrics.rate_limited == 0


def test_policies_that_could_never_admit_are_refused() -> None:
    with pytest.raises(ValueError, match="burst \\+ 1"):
        RateLimits(rate=1, burst=1, tools={"x": ToolLimit(cost=3)})
    with pytest.raises(ValueError):
        RateLimits(rate=0)
    with pytest.raises(ValueError):
        RateLimits(max_concurrent=0)
    with pytest.raises(ValueError):
        ToolLimit(cost=0)
