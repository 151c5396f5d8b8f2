"""``mcp-trio install TARGET APP``: register a server with an MCP host, in the host's own file.

::

    mcp-trio install claude-desktop weather.py:server            # stdio, this venv's Python
    mcp-trio install cursor weather:server --env API_KEY=... --scope project
    mcp-trio install vscode --url https://mcp.example.com/mcp --header "Authorization: Bearer ..."
    mcp-trio install claude-code weather:server --dry-run         # print the change, write nothing

A local server is started by the host as ``<this venv's python> -m mcp_trio serve APP
--transport stdio``: the interpreter that runs this command (not resolved through the venv's
symlink, which would lose the venv), a file APP made absolute, and a module APP found through
``--app-dir`` (the folder it was found in), since hosts start servers from folders of their own.
Running the same command twice changes nothing the second time; other servers, other keys and
the user's own keys of this entry are kept; a file that is not valid JSON is refused and left
as it is. Where each host keeps its file, and its format: ``_hosts``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from ._appspec import split_app
from ._hosts import HOSTS, Host, HostError, config_file, http_entry, merge_entry, stdio_entry
from ._json_config import ConfigFileError, plan_edit, write

#: Server names are keys in the hosts' files and prefixes of tool names in some of them.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an RFC 9110 token


class InstallError(Exception):
    """A usage error: one line with the cause and what to do."""


def add_install_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``mcp-trio install`` (the CLI adds the subcommand and calls ``run_install``)."""
    parser.add_argument("target", choices=sorted(HOSTS), metavar="TARGET",
                        help=f"the host to register with: {', '.join(sorted(HOSTS))}")
    parser.add_argument("app", nargs="?", default=None, metavar="APP",
                        help="MODULE:ATTR or path/to/file.py:ATTR naming the Server (omit with --url)")
    parser.add_argument("--name", default=None, help="the server's name in the host (default: APP's module or file name, "
                                                     "or the URL's host)")
    parser.add_argument("--scope", choices=["user", "project"], default="user",
                        help="user: for you in every project (default); project: this folder's file (.mcp.json, "
                             ".cursor/mcp.json, .vscode/mcp.json), often committed")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="an environment variable for the server (repeatable)")
    parser.add_argument("--env-file", default=None, metavar="PATH",
                        help="KEY=VALUE lines for the server's environment (VS Code reads the file itself; other hosts "
                             "get its values)")
    parser.add_argument("--config", default=None, metavar="FILE",
                        help="the server's mcp-trio TOML configuration, passed to serve as an absolute path (every "
                             "serve setting has a key there, and an MCP_TRIO_* variable for --env)")
    parser.add_argument("--app-dir", default=None, metavar="DIR",
                        help="the folder MODULE is in (default: the current directory)")
    parser.add_argument("--python", default=None, metavar="PATH",
                        help="the interpreter the host runs (default: this one, the venv's when in a venv)")
    parser.add_argument("--url", default=None, help="register a remote server at this URL (Streamable HTTP) instead of APP")
    parser.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'",
                        help="with --url: an HTTP header sent with every request (repeatable)")
    parser.add_argument("--file", default=None, metavar="PATH",
                        help="edit this file instead of the host's usual one (another profile, an unofficial build)")
    parser.add_argument("--dry-run", action="store_true", help="print the change as a unified diff; write nothing")


def run_install(
    args: argparse.Namespace,
    *,
    env: Mapping[str, str] | None = None,
    platform: str | None = None,
    cwd: Path | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Write (or, with ``--dry-run``, show) the host's updated file. 0 on success, 2 on a usage
    or configuration error, 1 when the file cannot be written. ``env``, ``platform`` and ``cwd``
    default to this process's (tests pass their own: a temporary home, another OS's layout)."""
    env = os.environ if env is None else env
    platform = sys.platform if platform is None else platform
    cwd = Path.cwd() if cwd is None else cwd
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    host = HOSTS[args.target]
    try:
        name, entry = _entry(host, args, cwd)
        path = Path(args.file).expanduser() if args.file else config_file(host, args.scope, platform=platform, env=env, cwd=cwd)
        hint = " (VS Code allows comments and trailing commas; this command would lose them)" if host.name == "vscode" else ""
        existed: list[bool] = []
        edit = plan_edit(path, lambda data: existed.append(_put(data, host, name, entry, path)), dialect_hint=hint)
    except (InstallError, HostError, ConfigFileError) as exc:
        print(f"mcp-trio install: {exc}", file=err)
        return 2
    where = f"{path} ({host.title}, {'file' if args.file else args.scope})"
    if args.dry_run:
        out.write(edit.diff())
        print(f"mcp-trio install: dry run, nothing written: {where} {'would change' if edit.changed else 'is up to date'}",
              file=err)
        return 0
    if not edit.changed:
        print(f"mcp-trio install: '{name}' is already up to date in {where}; nothing written", file=out)
        return 0
    try:
        write(edit)
    except OSError as exc:
        print(f"mcp-trio install: cannot write {path}: {exc.strerror or exc}; check the folder's permissions", file=err)
        return 1
    print(f"mcp-trio install: {'updated' if existed[0] else 'added'} '{name}' in {where}; {host.next_step}", file=out)
    inlined = args.env or (args.env_file and not host.env_file) or args.header
    if args.scope == "project" and not args.file and inlined:
        print(f"mcp-trio install: note: {path.name} is often committed, and it now holds the values of "
              f"{'--header' if args.header else '--env'}", file=err)
    return 0


def _put(data: dict[str, Any], host: Host, name: str, entry: dict[str, Any], path: Path) -> bool:
    """Set server ``name`` in the host's servers object; whether it was there before."""
    servers = data.setdefault(host.servers_key, {})
    if not isinstance(servers, dict):
        raise ConfigFileError(f'"{host.servers_key}" in {path} is a JSON {type(servers).__name__}, not an object: fix it; '
                              "nothing was written")
    existed = name in servers
    servers[name] = merge_entry(servers.get(name), entry)
    return existed


