"""What the README and the Makefile tell a newcomer is true, and the set-up prints nothing to ignore.

The README's own ``weather.py`` served as written is in ``test_cli``; here: the RFC 9728 path
it names is the one the server advertises, ``make bench``'s duration is stated once and
agrees with the latest run, ``make test`` checks its prerequisites before the tests, and the
package builds without the warnings setuptools printed on every install.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import trio

from mcp_trio import demo
from mcp_trio._config import load_config
from tests.http_client import request
from tests.served import serving
from tests.test_cli import readme_block

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


def one_paragraph(text: str) -> str:
    return " ".join(text.split())


async def test_the_rfc_9728_path_in_the_readme_is_the_one_advertised(tmp_path: Path) -> None:
    """The README's secure.toml, served: the 401's resource_metadata URL is the document,
    and its path is the one the README names."""
    config_file = tmp_path / "secure.toml"
    config_file.write_text(readme_block("# secure.toml"))
    config = load_config(config_file, {"MCP_TRIO_AUTH_JWT_SECRET": "s" * 40}, {})
    with trio.fail_after(10):
        async with serving(demo.server, authenticator=config.authenticator()) as served:
            refused = await request(served.port, "POST", "/mcp", {"content-type": "application/json"}, b"{}")
            assert refused.status == 401
            challenge = refused.headers["www-authenticate"]
            url = re.search(r'resource_metadata="([^"]+)"', challenge).group(1)  # type: ignore[union-attr]
            path = urlsplit(url).path
            document = await request(served.port, "GET", path)
            assert document.status == 200
            assert json.loads(document.body)["resource"] == config.server.resource
    text = one_paragraph(README)
    assert f"the RFC 9728 document is at `{path}`" in text
    assert f'resource_metadata="{url}"' in text


def test_make_bench_duration_is_stated_once_and_truly() -> None:
    """The Makefile said ten minutes, the README six; the last run took 324 s."""
    makefile = (REPO / "Makefile").read_text()
    assert "minute" not in makefile, "the duration of make bench belongs in the README only"
    latest = max((REPO / "bench" / "results").glob("*.json"))
    seconds = json.loads(latest.read_text())["seconds"]
    stated = re.findall(r"`make bench`[^.]*?\. It takes about ([\w ]+?) minutes", one_paragraph(README))
    assert len(stated) == 1, stated
    minutes = {"five and a half": 5.5, "five": 5, "six": 6, "five to six": 5.5, "eight and a half": 8.5, "ten and a half": 10.5}[stated[0]]
    assert abs(minutes * 60 - seconds) <= 45, (stated, seconds)
    assert f"{seconds:.0f} s" in one_paragraph(README)


def test_make_test_checks_its_prerequisites_before_the_tests(tmp_path: Path) -> None:
    makefile = (REPO / "Makefile").read_text()
    recipe = makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert recipe.index("tests/prerequisites.py") < recipe.index("pytest")
    # A clone with nothing beside it and no npm: each missing thing in one line, exit 2.
    clone = tmp_path / "clone"
    (clone / "tests").mkdir(parents=True)
    shutil.copy(REPO / "tests" / "prerequisites.py", clone / "tests")
    bare_path = tmp_path / "bin"
    bare_path.mkdir()
    (bare_path / "bash").symlink_to(shutil.which("bash") or "/bin/bash")
    env = {**os.environ, "PATH": str(bare_path), "MCP_CONFORMANCE_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, str(clone / "tests" / "prerequisites.py")], capture_output=True,
                          text=True, env=env, timeout=30)
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert lines == [
        f"make test: the conformance runner {tmp_path / 'shared' / 'conformance' / 'run.sh'} is missing: the "
        f"project's shared/ folder must sit beside this clone (as {tmp_path / 'shared'})",
        f"make test: npm is not on PATH: the first run installs Node 22 and the MCP conformance suite with it "
        f"(into {tmp_path / 'cache'}): install Node.js and npm (Debian: apt-get install npm)",
    ]
    # Here, everything is in place: it says nothing.
    done = subprocess.run([sys.executable, str(REPO / "tests" / "prerequisites.py")], capture_output=True, text=True,
                          timeout=30)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_the_readme_says_how_to_run_the_installed_command() -> None:
    text = one_paragraph(README)
    assert "run it as `.venv/bin/mcp-trio`, or activate the environment first (`. .venv/bin/activate`)" in text
    assert "the project's `shared/` folder beside this clone (`../shared`" in text and "`npm`" in text


@pytest.mark.slow
def test_the_package_builds_without_warnings(tmp_path: Path) -> None:
    """setuptools printed three deprecation warnings (a TOML-table license) on every install."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source)
    shutil.copytree(REPO / "mcp_trio", source / "mcp_trio", ignore=shutil.ignore_patterns("__pycache__"))
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--disable-pip-version-check",
                           "-w", str(tmp_path / "wheel"), str(source)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    # -v shows the build backend's output; Python warnings look like "SetuptoolsDeprecationWarning: ...".
    backend = [line for line in (done.stdout + done.stderr).splitlines() if re.search(r"\w+Warning: ", line)]
    assert backend == []


def test_docs_list_every_configuration_key() -> None:
    """Config errors point at docs/security.md for the keys; the README says the complete file
    is there. Every settable key is in its TOML block, under its table."""
    from mcp_trio._config import _LEAVES

    text = (REPO / "docs" / "security.md").read_text()
    block = text.split("## Configuration", 1)[1].split("```toml", 1)[1].split("```", 1)[0]
    listed: set[tuple[str, ...]] = set()
    table: tuple[str, ...] = ()
    for line in block.splitlines():
        header = re.match(r"\[\[?([\w.]+)\]\]?", line)
        if header:
            table = tuple(header.group(1).split("."))
            continue
        key = re.match(r"(\w+) =", line)
        if key:
            listed.add((*table, key.group(1)))
    tools = {path for path in listed if path[:2] == ("rate_limit", "tools")}
    tables = {("rate_limit", "tools"), ("auth", "api_keys"), ("mount",)}
    expected = {path for path in _LEAVES if path not in tables}
    assert expected <= listed, sorted(expected - listed)
    assert tools and {("auth", "api_keys", "sha256"), ("auth", "api_keys", "name")} <= listed
    from mcp_trio._config import MountConfig

    assert {("mount", name) for name in MountConfig.__struct_fields__} <= listed


def test_testing_your_server_runs_as_written(tmp_path: Path) -> None:
    """The README's "Testing your server": its test file and conftest, with the weather.py and
    inventory.py it imports, run by pytest (with pytest-trio, as it says) in a folder of their own."""
    for name in ("weather.py", "inventory.py", "test_inventory.py", "conftest.py"):
        (tmp_path / name).write_text(readme_block(f"# {name}"))
    (tmp_path / "pytest.ini").write_text("[pytest]\ntrio_mode = true\n")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_inventory.py"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": ""})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "5 passed" in done.stdout, done.stdout


def test_the_inspector_line_in_the_readme_is_the_one_dev_prints() -> None:
    from mcp_trio._dev import inspector_line

    assert f"  MCP Inspector          {inspector_line('http://127.0.0.1:8000/mcp')}\n" in README
