"""The MCP methods: one function per method, from a request to its result body.

Handlers raise ``McpError`` for protocol errors; the connection converts outcomes to replies
in one place. A tool's own failure is not a protocol error: it becomes a result with
``isError: true`` here, since the model, not the client program, should read it. So do
arguments that do not fit the tool (SEP-1303): the model sent them and can correct them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
import trio
from msgspec import UNSET, Raw

from .._containment import call_user
from ._context import Context
from ..offer._registry import Registry, ToolDef, paginate
from ..offer._results import (
    ResultEncodingError,
    error_result,
    invalid_arguments_result,
    prompt_messages,
    resource_contents,
    tool_result,
)
from ..offer._schema import InvalidArguments
from ..protocol._errors import Forbidden, InvalidParams, McpError, PeerError, RequestTimeout, ResourceNotFound
from ..protocol._jsonrpc import Notification, Request
from ..protocol._types import (
    CallToolParams,
    CallToolResult,
    CancelledParams,
    CompleteParams,
    CompleteResult,
    Completion,
    EmptyResult,
    GetPromptParams,
    GetPromptResult,
    InitializeParams,
    InitializeResult,
    ListChangedCapability,
    ListPromptsResult,
    ListResourcesResult,
    ListResourceTemplatesResult,
    ListToolsResult,
    PaginatedParams,
    PromptRef,
    ReadResourceParams,
    ReadResourceResult,
    ResourcesCapability,
    ServerCapabilities,
    SetLevelParams,
    SubscribeParams,
)

if TYPE_CHECKING:
    from ._connection import Connection, InFlight

logger = logging.getLogger("mcp_trio.handlers")

T = TypeVar("T")
_EMPTY = EmptyResult()
_MAX_COMPLETIONS = 100  # spec: "completion.values" holds at most 100 items


class _Decoders:
    """One reusable decoder per params type, built on first use (immutable afterwards)."""

    def __init__(self) -> None:
        self._by_type: dict[type, msgspec.json.Decoder[Any]] = {}

    def get(self, tp: type[T]) -> msgspec.json.Decoder[T]:
        decoder = self._by_type.get(tp)
        if decoder is None:
            decoder = self._by_type[tp] = msgspec.json.Decoder(tp)
        return decoder


_decoders = _Decoders()


def decode_params(raw: Raw | None, tp: type[T], method: str) -> T:
    """Decode ``params`` into ``tp``; a mismatch is ``InvalidParams`` saying where and why."""
    try:
        return _decoders.get(tp).decode(b"{}" if raw is None else raw)
    except msgspec.ValidationError as exc:
        raise InvalidParams(f"invalid params for {method}: {exc}") from None
    except msgspec.DecodeError as exc:  # pragma: no cover - the envelope was already valid JSON
        raise InvalidParams(f"invalid params for {method}: {exc}") from None


def decode_result(raw: Any, tp: type[T], method: str) -> T:
    """Decode the client's answer to one of our requests."""
    try:
        return _decoders.get(tp).decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise PeerError(f"the client's answer to {method} is invalid: {exc}") from None


def cancelled_request_id(note: Notification) -> int | str | None:
    try:
        params = _decoders.get(CancelledParams).decode(b"{}" if note.params is None else note.params)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    return None if params.request_id is UNSET else params.request_id  # type: ignore[return-value]


def _context(conn: Connection, request: Request, in_flight: InFlight, meta: Any) -> Context:
    token = None
    if meta is not UNSET and meta is not None and meta.progress_token is not UNSET:
        token = meta.progress_token
    modern = in_flight.modern  # a 2026-07-28 request: its client is its own envelope's
    client = conn.state.client if modern is None else modern.envelope.profile
    return Context(conn, request.id, request.method, token, client, conn.principal, in_flight)


# -- authorization ----------------------------------------------------------------------------
# ``conn.principal`` is None on a trusted channel (no auth configured): then nothing is checked
# and listing costs one ``is None`` test. Otherwise a definition's ``scopes`` must be a subset
# of the principal's granted scopes (implied ones included, see ``mcp_trio.auth``).
def _allowed(principal: Any, scopes: frozenset[str]) -> bool:
    return not scopes or principal is None or scopes <= principal.granted


def _require(conn: Connection, scopes: frozenset[str], kind: str, name: str) -> None:
    """Refuse with ``-32003`` when the connection's principal lacks one of ``scopes``."""
    if scopes and conn.principal is not None and not scopes <= conn.principal.granted:
        required = sorted(scopes)
        raise Forbidden(f"forbidden: {kind} {name!r} requires scope(s) {' '.join(required)}", {"requiredScopes": required})


