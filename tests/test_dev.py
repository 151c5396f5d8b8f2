"""``mcp-trio dev APP`` (issue 17, point 3): APP's own file reloaded into the running server when
it changes, with a real file change; the Inspector's command line; ``--inspector`` without npx.

The reload is waited for with the reloader's own event (``wait_for_reload``), never a sleep:
the file watcher (inotify) sees the change within its 50 ms step.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import trio

from mcp_trio._app import load_app
from mcp_trio._dev import AppReloader, inspector_command, inspector_line
from mcp_trio.client import connect
from tests.helpers import child_env
from tests.served import serving

VERSION_1 = '''
    from mcp_trio import Server

    server = Server("dev-subject", instructions="first")

    @server.tool
    async def one() -> str:
        return "one, version 1"
'''

VERSION_2 = '''
    from mcp_trio import Server

    server = Server("dev-subject", instructions="second")

    @server.tool
    async def one() -> str:
        return "one, version 2"

    @server.tool
    async def two() -> str:
        return "two"
'''


def save(path: Path, source: str) -> None:
    """Save as editors do: a temporary file renamed over the old one."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(textwrap.dedent(source), encoding="utf-8")
    os.replace(temporary, path)


@pytest.mark.slow
async def test_a_changed_app_file_is_swapped_into_the_running_server(tmp_path: Path) -> None:
    path = tmp_path / "devapp.py"
    save(path, VERSION_1)
    spec = f"{path}:server"
    app = load_app(spec)
    changes: list[str] = []
    with trio.fail_after(20):
        async with serving(app) as served, trio.open_nursery() as nursery:
            reloader = AppReloader(app, spec)
            await nursery.start(reloader.run)
            async with connect(f"{served.base}/mcp", era="handshake", on_list_changed=changes.append) as client:
                session = client.session_id
                assert [tool.name for tool in await client.list_tools()] == ["one"]

                save(path, VERSION_2)  # a real change on disk, seen by the watcher
                outcome = await reloader.wait_for_reload(0)
                assert outcome.ok and outcome.tools == 2
                assert sorted(tool.name for tool in await client.list_tools()) == ["one", "two"]
                assert (await client.call_tool("one")).content[0].text == "one, version 2"  # type: ignore[union-attr]
                assert (await client.call_tool("two")).content[0].text == "two"  # type: ignore[union-attr]
                assert client.session_id == session  # the same session: nothing was dropped
                while "tools" not in changes:
                    await trio.sleep(0.01)
                assert app.instructions == "second"  # new sessions get the new instructions

                save(path, VERSION_2 + "\n    broken(\n")  # a save in mid-edit: the last good version serves on
                broken = await reloader.wait_for_reload(1)
                assert not broken.ok and "was never closed" in (broken.error or "")
                assert (await client.call_tool("two")).content[0].text == "two"  # type: ignore[union-attr]

                save(path, VERSION_1)  # back again: "two" is gone
                assert (await reloader.wait_for_reload(2)).ok
                assert [tool.name for tool in await client.list_tools()] == ["one"]
            nursery.cancel_scope.cancel()


async def test_a_file_that_defines_no_server_or_clashes_with_a_plugin_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "shapes.py"
    save(path, VERSION_1)
    spec = f"{path}:server"
    app = load_app(spec)
    reloader = AppReloader(app, spec)
    save(path, "server = 42\n")
    refused = await reloader.reload()
    assert not refused.ok and refused.error == "it defines no Server named 'server' any more"
    save(path, "raise SystemExit(3)\n")
    assert (await reloader.reload()).error == "it raised SystemExit(3)"
    assert list(app.registry.tools) == ["one"]  # untouched by either


def run_dev(*arguments: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mcp_trio", "dev", *arguments], cwd=cwd, env=env or child_env(),
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
async def test_dev_prints_the_inspector_command_for_the_served_url(tmp_path: Path) -> None:
    save(tmp_path / "devapp.py", VERSION_1)
    process = await trio.lowlevel.open_process([sys.executable, "-m", "mcp_trio", "dev", "devapp.py", "--port", "0"],
                                               cwd=str(tmp_path), env=child_env(), stderr=subprocess.PIPE)
    try:
        with trio.fail_after(20):
            assert process.stderr is not None
            output = b""
            while b"MCP Inspector" not in output or not output.endswith(b"\n"):
                output += await process.stderr.receive_some(4096)
            lines = output.decode().splitlines()
            url = next(line.split()[-1] for line in lines if "MCP (Streamable HTTP)" in line)
            printed = next(line for line in lines if "MCP Inspector" in line).split("MCP Inspector", 1)[1].strip()
            assert printed == inspector_line(url)
            assert inspector_command(url) == ["npx", "@modelcontextprotocol/inspector", "--transport", "http", "--server-url", url]
            async with connect(url, era="handshake") as client:  # the URL it names serves the app
                assert [tool.name for tool in await client.list_tools()] == ["one"]
            process.send_signal(signal.SIGTERM)
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def test_inspector_without_npx_is_one_line(tmp_path: Path) -> None:
    save(tmp_path / "devapp.py", VERSION_1)
    bare = tmp_path / "bin"
    bare.mkdir()
    env = {**child_env(), "PATH": str(bare)}  # no npx (nor anything else) on PATH
    done = run_dev("devapp.py", "--port", "0", "--inspector", cwd=tmp_path, env=env)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "mcp-trio: --inspector needs npx, which comes with Node.js (22 or newer), and there is none on PATH: install "
        "Node.js, or leave out --inspector and run the Inspector command mcp-trio dev prints"]


def test_dev_is_one_process_over_http(tmp_path: Path) -> None:
    save(tmp_path / "devapp.py", VERSION_1)
    done = run_dev("devapp.py", "--workers", "2", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == "mcp-trio: dev serves one process over HTTP: --workers is for serve"


async def test_mounted_definitions_stay_and_the_app_own_are_swapped(tmp_path: Path) -> None:
    path = tmp_path / "host.py"
    source = '''
        from mcp_trio import Server

        weather = Server("weather")

        @weather.tool
        async def forecast() -> str:
            return "sunny"

        server = Server("host")
        server.mount(weather, "weather")

        @server.tool
        async def hello() -> str:
            return "hello, version {n}"
    '''
    save(path, source.replace("{n}", "1"))
    spec = f"{path}:server"
    app = load_app(spec)
    reloader = AppReloader(app, spec)
    assert sorted(app.registry.tools) == ["hello", "weather_forecast"]
    save(path, source.replace("{n}", "2"))
    assert (await reloader.reload()).ok
    assert sorted(app.registry.tools) == ["hello", "weather_forecast"]  # the mounted tool was kept, not clashed with
    assert await app.registry.tools["hello"].fn() == "hello, version 2"  # the app's own: the new code
