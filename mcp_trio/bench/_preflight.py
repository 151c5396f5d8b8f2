"""Before a run: does the workload make sense against this server?

``mcp-trio bench http://…/mcp`` sends ``tools/call echo`` unless told otherwise; against a
server without an ``echo`` tool every request failed with ``-32602`` and the report said 0
calls/s with no hint. ``check_workload`` opens one session first, compares the workload's
tools with ``tools/list``, and sends each kind of request once: a tool that is not there, or
a request whose first answer is an error, stops the run in one line that says what to pass.

What it cannot judge (no session could be opened, a server without ``tools/list``) it leaves
to the run, which reports it as before.
"""

from __future__ import annotations

import ssl
import subprocess
from typing import Any

import trio

from ..client import ClientError, RPCError, connect
from ._workload import Workload, WorkloadError

#: Tool names shown in the message (the rest as "…").
SHOWN_TOOLS = 8
#: Pages of tools/list read at most.
MAX_PAGES = 20


async def _tool_names(client: Any) -> list[str] | None:
    names: list[str] = []
    cursor = None
    for _ in range(MAX_PAGES):
        try:
            page = await client.request("tools/list", {} if cursor is None else {"cursor": cursor})
        except RPCError:
            return None  # no tools/list here: the probe below still speaks
        names += [tool.get("name") for tool in page.get("tools", []) if isinstance(tool, dict)]
        cursor = page.get("nextCursor")
        if not cursor:
            break
    return names


def _listing(names: list[str]) -> str:
    shown = ", ".join(sorted(names)[:SHOWN_TOOLS])
    return (shown + ", …" if len(names) > SHOWN_TOOLS else shown) or "no tools"


def _error_text(result: Any) -> str:
    blocks = result.get("content") if isinstance(result, dict) else None
    texts = [b.get("text", "") for b in blocks or [] if isinstance(b, dict) and b.get("type") == "text"]
    return " ".join(texts).strip() or "isError: true"


async def check_workload(target: str | list[str], workload: Workload, *, timeout: float,
                         headers: dict[str, str] | None = None, ssl_context: ssl.SSLContext | None = None,
                         initialize: bool = True, protocol_version: str | None = None) -> None:
    """Raise ``WorkloadError`` (one line) when ``workload`` cannot work against ``target``;
    gives up silently after ``timeout`` seconds (the run will time out and say so)."""
    with trio.move_on_after(timeout):
        await _check(target, workload, headers=headers, ssl_context=ssl_context, initialize=initialize,
                     protocol_version=protocol_version)


async def _check(target: str | list[str], workload: Workload, *, headers: dict[str, str] | None,
                 ssl_context: ssl.SSLContext | None, initialize: bool, protocol_version: str | None) -> None:
    calls = [e for e in workload.entries if e.method == "tools/call" and isinstance(e.params, dict)]
    try:
        async with connect(target, era=None, headers=headers, ssl_context=ssl_context, stderr=subprocess.DEVNULL) as client:
            if initialize:
                await (client.initialize(protocol_version=protocol_version) if protocol_version else client.initialize())
            if calls:
                names = await _tool_names(client)
                if names is not None:
                    for entry in calls:
                        tool = entry.params.get("name")
                        if tool not in names:
                            has = _listing(names)
                            raise WorkloadError(f"no tool {tool!r} on this server (it has: {has}): "
                                                "pass --tool and --arguments")
            for entry, encoded in zip(workload.entries, workload.encoded, strict=True):
                try:
                    result = await client.request(entry.method, encoded)
                except RPCError as exc:
                    raise WorkloadError(f"{entry.label} fails on this server: {exc.code} {exc.message}: "
                                        f"{_hint(entry.method)}") from None
                if isinstance(result, dict) and result.get("isError") is True:
                    raise WorkloadError(f"{entry.label} fails on this server: {_error_text(result)}: "
                                        f"{_hint(entry.method)}")
    except WorkloadError:
        raise
    except ClientError:
        return  # cannot even talk to it: the run says so, with its own diagnostics


def _hint(method: str) -> str:
    if method == "tools/call":
        return "pass --tool and --arguments that work"
    if method == "resources/read":
        return "pass --uri of a resource it has"
    return "pass --method, --params or --mix"
