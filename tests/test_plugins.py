"""Plugins: loading from a directory and from entry points, hot reload, failures, clashes.

Most tests run the server in memory (``serve_in_memory``) with the watcher off and call
``reload()`` themselves, so every step is deterministic. The end-to-end ones serve over
HTTP on port 0 with the directory watched, write files the way an editor does, and wait for
``list_changed`` on a WebSocket session and a Streamable HTTP session at once.
"""

from __future__ import annotations

import logging
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import trio

from mcp_trio import Plugin, Server
from mcp_trio._cli import build_parser
from mcp_trio._config import PluginsConfig, load_config, overrides_from_args
from mcp_trio.plugins._manager import ENTRY_POINT_GROUP, MODULE_PREFIX
from mcp_trio.serving._supervisor import Supervisor
from mcp_trio.client import connect
from tests.helpers import RawClient, connect_in_memory, serve_in_memory, spawn_stdio, stdio_command
from tests.served import serving, write_plugin

GREET_V1 = '''
    from mcp_trio import Plugin

    plugin = Plugin("greetings", version="1", tags=["greet"])

    @plugin.tool
    async def greet(name: str) -> str:
        """Greets someone."""
        return f"v1: hello {name}"
'''

GREET_V2 = '''
    from mcp_trio import Plugin

    plugin = Plugin("greetings", version="2", tags=["greet"])

    @plugin.tool
    async def greet(name: str) -> str:
        """Greets someone, better."""
        return f"v2: hello {name}"

    @plugin.tool
    async def wave() -> str:
        return "o/"
'''

BROKEN = '''
    from mcp_trio import Plugin

    plugin = Plugin()

    @plugin.tool
    async def greet(name: str) -> str:
        return "never" +
'''


def make_app() -> Server:
    app = Server("plugged")

    @app.tool
    async def base() -> str:
        """The application's own tool."""
        return "base"

    return app


