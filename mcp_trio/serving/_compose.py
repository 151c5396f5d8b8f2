"""Composition: a tool calling other tools of its server, in process.

``Context.call_tool(name, arguments)`` runs another tool through the very path a client's
``tools/call`` takes (``_calls.run_tool``): the same lookup (an unknown or disabled tool,
or one the caller's principal lacks the scopes for, is refused the same way), the same
argument validation (the arguments are encoded to JSON and checked by the tool's parser;
arguments that do not fit are an ``isError`` result, as for a client), the tool's own
timeout, the same result shaping, and it is counted in the called
tool's statistics. It is not charged to the rate limit again: the calling request was.

What it returns: the called tool's *value as a client would read it*:

* its ``structuredContent`` when it has one (unwrapped when the tool returns a non-object
  type, such as ``int`` or ``list[str]``, which is sent as ``{"result": ...}``): plain JSON
  data (dicts, lists, strings, numbers), not the Python object the tool returned;
* else the text, when the result is one text block;
* else the list of content blocks.

A result with ``isError: true`` raises ``ToolCallError`` (carrying the result), bad
arguments included; protocol errors raise as ``McpError`` (``InvalidParams`` for an unknown
or disabled tool or non-object arguments, ``RequestTimeout`` for the tool's own timeout,
``Forbidden``). Pass ``raw=True``
to get the ``CallToolResult`` itself, errors included, instead.

Nested calls share the caller's request: its cancellation, its principal, its session (so
``ctx.log``, sampling and elicitation work in the called tool); progress notifications of a
nested call are dropped (they would be mixed into the caller's own). Nesting is bounded by
``MAX_CALL_DEPTH``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

import msgspec
import trio
from msgspec import UNSET

from ..offer._registry import ToolDef
from ..protocol._errors import InvalidRequest
from ..protocol._types import CallToolResult, TextContent
from ._calls import find_tool, run_tool
from ._peer import Peer

#: How deeply tools may call tools (a tool calling itself forever stops here).
MAX_CALL_DEPTH = 8

#: How a step of ``chain_tools`` gets its arguments from the previous step's value: a function
#: of that value, the name of the one argument to pass it as, a fixed mapping, or None (the
#: previous value is itself the arguments object).
Feed = Callable[[Any], Mapping[str, Any]] | str | Mapping[str, Any] | None


class ToolCallError(Exception):
    """A tool called from another tool failed: its result has ``isError: true``.

    ``tool`` is its name, ``result`` the ``CallToolResult``; the message is its text.
    """

    def __init__(self, tool: str, result: CallToolResult) -> None:
        text = " ".join(block.text for block in result.content if isinstance(block, TextContent))
        super().__init__(f"tool {tool!r} failed: {text}" if text else f"tool {tool!r} failed")
        self.tool = tool
        self.result = result


def tool_value(result: CallToolResult, tool: ToolDef) -> Any:
    """A successful result as a client would read it (see the module's docstring)."""
    structured = result.structured_content
    if structured is not UNSET:
        if tool.output.wrap and isinstance(structured, dict) and "result" in structured:
            return structured["result"]
        return structured
    content = result.content
    if len(content) == 1 and isinstance(content[0], TextContent):
        return content[0].text
    return content


class Caller(Protocol):
    """What composition needs of the calling tool's ``Context``."""

    @property
    def depth(self) -> int: ...

    @property
    def peer(self) -> Peer: ...

    def child(self) -> Any: ...


async def call_tool(ctx: Caller, name: str, arguments: Mapping[str, Any] | None, *, raw: bool) -> Any:
    if ctx.depth >= MAX_CALL_DEPTH:
        raise InvalidRequest(f"tool calls nested more than {MAX_CALL_DEPTH} deep (calling {name!r})")
    peer = ctx.peer
    tool = find_tool(peer, name)
    try:
        encoded = msgspec.json.encode({} if arguments is None else arguments)
    except TypeError as exc:
        raise TypeError(f"arguments for tool {name!r} are not JSON-serialisable: {exc}") from None
    result = await run_tool(peer, tool, encoded, ctx.child)
    if raw:
        return result
    if result.is_error:
        raise ToolCallError(name, result)
    return tool_value(result, tool)


async def call_tools(ctx: Caller, calls: Iterable[tuple[str, Mapping[str, Any] | None]], *, raw: bool) -> list[Any]:
    """Run several tools at once; their values in the order given. The first to fail
    cancels the others, and its exception is raised (as itself, not in a group)."""
    calls = list(calls)
    results: list[Any] = [None] * len(calls)
    failures: list[Exception] = []

    async def one(index: int, name: str, arguments: Mapping[str, Any] | None, scope: trio.CancelScope) -> None:
        try:
            results[index] = await call_tool(ctx, name, arguments, raw=raw)
        except Exception as exc:  # the first failure cancels its siblings, and is raised below
            failures.append(exc)
            scope.cancel()

    async with trio.open_nursery() as nursery:
        for index, (name, arguments) in enumerate(calls):
            nursery.start_soon(one, index, name, arguments, nursery.cancel_scope)
    if failures:
        raise failures[0]
    return results


async def chain_tools(ctx: Caller, first: tuple[str, Mapping[str, Any] | None], steps: Iterable[tuple[str, Feed]]) -> Any:
    """Run tools one after another, each step's arguments made from the previous value."""
    name, arguments = first
    value = await call_tool(ctx, name, arguments, raw=False)
    for name, feed in steps:
        if feed is None:
            if not isinstance(value, Mapping):
                raise TypeError(f"cannot pass a {type(value).__name__} as the arguments of tool {name!r}: give a feed")
            arguments = value
        elif isinstance(feed, str):
            arguments = {feed: value}
        elif isinstance(feed, Mapping):
            arguments = feed
        else:
            arguments = feed(value)
        value = await call_tool(ctx, name, arguments, raw=False)
    return value