# -- lifecycle --------------------------------------------------------------------------------
def initialize(conn: Connection, request: Request) -> InitializeResult:
    params = decode_params(request.params, InitializeParams, "initialize")
    client = conn.state.initialize(params)
    server = conn.server
    logger.debug("initialized: client %s %s, revision %s", client.info.name, client.info.version, client.protocol_version)
    return InitializeResult(
        protocol_version=client.protocol_version,
        capabilities=capabilities(),
        server_info=server.info,
        instructions=server.instructions if server.instructions else UNSET,
    )


def capabilities() -> ServerCapabilities:
    return ServerCapabilities(
        tools=ListChangedCapability(list_changed=True),
        resources=ResourcesCapability(subscribe=True, list_changed=True),
        prompts=ListChangedCapability(list_changed=True),
        logging={},
        completions={},
    )


async def ping(conn: Connection, request: Request, in_flight: InFlight) -> EmptyResult:
    return _EMPTY


async def set_level(conn: Connection, request: Request, in_flight: InFlight) -> EmptyResult:
    params = decode_params(request.params, SetLevelParams, request.method)
    conn.state.set_log_level(params.level)
    return _EMPTY


# -- tools ------------------------------------------------------------------------------------
async def list_tools(conn: Connection, request: Request, in_flight: InFlight) -> ListToolsResult:
    params = decode_params(request.params, PaginatedParams, request.method)
    principal = conn.principal
    if principal is None:
        tools = [tool.wire for tool in conn.supervisor.registry.visible_tools()]
    else:
        tools = [tool.wire for tool in conn.supervisor.registry.visible_tools() if _allowed(principal, tool.scopes)]
    page, cursor = paginate(tools, None if params.cursor is UNSET else params.cursor, conn.limits.page_size)
    return ListToolsResult(tools=page, next_cursor=UNSET if cursor is None else cursor)


async def call_tool(conn: Connection, request: Request, in_flight: InFlight) -> Any:
    params = decode_params(request.params, CallToolParams, request.method)
    supervisor = conn.supervisor
    if supervisor.request_limiter is not None:
        supervisor.charge(conn, params.name)  # tools/call is charged here, once its cost is known
    tool = find_tool(conn, params.name)
    return await run_tool(conn, tool, params.arguments, lambda: _context(conn, request, in_flight, params.meta))


def find_tool(conn: Connection, name: str) -> ToolDef:
    """The tool ``name``, if it is registered, enabled, and the caller holds its scopes."""
    tool = conn.supervisor.registry.tools.get(name)
    if tool is None:
        raise InvalidParams(f"unknown tool: {name!r}", {"tool": name})
    if not tool.enabled:
        raise InvalidParams(f"tool {name!r} is disabled on this server", {"tool": name, "disabled": True})
    if tool.scopes:
        _require(conn, tool.scopes, "tool", tool.name)
    return tool


async def run_tool(conn: Connection, tool: ToolDef, arguments: Any, context: Callable[[], Context]) -> CallToolResult:
    """Validate ``arguments`` (JSON ``Raw``), call the tool under its own timeout, shape the
    result, and count the call in the tool's statistics. Every call of a tool takes this path:
    ``tools/call`` and ``Context.call_tool`` alike. ``context`` makes the ``Context`` (called
    only when the tool takes one)."""
    metrics = conn.supervisor.metrics
    stats = metrics.tools.get(tool.name)
    if stats is None:
        stats = metrics.tool(tool.name)
    clock = metrics.clock
    stats.calls += 1
    stats.last_used = time.time()
    started = clock()
    try:
        result = await _run_tool(conn, tool, arguments, context)
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


async def _run_tool(conn: Connection, tool: ToolDef, arguments: Any, context: Callable[[], Context]) -> CallToolResult:
    try:
        kwargs = tool.parser.parse(arguments)
    except InvalidArguments as invalid:
        try:
            kwargs = _coerced(conn, tool, arguments, invalid)
        except InvalidArguments as exc:  # SEP-1303: the model reads it and corrects its call
            return invalid_arguments_result(exc)
    if tool.parser.context_param is not None:
        kwargs[tool.parser.context_param] = context()
    timed_out = False
    try:
        if tool.timeout is None:
            value = await call_user(tool.fn, tool.is_async, kwargs)
        else:
            with trio.move_on_after(tool.timeout) as deadline:
                value = await call_user(tool.fn, tool.is_async, kwargs)
            timed_out = deadline.cancelled_caught
    except Exception as exc:  # boundary: a tool's own failure is reported to the model, not raised
        logger.debug("tool %r failed", tool.name, exc_info=True)
        return error_result(str(exc) or type(exc).__name__)
    if timed_out:
        # The tool's own deadline is ours to enforce: a protocol error, unlike its failures.
        raise RequestTimeout(f"tool {tool.name!r} timed out after {tool.timeout:g} s", {"tool": tool.name, "timeout": tool.timeout})
    try:
        return tool_result(value, tool.output, conn.encoder)
    except ResultEncodingError as exc:
        logger.error("tool %r returned an unencodable value: %s", tool.name, exc)
        return error_result(str(exc))


