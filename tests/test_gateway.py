"""The gateway: ``server.mount(Remote(...), prefix=...)`` in front of MCP servers we did not write.

Upstreams: the official Python SDK's server (``tests/sdk_peer_app.py``: both eras, it answers
``server/discover``, so the gateway speaks 2026-07-28 to it) and the official TypeScript SDK's
server (``tests/ts_peer_server.mjs``: the handshake only), each over stdio and Streamable HTTP;
our own server over WebSocket for the limits and the policy tests. The caller is the official
Python SDK client, over Streamable HTTP, to the gateway.

What is checked: listings under the prefix, calls, progress and log relayed, elicitation
relayed, resources and prompts, the upstream's ``list_changed`` reaching the caller, the
caller's cancellation reaching the upstream, an upstream down answered at once in one line
and used again when it is back, the concurrency cap and the request timeout crossed, and our
auth scopes, rate limit, middleware, metrics and admin switches applied to proxied tools.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from mcp.client.session import ClientRequestContext

import mcp_types as types
from mcp.shared.exceptions import MCPError
from mcp_trio import Server
from mcp_trio._limiter import RateLimits, ToolLimit
from mcp_trio.auth import ApiKey, ApiKeyStore, Authenticator, generate_api_key
from mcp_trio.client import McpError, connect
from mcp_trio.offer._remote import Remote
from tests.served import serving
from tests.test_client_peers import SDK_APP, TS_APP, TS_PEER, _spawn_http, ts_node
from tests.test_http import sdk, sdk_session
from tests.test_stdio_sdk import Inbox, text_of

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sdk_http() -> Iterator[str]:
    yield from _spawn_http([sys.executable, str(SDK_APP), "http"])


@pytest.fixture(scope="module")
def ts_http() -> Iterator[str]:
    yield from _spawn_http([ts_node(), str(TS_APP), str(TS_PEER), "http"])


def upstream(kind: str, request: pytest.FixtureRequest) -> tuple[Any, str]:
    """(target, era the gateway speaks to it) for one of the four official-SDK upstreams."""
    if kind == "python-stdio":
        return [sys.executable, str(SDK_APP), "stdio"], "stateless"
    if kind == "python-http":
        return request.getfixturevalue("sdk_http"), "stateless"
    if kind == "typescript-stdio":
        return [ts_node(), str(TS_APP), str(TS_PEER), "stdio"], "handshake"
    return request.getfixturevalue("ts_http"), "handshake"


def gateway(target: Any, **options: Any) -> tuple[Server, Any]:
    app = Server("gateway")

    @app.tool
    async def local_echo(text: str) -> str:
        return text

    mount = app.mount(Remote(target, **options), prefix="up")
    return app, mount


async def answer_name(context: ClientRequestContext, params: types.ElicitRequestParams) -> types.ElicitResult:
    assert params.message == "Your name?"
    return types.ElicitResult(action="accept", content={"name": "Ada"})


@sdk
@pytest.mark.parametrize("kind", ["python-stdio", "python-http", "typescript-stdio", "typescript-http"])
async def test_sdk_client_through_the_gateway_to_an_official_sdk_server(kind: str, request: pytest.FixtureRequest) -> None:
    target, era = upstream(kind, request)
    app, _ = gateway(target)
    progress = Inbox()
    logs = Inbox()

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.add((value, total))

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        logs.add(params.data)

    with trio.fail_after(30):
        async with sdk_session(app, elicitation_callback=answer_name, logging_callback=on_log) as (client, _, served):
            (gate,) = served.supervisor.upstreams
            assert gate.down is None and gate.client.era == era
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
            assert {"local_echo", "up_echo", "up_progress", "up_logs", "up_ask_name"} <= set(tools)
            assert tools["up_echo"].description == "Return the text unchanged."
            assert text_of(await client.call_tool("up_echo", {"text": "through"})) == "through"

            assert text_of(await client.call_tool("up_progress", {}, progress_callback=on_progress)) == "done"
            await progress.wait_for(lambda items: len(items) == 2)
            assert progress.items == [(1, 2), (2, 2)]

            await client.set_logging_level("info")
            assert text_of(await client.call_tool("up_logs", {})) == "logged"
            if kind == "python-http":  # where the upstream says which call a log is for (the TS server does not)
                await logs.wait_for(lambda items: bool(items))
                assert logs.items == ["working on it"]

            if kind != "typescript-stdio":  # the ask comes on the call's own stream, or as an input round
                assert text_of(await client.call_tool("up_ask_name", {})) == "Hello, Ada!"

            read = await client.read_resource("up+test://hello")
            assert read.contents[0].uri == "up+test://hello" and read.contents[0].text == "hello"  # type: ignore[union-attr]
            prompt = await client.get_prompt("up_greet", {"name": "Ada"})
            assert prompt.messages[0].content.text == "Hello Ada"  # type: ignore[union-attr]
            unknown = await client.call_tool("up_echo", {"nope": 1})  # the upstream's own answer to bad arguments
            assert unknown.is_error
            assert gate.statistics()["calls"] >= 6 and gate.statistics()["up"]


@sdk
async def test_the_upstreams_list_changes_reach_the_caller(ts_http: str) -> None:
    app, _ = gateway(ts_http)
    changed = Inbox()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ServerNotification) and message.method == "notifications/tools/list_changed":
            changed.add(message.method)

    with trio.fail_after(20):
        async with sdk_session(app, message_handler=on_message) as (client, _, _):
            added = text_of(await client.call_tool("up_add_tool", {}))  # the TS server registers a tool
            await changed.wait_for(lambda items: bool(items))
            names = {tool.name for tool in (await client.list_tools()).tools}
            assert f"up_{added}" in names
            assert text_of(await client.call_tool(f"up_{added}", {})) == "new"


@sdk
async def test_the_callers_cancellation_reaches_the_upstream(tmp_path: Path) -> None:
    app, _ = gateway([sys.executable, str(SDK_APP), "stdio"])
    marker = tmp_path / "cancelled"
    with trio.fail_after(30):
        async with sdk_session(app) as (client, _, served):
            with trio.move_on_after(1.0):
                await client.call_tool("up_slow", {"marker": str(marker)})
            while not marker.exists():  # written by the upstream process when its task is cancelled
                await trio.sleep(0.05)
            assert marker.read_text() == "cancelled"
            assert text_of(await client.call_tool("up_echo", {"text": "still up"})) == "still up"
            assert served.supervisor.upstreams[0].in_flight == 0


async def test_an_upstream_that_goes_down_is_answered_at_once_and_used_again_when_back(caplog: pytest.LogCaptureFixture) -> None:
    process = subprocess.Popen([sys.executable, str(SDK_APP), "http"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert process.stdout is not None
    port = int(process.stdout.readline())
    url = f"http://127.0.0.1:{port}/mcp"
    app, _ = gateway(url, connect_timeout=2.0)
    restarted = None
    try:
        with trio.fail_after(40):
            async with serving(app) as served:
                async with connect(f"{served.base}/mcp") as client:
                    assert (await client.call_tool("up_echo", {"text": "a"})).content[0].text == "a"  # type: ignore[union-attr]
                    process.kill()  # a crash: no goodbye to the open connections
                    await trio.to_thread.run_sync(process.wait)
                    with trio.fail_after(5):  # never a hang: one line, at once
                        down = await client.call_tool("up_echo", {"text": "b"})
                    text = down.content[0].text  # type: ignore[union-attr]
                    assert down.is_error and text.startswith(f"upstream {url} is unavailable: ") and "\n" not in text
                    with pytest.raises(McpError) as caught:
                        await client.read_resource("up+test://hello")
                    assert caught.value.code == -32603 and "is unavailable" in caught.value.message
                    assert "up_echo" in {t.name for t in await client.list_tools()}  # the listing stays meanwhile

                    restarted = subprocess.Popen([sys.executable, str(SDK_APP), "http", "--port", str(port)],
                                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
                    assert restarted.stdout is not None
                    assert int(await trio.to_thread.run_sync(restarted.stdout.readline)) == port
                    while True:  # each call while down asks for a new attempt (no sooner than 0.5 s apart)
                        result = await client.call_tool("up_echo", {"text": "c"})
                        if not result.is_error:
                            break
                        await trio.sleep(0.2)
                    assert result.content[0].text == "c"  # type: ignore[union-attr]
                    assert served.supervisor.upstreams[0].connects == 2
    finally:
        for each in (process, restarted):
            if each is not None and each.poll() is None:
                each.kill()
                each.wait(10)
    assert "is unavailable" in caplog.text and "is up again" in caplog.text


async def test_an_upstream_unreachable_at_start_does_not_hold_the_server_up() -> None:
    with trio.socket.socket() as sock:  # a port nobody listens on
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app, _ = gateway(f"http://127.0.0.1:{port}/mcp", connect_timeout=1.0)
    with trio.fail_after(10):
        async with serving(app) as served:
            async with connect(f"{served.base}/mcp") as client:
                assert {t.name for t in await client.list_tools()} == {"local_echo"}
                assert (await client.call_tool("local_echo", {"text": "fine"})).content[0].text == "fine"  # type: ignore[union-attr]
            stats = served.supervisor.upstreams[0].statistics()
            assert not stats["up"] and stats["down"]


async def test_an_upstream_that_never_answers_the_handshake_crosses_the_connect_timeout() -> None:
    """A port that accepts and then says nothing: the server is up after connect_timeout,
    the upstream down with the reason, and calls are answered at once, never held."""
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, lambda stream: trio.sleep_forever(), 0)
        port = listeners[0].socket.getsockname()[1]
        app, _ = gateway(f"http://127.0.0.1:{port}/mcp", connect_timeout=0.3)
        with trio.fail_after(10):
            async with serving(app) as served:
                (upstream,) = served.supervisor.upstreams
                assert upstream.down is not None and "0.3 s" in upstream.down, upstream.down
                async with connect(f"{served.base}/mcp") as client:
                    assert {t.name for t in await client.list_tools()} == {"local_echo"}
        nursery.cancel_scope.cancel()


# -- limits and policy, with our own server as the upstream (over WebSocket) -----------------------
def slow_upstream() -> tuple[Server, dict[str, Any]]:
    state: dict[str, Any] = {"running": 0, "most": 0, "release": trio.Event()}
    upstream_app = Server("our-upstream")

    @upstream_app.tool
    async def wait() -> str:
        state["running"] += 1
        state["most"] = max(state["most"], state["running"])
        try:
            await state["release"].wait()
        finally:
            state["running"] -= 1
        return "released"

    @upstream_app.tool
    async def echo(text: str) -> str:
        return text

    return upstream_app, state


async def test_the_concurrency_cap_and_the_request_timeout_are_crossed() -> None:
    upstream_app, state = slow_upstream()
    with trio.fail_after(20):
        async with serving(upstream_app) as up:
            app, _ = gateway(up.ws_url, max_concurrency=2, request_timeout=0.5)
            async with serving(app) as served, connect(f"{served.base}/mcp") as client:
                results: list[Any] = []

                async def call() -> None:
                    results.append(await client.call_tool("up_wait"))

                async with trio.open_nursery() as nursery:
                    for _ in range(3):
                        nursery.start_soon(call)
                assert state["most"] == 2  # the third waited for a slot, and never got one in time
                texts = sorted(r.content[0].text for r in results)  # type: ignore[union-attr]
                assert all(r.is_error for r in results)
                assert all(t.startswith(f"upstream {up.ws_url} did not answer tools/call 'wait' within 0.5 s") for t in texts)
                assert served.supervisor.upstreams[0].in_flight == 0 and state["running"] == 0  # cancelled upstream too
                state["release"].set()
                assert (await client.call_tool("up_wait")).content[0].text == "released"  # type: ignore[union-attr]


async def test_our_auth_rate_limits_middleware_metrics_and_switches_apply_to_proxied_tools() -> None:
    upstream_app, _ = slow_upstream()
    key, digest = generate_api_key()
    authenticator = Authenticator(api_keys=ApiKeyStore([ApiKey("reader", digest, frozenset({"read"}))]))
    with trio.fail_after(20):
        async with serving(upstream_app) as up:
            app = Server("gateway")
            app.mount(Remote(up.ws_url), prefix="up")
            app.mount(Remote(up.ws_url, name="admin-side"), prefix="adm", scopes="admin")
            seen: list[str] = []

            @app.middleware
            async def audit(request: Any, call_next: Any) -> Any:
                if request.method == "tools/call":
                    seen.append(request.name)
                return await call_next(request)

            limits = RateLimits(tools={"up_echo": ToolLimit(rate=0.5, burst=0)})  # one call per 2 s per caller
            async with serving(app, authenticator=authenticator, rate_limits=limits) as served:
                async with connect(f"{served.base}/mcp", headers={"Authorization": f"Bearer {key}"}) as client:
                    names = {t.name for t in await client.list_tools()}
                    assert "up_echo" in names and "adm_echo" not in names  # the mount's scopes
                    with pytest.raises(McpError) as refused:
                        await client.call_tool("adm_echo", {"text": "x"})
                    assert refused.value.code == -32003
                    assert (await client.call_tool("up_echo", {"text": "x"})).content[0].text == "x"  # type: ignore[union-attr]
                    with pytest.raises(McpError) as limited:
                        for _ in range(5):
                            await client.call_tool("up_echo", {"text": "x"})
                    assert limited.value.code == -32029  # our rate limit, before the upstream is asked
                    supervisor = served.supervisor
                    assert supervisor.metrics.tools["up_echo"].calls >= 1
                    assert supervisor.set_enabled(False, tools=["up_echo"]) == ["up_echo"]
                    assert "up_echo" not in {t.name for t in await client.list_tools()}
            # Rate-limited calls were refused by admission, before middleware; scopes are checked at
            # the tool, after it (as for a local tool).
            assert seen == ["adm_echo", "up_echo"]


def test_remote_settings_are_checked() -> None:
    for options, reason in [({"max_concurrency": 0}, "max_concurrency must be at least 1"),
                            ({"request_timeout": 0}, "request_timeout must be positive"),
                            ({"era": "newest"}, "era must be auto, handshake or stateless"),
                            ({"auth": 5}, "auth is a bearer token or an async token provider")]:
        with pytest.raises(ValueError, match=reason):
            Remote("http://127.0.0.1:1/mcp", **options)
    assert Remote("https://user:secret@host/mcp").label == "https://host/mcp"  # no credentials in logs
    headers = Remote("https://host/mcp", auth="t0k", headers={"X-Tenant": "a"}).connect_options()["headers"]
    assert headers == {"X-Tenant": "a", "Authorization": "Bearer t0k"}


# -- mcp-trio serve --mount, and [[mount]] in the config file ------------------------------------
async def test_serve_mount_flag_puts_an_official_sdk_server_behind_ours() -> None:
    from tests.helpers import stdio_command

    command = stdio_command("--mount", f"up=stdio:{sys.executable} {SDK_APP} stdio")
    with trio.fail_after(30):
        async with connect(command) as client:
            names = {tool.name for tool in await client.list_tools()}
            assert {"up_echo", "up_progress", "units_convert", "test_simple_text"} <= names  # beside the demo's own
            assert (await client.call_tool("up_echo", {"text": "via the CLI"})).content[0].text == "via the CLI"  # type: ignore[union-attr]


async def test_config_mount_with_a_token_from_the_environment(tmp_path: Path) -> None:
    from tests.helpers import stdio_command

    upstream_app, _ = slow_upstream()
    key, digest = generate_api_key()
    authenticator = Authenticator(api_keys=ApiKeyStore([ApiKey("gateway", digest, frozenset({"read"}))]))
    config = tmp_path / "gateway.toml"
    with trio.fail_after(30):
        async with serving(upstream_app, authenticator=authenticator) as up:
            config.write_text(f'''
[[mount]]
prefix = "ours"
url = "{up.base}/mcp"
bearer_token_env = "OURS_TOKEN"
request_timeout = 5.0
max_concurrency = 4
tags = ["upstream"]
''')
            env = {**os.environ, "OURS_TOKEN": key}
            async with connect(stdio_command("--config", str(config), "--mount", f"more={up.ws_url}"), env=env) as client:
                tools = {tool.name: tool for tool in await client.list_tools()}
                assert tools["ours_echo"].meta["tags"] == ["upstream"]  # type: ignore[index]
                assert (await client.call_tool("ours_echo", {"text": "authenticated"})).content[0].text == "authenticated"  # type: ignore[union-attr]
                # --mount adds to the file's mounts; the WebSocket upstream has no key: it answers 401.
                assert "more_echo" not in tools

            # Fail closed: the variable named for the token is not set.
            env.pop("OURS_TOKEN")
            done = await trio.run_process(stdio_command("--config", str(config)), env=env, capture_stdout=True,
                                          capture_stderr=True, check=False)
            lines = done.stderr.decode().strip().splitlines()
            assert done.returncode == 2 and len(lines) == 1, lines
            assert lines[0] == "mcp-trio: [[mount]] 'ours': bearer_token_env names OURS_TOKEN, which is not set: export it"


async def test_mount_flag_mistakes_are_one_line() -> None:
    from tests.helpers import stdio_command

    for flag, says in [("nope", "--mount 'nope': write PREFIX=TARGET"),
                       ("bad_prefix=http://127.0.0.1:1/mcp", "must be 1 to 32 letters, digits or '-'"),
                       ("x=ftp://host/mcp", "url must start with http://, https://, ws:// or wss://")]:
        done = await trio.run_process(stdio_command("--mount", flag), capture_stdout=True, capture_stderr=True, check=False)
        lines = done.stderr.decode().strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and says in lines[0], lines


def test_mount_tables_read_tokens_from_files_relative_to_the_config(tmp_path: Path) -> None:
    from mcp_trio._config import ConfigError, load_config, with_mount_flags

    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "weather.token").write_text("t0k\n")
    config_file = tmp_path / "gateway.toml"
    config_file.write_text('''
[[mount]]
prefix = "weather"
url = "https://weather.example/mcp"
bearer_token_file = "secrets/weather.token"
headers = { X-Tenant = "acme" }
headers_env = { X-Api-Key = "WEATHER_KEY" }
command = []
''')
    with pytest.raises(ConfigError, match="give url .* or command .*, not both"):
        load_config(config_file, {"WEATHER_KEY": "k"})
    config_file.write_text(config_file.read_text().replace("command = []\n", ""))
    config = with_mount_flags(load_config(config_file, {"WEATHER_KEY": "k"}), ["tools=stdio:python -m tools"])
    weather, tools = config.mount
    remote = weather.remote({"WEATHER_KEY": "k"})
    assert remote.connect_options()["headers"] == {"X-Tenant": "acme", "X-Api-Key": "k", "Authorization": "Bearer t0k"}
    assert tools.target() == ["python", "-m", "tools"] and "t0k" not in repr(remote)
    with pytest.raises(ConfigError, match="headers_env X-Api-Key names WEATHER_KEY, which is not set"):
        load_config(config_file, {})
    (tmp_path / "secrets" / "weather.token").write_text("")
    with pytest.raises(ConfigError, match=r"bearer_token_file .*weather.token is empty"):
        load_config(config_file, {"WEATHER_KEY": "k"})
    with pytest.raises(ConfigError, match="prefix 'weather' is used twice"):
        with_mount_flags(config, ["weather=https://other.example/mcp"])