async def call(client: RawClient, name: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    reply = await client.request("tools/call", {"name": name, "arguments": arguments or {}})
    return reply


def text_of(reply: dict[str, Any]) -> str:
    assert "result" in reply, reply
    return reply["result"]["content"][0]["text"]


async def tool_names(client: RawClient) -> list[str]:
    reply = await client.request("tools/list")
    return sorted(tool["name"] for tool in reply["result"]["tools"])


def is_list_changed(kind: str = "tools") -> Any:
    return lambda m: m.get("method") == f"notifications/{kind}/list_changed"


# -- loading ----------------------------------------------------------------------------------
async def test_directory_plugins_are_served_with_their_metadata(tmp_path: Path) -> None:
    write_plugin(tmp_path, "greetings", GREET_V1)
    write_plugin(tmp_path, "_helper", "raise RuntimeError('files starting with _ are not plugins')")
    (tmp_path / "notes.txt").write_text("not python")
    app = make_app()
    app.use_plugins(tmp_path, watch=False)
    with trio.fail_after(10):
        async with serve_in_memory(app) as (client, _, _):
            await client.initialize()
            assert await tool_names(client) == ["base", "greet"]
            assert text_of(await call(client, "greet", {"name": "ada"})) == "v1: hello ada"
            listed = (await client.request("tools/list"))["result"]["tools"]
            greet = next(t for t in listed if t["name"] == "greet")
            assert greet["_meta"]["tags"] == ["greet"]  # the plugin's tags reach its tools
            status = app.plugins.status()  # type: ignore[union-attr]
            (only,) = status["plugins"]
            assert only["name"] == "greetings" and only["loaded"] and only["version"] == "1"
            assert only["tools"] == ["greet"] and only["error"] is None
            assert app.plugins.owner_of_tool("greet") == "greetings"  # type: ignore[union-attr]
            assert app.plugins.owner_of_tool("base") is None  # type: ignore[union-attr]
            assert f"{MODULE_PREFIX}greetings" in sys.modules


async def test_a_broken_plugin_is_logged_once_with_its_traceback_and_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_plugin(tmp_path, "broken", BROKEN)
    write_plugin(tmp_path, "missing", "import mcp_trio_no_such_module\n")
    write_plugin(tmp_path, "empty", "x = 1\n")
    write_plugin(tmp_path, "greetings", GREET_V1)
    app = make_app()
    app.use_plugins(tmp_path, watch=False)
    caplog.set_level(logging.ERROR, logger="mcp_trio.plugins")
    with trio.fail_after(10):
        async with serve_in_memory(app) as (client, _, _):
            await client.initialize()
            assert await tool_names(client) == ["base", "greet"]
            assert text_of(await call(client, "greet", {"name": "x"})) == "v1: hello x"
    records = [r for r in caplog.records if r.name == "mcp_trio.plugins"]
    assert sorted(r.args[0] for r in records) == ["broken", "empty", "missing"]  # type: ignore[index]
    assert all(r.levelno == logging.ERROR and r.exc_info is not None for r in records)
    by_name = {p["name"]: p for p in app.plugins.status()["plugins"]}  # type: ignore[union-attr]
    assert by_name["broken"]["error"].startswith("SyntaxError") and not by_name["broken"]["loaded"]
    assert by_name["missing"]["error"].startswith("ModuleNotFoundError")
    assert "neither `plugin = Plugin(...)`, `register(plugin)` nor a Tool" in by_name["empty"]["error"]
    assert 'broken.py", line' in by_name["broken"]["traceback"]


async def test_register_function_with_resources_and_prompts(tmp_path: Path) -> None:
    write_plugin(tmp_path, "library", '''
        from mcp_trio import Plugin

        def register(plugin: Plugin) -> None:
            plugin.version = "3.1"

            @plugin.tool(category="books", version="3.1", examples=[{"isbn": "123"}])
            async def lookup(isbn: str) -> dict:
                return {"isbn": isbn, "title": "Dune"}

            @plugin.resource("library://shelves/{shelf}")
            async def shelf(shelf: str) -> str:
                return f"shelf {shelf}"

            @plugin.prompt
            async def recommend(genre: str) -> str:
                return f"Recommend a {genre} book."
    ''')
    app = make_app()
    app.use_plugins(tmp_path, watch=False)
    with trio.fail_after(10):
        async with serve_in_memory(app) as (client, _, _):
            await client.initialize()
            reply = await call(client, "lookup", {"isbn": "9"})
            assert reply["result"]["structuredContent"] == {"isbn": "9", "title": "Dune"}
            read = await client.request("resources/read", {"uri": "library://shelves/scifi"})
            assert read["result"]["contents"][0]["text"] == "shelf scifi"
            prompt = await client.request("prompts/get", {"name": "recommend", "arguments": {"genre": "noir"}})
            assert prompt["result"]["messages"][0]["content"]["text"] == "Recommend a noir book."
            listed = next(t for t in (await client.request("tools/list"))["result"]["tools"] if t["name"] == "lookup")
            assert listed["_meta"] == {"category": "books", "version": "3.1", "examples": [{"isbn": "123"}]}

            # Deleting the file takes all of it away, and every kind of list is announced.
            (tmp_path / "library.py").unlink()
            report = await app.plugins.reload()  # type: ignore[union-attr]
            assert report.removed == ["library"]
            for kind in ("tools", "resources", "prompts"):
                await client.receive_until(is_list_changed(kind))
            assert await tool_names(client) == ["base"]
            assert (await client.request("prompts/list"))["result"]["prompts"] == []
            missing = await client.request("resources/read", {"uri": "library://shelves/scifi"})
            assert missing["error"]["code"] == -32002
            assert f"{MODULE_PREFIX}library" not in sys.modules


async def test_entry_point_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "mtp_demo_ep.py").write_text(
        "from mcp_trio import Plugin\n"
        "plugin = Plugin(version='0.9')\n"
        "@plugin.tool\n"
        "async def from_package() -> str:\n"
        "    return 'packaged'\n"
        "def extra(plugin):\n"
        "    @plugin.tool\n"
        "    async def from_function() -> str:\n"
        "        return 'registered'\n"
    )
    info = site / "mtp_demo_ep-0.9.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mtp-demo-ep\nVersion: 0.9\n")
    (info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\n"
        "demo_module = mtp_demo_ep\n"
        "demo_function = mtp_demo_ep:extra\n"
        "demo_broken = mtp_demo_ep_missing\n"
    )
    monkeypatch.syspath_prepend(str(site))
    caplog.set_level(logging.ERROR, logger="mcp_trio.plugins")
    app = make_app()
    app.use_plugins(entry_points=True)
    with trio.fail_after(10):
        async with serve_in_memory(app) as (client, _, _):
            await client.initialize()
            assert await tool_names(client) == ["base", "from_function", "from_package"]
            assert text_of(await call(client, "from_package")) == "packaged"
            assert text_of(await call(client, "from_function")) == "registered"
    states = {p["name"]: p for p in app.plugins.status()["plugins"]}  # type: ignore[union-attr]
    assert states["demo_module"]["kind"] == "entry_point" and states["demo_module"]["version"] == "0.9"
    assert not states["demo_broken"]["loaded"] and "mtp_demo_ep_missing" in states["demo_broken"]["error"]
    assert [r.args[0] for r in caplog.records if r.name == "mcp_trio.plugins"] == ["demo_broken"]  # type: ignore[index]