def _coerced(conn: Connection, tool: ToolDef, arguments: Any, invalid: InvalidArguments) -> dict[str, Any]:
    """The arguments converted leniently when the tool (or else its server) opted in to
    ``coerce_arguments``; otherwise ``invalid`` again. Only after strict validation failed."""
    coerce = tool.coerce_arguments if tool.coerce_arguments is not None else conn.server.coerce_arguments
    if not coerce:
        raise invalid
    return tool.parser.parse_lenient(arguments)


# -- resources --------------------------------------------------------------------------------
async def list_resources(conn: Connection, request: Request, in_flight: InFlight) -> ListResourcesResult:
    params = decode_params(request.params, PaginatedParams, request.method)
    principal = conn.principal
    items = [resource.wire for resource in conn.supervisor.registry.resources.values() if _allowed(principal, resource.scopes)]
    page, cursor = paginate(items, None if params.cursor is UNSET else params.cursor, conn.limits.page_size)
    return ListResourcesResult(resources=page, next_cursor=UNSET if cursor is None else cursor)


async def list_templates(conn: Connection, request: Request, in_flight: InFlight) -> ListResourceTemplatesResult:
    params = decode_params(request.params, PaginatedParams, request.method)
    principal = conn.principal
    items = [template.wire for template in conn.supervisor.registry.templates if _allowed(principal, template.scopes)]
    page, cursor = paginate(items, None if params.cursor is UNSET else params.cursor, conn.limits.page_size)
    return ListResourceTemplatesResult(resource_templates=page, next_cursor=UNSET if cursor is None else cursor)


async def read_resource(conn: Connection, request: Request, in_flight: InFlight) -> ReadResourceResult:
    params = decode_params(request.params, ReadResourceParams, request.method)
    registry = conn.supervisor.registry
    uri = params.uri
    resource = registry.resources.get(uri)
    if resource is not None:
        _require(conn, resource.scopes, "resource", uri)
        fn, is_async, parser, mime_type, kwargs = resource.fn, resource.is_async, resource.parser, resource.mime_type, {}
    else:
        found = registry.find_template(uri)
        if found is None:
            raise ResourceNotFound(f"resource not found: {uri}", {"uri": uri})
        template, values = found
        _require(conn, template.scopes, "resource template", template.uri_template)
        fn, is_async, parser, mime_type = template.fn, template.is_async, template.parser, template.mime_type
        kwargs = parser.parse_mapping(values)
    if parser.context_param is not None:
        kwargs[parser.context_param] = _context(conn, request, in_flight, params.meta)
    try:
        value = await call_user(fn, is_async, kwargs)
        return ReadResourceResult(contents=resource_contents(uri, value, mime_type, conn.encoder))
    except McpError:
        raise
    except LookupError as exc:  # a template function saying "no such item"
        raise ResourceNotFound(f"resource not found: {uri}: {exc}", {"uri": uri}) from None


async def subscribe(conn: Connection, request: Request, in_flight: InFlight) -> EmptyResult:
    """Subscribe to a resource the caller may read: one that exists (a resource, or a URI a
    template matches; else ``-32002``), within ``max_uri_length`` (``-32602``), the session's
    ``max_subscriptions_per_session`` and the principal's quota (``-32032``)."""
    params = decode_params(request.params, SubscribeParams, request.method)
    uri = params.uri
    check_uri_length(conn, uri)
    scopes = known_resource_scopes(conn.supervisor.registry, uri)
    if scopes is None:
        raise ResourceNotFound(f"resource not found: {uri}", {"uri": uri})
    if conn.principal is not None:
        _require(conn, scopes, "resource", uri)
    conn.supervisor.subscribe(conn, uri)
    return _EMPTY


def check_uri_length(conn: Connection, uri: str) -> None:
    limit = conn.limits.max_uri_length
    if len(uri) > limit:
        raise InvalidParams(f"resource URI of {len(uri)} characters exceeds the limit of {limit} (max_uri_length)",
                            {"limit": limit})


