"""A stdio child starts light: ``mcp-trio serve`` imports nothing the stdio path does not use.

An MCP host spawns a stdio server and waits for its ``initialize`` answer; every module
imported on the way is paid for on each start. Here a real child serves the demo app over
its pipes, answers ``initialize``, and reports what it imported: none of the modules below
(other transports, optional extras, subcommands, a config file's parser) may be among them.
A cheap guard, not a timing test: the time is measured by ``make bench`` (cold start).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import msgspec

from .helpers import INIT_PARAMS, child_env

#: Imported only by what needs it: never on the stdio path.
HEAVY = (
    # a config file's parser, suggestions for typos, JSON and MIME tables of the stdlib
    "tomllib", "difflib", "json", "mimetypes",
    # dataclasses: a frozen dataclass compiles its methods at definition; ours are msgspec Structs
    "dataclasses",
    # the other transports and what they run on
    "hypercorn", "h11", "h2", "httptools", "wsproto", "trio_websocket",
    "mcp_trio.transports.http", "mcp_trio.transports.websocket", "mcp_trio.transports.h1",
    # optional features (extras)
    "watchfiles", "joserfc", "cryptography", "coredis", "redis", "mcp_trio.auth", "mcp_trio.cluster",
    # plugins (loaded by use_plugins), JSON Schema validation of schema-typed tools and the
    # error explainer it uses, OpenTelemetry
    "mcp_trio.plugins._manager", "mcp_trio.offer._jsonschema", "mcp_trio._explain", "opentelemetry",
    # the other subcommands
    "mcp_trio.bench", "mcp_trio._install", "mcp_trio._token", "mcp_trio._admin_cli", "mcp_trio._hosts", "mcp_trio._dev",
)

#: Runs ``mcp-trio serve`` (stdio, the demo app) and writes ``sys.modules`` when it exits.
_CHILD = """
import atexit, runpy, sys
out = sys.argv.pop(1)
atexit.register(lambda: open(out, "w").write("\\n".join(sorted(sys.modules))))
sys.argv = ["mcp-trio", "serve"]
runpy.run_module("mcp_trio", run_name="__main__", alter_sys=True)
"""


def test_the_stdio_serve_path_imports_nothing_it_does_not_use(tmp_path: Path) -> None:
    report = tmp_path / "modules.txt"
    initialize = msgspec.json.encode({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": INIT_PARAMS}) + b"\n"
    done = subprocess.run([sys.executable, "-c", _CHILD, str(report)], input=initialize, capture_output=True,
                          timeout=60, env=child_env())
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    assert b'"serverInfo"' in done.stdout  # it did answer initialize
    modules = set(report.read_text().split())
    assert "mcp_trio.transports.stdio" in modules  # the report is the serving child's
    imported = sorted(name for name in modules if any(name == heavy or name.startswith(heavy + ".") for heavy in HEAVY))
    assert imported == [], f"the stdio serve path imported {imported}: import them where they are used"
