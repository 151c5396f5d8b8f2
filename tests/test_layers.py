"""The layers' import rules hold, and would catch every import that once closed a circle.

The rules are import-linter contracts in ``pyproject.toml`` (``[tool.importlinter]``;
docs/architecture.md draws them). Every import counts: at module level, inside a function,
under ``TYPE_CHECKING``. The second test puts back, into a copy of the package, each import
that closed one of the circles the layers replaced (the nine-file circle of the serving core,
``transports/http.py`` with ``_stateless_http.py`` and the operator page), hidden the ways
they used to hide, and checks that the linter names every one of them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

#: (file, import, how it hides): the edges that closed today's circles, in the new layout.
CIRCLE_EDGES = [
    ("serving/_handlers.py", "from mcp_trio.serving._connection import Connection", "type_checking"),
    ("serving/_context.py", "from mcp_trio.serving._connection import Connection", "type_checking"),
    ("serving/_compose.py", "from mcp_trio.serving._context import Context", "function"),
    ("serving/_supervisor.py", "from mcp_trio.serving._handlers import HANDLERS", "module"),
    ("serving/_supervisor.py", "from mcp_trio.serving._connection import Connection", "type_checking"),
    ("serving/_tasks.py", "from mcp_trio.serving import _handlers", "function"),
    ("serving/_tasks.py", "from mcp_trio.serving._connection import Connection", "type_checking"),
    ("serving/_stateless_side.py", "from mcp_trio.serving._connection import Connection", "type_checking"),
    ("serving/_calls.py", "from mcp_trio.serving._context import Context", "function"),
    ("plugins/_manager.py", "from mcp_trio._server import Server", "module"),
    ("plugins/_manager.py", "from mcp_trio.serving._supervisor import Supervisor", "type_checking"),
    ("_server.py", "from mcp_trio.serving._supervisor import Supervisor", "type_checking"),
    ("_server.py", "from mcp_trio.serving._context import Context", "function"),
    ("offer/_registrar.py", "from mcp_trio.serving._context import Context", "function"),
    ("transports/_stateless_http.py", "from mcp_trio.transports.http import McpHttpApp", "type_checking"),
    ("transports/_http_session.py", "from mcp_trio.transports.http import McpHttpApp", "type_checking"),
    ("transports/http.py", "from mcp_trio.transports.websocket import serve_websocket", "function"),
    ("protocol/_era.py", "import trio", "function"),
    ("client/_client.py", "from mcp_trio.serving._connection import Connection", "function"),
]


def _lint(cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).with_name("lint-imports")), "--no-cache", str(cwd / "pyproject.toml")]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_the_layers_keep_their_rules() -> None:
    result = _lint(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def _hide(source: str, statement: str, how: str) -> str:
    if how == "module":
        return source + f"\n{statement}  # noqa\n"
    if how == "function":
        return source + f"\n\ndef _probe() -> None:\n    {statement}  # noqa\n"
    return source + f"\n\nimport typing as _typing\n\nif _typing.TYPE_CHECKING:\n    {statement}  # noqa\n"


def test_every_circle_edge_of_old_would_fail(tmp_path: Path) -> None:
    package = tmp_path / "mcp_trio"
    shutil.copytree(REPO / "mcp_trio", package, ignore=shutil.ignore_patterns("__pycache__", "static"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    for relative, statement, how in CIRCLE_EDGES:
        path = package / relative
        path.write_text(_hide(path.read_text(), statement, how))
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = _lint(tmp_path, env)
    report = result.stdout + result.stderr
    assert result.returncode != 0, report
    for relative, statement, _ in CIRCLE_EDGES:
        importer = "mcp_trio." + relative.removesuffix(".py").replace("/", ".")
        imported = statement.split()[1]
        if statement.startswith("from") and statement.split()[3][0].islower() and imported.count(".") < 2:
            imported = f"{imported}.{statement.split()[3]}"  # from mcp_trio.serving import _handlers
        assert f"{importer} -> {imported}" in report, (importer, imported, report[-3000:])