def known_resource_scopes(registry: Registry, uri: str) -> frozenset[str] | None:
    """What reading ``uri`` requires; None when no resource or template matches it."""
    resource = registry.resources.get(uri)
    if resource is not None:
        return resource.scopes
    found = registry.find_template(uri)
    return found[0].scopes if found is not None else None


def _resource_scopes(registry: Registry, uri: str) -> frozenset[str]:
    """What reading ``uri`` requires (nothing when no resource or template matches)."""
    scopes = known_resource_scopes(registry, uri)
    return frozenset() if scopes is None else scopes


async def unsubscribe(conn: Connection, request: Request, in_flight: InFlight) -> EmptyResult:
    params = decode_params(request.params, SubscribeParams, request.method)
    conn.supervisor.unsubscribe(conn, params.uri)
    return _EMPTY


# -- prompts ----------------------------------------------------------------------------------
async def list_prompts(conn: Connection, request: Request, in_flight: InFlight) -> ListPromptsResult:
    params = decode_params(request.params, PaginatedParams, request.method)
    principal = conn.principal
    items = [prompt.wire for prompt in conn.supervisor.registry.prompts.values() if _allowed(principal, prompt.scopes)]
    page, cursor = paginate(items, None if params.cursor is UNSET else params.cursor, conn.limits.page_size)
    return ListPromptsResult(prompts=page, next_cursor=UNSET if cursor is None else cursor)


async def get_prompt(conn: Connection, request: Request, in_flight: InFlight) -> GetPromptResult:
    params = decode_params(request.params, GetPromptParams, request.method)
    prompt = conn.supervisor.registry.prompts.get(params.name)
    if prompt is None:
        raise InvalidParams(f"unknown prompt: {params.name!r}", {"prompt": params.name})
    _require(conn, prompt.scopes, "prompt", prompt.name)
    kwargs = prompt.parser.parse_mapping(params.arguments)
    if prompt.parser.context_param is not None:
        kwargs[prompt.parser.context_param] = _context(conn, request, in_flight, params.meta)
    value = await call_user(prompt.fn, prompt.is_async, kwargs)
    try:
        messages = prompt_messages(value)
    except (ResultEncodingError, TypeError) as exc:
        logger.error("prompt %r returned an invalid value: %s", prompt.name, exc)
        raise
    return GetPromptResult(messages=messages, description=prompt.wire.description)


# -- completion -------------------------------------------------------------------------------
async def complete(conn: Connection, request: Request, in_flight: InFlight) -> CompleteResult:
    params = decode_params(request.params, CompleteParams, request.method)
    registry = conn.supervisor.registry
    ref = params.ref
    if isinstance(ref, PromptRef):
        prompt = registry.prompts.get(ref.name)
        if prompt is None:
            raise InvalidParams(f"unknown prompt: {ref.name!r}")
        _require(conn, prompt.scopes, "prompt", prompt.name)
        key = ("ref/prompt", ref.name, params.argument.name)
    else:
        named = next((t for t in registry.templates if t.uri_template == ref.uri), None)
        if named is None and registry.find_template(ref.uri) is None and ref.uri not in registry.resources:
            raise InvalidParams(f"unknown resource template: {ref.uri!r}")
        _require(conn, named.scopes if named is not None else _resource_scopes(registry, ref.uri), "resource", ref.uri)
        key = ("ref/resource", ref.uri, params.argument.name)
    completion = registry.completions.get(key)
    if completion is None:
        return CompleteResult(completion=Completion(values=[], has_more=False))
    context = {} if params.context is UNSET else params.context.arguments
    values = await call_user(completion.fn, completion.is_async, {"value": params.argument.value, "context": context})
    values = [str(v) for v in values]
    return CompleteResult(completion=Completion(values=values[:_MAX_COMPLETIONS], total=len(values), has_more=len(values) > _MAX_COMPLETIONS))


Handler = Callable[["Connection", Request, "InFlight"], Awaitable[Any]]

#: Request methods served after ``initialize`` (which the connection answers itself).
HANDLERS: dict[str, Handler] = {
    "ping": ping,
    "logging/setLevel": set_level,
    "tools/list": list_tools,
    "tools/call": call_tool,
    "resources/list": list_resources,
    "resources/templates/list": list_templates,
    "resources/read": read_resource,
    "resources/subscribe": subscribe,
    "resources/unsubscribe": unsubscribe,
    "prompts/list": list_prompts,
    "prompts/get": get_prompt,
    "completion/complete": complete,
}
