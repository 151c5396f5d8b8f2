"""Authentication, scopes and rate limits over real connections (HTTP and WebSocket).

The units (token verification, buckets) are tested in test_auth.py and test_ratelimit.py;
here a configured server is reached over sockets and must answer with the right HTTP status
and headers: 401 with a resource_metadata challenge, 403 insufficient_scope, 429 with
Retry-After, RFC 9728 metadata, and no token in any log line.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionRejected, open_websocket_url

from mcp_trio import Server
from mcp_trio._config import Config, load_config
from mcp_trio.auth import mint_token, secret_key
from mcp_trio.transports.http import serve_http
from mcp_trio.transports.websocket import serve_websocket
from tests.http_client import McpHttp, request
from tests.test_websocket import WsClient

SECRET = "a-development-secret-of-at-least-32-bytes!"
ISSUER = "https://issuer.test"
RESOURCE = "http://127.0.0.1/mcp"

app = Server("secured")


@app.tool(scopes=["read"])
async def look(text: str) -> str:
    """Anyone with read may look."""
    return text


@app.tool(scopes=["execute"])
async def launch() -> str:
    """Only execute (or admin) may launch."""
    return "launched"


def config(**rate: Any) -> Config:
    env = {
        "MCP_TRIO_AUTH_JWT_SECRET": SECRET,
        "MCP_TRIO_AUTH_JWT_ISSUER": ISSUER,
        "MCP_TRIO_SERVER_RESOURCE": RESOURCE,
    }
    overrides = {f"rate_limit.{k}": v for k, v in rate.items()}
    return load_config(None, env, overrides)


def token(*scopes: str, audience: str = RESOURCE, issuer: str = ISSUER, ttl: float = 600) -> str:
    return mint_token(secret_key(SECRET), subject="ada", issuer=issuer, audience=audience, scopes=scopes, ttl=ttl)


@dataclass
class Bearer(McpHttp):
    token: str | None = None

    def headers(self, **extra: str) -> dict[str, str]:
        headers = super().headers(**extra)
        if self.token is not None:
            headers.setdefault("authorization", f"Bearer {self.token}")
        return headers


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@asynccontextmanager
async def http_server(cfg: Config) -> AsyncIterator[int]:
    async with trio.open_nursery() as nursery:
        port = await nursery.start(lambda task_status: serve_http(
            app, cfg.to_limits(), port=0, authenticator=cfg.authenticator(), rate_limits=cfg.rate_limits(),
            task_status=task_status))
        try:
            yield port
        finally:
            nursery.cancel_scope.cancel()


async def test_http_refuses_without_a_valid_token_and_says_where_to_get_one() -> None:
    collect = _Collect()
    root = logging.getLogger()
    root.addHandler(collect)
    old_level = root.level
    root.setLevel(logging.DEBUG)
    bad_tokens = [token("read", audience="https://elsewhere.test"), token("read", issuer="https://evil.test"),
                  token("read", ttl=-120), token("read")[:-4] + "AAAA"]
    try:
        with trio.fail_after(20):
            async with http_server(config()) as port:
                anonymous = Bearer(port)
                response = await anonymous.post(anonymous.message("initialize", {}))
                assert response.status == 401
                challenge = response.headers["www-authenticate"]
                assert challenge.startswith("Bearer ") and "resource_metadata=" in challenge
                metadata_url = challenge.split('resource_metadata="', 1)[1].split('"', 1)[0]
                path = metadata_url.split("://", 1)[1].partition("/")[2]
                metadata = (await request(port, "GET", "/" + path)).json()
                assert metadata["resource"] == RESOURCE
                assert "header" in metadata["bearer_methods_supported"]
                for bad in bad_tokens:
                    refused = await Bearer(port, token=bad).post(anonymous.message("initialize", {}))
                    assert refused.status == 401, (refused.status, refused.body)
                    assert 'error="invalid_token"' in refused.headers["www-authenticate"]
    finally:
        root.removeHandler(collect)
        root.setLevel(old_level)
    text = "\n".join(collect.lines)
    for bad in bad_tokens:
        assert bad not in text
        assert bad.split(".")[1] not in text  # not even the payload


async def test_http_scopes_hide_and_refuse_with_insufficient_scope() -> None:
    with trio.fail_after(20):
        async with http_server(config()) as port:
            reader = Bearer(port, token=token("read"))
            await reader.initialize()
            listed = await reader.call("tools/list")
            assert [tool["name"] for tool in listed["result"]["tools"]] == ["look"]
            assert (await reader.call("tools/call", {"name": "look", "arguments": {"text": "hi"}}))["result"]["content"][0]["text"] == "hi"
            response = await reader.post(reader.message("tools/call", {"name": "launch"}))
            assert response.status == 403
            assert 'error="insufficient_scope"' in response.headers["www-authenticate"]
            body = response.json()
            assert body["error"]["code"] == -32003
            assert body["error"]["data"]["requiredScopes"] == ["execute"]

            admin = Bearer(port, token=token("admin"))
            await admin.initialize()
            names = sorted(tool["name"] for tool in (await admin.call("tools/list"))["result"]["tools"])
            assert names == ["launch", "look"]
            assert (await admin.call("tools/call", {"name": "launch"}))["result"]["content"][0]["text"] == "launched"


async def test_http_rate_limit_is_429_with_retry_after() -> None:
    with trio.fail_after(20):
        async with http_server(config(rate=0.5, burst=1)) as port:
            client = Bearer(port, token=token("read"))
            await client.initialize()  # charged like any request: one of the two tokens
            statuses = []
            for _ in range(2):
                response = await client.post(client.message("tools/call", {"name": "look", "arguments": {"text": "x"}}))
                statuses.append(response.status)
            assert statuses == [200, 429]
            assert int(response.headers["retry-after"]) >= 1
            error = response.json()["error"]
            assert error["code"] == -32029
            assert 0 < error["data"]["retryAfterMs"] <= 2000


@asynccontextmanager
async def ws_server(cfg: Config) -> AsyncIterator[str]:
    async with trio.open_nursery() as nursery:
        endpoint = await nursery.start(lambda task_status: serve_websocket(
            app, cfg.to_limits(), port=0, authenticator=cfg.authenticator(), rate_limits=cfg.rate_limits(),
            task_status=task_status))
        try:
            yield f"ws://127.0.0.1:{endpoint.port}/"
        finally:
            nursery.cancel_scope.cancel()


async def test_websocket_handshake_needs_a_valid_token() -> None:
    with trio.fail_after(20):
        async with ws_server(config()) as url:
            for headers in ([], [(b"authorization", f"Bearer {token('read', ttl=-120)}".encode())]):
                with pytest.raises(ConnectionRejected) as refused:
                    async with open_websocket_url(url, extra_headers=headers):
                        pass
                assert refused.value.status_code == 401
                assert b"resource_metadata=" in dict(refused.value.headers)[b"www-authenticate"]
            async with open_websocket_url(url, extra_headers=[(b"authorization", f"Bearer {token('read')}".encode())]) as ws:
                client = WsClient(ws)
                await client.initialize()
                listed = await client.request("tools/list")
                assert [tool["name"] for tool in listed["result"]["tools"]] == ["look"]
                refused_call = await client.request("tools/call", {"name": "launch"})
                assert refused_call["error"]["code"] == -32003


async def test_websocket_origin_from_elsewhere_is_refused_with_403() -> None:
    with trio.fail_after(20):
        async with ws_server(config()) as url:
            headers = [(b"authorization", f"Bearer {token('read')}".encode()), (b"origin", b"http://evil.example.com")]
            with pytest.raises(ConnectionRejected) as refused:
                async with open_websocket_url(url, extra_headers=headers):
                    pass
            assert refused.value.status_code == 403