async def test_a_plugin_cannot_take_names_it_does_not_own(tmp_path: Path) -> None:
    write_plugin(tmp_path, "greetings", GREET_V1)
    write_plugin(tmp_path, "usurper", '''
        from mcp_trio import Plugin
        plugin = Plugin()

        @plugin.tool
        async def base() -> str:
            return "stolen"
    ''')
    write_plugin(tmp_path, "zcopycat", '''
        from mcp_trio import Plugin
        plugin = Plugin()

        @plugin.tool
        async def greet(name: str) -> str:
            return "copied"
    ''')
    app = make_app()
    app.use_plugins(tmp_path, watch=False)
    with trio.fail_after(10):
        async with serve_in_memory(app) as (client, _, _):
            await client.initialize()
            assert text_of(await call(client, "base")) == "base"
            assert text_of(await call(client, "greet", {"name": "x"})) == "v1: hello x"
            states = {p["name"]: p for p in app.plugins.status()["plugins"]}  # type: ignore[union-attr]
            assert "tool 'base'" in states["usurper"]["error"]
            assert "tool 'greet'" in states["zcopycat"]["error"]
            # Once the owner lets go of the name, the other plugin may take it.
            write_plugin(tmp_path, "greetings", '''
                from mcp_trio import Plugin
                plugin = Plugin()
            ''')
            report = await app.plugins.reload()  # type: ignore[union-attr]
            assert report.loaded == ["greetings", "zcopycat"] and list(report.failed) == ["usurper"]
            assert text_of(await call(client, "greet", {"name": "x"})) == "copied"


