"""One Host/Origin policy for every transport, and ``allowed_hosts`` as a setting.

The same matrix of Host and Origin values is sent to the three doors a network client can
knock on: ``POST /mcp`` and ``GET /ws`` on the HTTP port, and the WebSocket server's handshake.
Each door must give the same verdict, and the verdict the policy (``_gate.HostPolicy``) gives.
"""

from __future__ import annotations

import pytest
import trio

from mcp_trio import Limits, Server
from mcp_trio._config import ConfigError, load_config, overrides_from_args
from mcp_trio.transports._gate import HostPolicy, is_loopback_address, is_loopback_name
from mcp_trio.transports.http import serve_http
from mcp_trio.transports.websocket import serve_websocket


#: (Host, Origin or None, admitted on a loopback-bound server with no lists)
CASES = [
    ("localhost", None, True),
    ("127.0.0.5:1", None, True),  # all of 127.0.0.0/8 is loopback, on every transport
    ("app.localhost", "http://localhost:5173", True),  # *.localhost too (RFC 6761)
    ("[::1]:1", "http://127.0.0.1:3000", True),
    ("localhost", "https://evil.example", False),
    ("localhost", "null", False),
    ("localhost", "ws://localhost", False),
    ("evil.example", None, False),  # DNS rebinding: the name of the attacker's page
    ("[::1]evil.com", None, False),
]


async def _status(port: int, path: str, host: str, origin: str | None, upgrade: bool) -> int:
    head = [f"{'GET' if upgrade else 'POST'} {path} HTTP/1.1", f"Host: {host}"]
    if origin is not None:
        head.append(f"Origin: {origin}")
    body = b""
    if upgrade:
        head += ["Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                 "Sec-WebSocket-Version: 13"]
    else:
        body = (b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25",'
                b'"capabilities":{},"clientInfo":{"name":"t","version":"1"}}}')
        head += ["Accept: application/json, text/event-stream", "Content-Type: application/json",
                 f"Content-Length: {len(body)}"]
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    try:
        await stream.send_all(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        data = b""
        while b"\r\n" not in data:
            chunk = await stream.receive_some(4096)
            if not chunk:
                break
            data += chunk
        return int(data.split(b" ", 2)[1])
    finally:
        await stream.aclose()


async def test_every_door_gives_the_policys_verdict() -> None:
    policy = HostPolicy("127.0.0.1")
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            http_port = await nursery.start(lambda task_status: serve_http(Server("http"), Limits(), port=0, task_status=task_status))
            endpoint = await nursery.start(lambda task_status: serve_websocket(Server("ws"), Limits(), port=0, task_status=task_status))
            for host, origin, expected in CASES:
                assert policy.allows(host.encode(), None if origin is None else origin.encode()) is expected, (host, origin)
                verdicts = {
                    "POST /mcp": await _status(http_port, "/mcp", host, origin, upgrade=False),
                    "GET /ws (HTTP port)": await _status(http_port, "/ws", host, origin, upgrade=True),
                    "WebSocket server": await _status(endpoint.port, "/", host, origin, upgrade=True),
                }
                admitted = {door: status in (101, 200) for door, status in verdicts.items()}
                assert set(admitted.values()) == {expected}, (host, origin, verdicts)
                if not expected:
                    assert set(verdicts.values()) <= {400, 403}, (host, origin, verdicts)
            nursery.cancel_scope.cancel()


def test_the_defaults_and_the_lists() -> None:
    listed = HostPolicy("0.0.0.0", allowed_hosts=["mcp.example", "api.example:8443", "::1"],
                        allowed_origins=["https://app.example"])
    assert listed.host_allowed("mcp.example:1") and listed.host_allowed("api.example:8443") and listed.host_allowed("[::1]")
    assert not listed.host_allowed("api.example:8444") and not listed.host_allowed("localhost")  # a list is exact
    assert listed.origin_allowed("https://APP.example/") and not listed.origin_allowed("http://localhost")
    public = HostPolicy("0.0.0.0")  # names unknown: Host unchecked; Origin: same origin only
    assert public.any_host and public.host_allowed("anything.example")
    assert public.origin_allowed("https://mcp.example", "mcp.example") and not public.origin_allowed("http://localhost", "mcp.example")
    assert HostPolicy("localhost").loopback and HostPolicy("127.3.2.1").loopback and not HostPolicy("10.0.0.1").loopback
    with pytest.raises(ValueError, match="allowed host"):
        HostPolicy("127.0.0.1", allowed_hosts=["http://x.example/"])
    assert is_loopback_name("::ffff:127.0.0.1") and is_loopback_address("127.9.9.9") and not is_loopback_address("localhost")


def test_allowed_hosts_is_a_setting() -> None:
    from mcp_trio._cli import build_parser

    args = build_parser().parse_args(["serve", "--allowed-host", "mcp.example.com", "--allowed-host", "[::1]:8443"])
    config = load_config(None, {}, overrides_from_args(args))
    assert config.server.allowed_hosts == ("mcp.example.com", "[::1]:8443")
    assert load_config(None, {"MCP_TRIO_SERVER_ALLOWED_HOSTS": "a.example,b.example"}, {}).server.allowed_hosts == ("a.example", "b.example")
    with pytest.raises(ConfigError, match="allowed_hosts is set but names no host"):
        load_config(None, {"MCP_TRIO_SERVER_ALLOWED_HOSTS": " , "}, {})
    with pytest.raises(ConfigError, match="allowed host"):
        load_config(None, {"MCP_TRIO_SERVER_ALLOWED_HOSTS": "https://a.example"}, {})
