"""One principal cannot exhaust the server: initialize is charged, and quotas per principal.

Each quota (``Limits.max_*_per_principal``, ``max_subscriptions_per_session``) is crossed
here, and the refusal must name it. Over HTTP and WebSocket with real JWTs; in memory (the
same request path, with the principal a transport would set) for tasks, listen streams and
subscriptions. Subscriptions must name a resource that exists, in a URI of bounded length.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionRejected, open_websocket_url

from mcp_trio import Limits, Server, demo
from mcp_trio._config import Config, load_config
from mcp_trio.auth import Principal, mint_token, secret_key
from mcp_trio.transports.http import serve_http
from mcp_trio.transports.websocket import serve_websocket
from tests.helpers import connect_in_memory, serve_in_memory
from tests.test_security_transports import Bearer
from tests.test_stateless import META, TASKS, stateless_call, task_call
from tests.test_websocket import WsClient

SECRET = "a-development-secret-of-at-least-32-bytes!"
ISSUER = "https://issuer.test"
RESOURCE = "http://127.0.0.1/mcp"
ADA = Principal("ada", frozenset({"read"}))
QUOTA_EXCEEDED = -32032


def config(**settings: Any) -> Config:
    env = {"MCP_TRIO_AUTH_JWT_SECRET": SECRET, "MCP_TRIO_AUTH_JWT_ISSUER": ISSUER, "MCP_TRIO_SERVER_RESOURCE": RESOURCE}
    return load_config(None, env, settings)


def token(subject: str = "ada") -> str:
    return mint_token(secret_key(SECRET), subject=subject, issuer=ISSUER, audience=RESOURCE, scopes=("read",), ttl=600)


@asynccontextmanager
async def http(cfg: Config) -> AsyncIterator[int]:
    async with trio.open_nursery() as nursery:
        port = await nursery.start(lambda task_status: serve_http(
            demo.server, cfg.to_limits(), port=0, authenticator=cfg.authenticator(), rate_limits=cfg.rate_limits(),
            task_status=task_status))
        try:
            yield port
        finally:
            nursery.cancel_scope.cancel()


def refused_for(error: dict[str, Any], quota: str) -> None:
    assert error["code"] == QUOTA_EXCEEDED, error
    assert error["data"]["quota"] == quota and quota in error["message"], error


# -- initialize is charged like any request ------------------------------------------------------
async def test_initialize_is_charged_to_the_rate_limit_over_http_and_websocket() -> None:
    """One API key at 1 request/s opened 50 sessions in 80 ms: initialize was answered before
    admission. Now the second initialize within the second is 429, and no session is kept."""
    with trio.fail_after(20):
        async with http(config(**{"rate_limit.rate": 1.0, "rate_limit.burst": 0})) as port:
            first = Bearer(port, token=token())
            await first.initialize()
            second = Bearer(port, token=token())
            response = await second.post(second.message("initialize", {
                "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "flood", "version": "1"}}))
            assert response.status == 429 and "mcp-session-id" not in response.headers
            assert response.json()["error"]["code"] == -32029
        cfg = config(**{"rate_limit.rate": 1.0, "rate_limit.burst": 0})
        async with trio.open_nursery() as nursery:
            endpoint = await nursery.start(lambda task_status: serve_websocket(
                demo.server, cfg.to_limits(), port=0, authenticator=cfg.authenticator(), rate_limits=cfg.rate_limits(),
                task_status=task_status))
            url = f"ws://127.0.0.1:{endpoint.port}/"
            headers = [("authorization", f"Bearer {token()}")]
            async with open_websocket_url(url, extra_headers=headers) as a, open_websocket_url(url, extra_headers=headers) as b:
                assert "result" in await WsClient(a).request("initialize", {
                    "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "a", "version": "1"}})
                flood = await WsClient(b).request("initialize", {
                    "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "b", "version": "1"}})
                assert flood["error"]["code"] == -32029
            endpoint.shutdown()


# -- sessions ------------------------------------------------------------------------------------
async def test_sessions_per_principal_over_http() -> None:
    with trio.fail_after(20):
        async with http(config(**{"limits.max_sessions_per_principal": 2})) as port:
            opened = [Bearer(port, token=token()) for _ in range(2)]
            for client in opened:
                await client.initialize()
            third = Bearer(port, token=token())
            response = await third.post(third.message("initialize", {
                "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "third", "version": "1"}}))
            assert response.status == 429 and "retry-after" not in response.headers
            refused_for(response.json()["error"], "max_sessions_per_principal")
            await Bearer(port, token=token("bob")).initialize()  # someone else: a quota of their own
            assert (await opened[0].delete()).status == 204  # ada ends one: she may open another
            with trio.fail_after(5):
                while True:
                    retry = await third.post(third.message("initialize", {
                        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}))
                    if retry.status == 200:
                        break
                    await trio.sleep(0.02)  # the deleted session is still draining


async def test_sessions_per_principal_over_websocket() -> None:
    cfg = config(**{"limits.max_sessions_per_principal": 1})
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            endpoint = await nursery.start(lambda task_status: serve_websocket(
                demo.server, cfg.to_limits(), port=0, authenticator=cfg.authenticator(), task_status=task_status))
            url = f"ws://127.0.0.1:{endpoint.port}/"
            async with open_websocket_url(url, extra_headers=[("authorization", f"Bearer {token()}")]):
                with pytest.raises(ConnectionRejected) as rejected:
                    async with open_websocket_url(url, extra_headers=[("authorization", f"Bearer {token()}")]):
                        pass
                assert rejected.value.status_code == 429
                assert b"max_sessions_per_principal" in (rejected.value.body or b"")
                async with open_websocket_url(url, extra_headers=[("authorization", f"Bearer {token('bob')}")]):
                    pass
            endpoint.shutdown()
        # /ws on the HTTP port counts against the same quota as HTTP sessions.
        async with http(cfg) as port:
            await Bearer(port, token=token()).initialize()
            with pytest.raises(ConnectionRejected) as rejected:
                async with open_websocket_url(f"ws://127.0.0.1:{port}/ws", extra_headers=[("authorization", f"Bearer {token()}")]):
                    pass
            assert rejected.value.status_code == 429


# -- tasks, listen streams -----------------------------------------------------------------------
async def test_tasks_per_principal() -> None:
    async with serve_in_memory(demo.server, Limits(max_tasks_per_principal=1)) as (client, _, connection):
        connection.principal = ADA
        first = (await task_call(client, "tools/call", {"name": "slow_compute", "arguments": {"seconds": 60}}))["result"]
        assert first["resultType"] == "task"
        second = await task_call(client, "tools/call", {"name": "slow_compute", "arguments": {"seconds": 60}})
        refused_for(second["error"], "max_tasks_per_principal")
        await task_call(client, "tasks/cancel", {"taskId": first["taskId"]})


async def test_listen_streams_per_principal() -> None:
    async with serve_in_memory(demo.server, Limits(max_listens_per_principal=1)) as (client, supervisor, connection):
        connection.principal = ADA
        await client.send({"jsonrpc": "2.0", "id": client.new_id(), "method": "subscriptions/listen",
                           "params": {"_meta": META, "notifications": {"toolsListChanged": True}}})
        assert (await client.receive())["method"] == "notifications/subscriptions/acknowledged"
        async with connect_in_memory(supervisor, "second") as (other, other_connection):
            other_connection.principal = Principal("ada", frozenset({"read"}))  # the same caller
            refused_for((await stateless_call(other, "subscriptions/listen", {"notifications": {}}))["error"],
                        "max_listens_per_principal")
        supervisor.shutdown()


# -- subscriptions -------------------------------------------------------------------------------
def subscribable() -> Server:
    server = Server("subscribable")

    @server.resource("test://items/{item}")
    async def item(item: str) -> str:
        return item

    @server.resource("test://secret", scopes="admin")
    async def secret() -> str:
        return "s"

    return server


async def test_subscriptions_name_known_resources_and_are_bounded() -> None:
    limits = Limits(max_subscriptions_per_session=2, max_subscriptions_per_principal=3, max_uri_length=64)
    async with serve_in_memory(subscribable(), limits) as (client, supervisor, connection):
        connection.principal = ADA
        await client.initialize()

        async def subscribe(peer: Any, uri: str) -> dict[str, Any]:
            return await peer.request("resources/subscribe", {"uri": uri})

        assert (await subscribe(client, "test://nowhere"))["error"]["code"] == -32002  # unknown: not subscribed
        assert (await subscribe(client, "test://secret"))["error"]["code"] == -32003  # may not read it
        too_long = await subscribe(client, "test://items/" + "x" * 100)
        assert too_long["error"]["code"] == -32602 and "max_uri_length" in too_long["error"]["message"]
        assert "result" in await subscribe(client, "test://items/1")
        assert "result" in await subscribe(client, "test://items/1")  # again: still one
        assert "result" in await subscribe(client, "test://items/2")
        refused_for((await subscribe(client, "test://items/3"))["error"], "max_subscriptions_per_session")
        async with connect_in_memory(supervisor, "second") as (other, other_connection):
            other_connection.principal = Principal("ada", frozenset({"read"}))
            await other.initialize()
            assert "result" in await subscribe(other, "test://items/3")
            refused_for((await subscribe(other, "test://items/4"))["error"], "max_subscriptions_per_principal")
            assert "result" in await other.request("resources/unsubscribe", {"uri": "test://items/3"})
            assert "result" in await subscribe(other, "test://items/4")  # released, taken again
        # The second session ended: its subscription went back to ada's quota.
        assert supervisor.quotas.held("subscriptions", ADA) == 2
        assert supervisor.statistics()["subscriptions"] == 2


async def test_listen_streams_name_known_resources_and_are_bounded() -> None:
    limits = Limits(max_subscriptions_per_session=2, max_uri_length=64)
    async with serve_in_memory(subscribable(), limits) as (client, supervisor, _):
        too_many = await stateless_call(client, "subscriptions/listen", {"notifications": {
            "resourceSubscriptions": ["test://items/1", "test://items/2", "test://items/3"]}})
        assert too_many["error"]["code"] == -32602 and "max_subscriptions_per_session" in too_many["error"]["message"]
        too_long = await stateless_call(client, "subscriptions/listen", {"notifications": {
            "resourceSubscriptions": ["test://items/" + "x" * 100]}})
        assert too_long["error"]["code"] == -32602
        await client.send({"jsonrpc": "2.0", "id": client.new_id(), "method": "subscriptions/listen", "params": {
            "_meta": META, "notifications": {"resourceSubscriptions": ["test://items/1", "test://nowhere"]}}})
        ack = await client.receive()
        assert ack["params"]["notifications"]["resourceSubscriptions"] == ["test://items/1"]
        supervisor.shutdown()


def test_quota_limits_are_settings() -> None:
    names = ("max_sessions_per_principal", "max_tasks_per_principal", "max_listens_per_principal",
             "max_subscriptions_per_principal", "max_subscriptions_per_session", "max_uri_length")
    env = {f"MCP_TRIO_LIMITS_{name.upper()}": "7" for name in names}
    limits = load_config(None, env).to_limits()
    assert all(getattr(limits, name) == 7 for name in names)
    from mcp_trio._cli import build_parser
    from mcp_trio._config import overrides_from_args

    args = build_parser().parse_args(["serve", *(f"--{name.replace('_', '-')}=9" for name in names)])
    assert all(getattr(load_config(None, {}, overrides_from_args(args)).to_limits(), name) == 9 for name in names)
    with pytest.raises(ValueError):
        Limits(max_sessions_per_principal=0)
