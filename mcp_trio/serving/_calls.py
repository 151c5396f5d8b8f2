"""The one path every tool call takes: lookup, scopes, validation, timeout, shaping, statistics.

``tools/call`` (either era, in a task or not) and ``Context.call_tool`` both come here. A
tool's own failure is not a protocol error: it becomes a result with ``isError: true`` here,
since the model, not the client program, should read it. So do arguments that do not fit
the tool (SEP-1303): the model sent them and can correct them.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

import trio

from .._containment import call_user
from ..offer._registry import Registry, ToolDef
from ..offer._results import ResultEncodingError, error_result, invalid_arguments_result, tool_result
from ..offer._schema import InvalidArguments
from ..protocol._errors import Forbidden, InvalidParams, RequestTimeout
from ..protocol._types import CallToolResult
from ._peer import Peer

logger = logging.getLogger("mcp_trio.handlers")


# -- authorization ----------------------------------------------------------------------------
# ``peer.principal`` is None on a trusted channel (no auth configured): then nothing is checked
# and listing costs one ``is None`` test. Otherwise a definition's ``scopes`` must be a subset
# of the principal's granted scopes (implied ones included, see ``mcp_trio.auth``).
def allowed(principal: Any, scopes: frozenset[str]) -> bool:
    return not scopes or principal is None or scopes <= principal.granted


def require(peer: Peer, scopes: frozenset[str], kind: str, name: str) -> None:
    """Refuse with ``-32003`` when the peer's principal lacks one of ``scopes``."""
    if scopes and peer.principal is not None and not scopes <= peer.principal.granted:
        required = sorted(scopes)
        raise Forbidden(f"forbidden: {kind} {name!r} requires scope(s) {' '.join(required)}", {"requiredScopes": required})


def known_resource_scopes(registry: Registry, uri: str) -> frozenset[str] | None:
    """What reading ``uri`` requires; None when no resource or template matches it."""
    resource = registry.resources.get(uri)
    if resource is not None:
        return resource.scopes
    found = registry.find_template(uri)
    return found[0].scopes if found is not None else None


def check_uri_length(peer: Peer, uri: str) -> None:
    limit = peer.limits.max_uri_length
    if len(uri) > limit:
        raise InvalidParams(f"resource URI of {len(uri)} characters exceeds the limit of {limit} (max_uri_length)",
                            {"limit": limit})


# -- tools ------------------------------------------------------------------------------------
def find_tool(peer: Peer, name: str) -> ToolDef:
    """The tool ``name``, if it is registered, enabled, and the caller holds its scopes."""
    tool = peer.supervisor.registry.tools.get(name)
    if tool is None:
        raise InvalidParams(f"unknown tool: {name!r}", {"tool": name})
    if not tool.enabled:
        raise InvalidParams(f"tool {name!r} is disabled on this server", {"tool": name, "disabled": True})
    if tool.scopes:
        require(peer, tool.scopes, "tool", tool.name)
    return tool


async def run_tool(peer: Peer, tool: ToolDef, arguments: Any, context: Callable[[], Any]) -> CallToolResult:
    """Validate ``arguments`` (JSON ``Raw``), call the tool under its own timeout, shape the
    result, and count the call in the tool's statistics. ``context`` makes the ``Context``
    (called only when the tool takes one)."""
    metrics = peer.supervisor.metrics
    stats = metrics.tools.get(tool.name)
    if stats is None:
        stats = metrics.tool(tool.name)
    clock = metrics.clock
    stats.calls += 1
    stats.last_used = time.time()
    started = clock()
    try:
        result = await _run_tool(peer, tool, arguments, context)
    except trio.Cancelled:
        stats.cancellations += 1  # counted, and passed on
        raise
    except RequestTimeout:
        stats.timeouts += 1
        raise
    except BaseException as exc:
        if getattr(exc, "counts_as_error", True):  # a 2026-07-28 input round is not a failure
            stats.errors += 1
        raise
    else:
        if result.is_error:
            stats.errors += 1
        return result
    finally:
        stats.finish(clock() - started)


async def _run_tool(peer: Peer, tool: ToolDef, arguments: Any, context: Callable[[], Any]) -> CallToolResult:
    try:
        kwargs = tool.parser.parse(arguments)
    except InvalidArguments as invalid:
        try:
            kwargs = _coerced(peer, tool, arguments, invalid)
        except InvalidArguments as exc:  # SEP-1303: the model reads it and corrects its call
            return invalid_arguments_result(exc)
    if tool.parser.context_param is not None:
        kwargs[tool.parser.context_param] = context()
    # The tool's own timeout (``math.inf``: none), else the server's (``Limits.tool_timeout``; 0: none).
    timeout = tool.timeout if tool.timeout is not None else peer.limits.tool_timeout or None
    if timeout == math.inf:
        timeout = None
    threads = None if tool.is_async else peer.supervisor.threads
    if threads is not None:
        threads.check(tool.name)  # too many of its threads hung: refused before it starts
    timed_out = False
    try:
        call = call_user(tool.fn, True, kwargs) if threads is None else threads.run(tool.name, tool.fn, kwargs)
        tracing = peer.supervisor.tracing
        if tracing is not None:  # the tool's own span: its code, its thread, see it as current
            call = tracing.tool_call(tool.name, call)
        if timeout is None or (tool.never_waits and tracing is None):
            # No deadline, or none that could ever cancel it (it cannot suspend): no scope
            # (a scope per call measured ~6 us on this machine, a fifth of an echo's CPU).
            value = await call
        else:
            with trio.move_on_after(timeout) as deadline:
                value = await call
            timed_out = deadline.cancelled_caught
    except Exception as exc:  # boundary: a tool's own failure is reported to the model, not raised
        logger.debug("tool %r failed", tool.name, exc_info=True)
        return error_result(str(exc) or type(exc).__name__)
    if timed_out:
        # The tool's deadline is ours to enforce: a protocol error, unlike its failures. A sync
        # tool's thread cannot be stopped: it was abandoned, and runs on, counted.
        left = "; its thread was abandoned and runs on until the function returns" if threads is not None else ""
        raise RequestTimeout(f"tool {tool.name!r} timed out after {timeout:g} s{left}", {"tool": tool.name, "timeout": timeout})
    try:
        return tool_result(value, tool.output, peer.encoder)
    except ResultEncodingError as exc:
        logger.error("tool %r returned an unencodable value: %s", tool.name, exc)
        return error_result(str(exc))


def _coerced(peer: Peer, tool: ToolDef, arguments: Any, invalid: InvalidArguments) -> dict[str, Any]:
    """The arguments converted leniently when the tool (or else its server) opted in to
    ``coerce_arguments``; otherwise ``invalid`` again. Only after strict validation failed."""
    coerce = tool.coerce_arguments if tool.coerce_arguments is not None else peer.server.coerce_arguments
    if not coerce:
        raise invalid
    return tool.parser.parse_lenient(arguments)
