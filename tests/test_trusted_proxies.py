"""Trusted proxies: who the client is, behind a proxy, and why a client cannot say it itself.

The rule (``_gate.TrustedProxies.client``, sans-io): only when the TCP peer is a trusted proxy
are forwarding headers read, from the right, and the first address that is not a trusted
proxy is the client. Then over real sockets: the HTTP app (``/admin``'s loopback rule, rate
limits, the session's peer) and the WebSocket server, with clients connecting from chosen
loopback addresses (``127.0.0.2``...), and through a real HAProxy adding ``X-Forwarded-For``.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import h11
import pytest
import trio
from trio_websocket import open_websocket_url

from mcp_trio import Limits, Server
from mcp_trio._config import ConfigError, load_config
from mcp_trio._limiter import RateLimits
from mcp_trio.transports._gate import MAX_FORWARDED_HOPS, ClientAddress, TrustedProxies
from mcp_trio.transports.http import serve_http
from mcp_trio.transports.websocket import serve_websocket
from tests.cluster_fixtures import HAProxy
from tests.http_client import ACCEPT_BOTH, INIT_PARAMS, Exchange, Response

XFF = b"x-forwarded-for"


def client_of(proxies: TrustedProxies, peer: str | None, *headers: tuple[bytes, bytes]) -> ClientAddress:
    return proxies.client(peer, list(headers))


# -- the rule, sans-io ---------------------------------------------------------------------------
def test_headers_from_an_untrusted_peer_are_ignored() -> None:
    proxies = TrustedProxies(["10.0.0.0/8"])
    assert client_of(proxies, "203.0.113.9", (XFF, b"127.0.0.1"), (b"x-forwarded-proto", b"https")) == ("203.0.113.9", None)
    assert client_of(proxies, None, (XFF, b"198.51.100.1")) == (None, None)


def test_the_rightmost_untrusted_address_is_the_client() -> None:
    proxies = TrustedProxies(["10.0.0.0/8", "192.0.2.7"])
    # The client wrote "1.2.3.4, 127.0.0.1" itself; the edge proxy appended what it saw.
    assert client_of(proxies, "10.1.1.1", (XFF, b"1.2.3.4, 127.0.0.1, 198.51.100.20, 192.0.2.7")).address == "198.51.100.20"
    # Several header lines are one list, in order; ports and brackets are taken off.
    assert client_of(proxies, "10.1.1.1", (XFF, b"6.6.6.6"), (XFF, b"[2001:db8::5]:4711, 10.2.2.2")).address == "2001:db8::5"
    assert client_of(proxies, "10.1.1.1", (XFF, b"198.51.100.3:5555")).address == "198.51.100.3"
    # Every hop trusted: the leftmost one. No header: the peer itself.
    assert client_of(proxies, "10.1.1.1", (XFF, b"10.9.9.9, 10.8.8.8")).address == "10.9.9.9"
    assert client_of(proxies, "10.1.1.1") == ("10.1.1.1", None)
    # IPv4-mapped peers are their IPv4 address.
    assert client_of(proxies, "::ffff:10.1.1.1", (XFF, b"198.51.100.4")).address == "198.51.100.4"


def test_an_entry_that_is_no_address_ends_the_walk_at_the_proxy_that_wrote_it() -> None:
    proxies = TrustedProxies(["10.0.0.0/8"])
    assert client_of(proxies, "10.1.1.1", (XFF, b"198.51.100.1, unknown, 10.3.3.3")).address == "10.3.3.3"
    assert client_of(proxies, "10.1.1.1", (XFF, b"198.51.100.1, garbage")).address == "10.1.1.1"


def test_forwarding_chains_are_read_within_bounds() -> None:
    proxies = TrustedProxies(["10.0.0.0/8"])
    trusted_hops = ", ".join(f"10.0.0.{i}" for i in range(1, MAX_FORWARDED_HOPS + 10)).encode()
    # More trusted hops than are read: the walk stops at the bound, on a trusted hop.
    named = client_of(proxies, "10.1.1.1", (XFF, b"198.51.100.1, " + trusted_hops)).address
    assert named is not None and named.startswith("10.0.0.")
    # A huge value is read from its right end only; a cut entry is never taken for an address.
    huge = b"1" * 100_000 + b"2.3.4.5, 198.51.100.9"
    assert client_of(proxies, "10.1.1.1", (XFF, huge)).address == "198.51.100.9"
    assert client_of(proxies, "10.1.1.1", (XFF, b"1" * 100_000 + b"2.3.4.5, 10.0.0.1")).address == "10.0.0.1"


def test_the_scheme_comes_from_x_forwarded_proto_or_forwarded() -> None:
    proxies = TrustedProxies(["10.0.0.0/8"])
    assert client_of(proxies, "10.1.1.1", (XFF, b"198.51.100.1"), (b"x-forwarded-proto", b"HTTPS")) == ("198.51.100.1", "https")
    assert client_of(proxies, "10.1.1.1", (b"x-forwarded-proto", b"gopher")).scheme is None
    # One proto per hop: the client's own hop's.
    assert client_of(proxies, "10.1.1.1", (XFF, b"198.51.100.1, 10.2.2.2"),
                     (b"x-forwarded-proto", b"https, http")) == ("198.51.100.1", "https")
    rfc = TrustedProxies(["10.0.0.0/8"], headers="forwarded")
    forwarded = (b"forwarded", b'for=6.6.6.6;proto=http, for="[2001:db8:cafe::17]:4711";proto=https, for=10.2.2.2')
    assert client_of(rfc, "10.1.1.1", forwarded) == ("2001:db8:cafe::17", "https")
    assert client_of(rfc, "10.1.1.1", (b"forwarded", b"for=_hidden;proto=https, for=10.2.2.2")).address == "10.2.2.2"
    # Each family is read only when it is the one configured: the other is the client's own.
    assert client_of(rfc, "10.1.1.1", (XFF, b"198.51.100.1")) == ("10.1.1.1", None)
    assert client_of(proxies, "10.1.1.1", (b"forwarded", b"for=198.51.100.1")) == ("10.1.1.1", None)


def test_trusted_proxies_are_settings_that_fail_closed(tmp_path: Path) -> None:
    config = load_config(env={"MCP_TRIO_SERVER_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.7",
                              "MCP_TRIO_SERVER_PROXY_HEADERS": "forwarded"})
    assert config.server.trusted_proxies == ("10.0.0.0/8", "192.0.2.7") and config.server.proxy_headers == "forwarded"
    file = tmp_path / "server.toml"
    file.write_text('[server]\ntrusted_proxies = ["2001:db8::/32"]\n')
    assert load_config(file, {}, {"server.trusted_proxies": ["127.0.0.1"]}).server.trusted_proxies == ("127.0.0.1",)
    with pytest.raises(ConfigError, match="trusted proxy 'proxy.internal' must be an IP address or network"):
        load_config(env={"MCP_TRIO_SERVER_TRUSTED_PROXIES": "proxy.internal"})
    with pytest.raises(ConfigError, match="trusted_proxies is set but names no proxy"):
        load_config(env={"MCP_TRIO_SERVER_TRUSTED_PROXIES": ","})
    with pytest.raises(ValueError, match="not an IP address or network"):
        TrustedProxies(["10.0.0.0/33"])


# -- over real sockets ---------------------------------------------------------------------------
async def request_from(source: str, port: int, method: str, path: str, headers: dict[str, str] | None = None,
                       body: bytes | None = None) -> Response:
    """One HTTP request on a connection from ``source`` (a loopback address of our choosing)."""
    sock = trio.socket.socket()
    await sock.bind((source, 0))
    await sock.connect(("127.0.0.1", port))
    async with trio.SocketStream(sock) as stream:
        exchange = Exchange(stream)
        head = {"host": f"127.0.0.1:{port}", **(headers or {})}
        if body is not None:
            head["content-length"] = str(len(body))
        data = exchange.conn.send(h11.Request(method=method, target=path, headers=list(head.items())))
        if body is not None:
            data += exchange.conn.send(h11.Data(data=body))
        data += exchange.conn.send(h11.EndOfMessage())
        await stream.send_all(data)
        await exchange.read_head()
        return Response(exchange.status, exchange.headers, await exchange.read_body())


def initialize(source: str, port: int, **headers: str) -> Any:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": INIT_PARAMS}).encode()
    extra = {name.replace("_", "-"): value for name, value in headers.items()}
    return request_from(source, port, "POST", "/mcp", {"accept": ACCEPT_BOTH, "content-type": "application/json",
                                                        **extra}, body)


def app() -> Server:
    server = Server("behind-proxies")

    @server.tool
    async def echo(text: str) -> str:
        return text

    return server


ONE_PER_CLIENT = RateLimits(rate=0.001, burst=0)  # one request per caller, then -32029 / 429


@pytest.mark.parametrize("http2", [False, True], ids=["h1", "hypercorn"])
async def test_http_believes_only_trusted_peers(nursery: trio.Nursery, http2: bool) -> None:
    # 127.0.0.1 is the proxy; 127.0.0.2 is a client connecting directly.
    port = await nursery.start(partial(serve_http, app(), Limits(), port=0, trusted_proxies=["127.0.0.1/32"],
                                       rate_limits=ONE_PER_CLIENT, http2=http2))
    with trio.fail_after(20):
        # /admin's loopback rule: through the proxy, a remote client is remote...
        remote = await request_from("127.0.0.1", port, "GET", "/admin/tools", {"x-forwarded-for": "203.0.113.5"})
        assert remote.status == 403 and b"loopback" in remote.body
        # ...and a client naming itself loopback from an untrusted peer is not believed either way.
        direct = await request_from("127.0.0.2", port, "GET", "/admin/tools", {"x-forwarded-for": "203.0.113.5"})
        assert direct.status == 200
        # Rate limits key anonymous callers by the address the proxy names: one bucket each.
        assert (await initialize("127.0.0.1", port, x_forwarded_for="198.51.100.1")).status == 200
        assert (await initialize("127.0.0.1", port, x_forwarded_for="198.51.100.2")).status == 200
        again = await initialize("127.0.0.1", port, x_forwarded_for="198.51.100.1")
        assert again.status == 429 and again.json()["error"]["code"] == -32029
        # A direct client rotating a spoofed header does not get a fresh bucket.
        assert (await initialize("127.0.0.3", port, x_forwarded_for="192.0.2.1")).status == 200
        spoofed = await initialize("127.0.0.3", port, x_forwarded_for="192.0.2.2")
        assert spoofed.status == 429
        # The sessions are the clients' (as the operator page lists them).
        overview = (await request_from("127.0.0.2", port, "GET", "/admin/overview")).json()
        peers = {row["peer"] for row in overview["sessions"]["listed"]}
        assert peers == {"198.51.100.1", "198.51.100.2", "127.0.0.3"}
        transport = overview["settings"]["transport"]
        assert (transport["trusted_proxies"], transport["proxy_headers"]) == (["127.0.0.1/32"], "x-forwarded")
        # /ws on the HTTP port: the same client, the same bucket.
        async with open_websocket_url(f"ws://127.0.0.1:{port}/ws", extra_headers=[(XFF, b"198.51.100.9")]) as ws:
            await ws.send_message(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": INIT_PARAMS}))
            assert "result" in json.loads(await ws.get_message())
        assert (await initialize("127.0.0.1", port, x_forwarded_for="198.51.100.9")).status == 429


async def test_the_websocket_server_believes_only_trusted_peers(nursery: trio.Nursery) -> None:
    async def peers_and_codes(trusted: list[str]) -> tuple[list[Any], set[str | None]]:
        async with trio.open_nursery() as inner:
            endpoint = await inner.start(partial(serve_websocket, app(), Limits(), port=0, trusted_proxies=trusted,
                                                 rate_limits=ONE_PER_CLIENT))
            codes: list[Any] = []
            peers: set[str | None] = set()
            url = f"ws://127.0.0.1:{endpoint.port}/"
            for address in ("198.51.100.1", "198.51.100.2", "198.51.100.1"):
                async with open_websocket_url(url, extra_headers=[(XFF, address.encode())]) as ws:
                    await ws.send_message(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": INIT_PARAMS}))
                    reply = json.loads(await ws.get_message())
                    codes.append(reply.get("error", {}).get("code"))
                    peers |= {connection.peer for connection in endpoint.supervisor.connections}
            endpoint.shutdown()
        return codes, peers

    with trio.fail_after(20):
        # The proxy (127.0.0.1) is trusted: each named client has its own bucket.
        codes, peers = await peers_and_codes(["127.0.0.1"])
        assert codes == [None, None, -32029] and peers == {"198.51.100.1", "198.51.100.2"}
        # Not trusted: the header is the client's own word and is ignored.
        codes, peers = await peers_and_codes(["10.0.0.0/8"])
        assert codes == [None, -32029, -32029] and peers == {"127.0.0.1"}


class ForwardingHAProxy(HAProxy):
    """The shared HAProxy, adding ``X-Forwarded-For`` (``option forwardfor``) as deployments do."""

    def command(self) -> list[str]:
        argv = super().command()
        text = self.config.read_text()
        self.config.write_text(text.replace("    option http-server-close\n", "    option http-server-close\n    option forwardfor\n"))
        return argv


async def test_through_a_real_haproxy_the_client_is_the_one_haproxy_saw(nursery: trio.Nursery, tmp_path: Path) -> None:
    port = await nursery.start(partial(serve_http, app(), Limits(), port=0, trusted_proxies=["127.0.0.1"],
                                       rate_limits=ONE_PER_CLIENT))
    proxy = ForwardingHAProxy(tmp_path / "haproxy", [("127.0.0.1", port)])
    proxy.start()
    try:
        with trio.fail_after(20):
            # The client, at 127.0.0.2, claims to be 198.51.100.66; HAProxy appends 127.0.0.2.
            first = await initialize("127.0.0.2", proxy.port, x_forwarded_for="198.51.100.66")
            assert first.status == 200
            # A new claim is no new bucket: HAProxy's own entry decides.
            assert (await initialize("127.0.0.2", proxy.port, x_forwarded_for="198.51.100.67")).status == 429
            # Another client behind the same proxy has its own.
            assert (await initialize("127.0.0.4", proxy.port)).status == 200
            overview = (await request_from("127.0.0.2", port, "GET", "/admin/overview")).json()
            assert {row["peer"] for row in overview["sessions"]["listed"]} == {"127.0.0.2", "127.0.0.4"}
            # /admin through the proxy: the client (127.0.0.2) is loopback, so allowed; the spoofed
            # entry to its left changes nothing.
            assert (await request_from("127.0.0.2", proxy.port, "GET", "/admin/tools",
                                       {"x-forwarded-for": "203.0.113.1"})).status == 200
    finally:
        proxy.stop()
