"""The operator page over plain HTTP: what is served to whom, with which headers; the overview
it draws from; secrets kept out of it; and the CSRF rule on admin actions.

The page in a real browser is ``test_admin_page_browser.py``; these pin the HTTP contract with
exact requests (the raw h11 client), served in-process on port 0.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import trio

from mcp_trio import Limits, Server
from mcp_trio._limiter import RateLimits, ToolLimit
from mcp_trio.auth import (
    ApiKey,
    ApiKeyStore,
    Authenticator,
    HttpClient,
    Introspector,
    JwtVerifier,
    generate_api_key,
    load_secret,
)
from mcp_trio.client import RPCError, connect
from mcp_trio.transports import admin_page
from mcp_trio.transports.admin import AdminApi
from mcp_trio.transports.admin_page import (
    CONTENT_SECURITY_POLICY,
    AdminPage,
    ServedSettings,
    public_url,
)
from tests.http_client import McpHttp, open_request, request
from tests.served import Served, serving
from tests.test_stateless import body_for, headers_for

HTML = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"  # what Chromium sends


def make_app() -> Server:
    app = Server("page-test", version="3.0")

    @app.tool(tags=["math"])
    async def add(a: int, b: int) -> int:
        return a + b

    @app.tool
    async def fail() -> str:
        raise RuntimeError("broken on purpose")

    return app


async def get(served: Served, path: str, accept: str | None = None, token: str | None = None) -> Any:
    headers = {}
    if accept is not None:
        headers["accept"] = accept
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    return await request(served.port, "GET", path, headers=headers)


async def overview(served: Served, token: str | None = None) -> dict[str, Any]:
    response = await get(served, "/admin/overview", "application/json", token)
    assert response.status == 200, response.body
    return response.json()  # type: ignore[no-any-return]


# -- the page and its files -------------------------------------------------------------------
async def test_get_admin_is_the_page_for_a_browser_and_the_json_index_otherwise() -> None:
    with trio.fail_after(10):
        async with serving(make_app()) as served:
            page = await get(served, "/admin", HTML)
            assert page.status == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
            assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
            for directive in ("default-src 'none'", "script-src 'self'", "frame-ancestors 'none'", "form-action 'none'"):
                assert directive in CONTENT_SECURITY_POLICY
            assert "unsafe-inline" not in CONTENT_SECURITY_POLICY and "unsafe-eval" not in CONTENT_SECURITY_POLICY
            assert page.headers["x-frame-options"] == "DENY"
            assert page.headers["cache-control"] == "no-store"
            assert page.headers["x-content-type-options"] == "nosniff"
            assert page.headers["vary"] == "Accept"
            html = page.body.decode()
            # No inline code for the CSP to allow: scripts by src only, no handlers, no styles.
            assert re.findall(r"<script[^>]*>", html) == ['<script src="/admin/assets/admin.js" defer>']
            assert not re.search(r"\son[a-z]+=", html) and " style=" not in html and "<style" not in html
            assert "page-test" not in html  # the page is the same bytes for everyone: no data in it

            for accept in ("application/json", "*/*", None):
                index = await get(served, "/admin", accept)
                assert index.status == 200 and index.content_type == "application/json"
                assert index.headers["vary"] == "Accept" and index.headers["cache-control"] == "no-store"
                assert "GET /admin/overview" in index.json()["routes"]

            for name, kind in (("admin.js", "text/javascript"), ("admin.css", "text/css"), ("favicon.svg", "image/svg+xml")):
                asset = await get(served, f"/admin/assets/{name}")
                assert asset.status == 200 and asset.content_type == kind and asset.body
                assert asset.headers["cache-control"] == "no-store" and asset.headers["x-content-type-options"] == "nosniff"
            assert (await get(served, "/admin/assets/../admin.py")).status == 404
            assert (await get(served, "/admin/assets/nope.js")).status == 404
            post = await request(served.port, "POST", "/admin/assets/admin.js", body=b"")
            assert post.status == 405 and post.headers["allow"] == "GET, HEAD"
            # JSON answers under /admin are not to be cached either.
            assert (await get(served, "/admin/tools")).headers["cache-control"] == "no-store"


async def test_the_host_and_origin_guard_covers_the_page_its_files_and_the_overview() -> None:
    with trio.fail_after(10):
        async with serving(make_app()) as served:
            for path in ("/admin", "/admin/assets/admin.js", "/admin/overview"):
                rebound = await request(served.port, "GET", path, headers={"host": f"evil.example:{served.port}", "accept": HTML})
                assert rebound.status == 403 and b"Host or Origin" in rebound.body
                foreign = await request(served.port, "GET", path, headers={"origin": "https://evil.example", "accept": HTML})
                assert foreign.status == 403 and b"Host or Origin" in foreign.body
            action = await request(served.port, "POST", "/admin/tools/add/disable", body=b"",
                                   headers={"origin": "https://evil.example", "x-mcp-trio-admin": "1"})
            assert action.status == 403 and served.supervisor.disabled_tools == set()


async def test_the_script_writes_text_never_html() -> None:
    with trio.fail_after(10):
        async with serving(make_app()) as served:
            script = (await get(served, "/admin/assets/admin.js")).body.decode()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in script, sink
    assert "localStorage" not in script and "document.cookie" not in script
    assert 'sessionStorage.setItem(TOKEN_KEY' in script


async def test_page_and_files_are_refused_to_remote_peers_without_an_authenticator() -> None:
    with trio.fail_after(10):
        async with serving(make_app()) as served:
            api = AdminApi(served.supervisor, None)
            surface = AdminPage(api, {}, ServedSettings(Limits()))
            headers = [(b"accept", HTML.encode())]
            for path in ("/admin", "/admin/assets/admin.js", "/admin/overview"):
                status, _, body, extra = await surface("GET", path, headers, "192.0.2.7")
                assert status == 403 and b"loopback" in body and (b"cache-control", b"no-store") in extra
                status, _, _, _ = await surface("GET", path, headers, "127.0.0.1")
                assert status == 200


def admin_and_reader() -> tuple[Authenticator, str, str, str]:
    """An API-key authenticator: (it, a key with the admin scope, that key's digest, a read-only key)."""
    admin_key, admin_hash = generate_api_key()
    read_key, read_hash = generate_api_key()
    authenticator = Authenticator(api_keys=ApiKeyStore([ApiKey("ops", admin_hash, frozenset({"admin"})),
                                                        ApiKey("reader", read_hash, frozenset({"read"}))]))
    return authenticator, admin_key, admin_hash, read_key


async def test_with_an_authenticator_the_page_is_a_sign_in_form_and_its_data_needs_the_admin_scope() -> None:
    authenticator, admin_key, _, read_key = admin_and_reader()
    with trio.fail_after(10):
        async with serving(make_app(), authenticator=authenticator) as served:
            page = await get(served, "/admin", HTML)
            assert page.status == 200 and b'id="sign-in-form"' in page.body
            assert (await get(served, "/admin/assets/admin.js")).status == 200
            refused = await get(served, "/admin/overview")
            assert refused.status == 401 and refused.headers["www-authenticate"].startswith("Bearer")
            assert (await get(served, "/admin/overview", token=read_key)).status == 403
            assert (await get(served, "/admin", "application/json")).status == 401
            data = await overview(served, admin_key)
            assert data["settings"]["auth"]["api_keys"] == {"count": 2, "prefix": "mcpk_"}


# -- the overview -----------------------------------------------------------------------------
async def test_overview_counts_sessions_by_transport_and_era() -> None:
    with trio.fail_after(20):
        async with serving(make_app()) as served:
            http = McpHttp(served.port)
            await http.initialize()
            async with connect(served.ws_url, era=None) as handshake, connect(served.ws_url, era=None) as bare:
                await handshake.initialize()
                await bare.ping()  # connected, no initialize: the 2026-07-28 way (or not yet)
                params = {"notifications": {"toolsListChanged": True}}
                async with open_request(served.port, "POST", headers=headers_for("subscriptions/listen"),
                                        body=body_for("subscriptions/listen", params, rid=7)) as listen:
                    await listen.next_event()  # acknowledged: the stream is open
                    sessions = (await overview(served))["sessions"]
                    assert sessions["total"] == 3
                    assert sessions["by_transport"] == [
                        {"transport": "Streamable HTTP", "era": "handshake", "version": "2025-11-25", "count": 1},
                        {"transport": "WebSocket", "era": "2026-07-28 / not initialized", "version": "", "count": 1},
                        {"transport": "WebSocket", "era": "handshake", "version": "2025-11-25", "count": 1},
                    ]
                    assert sessions["listen_streams"] == {"total": 1, "stateless_http": 1}
                    rows = {row["transport"] + " " + row["era"]: row for row in sessions["listed"]}
                    row = rows["Streamable HTTP handshake"]
                    assert row["client"] == "raw-http-test-client 1.0" and row["peer"] == "127.0.0.1"
                    assert re.fullmatch(r"s\d+", row["id"])
                    # The Mcp-Session-Id is a capability: it never appears in the overview.
                    assert http.session_id is not None
                    assert http.session_id not in json.dumps(sessions)


async def test_overview_lists_at_most_max_sessions_listed_and_counts_all(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admin_page._overview, "MAX_SESSIONS_LISTED", 2)
    with trio.fail_after(20):
        async with serving(make_app()) as served, \
                connect(served.ws_url, era=None) as a, connect(served.ws_url, era=None) as b, connect(served.ws_url, era=None) as c:
            for client in (a, b, c):
                await client.initialize()
            sessions = (await overview(served))["sessions"]
            assert sessions["total"] == 3 and len(sessions["listed"]) == 2 and sessions["listed_max"] == 2
            assert [s["id"] for s in sessions["listed"]] == sorted((s["id"] for s in sessions["listed"]), key=lambda i: int(i[1:]))


async def test_overview_counts_requests_errors_and_rate_limit_refusals() -> None:
    policy = RateLimits(rate=1000, burst=1000, tools={"add": ToolLimit(rate=0.001, burst=0)})
    with trio.fail_after(20):
        async with serving(make_app(), rate_limits=policy) as served:
            async with connect(served.ws_url, era=None) as ws:
                await ws.initialize()
                assert (await ws.call_tool("add", {"a": 1, "b": 2})).structured_content == {"result": 3}
                with pytest.raises(RPCError) as refused:
                    await ws.call_tool("add", {"a": 1, "b": 2})
                assert refused.value.code == -32029
                assert (await ws.call_tool("fail", {})).is_error is True
                with pytest.raises(RPCError) as unknown:
                    await ws.request("no/such/method")
                assert unknown.value.code == -32601
                data = await overview(served)
            requests = data["requests"]
            assert requests["rate_limited"] == 1
            assert requests["tool_errors"] == 1  # fail's isError result
            assert requests["errors"] == 2  # JSON-RPC error replies: the refusal and the unknown method
            by_method = {row["method"]: row for row in requests["by_method"]}
            assert by_method["tools/call"]["ok"] == 2 and by_method["tools/call"]["error"] == 1
            assert by_method["other"]["error"] == 1
            tools = {tool["name"]: tool for tool in data["tools"]}
            assert tools["add"]["stats"]["calls"] == 1 and tools["fail"]["stats"]["errors"] == 1
            assert data["tags"] == [{"tag": "math", "enabled": True, "tools": ["add"]}]
            assert data["settings"]["rate_limits"]["tools"] == {"add": {"cost": 1.0, "rate": 0.001, "burst": 0}}
            assert data["server"]["name"] == "page-test" and data["server"]["uptime_seconds"] >= 0


async def test_settings_show_what_the_server_was_built_with_and_no_secret() -> None:
    hmac_secret = "hmac-secret-" + "x" * 40
    client_secret = "introspection-client-secret-" + "y" * 20
    admin_key, admin_hash = generate_api_key()
    jwt = JwtVerifier([load_secret(hmac_secret, ["HS256"])], issuer="https://idp.example", audience="https://mcp.example/mcp",
                      algorithms=["HS256"], scope_claims=["scope", "roles"])
    introspection = Introspector(HttpClient(), client_id="mcp-server", client_secret=client_secret,
                                 endpoint="https://user:pass-in-url@idp.example/introspect?token_hint=abc")
    authenticator = Authenticator(jwt=jwt, introspection=introspection,
                                  api_keys=ApiKeyStore([ApiKey("ops", admin_hash, frozenset({"admin"}))]),
                                  resource="https://mcp.example/mcp")
    limits = Limits(max_message_size=1_000_000, max_sessions=77)
    with trio.fail_after(20):
        async with serving(make_app(), limits, authenticator=authenticator, rate_limits=RateLimits(rate=5, burst=9),
                           allowed_origins=["https://ops.example"]) as served:
            response = await get(served, "/admin/overview", token=admin_key)
            assert response.status == 200
            text = response.body.decode()
            settings = response.json()["settings"]
    for secret in (hmac_secret, client_secret, admin_key, admin_hash, "pass-in-url", "token_hint"):
        assert secret not in text, secret
    assert settings["limits"]["max_message_size"] == 1_000_000 and settings["limits"]["max_sessions"] == 77
    assert settings["rate_limits"]["rate_per_principal"] == 5 and settings["rate_limits"]["burst"] == 9
    assert settings["transport"]["allowed_origins"] == ["https://ops.example"]
    assert settings["transport"]["bind_host"] == "127.0.0.1" and settings["transport"]["tls"] is False
    auth = settings["auth"]
    assert auth["jwt"] == {"keys": "1 static key(s)", "issuer": "https://idp.example", "audiences": ["https://mcp.example/mcp"],
                           "algorithms": ["HS256"], "scope_claims": ["scope", "roles"], "leeway_seconds": 30.0}
    assert auth["introspection"]["endpoint"] == "https://idp.example/introspect"
    assert auth["introspection"]["client_credentials"] == "configured (hidden)"
    assert auth["api_keys"]["count"] == 1 and auth["resource"] == "https://mcp.example/mcp"


def test_public_url_drops_credentials_query_and_fragment() -> None:
    assert public_url("https://u:p@idp.example:8443/jwks?key=1#x") == "https://idp.example:8443/jwks"
    assert public_url("http://[::1]:9000/a") == "http://[::1]:9000/a"
    assert public_url("https://idp.example:99999/") == "(unparsable URL hidden)"
    assert public_url(None) is None


# -- CSRF ---------------------------------------------------------------------------------------
async def act(served: Served, headers: dict[str, str], path: str = "/admin/tools/add/disable") -> Any:
    return await request(served.port, "POST", path, headers=headers, body=b"")


async def test_admin_actions_from_a_browser_must_be_same_origin_and_carry_the_header() -> None:
    with trio.fail_after(20):
        async with serving(make_app()) as served:
            own = f"http://127.0.0.1:{served.port}"
            other = f"http://127.0.0.1:{served.port + 1 if served.port < 65535 else served.port - 1}"
            header = {"x-mcp-trio-admin": "1"}
            refused = [
                ({"origin": own}, "needs the x-mcp-trio-admin header"),
                ({"origin": other, **header}, "cross-origin admin action refused (Origin is not this server)"),
                ({"origin": f"http://localhost:{served.port}", **header}, "cross-origin"),
                ({"origin": own, "sec-fetch-site": "same-site", **header}, "cross-site admin action refused"),
                ({"sec-fetch-site": "cross-site", **header}, "cross-site"),
                ({"sec-fetch-site": "same-origin", **header}, "must carry its Origin"),
                ({"referer": f"{other}/attack.html", **header}, "Referer is not this server"),
                ({"origin": own, "x-mcp-trio-admin": "yes"}, "needs the x-mcp-trio-admin header"),
            ]
            for headers, why in refused:
                response = await act(served, headers)
                assert response.status == 403, headers
                error = response.json()["error"]
                assert why in error and other not in error, (headers, error)  # never quotes a header
            # Two Origin headers: which one would the rule believe? Neither.
            status, _, body, _ = await served_page(served)("POST", "/admin/tools/add/disable",
                                                          [(b"origin", own.encode()), (b"origin", other.encode()),
                                                           (b"host", own[7:].encode()), (b"x-mcp-trio-admin", b"1")], "127.0.0.1")
            assert status == 403 and b"repeated origin" in body
            assert served.supervisor.disabled_tools == set()

            # The page's own fetch: same origin, with the header.
            response = await act(served, {"origin": own, "sec-fetch-site": "same-origin", **header})
            assert response.status == 200 and response.json()["enabled"] is False
            response = await act(served, {"referer": f"{own}/admin", **header}, "/admin/tools/add/enable")
            assert response.status == 200 and response.json()["enabled"] is True
            # Not a browser (mcp-trio admin, curl): no marks, no header needed, as before.
            response = await act(served, {}, "/admin/tags/math/disable")
            assert response.status == 200 and served.supervisor.disabled_tags == {"math"}
            # Reads are not actions: a GET with a foreign Origin is not refused by this rule
            # (the browser does not let the other page read the answer: no CORS header is sent).
            response = await request(served.port, "GET", "/admin/tools", headers={"origin": other})
            assert response.status == 200 and "access-control-allow-origin" not in response.headers


async def test_a_cors_preflight_is_never_granted() -> None:
    with trio.fail_after(10):
        async with serving(make_app()) as served:
            response = await request(served.port, "OPTIONS", "/admin/tools/add/disable", headers={
                "origin": f"http://127.0.0.1:{served.port + 1}", "access-control-request-method": "POST",
                "access-control-request-headers": "x-mcp-trio-admin"})
            assert response.status == 403  # an OPTIONS is an action to the rule: foreign Origin refused
            assert not any(name.startswith("access-control-") for name in response.headers)
            response = await request(served.port, "OPTIONS", "/admin/tools/add/disable")
            assert response.status == 405 and not any(name.startswith("access-control-") for name in response.headers)


def served_page(served: Served) -> AdminPage:
    """A second AdminPage on the same supervisor: for header lists the raw client cannot send."""
    return AdminPage(AdminApi(served.supervisor, None), {}, ServedSettings(Limits()))
