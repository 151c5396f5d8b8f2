"""Where each MCP host keeps its list of servers, and how one entry looks there.

What ``mcp-trio install`` writes, host by host. The formats and places are the hosts' own,
looked up in their documentation (checked November 2026):

* **Claude Desktop** — ``claude_desktop_config.json``, top-level ``mcpServers``, each entry
  ``command``/``args``/``env``; in ``~/Library/Application Support/Claude/`` on macOS and
  ``%APPDATA%\\Claude\\`` on Windows (modelcontextprotocol.io/docs/develop/connect-local-servers).
  Windows builds installed as an MSIX package (the default installer since early 2026) read
  ``%LOCALAPPDATA%\\Packages\\Claude_<id>\\LocalCache\\Roaming\\Claude\\`` instead, and ignore
  the roaming file (github.com/anthropics/claude-code/issues/26073). Its file holds local
  (stdio) servers only: remote ones are added in the app (Settings, Connectors). There is no
  Linux release; unofficial builds use ``~/.config/Claude/``.
* **Claude Code** — user scope: top-level ``mcpServers`` of ``~/.claude.json``; project scope:
  ``.mcp.json`` at the project root; entries ``{"type": "stdio", "command", "args", "env"}``
  or ``{"type": "http", "url", "headers"}`` (code.claude.com/docs/en/mcp).
* **Cursor** — ``~/.cursor/mcp.json`` (every project) or ``.cursor/mcp.json`` (this one),
  top-level ``mcpServers``; ``command``/``args``/``env`` for a local server, ``url``/``headers``
  for a remote one (cursor.com/docs/mcp).
* **VS Code** — ``.vscode/mcp.json`` in the workspace or ``mcp.json`` in the user profile
  (``Code/User/`` under ``%APPDATA%``, ``~/Library/Application Support`` or ``~/.config``;
  "MCP: Open User Configuration"), top-level ``servers`` beside ``inputs``; entries
  ``{"type": "stdio", "command", "args", "env", "envFile"}`` or ``{"type": "http", "url",
  "headers"}`` (code.visualstudio.com/docs/copilot/reference/mcp-configuration). Since VS Code
  1.102 servers live there, not under ``"mcp"`` in ``settings.json``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Scope = Literal["user", "project"]

#: The keys of an entry that ``install`` owns: replaced on update. Any other key of an entry
#: (``disabled``, ``autoApprove``, a host's own) is the user's and is kept.
MANAGED_KEYS = frozenset({"type", "command", "args", "env", "envFile", "url", "headers"})


class HostError(Exception):
    """The host cannot take this server here; the message says why and what to do instead."""


@dataclass(frozen=True)
class Host:
    name: str  # the TARGET on the command line
    title: str
    servers_key: str  # the top-level object that maps server names to entries
    scopes: tuple[Scope, ...]
    typed: bool  # entries carry "type": "stdio" / "http"
    remote: bool  # the file can hold a remote (URL) server
    env_file: bool  # entries can name an env file ("envFile") instead of holding the values
    next_step: str  # what the user does after the file changed


HOSTS: dict[str, Host] = {host.name: host for host in (
    Host("claude-desktop", "Claude Desktop", "mcpServers", ("user",), typed=False, remote=False, env_file=False,
         next_step="quit and restart Claude Desktop to load it"),
    Host("claude-code", "Claude Code", "mcpServers", ("user", "project"), typed=True, remote=True, env_file=False,
         next_step="`claude mcp list` shows it"),
    Host("cursor", "Cursor", "mcpServers", ("user", "project"), typed=False, remote=True, env_file=False,
         next_step="it appears under Cursor Settings > MCP"),
    Host("vscode", "VS Code", "servers", ("user", "project"), typed=True, remote=True, env_file=True,
         next_step="start it from the Command Palette: MCP: List Servers"),
)}


def normal_platform(platform: str) -> str:
    """``sys.platform`` folded to the three layouts hosts know: darwin, win32, or linux (XDG)."""
    return platform if platform in ("darwin", "win32") else "linux"


def home_of(platform: str, env: Mapping[str, str]) -> Path:
    if platform == "win32" and env.get("USERPROFILE"):
        return Path(env["USERPROFILE"])
    if env.get("HOME"):
        return Path(env["HOME"])
    return Path.home()


def _app_data(platform: str, env: Mapping[str, str], home: Path) -> Path:
    """Where desktop apps keep per-user settings: %APPDATA%, Application Support, XDG config."""
    if platform == "win32":
        return Path(env["APPDATA"]) if env.get("APPDATA") else home / "AppData" / "Roaming"
    if platform == "darwin":
        return home / "Library" / "Application Support"
    return Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else home / ".config"


def _claude_desktop_folder(platform: str, env: Mapping[str, str], home: Path) -> Path:
    if platform == "win32":
        local = Path(env["LOCALAPPDATA"]) if env.get("LOCALAPPDATA") else home / "AppData" / "Local"
        packaged = sorted(p for p in (local / "Packages").glob("Claude_*") if (p / "LocalCache" / "Roaming").is_dir())
        if len(packaged) > 1:
            raise HostError(f"several Claude Desktop packages in {local / 'Packages'}: pass --file with the right "
                            "claude_desktop_config.json")
        if packaged:
            return packaged[0] / "LocalCache" / "Roaming" / "Claude"
    return _app_data(platform, env, home) / "Claude"


def config_file(host: Host, scope: Scope, *, platform: str, env: Mapping[str, str], cwd: Path) -> Path:
    """The file ``host`` reads its servers from, for ``scope``; checks the host is installed.

    A user-scope file whose folder does not exist belongs to a host that is not installed (or
    never started): that is refused rather than creating the folder, so a typo in TARGET or a
    wrong OS cannot scatter files. Project files are created with their folder.
    """
    if scope not in host.scopes:
        raise HostError(f"{host.title} has no {scope} scope: use {' or '.join(f'--scope {s}' for s in host.scopes)}")
    platform = normal_platform(platform)
    home = home_of(platform, env)
    if scope == "project":
        return cwd / {"claude-code": ".mcp.json", "cursor": ".cursor/mcp.json", "vscode": ".vscode/mcp.json"}[host.name]
    if host.name == "claude-code":
        return home / ".claude.json"
    if host.name == "cursor":
        folder = home / ".cursor"
    elif host.name == "vscode":
        folder = _app_data(platform, env, home) / "Code" / "User"
    else:
        folder = _claude_desktop_folder(platform, env, home)
    if not folder.is_dir():
        raise HostError(f"{folder} does not exist: is {host.title} installed? Start it once, or pass --file PATH"
                        + (" or --scope project" if "project" in host.scopes else ""))
    name = "claude_desktop_config.json" if host.name == "claude-desktop" else "mcp.json"
    return folder / name


def stdio_entry(host: Host, command: str, args: list[str], env: Mapping[str, str], env_file: Path | None) -> dict[str, Any]:
    """An entry that starts ``command args`` as a child speaking MCP on stdin/stdout.

    ``env_file`` is named as such where the host reads it (VS Code's ``envFile``, so secrets
    stay out of a file that may be committed); elsewhere the caller has merged it into ``env``.
    """
    entry: dict[str, Any] = {"type": "stdio"} if host.typed else {}
    entry["command"] = command
    entry["args"] = list(args)
    if env:
        entry["env"] = dict(env)
    if env_file is not None:
        entry["envFile"] = str(env_file)
    return entry


def http_entry(host: Host, url: str, headers: Mapping[str, str]) -> dict[str, Any]:
    """An entry for a server at ``url`` (Streamable HTTP), sending ``headers`` with each request."""
    if not host.remote:
        raise HostError(f"{host.title}'s config file holds local (stdio) servers only: add a remote server in "
                        f"{host.title} (Settings > Connectors), or install the app itself: mcp-trio install "
                        f"{host.name} APP")
    entry: dict[str, Any] = {"type": "http"} if host.typed else {}
    entry["url"] = url
    if headers:
        entry["headers"] = dict(headers)
    return entry


def merge_entry(existing: Any, entry: dict[str, Any]) -> dict[str, Any]:
    """``entry`` over ``existing``: our keys replaced (stale ones dropped), the user's kept."""
    if not isinstance(existing, dict):
        return entry
    merged = {key: value for key, value in existing.items() if key not in MANAGED_KEYS or key in entry}
    merged.update(entry)
    return merged