# -- reloading --------------------------------------------------------------------------------
async def test_running_calls_finish_on_their_code_new_calls_get_the_new_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = types.ModuleType("mcp_trio_test_gate")
    gate.started = trio.Event()  # type: ignore[attr-defined]
    gate.release = trio.Event()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "mcp_trio_test_gate", gate)
    write_plugin(tmp_path, "which", '''
        import mcp_trio_test_gate as gate
        from mcp_trio import Plugin

        VERSION = "v1"
        plugin = Plugin()

        @plugin.tool
        async def which() -> str:
            gate.started.set()
            await gate.release.wait()
            return VERSION  # a global: a reload in place would change it under this call
    ''')
    app = make_app()
    app.use_plugins(tmp_path, watch=False)
    with trio.fail_after(10):
        async with serve_in_memory(app) as (client, supervisor, _):
            await client.initialize()
            version = supervisor.registry.version
            old_answer: list[dict[str, Any]] = []
            async with trio.open_nursery() as nursery:
                async def old_call() -> None:
                    old_answer.append(await call(client, "which"))

                nursery.start_soon(old_call)
                await gate.started.wait()
                write_plugin(tmp_path, "which", '''
                    from mcp_trio import Plugin

                    VERSION = "v2"
                    plugin = Plugin()

                    @plugin.tool
                    async def which() -> str:
                        return VERSION
                ''')
                report = await app.plugins.reload()  # type: ignore[union-attr]
                assert report.loaded == ["which"]
                assert supervisor.registry.version == version + 1
                async with connect_in_memory(supervisor, "second") as (other, _):
                    await other.initialize()
                    assert text_of(await call(other, "which")) == "v2"
                assert not old_answer
                gate.release.set()  # type: ignore[attr-defined]
            assert text_of(old_answer[0]) == "v1"


async def test_a_broken_edit_keeps_the_last_good_version(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_plugin(tmp_path, "greetings", GREET_V1)
    app = make_app()
    app.use_plugins(tmp_path, watch=False)
    caplog.set_level(logging.ERROR, logger="mcp_trio.plugins")
    with trio.fail_after(10):
        async with serve_in_memory(app) as (client, supervisor, _):
            await client.initialize()
            for broken in (BROKEN, "import mcp_trio_no_such_module\n",
                           "from mcp_trio import Plugin\nplugin = Plugin()\n@plugin.tool\nasync def greet(x: 'NoSuchType') -> str: ...\n"):
                version = supervisor.registry.version
                write_plugin(tmp_path, "greetings", broken)
                report = await app.plugins.reload()  # type: ignore[union-attr]
                assert list(report.failed) == ["greetings"]
                assert supervisor.registry.version == version  # nothing published
                assert text_of(await call(client, "greet", {"name": "x"})) == "v1: hello x"
            state = app.plugins.plugins["greetings"]  # type: ignore[union-attr]
            assert state.loads == 1 and state.failures == 3 and state.error is not None
            assert len([r for r in caplog.records if "keeping its last good version" in r.getMessage()]) == 3
            # A good edit is taken again, and the error is cleared.
            write_plugin(tmp_path, "greetings", GREET_V2)
            await app.plugins.reload()  # type: ignore[union-attr]
            assert text_of(await call(client, "greet", {"name": "x"})) == "v2: hello x"
            assert state.error is None and state.loads == 2


async def test_unchanged_files_are_not_reloaded_and_a_batch_is_published_once(tmp_path: Path) -> None:
    write_plugin(tmp_path, "greetings", GREET_V1)
    app = make_app()
    app.use_plugins(tmp_path, watch=False)
    with trio.fail_after(10):
        async with serve_in_memory(app) as (client, supervisor, _):
            await client.initialize()
            version = supervisor.registry.version
            report = await app.plugins.reload()  # type: ignore[union-attr]
            assert report.unchanged == ["greetings"] and supervisor.registry.version == version
            write_plugin(tmp_path, "greetings", GREET_V2)
            write_plugin(tmp_path, "other", '''
                from mcp_trio import Plugin
                plugin = Plugin()

                @plugin.prompt
                async def other_prompt() -> str:
                    return "hi"
            ''')
            report = await app.plugins.reload([tmp_path / "greetings.py", tmp_path / "other.py"])  # type: ignore[union-attr]
            assert report.loaded == ["greetings", "other"]
            assert supervisor.registry.version == version + 1  # one snapshot for the batch
            await client.receive_until(is_list_changed("tools"))
            await client.receive_until(is_list_changed("prompts"))
            assert await tool_names(client) == ["base", "greet", "wave"]


def test_a_plugin_is_never_served_by_itself() -> None:
    plugin = Plugin("alone")
    with pytest.raises(TypeError, match="not served on its own"):
        Supervisor(plugin)  # type: ignore[arg-type]
    assert not hasattr(plugin, "use_plugins")  # a plugin cannot load plugins: only a Server has the method


def test_use_plugins_checks_the_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="plugin directory not found"):
        Server("x").use_plugins(tmp_path / "nope")
    app = Server("x")
    app.use_plugins(tmp_path)
    with pytest.raises(RuntimeError, match="already has plugins"):
        app.use_plugins(tmp_path)


