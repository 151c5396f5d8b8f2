"""The MCP methods: one function per method, from an in-flight request to its result body.

Every handler takes ``(peer, call)``: the carrier of the request (``_peer.Peer``) and the
request itself, its params already decoded (``call.decode()`` returns them). Handlers raise
``McpError`` for protocol errors; the answer kernel (``_kernel``) converts outcomes to replies
in one place. Tool calls take the one tool-call path (``_calls``). Both eras share these; the
stateless era adds and replaces a few (``_stateless``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from msgspec import UNSET

from .._containment import call_user
from ..offer._registry import paginate
from ..offer._results import ResultEncodingError, prompt_messages, resource_contents
from ..protocol._errors import InvalidParams, McpError, ResourceNotFound
from ..protocol._types import (
    CallToolParams,
    CompleteResult,
    Completion,
    EmptyResult,
    GetPromptResult,
    InitializeResult,
    ListChangedCapability,
    ListPromptsResult,
    ListResourcesResult,
    ListResourceTemplatesResult,
    ListToolsResult,
    PromptRef,
    ReadResourceResult,
    ResourcesCapability,
    ServerCapabilities,
)
from ._calls import allowed, check_uri_length, find_tool, known_resource_scopes, require, run_tool
from ._context import Context
from ._mounted import through_mounted
from ._peer import Peer
from ._request import InFlight

logger = logging.getLogger("mcp_trio.handlers")

_EMPTY = EmptyResult()
_MAX_COMPLETIONS = 100  # spec: "completion.values" holds at most 100 items

#: A handler: the in-flight request (params decoded on it) and its carrier -> the result body.
Handler = Callable[[Peer, InFlight], Awaitable[Any]]


# -- lifecycle --------------------------------------------------------------------------------
def initialize(peer: Peer, call: InFlight) -> InitializeResult:
    """Answered by the connection's reader itself, in arrival order (not through the kernel)."""
    client = peer.state.initialize(call.decode())
    server = peer.server
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


async def ping(peer: Peer, call: InFlight) -> EmptyResult:
    return _EMPTY


async def set_level(peer: Peer, call: InFlight) -> EmptyResult:
    params = call.decode()
    persist = getattr(peer.channel, "persist_log_level", None)
    if persist is not None:  # cluster mode: every process serving the session learns it
        await persist(params.level)
    peer.state.set_log_level(params.level)
    return _EMPTY


# -- tools ------------------------------------------------------------------------------------
async def list_tools(peer: Peer, call: InFlight) -> ListToolsResult:
    params = call.decode()
    principal = peer.principal
    if principal is None:
        tools = [tool.wire for tool in peer.supervisor.registry.visible_tools()]
    else:
        tools = [tool.wire for tool in peer.supervisor.registry.visible_tools() if allowed(principal, tool.scopes)]
    page, cursor = paginate(tools, None if params.cursor is UNSET else params.cursor, peer.limits.page_size)
    return ListToolsResult(tools=page, next_cursor=UNSET if cursor is None else cursor)


async def call_tool(peer: Peer, call: InFlight) -> Any:
    params: CallToolParams = call.decode()
    tool = find_tool(peer, params.name)
    if tool.mount is not None and tool.mount.middleware_below:  # a mounted server's own middleware
        return await through_mounted(peer, call, params, tool.mount, lambda there: run_tool(
            peer, tool, there.arguments, lambda: Context.for_request(peer, call, there.meta)))
    return await run_tool(peer, tool, params.arguments, lambda: Context.for_request(peer, call, params.meta))


# -- resources --------------------------------------------------------------------------------
async def list_resources(peer: Peer, call: InFlight) -> ListResourcesResult:
    params = call.decode()
    principal = peer.principal
    items = [resource.wire for resource in peer.supervisor.registry.resources.values() if allowed(principal, resource.scopes)]
    page, cursor = paginate(items, None if params.cursor is UNSET else params.cursor, peer.limits.page_size)
    return ListResourcesResult(resources=page, next_cursor=UNSET if cursor is None else cursor)


async def list_templates(peer: Peer, call: InFlight) -> ListResourceTemplatesResult:
    params = call.decode()
    principal = peer.principal
    items = [template.wire for template in peer.supervisor.registry.templates if allowed(principal, template.scopes)]
    page, cursor = paginate(items, None if params.cursor is UNSET else params.cursor, peer.limits.page_size)
    return ListResourceTemplatesResult(resource_templates=page, next_cursor=UNSET if cursor is None else cursor)


async def read_resource(peer: Peer, call: InFlight) -> ReadResourceResult:
    params = call.decode()
    registry = peer.supervisor.registry
    uri = params.uri
    resource = registry.resources.get(uri)
    if resource is not None:
        require(peer, resource.scopes, "resource", uri)
        fn, is_async, parser, mime_type, kwargs = resource.fn, resource.is_async, resource.parser, resource.mime_type, {}
        mount = resource.mount
    else:
        found = registry.find_template(uri)
        if found is None:
            raise ResourceNotFound(f"resource not found: {uri}", {"uri": uri})
        template, values = found
        require(peer, template.scopes, "resource template", template.uri_template)
        fn, is_async, parser, mime_type = template.fn, template.is_async, template.parser, template.mime_type
        kwargs = parser.parse_mapping(values)
        mount = template.mount
    if mount is not None and mount.middleware_below:  # a mounted server's own middleware
        async def read(there: Any) -> ReadResourceResult:
            return await _read(peer, call, uri, fn, is_async, parser, mime_type, kwargs, there.meta)

        return await through_mounted(peer, call, params, mount, read)
    return await _read(peer, call, uri, fn, is_async, parser, mime_type, kwargs, params.meta)


