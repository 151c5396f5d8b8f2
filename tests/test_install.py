"""``mcp-trio install``: each host's own file, in a temporary home, for each OS's layout.

The files written over are shaped as each host writes them (keys of their own beside the
servers: Claude Desktop's ``preferences``, Claude Code's whole state in ``~/.claude.json``,
VS Code's ``inputs`` and four-space indentation), so the tests show that nothing but our entry
changes. ``platform`` is passed in, so the macOS and Windows layouts are checked on Linux; the
entry written is then used as a host would use it: the official SDK's stdio client starts it.
"""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from mcp_trio._appspec import split_app
from mcp_trio._cli import build_parser, load_app, main
from mcp_trio._install import run_install

APP_FILE = Path(__file__).with_name("stdio_sdk_app.py")
PYTHON = os.path.abspath(sys.executable)

# -- each host's file as the host itself writes it ------------------------------------------------
CLAUDE_DESKTOP = {
    "mcpServers": {"filesystem": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "/Users/me/Desktop"]}},
    "preferences": {"sidebarMode": "chat", "coworkScheduledTasksEnabled": False},
}
CLAUDE_CODE = {
    "numStartups": 42,
    "installMethod": "native",
    "autoUpdates": True,
    "projects": {"/home/me/app": {"allowedTools": [], "mcpServers": {}, "hasTrustDialogAccepted": True}},
    "mcpServers": {"context7": {"type": "http", "url": "https://mcp.context7.com/mcp"}},
    "userID": "0123abcd",
}
CURSOR = {"mcpServers": {
    "playwright": {"command": "npx", "args": ["-y", "@playwright/mcp@latest"]},
    "context7": {"url": "https://mcp.context7.com/mcp", "headers": {"CONTEXT7_API_KEY": "${env:CONTEXT7_API_KEY}"}},
}}
VSCODE = {
    "inputs": [{"type": "promptString", "id": "perplexity-key", "description": "Perplexity API Key", "password": True}],
    "servers": {"perplexity": {"type": "stdio", "command": "npx", "args": ["-y", "server-perplexity-ask"],
                               "env": {"PERPLEXITY_API_KEY": "${input:perplexity-key}"}}},
}
REAL = {"claude-desktop": (CLAUDE_DESKTOP, 2), "claude-code": (CLAUDE_CODE, 2), "cursor": (CURSOR, 2), "vscode": (VSCODE, 4)}
SERVERS_KEY = {"claude-desktop": "mcpServers", "claude-code": "mcpServers", "cursor": "mcpServers", "vscode": "servers"}


