"""Attacks on the HTTP edge, over real sockets: framing, routing, headers, descriptors.

Every test drives a TCP socket with the exact bytes an attacker would send, so it tests the
server behind the port, whichever it is (the h1 engine by default; the gate in
``transports/_gate.py`` is what every server shares). What each finding was, and what happens
now, is the attack table in ``docs/security.md``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import h11
import pytest
import trio
from trio_websocket import ConnectionRejected, open_websocket_url

from mcp_trio import Limits, Server, demo
from mcp_trio._config import ConfigError, load_config
from mcp_trio.auth import mint_token, secret_key
from mcp_trio.transports.http import serve_http
from tests.http_client import ACCEPT_BOTH, request
from tests.served import serving
from tests.test_stateless import body_for, headers_for

SECRET = "a-development-secret-of-at-least-32-bytes!"
ISSUER = "https://issuer.test"
RESOURCE = "http://127.0.0.1/mcp"
TOKEN_TEXT = "SECRET-TOKEN-abc123"


async def raw(port: int, data: bytes, *, read_for: float = 2.0) -> tuple[bytes, bool]:
    """Send ``data``; everything the server sends back, and whether it closed the connection."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(data)
        received = b""
        with trio.move_on_after(read_for):
            while True:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    return received, True
                received += chunk
        return received, False