# -- end to end, watched ----------------------------------------------------------------------
async def _next_message(stream: Any) -> dict[str, Any]:
    while True:
        event = await stream.next_event()
        assert event is not None, "the GET stream ended"
        if event.data:
            return event.json()


async def test_a_new_plugin_file_reaches_websocket_and_http_sessions_within_2_s(tmp_path: Path) -> None:
    app = make_app()
    app.use_plugins(tmp_path)
    with trio.fail_after(30):
        async with serving(app) as served:
            ws_changed = trio.Event()

            def on_notification(method: str, params: Any) -> None:
                if method == "notifications/tools/list_changed":
                    ws_changed.set()

            async with connect(served.ws_url, era=None, on_notification=on_notification) as ws:
                await ws.initialize()
                http = served.client()
                await http.initialize()
                async with http.get_stream() as stream:
                    assert stream.status == 200
                    while not app.plugins.watching:  # type: ignore[union-attr]
                        await trio.sleep(0.01)
                    write_plugin(tmp_path, "greetings", GREET_V1)
                    with trio.fail_after(2):
                        await ws_changed.wait()
                        note = await _next_message(stream)
                        assert note["method"] == "notifications/tools/list_changed"
                        ws_result = await ws.call_tool("greet", {"name": "ws"})
                        http_reply = await http.call("tools/call", {"name": "greet", "arguments": {"name": "http"}})
                    assert ws_result.content[0].text == "v1: hello ws"
                    assert http_reply["result"]["content"][0]["text"] == "v1: hello http"

                    # A new version replaces it, on both.
                    ws_changed = trio.Event()
                    write_plugin(tmp_path, "greetings", GREET_V2)
                    with trio.fail_after(2):
                        await ws_changed.wait()
                        assert (await _next_message(stream))["method"] == "notifications/tools/list_changed"
                        assert (await ws.call_tool("wave")).content[0].text == "o/"
                        http_reply = await http.call("tools/call", {"name": "greet", "arguments": {"name": "http"}})
                    assert http_reply["result"]["content"][0]["text"] == "v2: hello http"

                    # Deleting the file removes its tools.
                    ws_changed = trio.Event()
                    (tmp_path / "greetings.py").unlink()
                    with trio.fail_after(2):
                        await ws_changed.wait()
                        assert (await _next_message(stream))["method"] == "notifications/tools/list_changed"
                    listed = await ws.list_tools()
                    assert [t.name for t in listed] == ["base"]


async def test_a_syntax_error_while_watched_keeps_the_old_version_serving(tmp_path: Path) -> None:
    write_plugin(tmp_path, "greetings", GREET_V1)
    app = make_app()
    app.use_plugins(tmp_path)
    with trio.fail_after(30):
        async with serving(app, expect_errors=True) as served, connect(served.ws_url, era=None) as ws:
            await ws.initialize()
            while not app.plugins.watching:  # type: ignore[union-attr]
                await trio.sleep(0.01)
            state = app.plugins.plugins["greetings"]  # type: ignore[union-attr]
            write_plugin(tmp_path, "greetings", BROKEN)
            with trio.fail_after(5):
                while state.failures == 0:
                    await trio.sleep(0.02)
            assert state.error is not None and state.error.startswith("SyntaxError")
            result = await ws.call_tool("greet", {"name": "still"})
            assert result.content[0].text == "v1: hello still"
            errors = served.log.errors()
            assert len(errors) == 1 and errors[0].exc_info is not None
            assert "keeping its last good version" in errors[0].getMessage()
            # Fixing the file brings the new version in.
            write_plugin(tmp_path, "greetings", GREET_V2)
            with trio.fail_after(5):
                while state.loads < 2:
                    await trio.sleep(0.02)
            result = await ws.call_tool("greet", {"name": "fixed"})
            assert result.content[0].text == "v2: hello fixed"


