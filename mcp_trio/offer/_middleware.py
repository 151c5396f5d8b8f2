"""Middleware: code around every request, and the typed view of the request it gets.

A middleware is an async function ``(request, call_next)`` registered with
``@server.middleware`` (or ``server.add_middleware(fn)``, or on a ``Plugin``). Every request,
either era, any transport, in a task or not, passes through the chain after admission and
before its handler (``serving._kernel``): the first registered is the outermost. It may

* read the request: ``request.method``, ``request.principal`` (the authenticated caller, None
  on a trusted channel), ``request.session_id``, ``request.stateless``, and the typed view's
  own fields (``ToolCall.name``/``arguments``, ``ResourceRead.uri``, ``PromptGet.name``/
  ``arguments``, ``Listing.cursor``, ``MethodCall.params``);
* change the arguments (``request.arguments = {...}``: the handler sees the new ones);
* short-circuit: return a result without calling ``call_next`` (for ``tools/call`` a
  ``CallToolResult``; ``request.error_result("...")`` makes an ``isError`` one), or raise an
  ``McpError`` (``InvalidParams``, ``Forbidden``...), which the client gets as its JSON-RPC error;
* time, log, cache: ``result = await call_next(request)`` is the handler's result (a
  ``CallToolResult``, ``ReadResourceResult``, ...; raw JSON for a few stateless-era answers
  such as a task's ``CreateTaskResult``).

A server with no middleware builds no view and calls no chain: the kernel tests one tuple.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from msgspec import UNSET, Raw

from ..protocol._types import CallToolResult
from ._results import error_result

#: ``call_next``: runs the rest of the chain and the handler; returns the handler's result.
CallNext = Callable[["Request"], Awaitable[Any]]
#: A middleware: ``async def mw(request, call_next) -> result``.
Middleware = Callable[["Request", CallNext], Awaitable[Any]]


class Request:
    """What a middleware sees of one request (subclasses add the method's own fields)."""

    __slots__ = ("method", "id", "params", "principal", "session_id", "stateless", "client")

    def __init__(self, method: str, request_id: Any, params: Any, principal: Any = None, session_id: str = "",
                 stateless: bool = False, client: Any = None) -> None:
        self.method = method
        #: The JSON-RPC id (None for a notification).
        self.id = request_id
        #: The params decoded into the method's struct (``protocol._params``), or raw JSON
        #: (``msgspec.Raw``) for a method with no struct.
        self.params = params
        #: The authenticated caller (``mcp_trio.auth.Principal``), None on a trusted channel.
        self.principal = principal
        self.session_id = session_id
        #: True for a 2026-07-28 request (its client is its own envelope's, ``client``).
        self.stateless = stateless
        #: Who the client is and what it can do (``ClientProfile``), when known.
        self.client = client

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.method!r}, id={self.id!r})"


class ToolCall(Request):
    """``tools/call``: the tool's ``name`` and its ``arguments`` (a dict; assign to change them)."""

    __slots__ = ("_arguments",)

    @property
    def name(self) -> str:
        return self.params.name

    @property
    def arguments(self) -> dict[str, Any]:
        """The arguments as sent, decoded on first use (a copy: assign to change them)."""
        try:
            decoded = self._arguments
        except AttributeError:  # not read yet: the view costs nothing until it is
            raw = self.params.arguments
            decoded = {} if raw is UNSET else msgspec.json.decode(raw)
            decoded = self._arguments = decoded if isinstance(decoded, dict) else {}
        return dict(decoded)

    @arguments.setter
    def arguments(self, value: dict[str, Any]) -> None:
        self._arguments = dict(value)
        self.params.arguments = Raw(msgspec.json.encode(self._arguments))

    @staticmethod
    def error_result(text: str) -> CallToolResult:
        """A result with ``isError: true`` and ``text``: a short-circuit the model reads."""
        return error_result(text)


class ResourceRead(Request):
    """``resources/read``: the resource's ``uri``."""

    __slots__ = ()

    @property
    def uri(self) -> str:
        return self.params.uri


class PromptGet(Request):
    """``prompts/get``: the prompt's ``name`` and its ``arguments`` (a dict of strings, mutable)."""

    __slots__ = ()

    @property
    def name(self) -> str:
        return self.params.name

    @property
    def arguments(self) -> dict[str, str]:
        return self.params.arguments

    @arguments.setter
    def arguments(self, value: dict[str, str]) -> None:
        self.params.arguments = dict(value)


class Listing(Request):
    """``tools/list``, ``resources/list``, ``resources/templates/list``, ``prompts/list``."""

    __slots__ = ()

    @property
    def cursor(self) -> str | None:
        cursor = getattr(self.params, "cursor", UNSET)
        return None if cursor is UNSET else cursor


class MethodCall(Request):
    """A custom method (``@server.method``): ``params`` are its typed params."""

    __slots__ = ()


_VIEWS: dict[str, type[Request]] = {
    "tools/call": ToolCall,
    "resources/read": ResourceRead,
    "prompts/get": PromptGet,
    "tools/list": Listing,
    "resources/list": Listing,
    "resources/templates/list": Listing,
    "prompts/list": Listing,
}


def view_type(method: str, custom: bool) -> type[Request]:
    """The view a middleware gets of a ``method`` request."""
    return MethodCall if custom else _VIEWS.get(method, Request)


class _Next:
    """``call_next`` of one middleware: the rest of the chain, then the handler."""

    __slots__ = ("_chain", "_index", "_request", "_handler", "_args")

    def __init__(self, chain: tuple[Middleware, ...], index: int, request: Request, handler: Callable[..., Awaitable[Any]],
                 args: tuple[Any, ...]) -> None:
        self._chain, self._index, self._request, self._handler, self._args = chain, index, request, handler, args

    def __call__(self, request: Request | None = None) -> Awaitable[Any]:
        index = self._index
        if index == len(self._chain):
            return self._handler(*self._args)
        current = self._request if request is None else request
        return self._chain[index](current, _Next(self._chain, index + 1, current, self._handler, self._args))


def run_chain(chain: tuple[Middleware, ...], request: Request, handler: Callable[..., Awaitable[Any]], *args: Any) -> Awaitable[Any]:
    """Run ``request`` through ``chain`` (first = outermost), then ``handler(*args)``."""
    return chain[0](request, _Next(chain, 1, request, handler, args))
