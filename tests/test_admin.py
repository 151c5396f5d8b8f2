"""The admin surface: ``/admin`` on the HTTP app, and ``mcp-trio admin`` calling it.

Served in-process on port 0. Without an authenticator only loopback peers are served (the
tests connect from 127.0.0.1; a remote peer is tried on ``AdminApi`` directly); with one,
a credential with the admin scope is needed (401 without, 403 without the scope).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio

from mcp_trio import Server
from mcp_trio._cli import main as cli_main
from mcp_trio.auth import ApiKey, ApiKeyStore, Authenticator, generate_api_key
from mcp_trio.client import connect
from mcp_trio.transports._gate import is_loopback_address
from mcp_trio.transports.admin import AdminApi
from tests.served import Served, serving, write_plugin


def make_app() -> Server:
    app = Server("admin-test")

    @app.tool(tags=["math"], category="arithmetic", version="1.1", examples=[{"a": 1, "b": 2}])
    async def add(a: int, b: int) -> int:
        """Adds."""
        return a + b

    @app.tool(tags=["math"], dangerous=True, deprecated="Use add.", timeout=5)
    async def subtract(a: int, b: int) -> int:
        return a - b

    @app.tool
    async def echo(text: str) -> str:
        return text

    return app


def keys() -> tuple[Authenticator, str, str]:
    admin_key, admin_hash = generate_api_key()
    read_key, read_hash = generate_api_key()
    store = ApiKeyStore([ApiKey("ops", admin_hash, frozenset({"admin"})), ApiKey("reader", read_hash, frozenset({"read"}))])
    return Authenticator(api_keys=store), admin_key, read_key


async def admin_json(served: Served, method: str, path: str, token: str | None = None, status: int = 200) -> Any:
    response = await served.admin(method, path, token)
    assert response.status == status, (response.status, response.body)
    assert response.content_type == "application/json"
    return response.json()


async def test_tools_listing_switching_and_list_changed_on_live_sessions() -> None:
    app = make_app()
    with trio.fail_after(20):
        async with serving(app) as served:
            changed = trio.Event()

            def on_notification(method: str, params: Any) -> None:
                if method == "notifications/tools/list_changed":
                    changed.set()

            async with connect(served.ws_url, era=None, on_notification=on_notification) as ws:
                await ws.initialize()
                assert (await ws.call_tool("add", {"a": 2, "b": 3})).structured_content == {"result": 5}

                listing = await admin_json(served, "GET", "/admin/tools")
                tools = {t["name"]: t for t in listing["tools"]}
                assert sorted(tools) == ["add", "echo", "subtract"]
                add = tools["add"]
                assert add["enabled"] and add["disabled_by"] is None and add["tags"] == ["math"]
                assert (add["category"], add["version"], add["examples"]) == ("arithmetic", "1.1", [{"a": 1, "b": 2}])
                assert add["stats"]["calls"] == 1 and add["stats"]["errors"] == 0 and add["stats"]["last_used"]
                subtract = tools["subtract"]
                assert subtract["destructive"] is True and subtract["deprecated"] is True
                assert subtract["deprecation_message"] == "Use add." and subtract["timeout"] == 5
                assert subtract["stats"]["calls"] == 0
                assert (await admin_json(served, "GET", "/admin/tools/echo"))["name"] == "echo"

                # Off by name: gone from tools/list, refused with a clear error, sessions told.
                answer = await admin_json(served, "POST", "/admin/tools/add/disable")
                assert answer == {"tool": "add", "enabled": False, "disabled_by": "disabled", "changed": ["add"]}
                with trio.fail_after(2):
                    await changed.wait()
                assert sorted(t.name for t in await ws.list_tools()) == ["echo", "subtract"]
                http = served.client()
                await http.initialize()
                refused = await http.call("tools/call", {"name": "add", "arguments": {"a": 1, "b": 1}})
                assert refused["error"]["message"] == "tool 'add' is disabled on this server"

                # Off by tag; on by name does not override the tag; on by tag brings both back.
                changed = trio.Event()
                answer = await admin_json(served, "POST", "/admin/tags/math/disable")
                assert answer["tools"] == ["add", "subtract"] and answer["changed"] == ["subtract"]
                with trio.fail_after(2):
                    await changed.wait()
                assert sorted(t.name for t in await ws.list_tools()) == ["echo"]
                answer = await admin_json(served, "POST", "/admin/tools/add/enable")
                assert answer["enabled"] is False and answer["disabled_by"] == "tag 'math' disabled"
                answer = await admin_json(served, "POST", "/admin/tags/math/enable")
                assert answer["changed"] == ["add", "subtract"]
                assert sorted(t.name for t in await ws.list_tools()) == ["add", "echo", "subtract"]
                assert (await ws.call_tool("add", {"a": 1, "b": 1})).structured_content == {"result": 2}

                # Statistics, in the admin surface and in /metrics.
                stats = await admin_json(served, "GET", "/admin/stats")
                assert stats["tools"]["add"]["calls"] == 2 and stats["tools"]["subtract"]["calls"] == 0
                assert stats["server"]["tools"] == 3 and stats["server"]["disabled_tags"] == []
                metrics = await served.metrics()
                assert 'mcp_tool_calls_total{tool="add"} 2' in metrics
                assert 'tool="subtract"' not in metrics  # never called: no series yet


async def test_routes_methods_and_unknowns() -> None:
    with trio.fail_after(10):
        async with serving(make_app()) as served:
            index = await admin_json(served, "GET", "/admin")
            assert "POST /admin/reload" in index["routes"]
            response = await served.admin("POST", "/admin/tools")
            assert response.status == 405 and response.headers["allow"] == "GET, HEAD"
            response = await served.admin("GET", "/admin/tools/add/disable")
            assert response.status == 405 and response.headers["allow"] == "POST"
            assert (await admin_json(served, "GET", "/admin/tools/nope", status=404))["error"] == "unknown tool: 'nope'"
            await admin_json(served, "POST", "/admin/tools/nope/disable", status=404)
            await admin_json(served, "GET", "/admin/nothing", status=404)
            # A tag no tool has yet may be switched off: tools that come later are born off.
            assert (await admin_json(served, "POST", "/admin/tags/future/disable"))["tools"] == []
            # No plugins configured: nothing to reload.
            assert "no plugins" in (await admin_json(served, "POST", "/admin/reload", status=409))["error"]
            assert (await admin_json(served, "GET", "/admin/plugins"))["plugins"] == []


async def test_without_an_authenticator_only_loopback_peers_are_served() -> None:
    assert is_loopback_address("127.0.0.1") and is_loopback_address("127.8.0.1") and is_loopback_address("::1")
    assert is_loopback_address("::ffff:127.0.0.1")
    assert not is_loopback_address("10.0.0.1") and not is_loopback_address("::ffff:10.0.0.1")
    assert not is_loopback_address(None) and not is_loopback_address("not-an-ip")

    class _Supervisor:
        pass

    api = AdminApi(_Supervisor(), None)  # type: ignore[arg-type]
    status, body, _ = await api("GET", "/admin/tools", [], "192.0.2.7")
    assert status == 403 and b"loopback" in body
    status, body, _ = await api("GET", "/admin/tools", [], None)
    assert status == 403


async def test_with_an_authenticator_the_admin_scope_is_needed() -> None:
    authenticator, admin_key, read_key = keys()
    with trio.fail_after(10):
        async with serving(make_app(), authenticator=authenticator) as served:
            response = await served.admin("GET", "/admin/tools")
            assert response.status == 401 and response.headers["www-authenticate"].startswith("Bearer")
            response = await served.admin("GET", "/admin/tools", "mcpk_not_a_key")
            assert response.status == 401
            response = await served.admin("POST", "/admin/tools/add/disable", read_key)
            assert response.status == 403
            assert 'error="insufficient_scope"' in response.headers["www-authenticate"]
            assert 'scope="admin"' in response.headers["www-authenticate"]
            assert (await admin_json(served, "GET", "/admin/tools", admin_key))["tools"]
            assert (await admin_json(served, "POST", "/admin/tools/add/disable", admin_key))["enabled"] is False


async def test_anonymous_callers_get_401() -> None:
    _, admin_hash = generate_api_key()
    authenticator = Authenticator(api_keys=ApiKeyStore([ApiKey("ops", admin_hash, frozenset({"admin"}))]),
                                  allow_anonymous=True, anonymous_scopes=["read"])
    with trio.fail_after(10):
        async with serving(make_app(), authenticator=authenticator) as served:
            response = await served.admin("GET", "/admin/stats")
            assert response.status == 401 and "www-authenticate" in response.headers


async def test_reload_endpoint_loads_new_and_reports_broken_plugins(tmp_path: Path) -> None:
    app = make_app()
    app.use_plugins(tmp_path, watch=False)
    with trio.fail_after(20):
        async with serving(app, expect_errors=True) as served:
            write_plugin(tmp_path, "extra", '''
                from mcp_trio import Plugin
                plugin = Plugin("extra", version="0.2")

                @plugin.tool(tags=["extra"])
                async def triple(x: int) -> int:
                    return 3 * x
            ''')
            write_plugin(tmp_path, "broken", "def oops(:\n")
            answer = await admin_json(served, "POST", "/admin/reload")
            assert answer["loaded"] == ["extra"] and list(answer["failed"]) == ["broken"]
            assert answer["failed"]["broken"].startswith("SyntaxError")
            assert answer["watching"] is False
            plugins = {p["name"]: p for p in (await admin_json(served, "GET", "/admin/plugins"))["plugins"]}
            assert plugins["extra"]["loaded"] and plugins["extra"]["tools"] == ["triple"]
            assert not plugins["broken"]["loaded"] and "SyntaxError" in plugins["broken"]["traceback"]
            tool = await admin_json(served, "GET", "/admin/tools/triple")
            assert tool["plugin"] == "extra" and tool["tags"] == ["extra"]
            async with connect(served.ws_url, era=None) as ws:
                await ws.initialize()
                assert (await ws.call_tool("triple", {"x": 4})).structured_content == {"result": 12}
            assert [r.args[0] for r in served.log.errors()] == ["broken"]  # type: ignore[index]


# -- the command line -------------------------------------------------------------------------
async def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = await trio.to_thread.run_sync(cli_main, list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


async def test_cli_admin_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    authenticator, admin_key, read_key = keys()
    token_file = tmp_path / "token"
    token_file.write_text(admin_key + "\n")
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    write_plugin(plugins, "extra", '''
        from mcp_trio import Plugin
        plugin = Plugin(version="0.2")

        @plugin.tool
        async def triple(x: int) -> int:
            return 3 * x
    ''')
    app = make_app()
    app.use_plugins(plugins, watch=False)
    with trio.fail_after(60):
        async with serving(app, authenticator=authenticator) as served:
            auth = ["--url", served.base, "--token-file", str(token_file)]
            code, out, _ = await run_cli(capsys, "admin", "list", *auth)
            assert code == 0
            lines = out.splitlines()
            assert lines[0].split() == ["TOOL", "STATE", "TAGS", "PLUGIN", "CALLS", "ERRORS", "LAST", "USED"]
            assert lines[-1].split()[:4] == ["triple", "on", "-", "extra"]

            code, out, _ = await run_cli(capsys, "admin", "disable", "echo", "--tag", "math", *auth)
            assert code == 0
            assert out.splitlines() == ["tool echo: disabled (disabled)", "tag math: disabled (add, subtract)"]
            code, out, _ = await run_cli(capsys, "admin", "list", *auth)
            assert "off: tag 'math' disabled, deprecated" in out
            code, out, _ = await run_cli(capsys, "admin", "enable", "--tag", "math", "echo", *auth, "--json")
            assert code == 0 and [a.get("enabled") for a in json.loads(out)] == [True, True]

            code, out, _ = await run_cli(capsys, "admin", "stats", *auth)
            assert code == 0 and out.splitlines()[1].split()[:2] == ["TOOL", "CALLS"]
            code, out, _ = await run_cli(capsys, "admin", "reload", *auth)
            assert (code, out) == (0, "loaded: extra\n")
            code, out, _ = await run_cli(capsys, "admin", "plugins", *auth)
            assert code == 0 and out.splitlines()[1].split()[:4] == ["extra", "loaded", "0.2", "1"]

            code, _, err = await run_cli(capsys, "admin", "list", "--url", served.base, "--token", read_key)
            assert code == 1 and err.startswith("mcp-trio admin: 403 forbidden")
            code, _, err = await run_cli(capsys, "admin", "list", "--url", served.base)
            assert code == 1 and "401 unauthorized" in err
            code, _, err = await run_cli(capsys, "admin", "disable", *auth)
            assert code == 2 and "name a tool" in err
    code, _, err = await run_cli(capsys, "admin", "stats", "--url", served.base, "--timeout", "5")
    assert code == 2 and "cannot reach" in err