async def _read(peer: Peer, call: InFlight, uri: str, fn: Any, is_async: bool, parser: Any, mime_type: str | None,
                kwargs: dict[str, Any], meta: Any) -> ReadResourceResult:
    if parser.context_param is not None:
        kwargs[parser.context_param] = Context.for_request(peer, call, meta)
    try:
        value = await call_user(fn, is_async, kwargs)
        return ReadResourceResult(contents=resource_contents(uri, value, mime_type, peer.encoder))
    except McpError:
        raise
    except LookupError as exc:  # a template function saying "no such item"
        raise ResourceNotFound(f"resource not found: {uri}: {exc}", {"uri": uri}) from None


async def subscribe(peer: Peer, call: InFlight) -> EmptyResult:
    """Subscribe to a resource the caller may read: one that exists (a resource, or a URI a
    template matches; else ``-32002``), within ``max_uri_length`` (``-32602``), the session's
    ``max_subscriptions_per_session`` and the principal's quota (``-32032``)."""
    params = call.decode()
    uri = params.uri
    check_uri_length(peer, uri)
    scopes = known_resource_scopes(peer.supervisor.registry, uri)
    if scopes is None:
        raise ResourceNotFound(f"resource not found: {uri}", {"uri": uri})
    if peer.principal is not None:
        require(peer, scopes, "resource", uri)
    peer.supervisor.subscribe(peer, uri)
    persist = getattr(peer.channel, "persist_subscription", None)
    if persist is not None:  # cluster mode: kept for whichever process holds the GET stream
        try:
            await persist(uri, True)
        except BaseException:
            peer.supervisor.unsubscribe(peer, uri)
            raise
    return _EMPTY


def _resource_scopes(registry: Any, uri: str) -> frozenset[str]:
    """What reading ``uri`` requires (nothing when no resource or template matches it)."""
    scopes = known_resource_scopes(registry, uri)
    return frozenset() if scopes is None else scopes


async def unsubscribe(peer: Peer, call: InFlight) -> EmptyResult:
    params = call.decode()
    persist = getattr(peer.channel, "persist_subscription", None)
    if persist is not None:
        await persist(params.uri, False)
    peer.supervisor.unsubscribe(peer, params.uri)
    return _EMPTY


# -- prompts ----------------------------------------------------------------------------------
async def list_prompts(peer: Peer, call: InFlight) -> ListPromptsResult:
    params = call.decode()
    principal = peer.principal
    items = [prompt.wire for prompt in peer.supervisor.registry.prompts.values() if allowed(principal, prompt.scopes)]
    page, cursor = paginate(items, None if params.cursor is UNSET else params.cursor, peer.limits.page_size)
    return ListPromptsResult(prompts=page, next_cursor=UNSET if cursor is None else cursor)


async def get_prompt(peer: Peer, call: InFlight) -> GetPromptResult:
    params = call.decode()
    prompt = peer.supervisor.registry.prompts.get(params.name)
    if prompt is None:
        raise InvalidParams(f"unknown prompt: {params.name!r}", {"prompt": params.name})
    require(peer, prompt.scopes, "prompt", prompt.name)
    if prompt.mount is not None and prompt.mount.middleware_below:  # a mounted server's own middleware
        return await through_mounted(peer, call, params, prompt.mount, lambda there: _get_prompt(peer, call, prompt, there))
    return await _get_prompt(peer, call, prompt, params)


async def _get_prompt(peer: Peer, call: InFlight, prompt: Any, params: Any) -> GetPromptResult:
    kwargs = prompt.parser.parse_mapping(params.arguments)
    if prompt.parser.context_param is not None:
        kwargs[prompt.parser.context_param] = Context.for_request(peer, call, params.meta)
    value = await call_user(prompt.fn, prompt.is_async, kwargs)
    try:
        messages = prompt_messages(value)
    except (ResultEncodingError, TypeError) as exc:
        logger.error("prompt %r returned an invalid value: %s", prompt.name, exc)
        raise
    return GetPromptResult(messages=messages, description=prompt.wire.description)


# -- completion -------------------------------------------------------------------------------
async def complete(peer: Peer, call: InFlight) -> CompleteResult:
    params = call.decode()
    registry = peer.supervisor.registry
    ref = params.ref
    if isinstance(ref, PromptRef):
        prompt = registry.prompts.get(ref.name)
        if prompt is None:
            raise InvalidParams(f"unknown prompt: {ref.name!r}")
        require(peer, prompt.scopes, "prompt", prompt.name)
        key = ("ref/prompt", ref.name, params.argument.name)
    else:
        named = next((t for t in registry.templates if t.uri_template == ref.uri), None)
        if named is None and registry.find_template(ref.uri) is None and ref.uri not in registry.resources:
            raise InvalidParams(f"unknown resource template: {ref.uri!r}")
        require(peer, named.scopes if named is not None else _resource_scopes(registry, ref.uri), "resource", ref.uri)
        key = ("ref/resource", ref.uri, params.argument.name)
    completion = registry.completions.get(key)
    if completion is None:
        return CompleteResult(completion=Completion(values=[], has_more=False))
    context = {} if params.context is UNSET else params.context.arguments
    values = await call_user(completion.fn, completion.is_async, {"value": params.argument.value, "context": context})
    values = [str(v) for v in values]
    return CompleteResult(completion=Completion(values=values[:_MAX_COMPLETIONS], total=len(values), has_more=len(values) > _MAX_COMPLETIONS))


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
