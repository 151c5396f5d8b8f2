"""``mcp_trio.client`` against servers we did not write: the official Python SDK's server
(``MCPServer``, in the test venv) and the official TypeScript SDK's server (the pinned peer
of ``bench/peers/ts``, on its own Node 22), over stdio and Streamable HTTP (SSE and JSON
answers).

The Python SDK speaks both eras: ``era="auto"`` adopts 2026-07-28 (its elicitation becomes an
``InputRequiredResult`` round), ``era="handshake"`` the ``initialize`` handshake. The
TypeScript SDK (1.x) speaks the handshake only: ``era="auto"`` must fall back to it after the
``server/discover`` probe. The TypeScript peer is installed with ``npm ci`` into
``bench/peers/ts/node_modules`` when missing (as ``bench/run_standard.py`` does); the test
fails with one line when it cannot be.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from mcp_trio.client import LoggingMessageParams, connect

pytestmark = pytest.mark.slow

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
TS_PEER = REPO / "bench" / "peers" / "ts"
TS_STAMP = TS_PEER / "node_modules" / ".mcp-trio-lock"
SDK_APP = TESTS / "sdk_peer_app.py"
TS_APP = TESTS / "ts_peer_server.mjs"


def ts_node() -> str:
    """The TypeScript peer's Node, installed from the pinned lock file when missing."""
    node = TS_PEER / "node_modules" / ".bin" / "node"
    wanted = (TS_PEER / "package-lock.json").read_text()
    if node.exists() and TS_STAMP.exists() and TS_STAMP.read_text() == wanted:
        return str(node)
    if shutil.which("npm") is None:
        pytest.fail("the TypeScript SDK peer needs npm to install (Debian: apt-get install npm)", pytrace=False)
    done = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=TS_PEER,
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0 or not node.exists():
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.fail(f"could not install the TypeScript SDK peer with npm ci in {TS_PEER}: {last}", pytrace=False)
    TS_STAMP.write_text(wanted)
    return str(node)


def _spawn_http(argv: list[str]) -> Iterator[str]:
    """A server that prints its port on one line, then serves ``/mcp``."""
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=dict(os.environ))
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 30)
        line = process.stdout.readline() if ready else b""
        if not line.strip().isdigit():
            pytest.fail(f"{' '.join(argv[:3])} did not start: {line!r}", pytrace=False)
        yield f"http://127.0.0.1:{int(line)}/mcp"
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module", params=["sse", "json"])
def sdk_http(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    for url in _spawn_http([sys.executable, str(SDK_APP), "http", *(["--json"] if request.param == "json" else [])]):
        yield url, request.param


@pytest.fixture(scope="module", params=["sse", "json"])
def ts_http(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    node = ts_node()
    for url in _spawn_http([node, str(TS_APP), str(TS_PEER), "http", *(["--json"] if request.param == "json" else [])]):
        yield url, request.param


async def elicit_name(params: Any) -> dict[str, Any]:
    assert params.message == "Your name?" and "name" in params.requested_schema["properties"]
    return {"action": "accept", "content": {"name": "Ada"}}


async def _scenario(target: Any, era: str, expect_era: str, *, streams: bool = True, elicits: bool = True) -> None:
    """The same calls against a peer: list, call, progress, elicitation, logs, resource, prompt."""
    logs: list[LoggingMessageParams] = []
    with trio.fail_after(30):
        async with connect(target, era=era, elicitation=elicit_name, on_log=logs.append) as client:
            assert client.era == expect_era
            assert client.server_info is not None and client.server_info.name in ("sdk-peer", "ts-sdk-peer")
            names = {tool.name for tool in await client.list_tools()}
            assert {"echo", "progress", "logs", "ask_name"} <= names
            echoed = await client.call_tool("echo", {"text": "hi"})
            assert echoed.content[0].text == "hi" and not echoed.is_error  # type: ignore[union-attr]

            steps: list[tuple[float, float | None]] = []
            done = await client.call_tool("progress", progress=lambda p, total, message: steps.append((p, total)))
            assert done.content[0].text == "done"  # type: ignore[union-attr]
            if streams:  # a JSON answer has no room for notifications before it
                assert steps == [(1, 2), (2, 2)]

            if elicits:
                asked = await client.call_tool("ask_name")
                assert asked.content[0].text == "Hello, Ada!"  # type: ignore[union-attr]

            if client.era == "stateless" or "logging" in client.server_capabilities:
                await client.set_logging_level("info")
            assert (await client.call_tool("logs")).content[0].text == "logged"  # type: ignore[union-attr]
            if streams:
                while not logs:  # on the call's stream, or the session's GET stream
                    await trio.sleep(0.02)
                assert logs[0].data == "working on it" and logs[0].level == "info"

            read = await client.read_resource("test://hello")
            assert read.contents[0].text == "hello"
            prompt = await client.get_prompt("greet", {"name": "Ada"})
            assert prompt.messages[0].content.text == "Hello Ada"  # type: ignore[union-attr]
            await client.ping()


# --------------------------------------------------------------------------- official Python SDK


@pytest.mark.parametrize("era", ["auto", "handshake"])
async def test_python_sdk_over_stdio(era: str) -> None:
    await _scenario([sys.executable, str(SDK_APP), "stdio"], era, {"auto": "stateless", "handshake": "handshake"}[era])


@pytest.mark.parametrize("era", ["auto", "handshake"])
async def test_python_sdk_over_http(sdk_http: tuple[str, str], era: str) -> None:
    url, answers = sdk_http
    # JSON answers leave no stream for notifications, nor (handshake era) for the request
    # that elicitation is; a 2026-07-28 input round needs none.
    await _scenario(url, era, {"auto": "stateless", "handshake": "handshake"}[era], streams=answers == "sse",
                    elicits=answers == "sse" or era == "auto")


# --------------------------------------------------------------------------- official TypeScript SDK


async def test_typescript_sdk_over_stdio_falls_back_to_the_handshake() -> None:
    await _scenario([ts_node(), str(TS_APP), str(TS_PEER), "stdio"], "auto", "handshake")


async def test_typescript_sdk_over_http(ts_http: tuple[str, str]) -> None:
    url, answers = ts_http
    # With JSON answers the SDK has no stream to put its elicitation request on (it is tied
    # to the call), so that call is left out there.
    await _scenario(url, "auto", "handshake", streams=answers == "sse", elicits=answers == "sse")


async def test_typescript_sdk_list_changes_on_the_get_stream(ts_http: tuple[str, str]) -> None:
    """Unprompted notifications of a server we did not write arrive on the GET stream."""
    url, _ = ts_http
    changes: list[str] = []
    with trio.fail_after(20):
        async with connect(url, era="handshake", on_list_changed=changes.append) as client:
            await trio.sleep(0.2)  # the GET stream is open before the change
            added = await client.call_tool("add_tool")
            while "tools" not in changes:
                await trio.sleep(0.02)
            assert added.content[0].text in {t.name for t in await client.list_tools()}  # type: ignore[union-attr]
            assert client.listen_stopped is None