# -- what the entry says ---------------------------------------------------------------------
def _entry(host: Host, args: argparse.Namespace, cwd: Path) -> tuple[str, dict[str, Any]]:
    if args.url is not None:
        if args.app is not None:
            raise InstallError("give APP or --url, not both")
        for flag, given in (("--env", args.env), ("--env-file", args.env_file), ("--config", args.config),
                            ("--app-dir", args.app_dir), ("--python", args.python)):
            if given:
                raise InstallError(f"{flag} is for a local server started from APP, not for --url")
        url = args.url
        if not re.match(r"https?://[^/\s]+", url):
            raise InstallError(f"--url {url!r} is not an http(s) URL: give https://host/mcp")
        name = args.name or re.sub(r"[^A-Za-z0-9_.-]", "-", url.split("://", 1)[1].split("/", 1)[0]).strip("-.")
        return _checked_name(name), http_entry(host, url, _headers(args.header))
    if args.app is None:
        raise InstallError("give APP (MODULE:ATTR or path/to/file.py:ATTR), or --url for a remote server")
    if args.header:
        raise InstallError("--header is for --url; a local server's settings go in --env")
    app, app_args, default_name = _app(args.app, args.app_dir, cwd)
    serve = [*app_args]
    if args.config:
        config = _existing(cwd, args.config, "--config")
        serve += ["--config", str(config)]
    env_file = _existing(cwd, args.env_file, "--env-file") if args.env_file else None
    variables = read_env_file(env_file) if env_file is not None and not host.env_file else {}
    variables.update(_pairs(args.env))
    python = _python(args.python, cwd)
    entry = stdio_entry(host, python, ["-m", "mcp_trio", "serve", app, "--transport", "stdio", *serve],
                        variables, env_file if host.env_file else None)
    return _checked_name(args.name or default_name), entry


def _app(spec: str, app_dir: str | None, cwd: Path) -> tuple[str, list[str], str]:
    """APP as the host must pass it (absolute), the serve arguments it needs, a default name."""
    parsed = split_app(spec)
    attr = f":{parsed.attr}" if parsed.attr else ""
    if parsed.is_path:
        path = (cwd / Path(parsed.target).expanduser()).resolve()
        if not path.is_file():
            raise InstallError(f"{parsed.target}: no such file (APP is MODULE:ATTR or path/to/file.py:ATTR)")
        return f"{path}{attr}", [], path.stem
    top = parsed.target.split(".", 1)[0]
    if not parsed.target.replace(".", "_").isidentifier():
        raise InstallError(f"{parsed.target!r} is not a module name (APP is MODULE:ATTR or path/to/file.py:ATTR)")
    folder = (cwd / app_dir).resolve() if app_dir else cwd.resolve()
    if app_dir and not folder.is_dir():
        raise InstallError(f"--app-dir {app_dir}: no such directory")
    name = parsed.target.rsplit(".", 1)[-1]
    if (folder / f"{top}.py").is_file() or (folder / top).is_dir():
        return f"{parsed.target}{attr}", ["--app-dir", str(folder)], name
    if importlib.util.find_spec(top) is not None:  # installed in this environment: found anywhere
        return f"{parsed.target}{attr}", [], name
    raise InstallError(f"module {top!r} is neither in {folder} nor installed: run this from the folder that holds "
                       f"{top}.py, or pass --app-dir")


def _python(given: str | None, cwd: Path) -> str:
    if given is None:
        # Absolute but not resolved: a venv's python is a symlink, and resolving it would
        # name the base interpreter, which cannot import what the venv holds.
        return os.path.abspath(sys.executable)
    path = Path(given).expanduser()
    path = path if path.is_absolute() else cwd / path
    if not path.is_file():
        raise InstallError(f"--python {given}: no such file")
    return os.path.normpath(path)


def _existing(cwd: Path, given: str, flag: str) -> Path:
    path = (cwd / Path(given).expanduser()).resolve()
    if not path.is_file():
        raise InstallError(f"{flag} {given}: no such file")
    return path


def _checked_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise InstallError(f"server name {name!r} must be letters, digits, '-', '_' or '.' (64 at most): pass --name")
    return name


def _pairs(items: list[str]) -> dict[str, str]:
    variables: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not _ENV_NAME.fullmatch(key):
            raise InstallError(f"--env {item!r} must be KEY=VALUE with KEY a variable name")
        variables[key] = value
    return variables


def _headers(items: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition(":")
        if not sep or not _HEADER_NAME.fullmatch(key.strip()):
            raise InstallError(f"--header {item!r} must be 'Name: value'")
        headers[key.strip()] = value.strip()
    return headers


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines (``export`` allowed, ``#`` comments, values optionally quoted)."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InstallError(f"cannot read --env-file {path}: {exc}") from None
    variables: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if text.startswith("export "):
            text = text[len("export "):].lstrip()
        key, sep, value = text.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not _ENV_NAME.fullmatch(key):
            raise InstallError(f"--env-file {path}, line {number}: expected KEY=VALUE, got {line.strip()!r}")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        variables[key] = value
    return variables
