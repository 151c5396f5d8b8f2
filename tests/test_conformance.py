"""The official MCP conformance suite (npm: @modelcontextprotocol/conformance) against the demo app.

The demo app is served in-process with ``serve_http`` on a free port; ``run.sh`` (in the
project's ``shared/conformance/``, beside this clone) runs the suite against it over Streamable
HTTP. Its first use installs Node 22 and the suite from the npm registry into a cache, hence the
generous deadline. A check failing in the suite fails the test; so does a missing ``run.sh``.
"""

from __future__ import annotations

import os
import re
import subprocess
from functools import partial

import pytest
import trio

from mcp_trio import demo
from mcp_trio.transports.http import serve_http
from tests.prerequisites import RUN_SH

pytestmark = pytest.mark.slow

#: First use downloads Node 22 and the suite; later runs take a few seconds.
DEADLINE = 900
_TOTAL = re.compile(r"Total: (\d+) passed, (\d+) failed")


async def run_suite(*args: str, env: dict[str, str] | None = None) -> tuple[int, int, str]:
    """Serve the demo app, run the suite with ``args``; (passed, failed, output)."""
    assert RUN_SH.is_file(), f"conformance runner not found at {RUN_SH} (shared/ must sit beside the clone)"
    async with trio.open_nursery() as nursery:
        port = await nursery.start(partial(serve_http, demo.server, port=0))
        result = await trio.run_process(
            ["bash", str(RUN_SH), f"http://127.0.0.1:{port}/mcp", *args],
            capture_stdout=True, stderr=subprocess.STDOUT, check=False, env={**os.environ, **(env or {})},
        )
        nursery.cancel_scope.cancel()
    output = result.stdout.decode(errors="replace")
    totals = _TOTAL.findall(output)
    assert totals, f"no summary in the suite's output (exit {result.returncode}):\n{output[-4000:]}"
    passed, failed = map(int, totals[-1])
    assert result.returncode == 0 or failed, f"suite exited {result.returncode}:\n{output[-4000:]}"
    return passed, failed, output


def _failures(output: str) -> str:
    lines = [line for line in output.splitlines() if "✗" in line or "FAIL" in line]
    return "\n".join(lines) or output[-4000:]


async def test_active_and_pending_scenarios_pass() -> None:
    """``--suite all``: every active scenario plus the pending ones (test_reconnection, 2020-12 schemas)."""
    with trio.fail_after(DEADLINE):
        passed, failed, output = await run_suite("--suite", "all")
    assert failed == 0, _failures(output)
    assert passed >= 40, output[-4000:]
    for scenario in ("server-initialize", "tools-call-with-progress", "server-sse-polling", "json-schema-2020-12",
                     "dns-rebinding-protection", "server-sse-multiple-streams"):
        assert f"✓ {scenario}:" in output, f"{scenario} did not pass:\n{_failures(output)}"


async def test_newer_suite_for_the_2025_11_25_revision() -> None:
    """The 0.2.0 alpha adds session lifecycle (404 after DELETE) and wire-schema validation."""
    with trio.fail_after(DEADLINE):
        passed, failed, output = await run_suite("--requirements", "2025-11-25",
                                                 env={"MCP_CONFORMANCE_VERSION": "0.2.0-alpha.12"})
    assert failed == 0, _failures(output)
    assert passed >= 70, output[-4000:]
    assert "✓ server-session-lifecycle:" in output, _failures(output)


async def test_newer_suite_for_the_2026_07_28_revision() -> None:
    """The stateless revision on the same port: ``server/discover``, per-request ``_meta``,
    ``resultType`` and caching hints, input-required rounds with sealed ``requestState``,
    ``subscriptions/listen``, header validation, and the tasks extension (not scored by the
    suite, run and required here all the same)."""
    with trio.fail_after(DEADLINE):
        passed, failed, output = await run_suite("--requirements", "2026-07-28",
                                                 env={"MCP_CONFORMANCE_VERSION": "0.2.0-alpha.12"})
    assert failed == 0, _failures(output)
    assert passed >= 190, output[-4000:]
    for scenario in ("server-stateless", "caching", "sep-2164-resource-not-found", "input-required-result-multi-round",
                     "input-required-result-tampered-state", "http-header-validation",
                     "http-custom-header-server-validation", "json-schema-2020-12", "tasks-lifecycle", "tasks-mrtr-composition"):
        assert f"✓ {scenario}:" in output, f"{scenario} did not pass:\n{_failures(output)}"