# -- the command line and the config file -----------------------------------------------------
async def test_serve_plugins_flag_over_stdio_reloads_on_change(tmp_path: Path) -> None:
    write_plugin(tmp_path, "greetings", GREET_V1)
    with trio.fail_after(30):
        # Not the demo app: it has a "greet" of its own (a tasks-extension conformance fixture).
        app = f"{Path(__file__).with_name('stdio_sdk_app.py')}:server"
        async with spawn_stdio(app, "--plugins", str(tmp_path)) as (client, _):
            await client.initialize()
            assert "greet" in await tool_names(client)
            assert text_of(await call(client, "greet", {"name": "cli"})) == "v1: hello cli"
            write_plugin(tmp_path, "greetings", GREET_V2)
            with trio.fail_after(5):
                await client.receive_until(is_list_changed("tools"))
            assert text_of(await call(client, "greet", {"name": "cli"})) == "v2: hello cli"


async def test_serve_refuses_a_missing_plugin_directory(tmp_path: Path) -> None:
    with trio.fail_after(30):
        result = await trio.run_process([*stdio_command("--plugins", str(tmp_path / "nope"))],
                                        capture_stdout=True, capture_stderr=True, check=False)
    assert result.returncode == 2
    assert b"plugin directory not found" in result.stderr


def test_plugins_settings_from_flags_env_and_file(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    config_file = tmp_path / "conf" / "server.toml"
    config_file.write_text('[plugins]\ndirectories = ["plugins", "/abs/other"]\nentry_points = true\nwatch = false\n')
    config = load_config(config_file, {}, {})
    assert config.plugins.directories == (str((tmp_path / "conf" / "plugins").resolve()), "/abs/other")
    assert config.plugins.entry_points and not config.plugins.watch
    config = load_config(None, {"MCP_TRIO_PLUGINS_DIRECTORIES": "a,b", "MCP_TRIO_PLUGINS_WATCH": "false"}, {})
    assert config.plugins.directories == ("a", "b") and not config.plugins.watch
    args = build_parser().parse_args(["serve", "--plugins", "x", "--plugins", "y", "--plugin-packages", "--no-watch"])
    config = load_config(None, {}, overrides_from_args(args))
    assert config.plugins == PluginsConfig(directories=("x", "y"), entry_points=True, watch=False)
    args = build_parser().parse_args(["serve"])
    assert load_config(None, {}, overrides_from_args(args)).plugins == PluginsConfig()


def test_registry_swap_is_one_snapshot() -> None:
    app = make_app()

    @app.prompt
    async def keep() -> str:
        return "kept"

    plugin = Plugin("p")

    @plugin.tool
    async def greet() -> str:
        return "hi"

    @plugin.resource("p://{item}")
    async def item(item: str) -> str:
        return item

    before = app.registry
    keys = plugin.registry.keys()
    assert keys.kinds() == {"tools", "resources"} and bool(keys)
    after = before.swap(before.keys().minus(before.keys()), plugin.registry)
    assert after.version == before.version + 1
    assert sorted(after.tools) == ["base", "greet"] and [t.uri_template for t in after.templates] == ["p://{item}"]
    assert list(after.prompts) == ["keep"]
    removed = after.swap(keys, Plugin().registry)
    assert sorted(removed.tools) == ["base"] and removed.templates == () and removed.version == after.version + 1
    assert keys.clashes(after.keys()) == ["resource template 'p://{item}'", "tool 'greet'"]
