"""``mcp-trio admin``: the command-line client of a running server's ``/admin`` surface.

::

    mcp-trio admin list                      # every tool: on/off, tags, plugin, calls, errors
    mcp-trio admin disable search            # switch a tool off (unlisted, calls refused)
    mcp-trio admin enable --tag weather      # switch every tool tagged "weather" on
    mcp-trio admin reload                    # reload the plugin directories now
    mcp-trio admin stats                     # per-tool calls, errors, timeouts, latency
    mcp-trio admin plugins                   # each plugin's state and last error

``--url`` is the server's base URL (default ``http://127.0.0.1:8000``); ``--token`` (or
``--token-file``) a bearer credential with the ``admin`` scope, needed when the server
authenticates callers. ``--json`` prints the server's JSON answer as is. Exit status: 0,
1 when the server refused or a plugin failed to reload, 2 when the server is unreachable.
Plain stdlib HTTP (urllib): the command imports neither trio nor the server.
"""

from __future__ import annotations

import argparse
import json
import ssl
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8000"


def add_admin_arguments(parser: argparse.ArgumentParser) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=DEFAULT_URL, help=f"the server's base URL (default: {DEFAULT_URL})")
    common.add_argument("--token", default=None, help="a bearer token or API key with the admin scope")
    common.add_argument("--token-file", default=None, metavar="FILE", help="read the token from FILE (keeps it out of ps)")
    common.add_argument("--cafile", default=None, metavar="FILE", help="https: trust this CA bundle (PEM)")
    common.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS", help="give up after (default: 30)")
    common.add_argument("--json", action="store_true", help="print the server's JSON answer")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", parents=[common], help="list tools: on/off, tags, plugin, calls")
    for verb in ("enable", "disable"):
        switch = actions.add_parser(verb, parents=[common], help=f"{verb} tools by name, or by tag with --tag")
        switch.add_argument("names", nargs="*", metavar="NAME", help="tool names")
        switch.add_argument("--tag", action="append", default=[], metavar="TAG", help="every tool with this tag (repeatable)")
    actions.add_parser("reload", parents=[common], help="reload the plugin directories now")
    actions.add_parser("stats", parents=[common], help="per-tool statistics")
    actions.add_parser("plugins", parents=[common], help="plugins: state, version, last error")


class _Failed(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _request(args: argparse.Namespace, method: str, path: str) -> Any:
    # Imported here: `mcp-trio serve` builds this command's parser too, and must start fast.
    import urllib.error
    import urllib.request

    token = args.token
    if args.token_file is not None:
        token = Path(args.token_file).read_text(encoding="utf-8").strip()
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    url = args.url.rstrip("/") + path
    request = urllib.request.Request(url, method=method, headers=headers, data=b"" if method == "POST" else None)
    context = ssl.create_default_context(cafile=args.cafile) if url.startswith("https:") else None
    try:
        with urllib.request.urlopen(request, timeout=args.timeout, context=context) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            message = json.loads(body).get("error", "")
        except (ValueError, AttributeError):
            message = body.decode("utf-8", "replace")[:500]
        raise _Failed(f"{exc.code} {message}".strip(), 1) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise _Failed(f"cannot reach {url}: {reason}", 2) from None


def run_admin(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except _Failed as failed:
        print(f"mcp-trio admin: {failed}", file=sys.stderr)
        return failed.code


def _run(args: argparse.Namespace) -> int:
    action = args.action
    if action in ("enable", "disable"):
        if not args.names and not args.tag:
            print(f"mcp-trio admin {action}: name a tool, or give --tag TAG", file=sys.stderr)
            return 2
        answers = [_request(args, "POST", f"/admin/tools/{_quote(name)}/{action}") for name in args.names]
        answers += [_request(args, "POST", f"/admin/tags/{_quote(tag)}/{action}") for tag in args.tag]
        if args.json:
            _print_json(answers if len(answers) > 1 else answers[0])
        else:
            for answer in answers:
                if "tool" in answer:
                    state = "enabled" if answer["enabled"] else f"disabled ({answer['disabled_by']})"
                    print(f"tool {answer['tool']}: {state}")
                else:
                    tools = ", ".join(answer["tools"]) or "no tools yet"
                    print(f"tag {answer['tag']}: {'enabled' if answer['enabled'] else 'disabled'} ({tools})")
        return 0
    if action == "reload":
        answer = _request(args, "POST", "/admin/reload")
        if args.json:
            _print_json(answer)
        else:
            for key in ("loaded", "unchanged", "removed"):
                if answer[key]:
                    print(f"{key}: {', '.join(answer[key])}")
            for name, error in answer["failed"].items():
                print(f"failed: {name}: {error}")
            if not any(answer[key] for key in ("loaded", "unchanged", "removed", "failed")):
                print("no plugins")
        return 1 if answer["failed"] else 0
    if action == "list":
        answer = _request(args, "GET", "/admin/tools")
        if args.json:
            _print_json(answer)
            return 0
        rows = [("TOOL", "STATE", "TAGS", "PLUGIN", "CALLS", "ERRORS", "LAST USED")]
        for tool in answer["tools"]:
            state = "on" if tool["enabled"] else f"off: {tool['disabled_by']}"
            if tool["deprecated"]:
                state += ", deprecated"
            stats = tool["stats"]
            rows.append((tool["name"], state, ",".join(tool["tags"]) or "-", tool["plugin"] or "-",
                         str(stats["calls"]), str(stats["errors"]), _when(stats["last_used"])))
        _print_table(rows)
        return 0
    if action == "stats":
        answer = _request(args, "GET", "/admin/stats")
        if args.json:
            _print_json(answer)
            return 0
        server = answer["server"]
        print(f"connections {server['connections']}  in flight {server['in_flight']}  tools {server['tools']} "
              f"({server['tools_disabled']} off)")
        rows = [("TOOL", "CALLS", "ERRORS", "TIMEOUTS", "CANCELLED", "RUNNING", "MEAN MS", "LAST USED")]
        for name, stats in answer["tools"].items():
            mean = stats["latency_seconds_mean"]
            rows.append((name, str(stats["calls"]), str(stats["errors"]), str(stats["timeouts"]), str(stats["cancellations"]),
                         str(stats["running"]), "-" if mean is None else f"{mean * 1000:.2f}", _when(stats["last_used"])))
        _print_table(rows)
        return 0
    answer = _request(args, "GET", "/admin/plugins")  # plugins
    if args.json:
        _print_json(answer)
        return 0
    if not answer["plugins"]:
        print("no plugins" + (f" (directories: {', '.join(answer['directories'])})" if answer["directories"] else ""))
        return 0
    rows = [("PLUGIN", "STATE", "VERSION", "TOOLS", "SOURCE", "LAST ERROR")]
    for plugin in answer["plugins"]:
        state = "loaded" if plugin["loaded"] else "failed"
        rows.append((plugin["name"], state, plugin["version"] or "-", str(len(plugin["tools"])), plugin["source"],
                     plugin["error"] or "-"))
    _print_table(rows)
    return 0


def _quote(segment: str) -> str:
    from urllib.parse import quote

    return quote(segment, safe="")


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


def _print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