class Machine:
    """A temporary home (and project folder) with each OS's environment variables."""

    def __init__(self, root: Path, platform: str = "linux") -> None:
        self.platform = platform
        self.home = root / "home"
        self.project = root / "project"
        self.project.mkdir(parents=True)
        self.env = {"HOME": str(self.home), "USERPROFILE": str(self.home), "APPDATA": str(self.home / "AppData" / "Roaming"),
                    "LOCALAPPDATA": str(self.home / "AppData" / "Local"), "XDG_CONFIG_HOME": str(self.home / "xdg")}

    def user_file(self, target: str) -> Path:
        """Where ``target`` keeps its user-scope file here (its folder made, as the host would)."""
        app_data = {"win32": self.home / "AppData" / "Roaming", "darwin": self.home / "Library" / "Application Support",
                    "linux": self.home / "xdg"}[self.platform]
        path = {"claude-desktop": app_data / "Claude" / "claude_desktop_config.json", "claude-code": self.home / ".claude.json",
                "cursor": self.home / ".cursor" / "mcp.json", "vscode": app_data / "Code" / "User" / "mcp.json"}[target]
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def install(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        args = build_parser().parse_args(["install", *argv])
        code = run_install(args, env=self.env, platform=self.platform, cwd=self.project, out=out, err=err)
        return code, out.getvalue(), err.getvalue()


def read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def expected_stdio(target: str, app: str, *extra: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"type": "stdio"} if target in ("claude-code", "vscode") else {}
    entry["command"] = PYTHON
    entry["args"] = ["-m", "mcp_trio", "serve", app, "--transport", "stdio", *extra]
    if env:
        entry["env"] = env
    return entry


# -- where each host's file is ------------------------------------------------------------------
@pytest.mark.parametrize("platform", ["darwin", "win32", "linux"])
@pytest.mark.parametrize("target", ["claude-desktop", "claude-code", "cursor", "vscode"])
def test_user_file_per_os(tmp_path: Path, platform: str, target: str) -> None:
    machine = Machine(tmp_path, platform)
    path = machine.user_file(target)
    code, out, err = machine.install(target, str(APP_FILE))
    assert code == 0, err
    assert str(path) in out
    assert read(path)[SERVERS_KEY[target]]["stdio_sdk_app"] == expected_stdio(target, f"{APP_FILE}")


@pytest.mark.parametrize(("target", "relative"), [
    ("claude-code", ".mcp.json"), ("cursor", ".cursor/mcp.json"), ("vscode", ".vscode/mcp.json")])
def test_project_file(tmp_path: Path, target: str, relative: str) -> None:
    machine = Machine(tmp_path)
    code, _, err = machine.install(target, str(APP_FILE), "--scope", "project")
    assert code == 0, err
    assert read(machine.project / relative)[SERVERS_KEY[target]]["stdio_sdk_app"] == expected_stdio(target, f"{APP_FILE}")


def test_claude_desktop_from_the_windows_package_reads_its_own_folder(tmp_path: Path) -> None:
    """The MSIX build reads a virtualised copy of %APPDATA% and ignores the real one."""
    machine = Machine(tmp_path, "win32")
    roaming = machine.user_file("claude-desktop")
    packaged = machine.home / "AppData" / "Local" / "Packages" / "Claude_pzs8sxrjxfjjc" / "LocalCache" / "Roaming" / "Claude"
    packaged.mkdir(parents=True)
    assert machine.install("claude-desktop", str(APP_FILE))[0] == 0
    assert "stdio_sdk_app" in read(packaged / "claude_desktop_config.json")["mcpServers"]
    assert not roaming.exists()


@pytest.mark.parametrize(("target", "folder"), [("claude-desktop", "Claude"), ("cursor", ".cursor"), ("vscode", "User")])
def test_a_host_that_is_not_installed_is_one_line(tmp_path: Path, target: str, folder: str) -> None:
    machine = Machine(tmp_path, "darwin")
    code, out, err = machine.install(target, str(APP_FILE))
    assert code == 2 and not out
    assert err.count("\n") == 1 and folder in err and "does not exist" in err and "--file" in err, err
    assert not machine.home.exists()  # nothing created


def test_file_overrides_the_hosts_place(tmp_path: Path) -> None:
    machine = Machine(tmp_path)
    elsewhere = tmp_path / "profiles" / "work" / "mcp.json"
    assert machine.install("vscode", str(APP_FILE), "--file", str(elsewhere))[0] == 0
    assert "stdio_sdk_app" in read(elsewhere)["servers"]


# -- editing a real file: once, twice, with others in it ------------------------------------------
@pytest.mark.parametrize("target", ["claude-desktop", "claude-code", "cursor", "vscode"])
def test_other_servers_and_keys_are_kept_and_a_second_run_changes_nothing(tmp_path: Path, target: str) -> None:
    machine = Machine(tmp_path, "darwin")
    path = machine.user_file(target)
    original, indent = REAL[target]
    path.write_text(json.dumps(original, indent=indent) + "\n", encoding="utf-8")
    code, out, err = machine.install(target, str(APP_FILE), "--name", "weather", "--env", "API_KEY=k1")
    assert code == 0, err
    assert out.startswith("mcp-trio install: added 'weather' in ")
    after = read(path)
    servers = after[SERVERS_KEY[target]]
    assert list(servers)[-1] == "weather"
    assert servers.pop("weather") == expected_stdio(target, f"{APP_FILE}", env={"API_KEY": "k1"})
    assert after == original  # everything else exactly as it was, in its order
    assert list(after) == list(original)
    text = path.read_text(encoding="utf-8")
    assert text.startswith("{\n" + " " * indent + '"'), text[:20]  # the file's own indentation

    stat_before = path.stat()
    code, out, err = machine.install(target, str(APP_FILE), "--name", "weather", "--env", "API_KEY=k1")
    assert code == 0, err
    assert "already up to date" in out and "nothing written" in out
    assert path.read_text(encoding="utf-8") == text
    assert path.stat().st_mtime_ns == stat_before.st_mtime_ns and path.stat().st_ino == stat_before.st_ino


def test_update_replaces_our_keys_and_keeps_the_users(tmp_path: Path) -> None:
    machine = Machine(tmp_path)
    path = machine.user_file("cursor")
    path.write_text(json.dumps({"mcpServers": {"weather": {
        "url": "http://127.0.0.1:8000/mcp", "headers": {"X": "1"}, "disabled": True, "autoApprove": ["echo"]}}}), encoding="utf-8")
    code, out, _ = machine.install("cursor", str(APP_FILE), "--name", "weather")
    assert code == 0 and "updated 'weather'" in out
    assert read(path)["mcpServers"]["weather"] == {"disabled": True, "autoApprove": ["echo"], **expected_stdio("cursor", str(APP_FILE))}


def test_windows_line_endings_and_permissions_are_kept(tmp_path: Path) -> None:
    machine = Machine(tmp_path)
    path = machine.user_file("claude-code")
    path.write_bytes(json.dumps(CLAUDE_CODE, indent=2).replace("\n", "\r\n").encode() + b"\r\n")
    path.chmod(0o600)
    assert machine.install("claude-code", str(APP_FILE))[0] == 0
    raw = path.read_bytes()
    assert raw.count(b"\r\n") == raw.count(b"\n") > 10
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_symlinked_file_is_written_through_the_link(tmp_path: Path) -> None:
    machine = Machine(tmp_path)
    real = tmp_path / "dotfiles" / "claude.json"
    real.parent.mkdir()
    real.write_text(json.dumps(CLAUDE_CODE), encoding="utf-8")
    machine.home.mkdir()
    (machine.home / ".claude.json").symlink_to(real)
    assert machine.install("claude-code", str(APP_FILE))[0] == 0
    assert (machine.home / ".claude.json").is_symlink()
    assert "stdio_sdk_app" in read(real)["mcpServers"]


def test_a_new_file_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    machine = Machine(tmp_path)
    assert machine.install("claude-code", str(APP_FILE), "--scope", "project", "--env", "TOKEN=secret")[0] == 0
    assert (machine.project / ".mcp.json").stat().st_mode & 0o777 == 0o600


# -- dry run -------------------------------------------------------------------------------------
def test_dry_run_prints_a_unified_diff_and_writes_nothing(tmp_path: Path) -> None:
    machine = Machine(tmp_path)
    path = machine.user_file("cursor")
    before = json.dumps(CURSOR, indent=2) + "\n"
    path.write_text(before, encoding="utf-8")
    code, out, err = machine.install("cursor", str(APP_FILE), "--dry-run")
    assert code == 0
    assert out.startswith(f"--- {path}\n+++ {path}\n@@ ")
    added = [line for line in out.splitlines() if line.startswith("+") and not line.startswith("+++")]
    assert any('"stdio_sdk_app": {' in line for line in added) and any(PYTHON in line for line in added)
    assert not [line for line in out.splitlines() if line.startswith("-") and not line.startswith("---")]
    assert "dry run, nothing written" in err and "would change" in err
    assert path.read_text(encoding="utf-8") == before

    code, out, err = machine.install("claude-code", str(APP_FILE), "--scope", "project", "--dry-run")
    assert code == 0 and out.startswith(f"--- /dev/null\n+++ {machine.project / '.mcp.json'}\n")
    assert not (machine.project / ".mcp.json").exists()


def test_dry_run_of_an_installed_server_prints_no_diff(tmp_path: Path) -> None:
    machine = Machine(tmp_path)
    machine.user_file("cursor")
    assert machine.install("cursor", str(APP_FILE))[0] == 0
    code, out, err = machine.install("cursor", str(APP_FILE), "--dry-run")
    assert (code, out) == (0, "") and "is up to date" in err


# -- refusals: one line, nothing written ------------------------------------------------------------
@pytest.mark.parametrize(("target", "content", "words"), [
    ("claude-desktop", '{"mcpServers": {"a": {"command": "x",}}', "not valid JSON (line 1"),
    ("claude-code", '{"numStartups": 3', "not valid JSON"),
    ("cursor", '[{"mcpServers": {}}]', "holds a JSON list, not an object"),
    ("cursor", '{"mcpServers": ["a"]}', '"mcpServers" in'),
    ("vscode", '{\n  // my servers\n  "servers": {}\n}\n', "comments and trailing commas"),
], ids=["trailing-comma", "truncated", "array", "servers-not-object", "jsonc-comment"])
def test_a_malformed_file_is_refused_and_left_alone(tmp_path: Path, target: str, content: str, words: str) -> None:
    machine = Machine(tmp_path)
    path = machine.user_file(target)
    path.write_text(content, encoding="utf-8")
    code, out, err = machine.install(target, str(APP_FILE))
    assert code == 2 and not out
    assert err.count("\n") == 1 and words in err and str(path) in err, err
    assert path.read_text(encoding="utf-8") == content
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary file left


def test_an_empty_file_is_taken_as_empty(tmp_path: Path) -> None:
    machine = Machine(tmp_path)
    path = machine.user_file("cursor")
    path.write_text("\n", encoding="utf-8")
    assert machine.install("cursor", str(APP_FILE))[0] == 0
    assert list(read(path)["mcpServers"]) == ["stdio_sdk_app"]


@pytest.mark.parametrize(("argv", "words"), [
    (["no_such_file.py:server"], "no such file"),
    (["no_such_module_xyz:server"], "neither in"),
    (["weather:server", "--app-dir", "nowhere"], "--app-dir nowhere: no such directory"),
    ([], "give APP"),
    ([str(APP_FILE), "--url", "https://h/mcp"], "not both"),
    (["--url", "ftp://h/"], "not an http(s) URL"),
    (["--url", "https://h/mcp", "--env", "A=1"], "--env is for a local server"),
    (["--url", "https://h/mcp", "--header", "no colon"], "'Name: value'"),
    ([str(APP_FILE), "--header", "A: b"], "--header is for --url"),
    ([str(APP_FILE), "--env", "1A=b"], "KEY=VALUE"),
    ([str(APP_FILE), "--name", "has space"], "pass --name"),
    ([str(APP_FILE), "--python", "/no/python"], "--python /no/python: no such file"),
    ([str(APP_FILE), "--config", "missing.toml"], "--config missing.toml: no such file"),
])
def test_usage_errors_are_one_line(tmp_path: Path, argv: list[str], words: str) -> None:
    machine = Machine(tmp_path)
    path = machine.user_file("claude-code")
    code, out, err = machine.install("claude-code", *argv)
    assert code == 2 and not out
    assert err.count("\n") == 1 and words in err, err
    assert not path.exists()


def test_claude_desktop_takes_no_remote_server(tmp_path: Path) -> None:
    machine = Machine(tmp_path, "darwin")
    path = machine.user_file("claude-desktop")
    code, _, err = machine.install("claude-desktop", "--url", "https://mcp.example.com/mcp")
    assert code == 2 and "local (stdio) servers only" in err and "Connectors" in err
    assert not path.exists()


# -- what the entry says ----------------------------------------------------------------------------
@pytest.mark.parametrize(("target", "expected"), [
    ("claude-code", {"type": "http", "url": "https://mcp.example.com:8443/mcp", "headers": {"Authorization": "Bearer t0k"}}),
    ("cursor", {"url": "https://mcp.example.com:8443/mcp", "headers": {"Authorization": "Bearer t0k"}}),
    ("vscode", {"type": "http", "url": "https://mcp.example.com:8443/mcp", "headers": {"Authorization": "Bearer t0k"}}),
])
def test_remote_server(tmp_path: Path, target: str, expected: dict[str, Any]) -> None:
    machine = Machine(tmp_path)
    path = machine.user_file(target)
    code, _, err = machine.install(target, "--url", "https://mcp.example.com:8443/mcp", "--header", "Authorization: Bearer t0k")
    assert code == 0, err
    assert read(path)[SERVERS_KEY[target]] == {"mcp.example.com-8443": expected}


def test_module_app_found_here_is_passed_with_its_folder(tmp_path: Path) -> None:
    machine = Machine(tmp_path)
    path = machine.user_file("cursor")
    (machine.project / "weather.py").write_text("from mcp_trio import Server\nserver = Server('weather')\n")
    assert machine.install("cursor", "weather:server")[0] == 0
    assert read(path)["mcpServers"]["weather"]["args"] == [
        "-m", "mcp_trio", "serve", "weather:server", "--transport", "stdio", "--app-dir", str(machine.project.resolve())]
    (machine.project / "lib" / "pkg").mkdir(parents=True)
    assert machine.install("cursor", "pkg.tools:make", "--app-dir", "lib")[0] == 0
    assert read(path)["mcpServers"]["tools"]["args"][3:] == [
        "pkg.tools:make", "--transport", "stdio", "--app-dir", str((machine.project / "lib").resolve())]


def test_relative_paths_become_absolute(tmp_path: Path) -> None:
    machine = Machine(tmp_path)
    path = machine.user_file("claude-code")
    (machine.project / "app.py").write_text("")
    (machine.project / "server.toml").write_text("")
    code, _, err = machine.install("claude-code", "app.py:make", "--config", "server.toml")
    assert code == 0, err
    assert read(path)["mcpServers"]["app"]["args"] == [
        "-m", "mcp_trio", "serve", f"{machine.project.resolve() / 'app.py'}:make", "--transport", "stdio",
        "--config", str((machine.project / "server.toml").resolve())]


def test_env_file_values_are_written_where_the_host_cannot_read_the_file(tmp_path: Path) -> None:
    machine = Machine(tmp_path)
    (machine.project / ".env").write_text('# keys\nexport API_KEY="k 1"\nREGION=eu\n\nMODE=\'fast\'\n')
    cursor, vscode = machine.user_file("cursor"), machine.user_file("vscode")
    assert machine.install("cursor", str(APP_FILE), "--env-file", ".env", "--env", "REGION=us")[0] == 0
    assert read(cursor)["mcpServers"]["stdio_sdk_app"]["env"] == {"API_KEY": "k 1", "REGION": "us", "MODE": "fast"}
    # VS Code reads env files itself: the file is named, its secrets stay out of mcp.json.
    assert machine.install("vscode", str(APP_FILE), "--env-file", ".env", "--env", "REGION=us")[0] == 0
    entry = read(vscode)["servers"]["stdio_sdk_app"]
    assert (entry["env"], entry["envFile"]) == ({"REGION": "us"}, str((machine.project / ".env").resolve()))


def test_a_bad_env_file_line_is_named(tmp_path: Path) -> None:
    machine = Machine(tmp_path)
    machine.user_file("cursor")
    (machine.project / ".env").write_text("A=1\nnot a pair\n")
    code, _, err = machine.install("cursor", str(APP_FILE), "--env-file", ".env")
    assert code == 2 and "line 2" in err and "KEY=VALUE" in err


def test_project_file_with_values_gets_a_note(tmp_path: Path) -> None:
    machine = Machine(tmp_path)
    code, _, err = machine.install("cursor", str(APP_FILE), "--scope", "project", "--env", "TOKEN=x")
    assert code == 0 and "often committed" in err


@pytest.mark.parametrize(("spec", "parts"), [
    ("weather:server", ("weather", "server", False)),
    ("weather", ("weather", "", False)),
    ("pkg.mod:make", ("pkg.mod", "make", False)),
    ("app.py", ("app.py", "", True)),
    ("../apps/app.py:server", ("../apps/app.py", "server", True)),
    (r"C:\work\weather.py:server", (r"C:\work\weather.py", "server", True)),
    (r"C:\work\weather.py", (r"C:\work\weather.py", "", True)),
    (r"apps\weather.py", (r"apps\weather.py", "", True)),
])
def test_app_spec_on_every_os(spec: str, parts: tuple[str, str, bool]) -> None:
    assert tuple(split_app(spec)) == parts


def test_serve_loads_a_file_app_whose_path_has_a_colon(tmp_path: Path) -> None:
    """The split is at the last colon (a Windows drive's is the first): serve finds the file."""
    folder = tmp_path / "drive:like"
    folder.mkdir()
    (folder / "app.py").write_text("from mcp_trio import Server\nmine = Server('colon')\n")
    assert load_app(f"{folder / 'app.py'}:mine").name == "colon"


# -- the command line, and the entry used as a host uses it ---------------------------------------
def test_the_subcommand(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert main(["install", "claude-code", str(APP_FILE), "--name", "app"]) == 0
    assert f"added 'app' in {tmp_path / '.claude.json'}" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["install", "--help"])
    usage = capsys.readouterr().out
    assert usage.startswith("usage: mcp-trio install") and "--dry-run" in usage


@pytest.mark.slow
@pytest.mark.parametrize("app", [str(APP_FILE), "mcp_trio.demo:server"], ids=["file", "installed-module"])
async def test_the_written_entry_starts_a_working_server(tmp_path: Path, app: str) -> None:
    machine = Machine(tmp_path)
    assert machine.install("claude-code", app, "--scope", "project", "--name", "it", "--env", "MCP_TRIO_SERVER_LOG_LEVEL=error")[0] == 0
    entry = read(machine.project / ".mcp.json")["mcpServers"]["it"]
    assert entry["type"] == "stdio"
    elsewhere = tmp_path / "host-cwd"  # hosts start servers from folders of their own
    elsewhere.mkdir()
    params = StdioServerParameters(command=entry["command"], args=entry["args"], env=entry["env"], cwd=str(elsewhere))
    with trio.fail_after(20), (tmp_path / "stderr").open("w") as errlog:
        async with Client(stdio_client(params, errlog=errlog), mode="legacy") as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
    assert ("list_roots" if app == str(APP_FILE) else "echo") in names