def head(port: int, method: str, path: str, *lines: str) -> bytes:
    return (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n" + "".join(f"{line}\r\n" for line in lines) + "\r\n").encode()


def responses(data: bytes) -> list[tuple[int, bytes]]:
    """The (status, body) of each HTTP response in ``data``, in order."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(data)
    out: list[tuple[int, bytes]] = []
    status, body = 0, b""
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError:
            break
        if isinstance(event, h11.Response):
            status, body = event.status_code, b""
        elif isinstance(event, h11.Data):
            body += bytes(event.data)
        elif isinstance(event, h11.EndOfMessage):
            out.append((status, body))
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                break
            try:
                conn.start_next_cycle()
                conn.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
                conn.send(h11.EndOfMessage())
            except h11.LocalProtocolError:
                break
        elif event is h11.NEED_DATA or isinstance(event, h11.ConnectionClosed):
            break
    return out


def bearer(*scopes: str, subject: str = "ada") -> str:
    return mint_token(secret_key(SECRET), subject=subject, issuer=ISSUER, audience=RESOURCE, scopes=scopes, ttl=600)


def auth_config(**server: Any) -> Any:
    env = {"MCP_TRIO_AUTH_JWT_SECRET": SECRET, "MCP_TRIO_AUTH_JWT_ISSUER": ISSUER, "MCP_TRIO_SERVER_RESOURCE": RESOURCE}
    return load_config(None, env, {f"server.{k}": v for k, v in server.items()})


# -- request smuggling (RFC 9112 6.3) --------------------------------------------------------------
PING = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'
INITIALIZE = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "smuggler", "version": "1"}}}).encode()


async def test_content_length_with_transfer_encoding_is_400_and_closed() -> None:
    """A front proxy that frames by Content-Length sees one request; one that frames by
    chunked sees a second, smuggled behind the first. Neither is served: 400, then close."""
    with trio.fail_after(10):
        async with serving(demo.server) as served:
            port = served.port
            smuggled = head(port, "GET", "/admin/stats")
            data = head(port, "POST", "/mcp", "Content-Type: application/json", f"Accept: {ACCEPT_BOTH}",
                        "Content-Length: 4", "Transfer-Encoding: chunked")
            data += b"%x\r\n%b\r\n0\r\n\r\n" % (len(INITIALIZE), INITIALIZE) + smuggled
            received, closed = await raw(port, data)
            answered = responses(received)
            assert [status for status, _ in answered] == [400], received
            assert closed and b"connection: close" in received.lower()
            assert b"ambiguous framing" in answered[0][1]


async def test_two_different_content_lengths_are_400_and_closed() -> None:
    with trio.fail_after(10):
        async with serving(demo.server) as served:
            port = served.port
            data = head(port, "POST", "/mcp", "Content-Type: application/json", f"Accept: {ACCEPT_BOTH}",
                        f"Content-Length: {len(PING)}", "Content-Length: 4") + PING + head(port, "GET", "/healthz")
            received, closed = await raw(port, data)
            assert [status for status, _ in responses(received)] == [400] and closed


async def test_two_equal_content_lengths_are_400_and_closed() -> None:
    with trio.fail_after(10):
        async with serving(demo.server) as served:
            port = served.port
            data = head(port, "POST", "/mcp", "Content-Type: application/json", f"Accept: {ACCEPT_BOTH}",
                        f"Content-Length: {len(INITIALIZE)}", f"Content-Length: {len(INITIALIZE)}") + INITIALIZE
            received, closed = await raw(port, data)
            assert [status for status, _ in responses(received)] == [400] and closed
            assert b"more than one content-length header" in received


async def test_routes_match_the_raw_path() -> None:
    """A proxy guarding /admin by prefix lets /%61dmin through: it must not be /admin here."""
    with trio.fail_after(10):
        async with serving(demo.server) as served:
            assert (await request(served.port, "GET", "/admin/stats")).status == 200  # loopback, no auth: served
            for disguised in ("/%61dmin/stats", "/%61dmin", "/admin%2Fstats", "/%6Dcp", "/%77s", "/metric%73"):
                response = await request(served.port, "GET", disguised)
                assert response.status == 404, (disguised, response.status)


# -- headers: repeated, hostile Host and Origin, nothing echoed -----------------------------------
async def test_two_session_ids_are_refused() -> None:
    with trio.fail_after(10):
        async with serving(demo.server) as served:
            first, second = served.client(), served.client()
            await first.initialize()
            await second.initialize()
            body = json.dumps(first.message("ping")).encode()
            lines = [f"{k}: {v}" for k, v in first.headers().items()] + [
                f"Mcp-Session-Id: {second.session_id}", f"Content-Length: {len(body)}", "Connection: close"]
            received, _ = await raw(served.port, head(served.port, "POST", "/mcp", *lines) + body)
            ((status, answer),) = responses(received)
            assert status == 400 and b"more than one mcp-session-id header" in answer


async def test_hosts_and_origins_that_only_start_like_loopback_are_refused() -> None:
    with trio.fail_after(10):
        async with serving(demo.server) as served:
            port = served.port
            for host in ("[::1]evil.com", "[::1]:80evil.com", "127.0.0.1:80:81", "127.0.0.1@evil.com", "localhost evil.com"):
                received, _ = await raw(port, f"GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
                assert responses(received)[0][0] in (400, 403), (host, received)
            for origin in ("http://[::1]evil.com", "http://[::1]:80evil.com"):
                response = await request(port, "GET", "/healthz", headers={"origin": origin})
                assert response.status == 403, origin
            assert (await request(port, "GET", "/healthz", headers={"host": "[::1]:8000"})).status == 200
            async with trio.open_nursery():
                with pytest.raises(ConnectionRejected):
                    async with open_websocket_url(f"ws://127.0.0.1:{port}/ws", extra_headers=[("origin", "http://[::1]evil.com")]):
                        pass


async def test_error_bodies_and_logs_never_quote_header_values(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with trio.fail_after(10):
        async with serving(demo.server) as served:
            port = served.port
            client = served.client()
            await client.initialize()
            bad = [
                await request(port, "GET", "/healthz", headers={"host": f"{TOKEN_TEXT}.example"}),
                await request(port, "POST", "/mcp", headers={**client.headers(), "mcp-protocol-version": TOKEN_TEXT},
                              body=json.dumps(client.message("ping")).encode()),
                await request(port, "GET", "/mcp", headers={"accept": "text/event-stream", "mcp-session-id": client.session_id or "",
                                                            "last-event-id": TOKEN_TEXT}),
                await request(port, "POST", "/mcp", headers={**headers_for("tools/list"), "mcp-protocol-version": TOKEN_TEXT},
                              body=b'{"jsonrpc":"2.0","method":"notifications/x","params":{}}'),
            ]
            for response in bad:
                assert response.status >= 400 and TOKEN_TEXT.encode() not in response.body, response
            received, _ = await raw(port, head(port, "GET", "/mcp", f"Authorization : Bearer {TOKEN_TEXT}"), read_for=1.0)
            assert received.startswith(b"HTTP/1.1 400") and TOKEN_TEXT.encode() not in received
    assert not [r for r in caplog.records if TOKEN_TEXT in r.getMessage()]


# -- /metrics ----------------------------------------------------------------------------------
async def test_metrics_need_the_admin_scope_when_auth_is_on() -> None:
    """/metrics names every tool, admin-scoped ones included: with authentication configured
    it needs a credential with the admin scope, unless configured otherwise."""
    app = Server("metered")

    @app.tool(scopes=["admin"])
    async def rotate_keys() -> str:
        return "rotated"

    cfg = auth_config()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(lambda task_status: serve_http(
                app, port=0, authenticator=cfg.authenticator(), metrics=cfg.server.metrics, task_status=task_status))
            anonymous = await request(port, "GET", "/metrics")
            assert anonymous.status == 401 and b"rotate_keys" not in anonymous.body
            reader = await request(port, "GET", "/metrics", headers={"authorization": f"Bearer {bearer('read')}"})
            assert reader.status == 403 and "insufficient_scope" in reader.headers["www-authenticate"]
            admin = await request(port, "GET", "/metrics", headers={"authorization": f"Bearer {bearer('admin')}"})
            assert admin.status == 200 and b"mcp_requests_in_flight" in admin.body
            nursery.cancel_scope.cancel()
        for access, status in (("loopback", 200), ("public", 200), ("scope:metrics", 401)):
            cfg = auth_config(metrics=access)
            async with trio.open_nursery() as nursery:
                port = await nursery.start(lambda task_status: serve_http(
                    app, port=0, authenticator=cfg.authenticator(), metrics=cfg.server.metrics, task_status=task_status))
                assert (await request(port, "GET", "/metrics")).status == status, access
                if access.startswith("scope:"):
                    token = bearer("metrics", subject="prometheus")
                    assert (await request(port, "GET", "/metrics", headers={"authorization": f"Bearer {token}"})).status == 200
                nursery.cancel_scope.cancel()
    with pytest.raises(ConfigError, match="metrics"):
        auth_config(metrics="everyone")
    from mcp_trio.transports.http import metrics_access

    with pytest.raises(ValueError, match="needs authentication"):
        metrics_access("scope:admin", None)  # serve_http checks it before binding
    assert metrics_access(None, None) == "public"  # no authentication: nothing else is guarded either


# -- Expect: 100-continue ------------------------------------------------------------------------
async def test_expect_continue_is_not_answered_before_the_size_check() -> None:
    with trio.fail_after(10):
        async with serving(demo.server, Limits(max_message_size=1000)) as served:
            port = served.port
            received, _ = await raw(port, head(port, "POST", "/mcp", "Content-Type: application/json", f"Accept: {ACCEPT_BOTH}",
                                               "Expect: 100-continue", "Content-Length: 100000"), read_for=1.0)
            assert received.startswith(b"HTTP/1.1 413"), received[:40]


# -- the WebSocket server's own HTTP handshake ----------------------------------------------------
async def test_websocket_handshake_refusals_quote_nothing(caplog: pytest.LogCaptureFixture) -> None:
    """A malformed header line (``Authorization : Bearer …``) got a 400 quoting the whole
    line, token included; Host and Origin refusals quoted their values too."""
    from mcp_trio.transports.websocket import serve_websocket

    caplog.set_level(logging.DEBUG)
    upgrade = ("Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13",
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==")
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            endpoint = await nursery.start(lambda task_status: serve_websocket(demo.server, port=0, task_status=task_status))
            port = endpoint.port
            cases = {
                "malformed header": (head(port, "GET", "/", *upgrade, f"Authorization : Bearer {TOKEN_TEXT}"), 400),
                "hostile host": ((f"GET / HTTP/1.1\r\nHost: {TOKEN_TEXT}.example\r\n" + "".join(f"{u}\r\n" for u in upgrade)
                                  + "\r\n").encode(), 403),
                "loopback lookalike": ((f"GET / HTTP/1.1\r\nHost: [::1]evil.com\r\n" + "".join(f"{u}\r\n" for u in upgrade)
                                        + "\r\n").encode(), 403),
                "hostile origin": (head(port, "GET", "/", *upgrade, f"Origin: http://{TOKEN_TEXT}.example"), 403),
                "origin lookalike": (head(port, "GET", "/", *upgrade, "Origin: http://[::1]evil.com"), 403),
                "framing": (head(port, "GET", "/", *upgrade, "Content-Length: 0", "Transfer-Encoding: chunked"), 400),
            }
            for name, (data, status) in cases.items():
                received, closed = await raw(port, data)
                assert received.startswith(b"HTTP/1.1 %d" % status), (name, received[:60])
                assert TOKEN_TEXT.encode() not in received and closed, name
            endpoint.shutdown()
    assert not [r for r in caplog.records if TOKEN_TEXT in r.getMessage()]
