"""The gateway: a remote MCP server's tools, resources and prompts served as this server's own.

``server.mount(Remote("https://host/mcp" | "ws://..." | "stdio:cmd ...", auth=...), prefix=...)``
records a remote mount; the supervisor runs one ``Upstream`` per remote mount for as long as
it serves. The ``Upstream`` holds one session with the remote server over ``mcp_trio.client``
(either era, any transport, a bounded HTTP connection pool) and:

* **lists** what the upstream offers (every page) into the mount's host registry, under the
  mount's prefix, as ordinary definitions (``ToolDef``, ``ResourceDef``, ``TemplateDef``,
  ``PromptDef``, completions for prompt arguments): so a proxied tool passes through this
  server's admission (auth scopes, rate limits, the concurrency cap), its middleware, its
  run-time switches and its per-tool metrics exactly as a local one does;
* **lists again** when the upstream says a list changed (``notifications/*/list_changed``,
  on the connection, the GET stream or ``subscriptions/listen``), which reaches this server's
  sessions as ``list_changed`` in turn;
* **forwards** each call through ``Upstream.call``, the one function that sends a request
  upstream (a tracing span wraps it), with ``params._meta`` passed through as the caller sent
  it (trace context propagates), less the keys that belong to one hop (the progress token,
  the 2026-07-28 envelope); the caller's progress and log messages are relayed back, in the
  caller's request; cancelling the caller cancels the upstream request
  (``notifications/cancelled``, or the HTTP response closed);
* bounds it: ``max_concurrency`` requests at once (more wait for a slot), each within
  ``request_timeout`` (the wait included), ``max_connections`` pooled HTTP connections, and
  ``connect_timeout`` to connect and open the session;
* fails clearly, never hangs: an upstream that cannot be reached, or stops answering, is
  answered at once while it is down: a tool call with an ``isError`` result of one line
  (``upstream 'weather' (https://...) is unavailable: connection refused; retrying``), a
  read or a prompt with ``-32603`` and the same line. The session is opened again in the
  background (backoff from ``RETRY_FIRST`` to ``RETRY_LAST``, sooner when a call wants it);
  the listed definitions stay meanwhile; when it answers again, calls go through again.

Arguments are not checked here: the upstream's schema is its own contract (and its answer
to bad arguments, a SEP-1303 ``isError`` result or ``-32602``, is relayed). What the
gateway does not relay yet: the upstream's requests to its client (sampling, elicitation,
roots: refused upstream with ``-32601``), resource subscriptions, and fields of its listings
that the protocol core's structs do not hold.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from types import MappingProxyType
from typing import Any

import msgspec
import trio
from msgspec import UNSET, Raw

from ..client import ClientError, ConnectError, ConnectionLost, HTTPError, McpError as UpstreamError, ProtocolError, connect
from ..client import PromptRef, ResourceTemplateRef
from .._logging import request_id_var
from ..offer._mount import MAX_NAME_LENGTH, Mount
from ..offer._registry import CompletionDef, PromptDef, Registry, RegistryKeys, ResourceDef, TemplateDef, ToolDef, compile_template
from ..offer._remote import RETRY_FIRST, RETRY_LAST, Remote
from ..offer._results import error_result
from ..offer._schema import OutputShape
from ..protocol._errors import InternalError, McpError
from ..protocol._types import (
    BlobResourceContents,
    CallToolResult,
    CreateMessageParams,
    EmbeddedResource,
    PromptMessage,
    TextResourceContents,
)

logger = logging.getLogger("mcp_trio.gateway")

#: ``_meta`` keys that belong to one hop and are never forwarded: the progress token (the
#: upstream gets one of ours) and the 2026-07-28 envelope (the upstream session has its own).
_HOP_META_PREFIX = "io.modelcontextprotocol/"
_HOP_META = frozenset({"progressToken"})
#: Relayed progress and log messages waiting for the caller's task, per call; more are dropped.
RELAY_BUFFER = 32
_NO_SHAPE = OutputShape(None, False)
_KINDS = ("tools", "resources", "prompts")
#: What the gateway declares to upstreams: it relays these asks to its own callers (``_Asks``).
_RELAYED_CAPABILITIES = {"elicitation": {}, "sampling": {}, "roots": {}}


class UpstreamUnavailable(Exception):
    """The upstream cannot be reached now (down, or its session lost): said in one line."""


def forwarded_meta(meta: dict[str, Any]) -> dict[str, Any] | None:
    """The caller's ``_meta`` as the upstream gets it: everything but one hop's keys."""
    kept = {key: value for key, value in meta.items() if key not in _HOP_META and not key.startswith(_HOP_META_PREFIX)}
    return kept or None


def _without_hop_meta(meta: Any) -> Any:
    """A result's ``_meta`` less the upstream's own 2026-07-28 stamp (our answer gets ours)."""
    if not isinstance(meta, dict):
        return meta
    kept = {key: value for key, value in meta.items() if not key.startswith(_HOP_META_PREFIX)}
    return kept if kept else UNSET


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


# -- the definitions an upstream's listing becomes ------------------------------------------------
class _Arguments:
    """A proxied tool's parser: the arguments go upstream as they came, undecoded (the
    upstream checks them against its own schema)."""

    __slots__ = ("owner", "schema", "field_names")
    context_param = "ctx"

    def __init__(self, owner: str, schema: dict[str, Any]) -> None:
        self.owner = owner
        self.schema = schema
        properties = schema.get("properties") if isinstance(schema, dict) else None
        self.field_names = tuple(properties) if isinstance(properties, dict) else ()

    def parse(self, raw: Any) -> dict[str, Any]:
        return {"arguments": raw if isinstance(raw, Raw) else None}

    def parse_mapping(self, values: Any) -> dict[str, Any]:
        return {"arguments": dict(values)}


class _Values:
    """A proxied template's or prompt's parser: the values as given, for the upstream."""

    __slots__ = ("keyword",)
    context_param = "ctx"
    schema: dict[str, Any] = {"type": "object"}
    field_names: tuple[str, ...] = ()

    def __init__(self, keyword: str) -> None:
        self.keyword = keyword

    def parse_mapping(self, values: Any) -> dict[str, Any]:
        return {self.keyword: dict(values)}


class _NoArguments:
    __slots__ = ()
    context_param = "ctx"
    schema: dict[str, Any] = {"type": "object"}
    field_names: tuple[str, ...] = ()

    def parse_mapping(self, values: Any) -> dict[str, Any]:
        return {}


_NO_ARGUMENTS = _NoArguments()
_VARIABLES = _Values("variables")
_PROMPT_ARGUMENTS = _Values("arguments")


class _ProxiedTool:
    __slots__ = ("upstream", "name", "__name__", "__qualname__")

    def __init__(self, upstream: Upstream, name: str) -> None:
        self.upstream, self.name = upstream, name
        self.__name__ = self.__qualname__ = f"{upstream.label}:{name}"

    async def __call__(self, arguments: Raw | None, ctx: Any) -> CallToolResult:
        return await self.upstream.call_tool(self.name, arguments, ctx)


class _ProxiedResource:
    __slots__ = ("upstream", "uri")

    def __init__(self, upstream: Upstream, uri: str) -> None:
        self.upstream, self.uri = upstream, uri

    async def __call__(self, ctx: Any) -> list[Any]:
        return await self.upstream.read_resource(self.uri, ctx)


class _ProxiedTemplate:
    __slots__ = ("upstream", "uri_template")

    def __init__(self, upstream: Upstream, uri_template: str) -> None:
        self.upstream, self.uri_template = upstream, uri_template

    async def __call__(self, variables: dict[str, str], ctx: Any) -> list[Any]:
        # The host matched the URI with this template: putting the matched text back in its
        # variables gives the upstream's URI exactly (values are never decoded on the way).
        uri = self.uri_template
        for name, value in variables.items():
            uri = uri.replace("{+" + name + "}", value).replace("{" + name + "}", value)
        return await self.upstream.read_resource(uri, ctx)


class _ProxiedPrompt:
    __slots__ = ("upstream", "name")

    def __init__(self, upstream: Upstream, name: str) -> None:
        self.upstream, self.name = upstream, name

    async def __call__(self, arguments: dict[str, str], ctx: Any) -> list[PromptMessage]:
        return await self.upstream.get_prompt(self.name, arguments, ctx)


class _ProxiedCompletion:
    __slots__ = ("upstream", "ref", "argument")

    def __init__(self, upstream: Upstream, ref: Any, argument: str) -> None:
        self.upstream, self.ref, self.argument = upstream, ref, argument

    async def __call__(self, value: str, context: dict[str, str]) -> list[str]:
        return await self.upstream.complete(self.ref, self.argument, value, context)


# -- one upstream --------------------------------------------------------------------------------
class Upstream:
    """One remote mount while its host is served: its session, its listing, its limits."""

    def __init__(self, remote: Remote, mount: Mount, host: Any, tracer: Any = None) -> None:
        """``tracer``: the served server's ``client_tracer`` when tracing is on (issue 16): a
        CLIENT span per upstream request, its trace context sent on; None: nothing."""
        self.remote = remote
        self.tracer = tracer
        self.mount = mount
        #: The registrar the mount belongs to (its ``_update`` publishes our definitions).
        self.host = host
        self.label = repr(remote.label) if remote.name else remote.label
        self.client: Any = None
        #: Why the upstream is down (one line), or None while it is up.
        self.down: str | None = "not connected yet"
        self._slots = trio.Semaphore(remote.max_concurrency)
        self._wake = trio.Event()
        self._changed: set[str] = set()
        self._broken: str | None = None
        self._retry = trio.Event()
        self._listing: dict[str, list[Any]] = {"tools": [], "resources": [], "templates": [], "prompts": []}
        self._completions = False
        self._warned: set[str] = set()
        # statistics
        self.calls = 0
        self.failures = 0
        self.in_flight = 0
        self.waiting = 0
        self.connects = 0
        self.listed_at: float | None = None

    # -- the session -------------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Hold the upstream's session until cancelled: connect, list, serve; when it is lost
        or cannot be opened, answer calls as unavailable and try again with backoff. Reports
        readiness after the first attempt, whatever its outcome (bounded by connect_timeout)."""
        started = False
        delay = RETRY_FIRST
        options = self.remote.connect_options()
        if self.tracer is not None:
            options["tracer"] = self.tracer
        while True:
            try:
                async with connect(self.remote.target, on_list_changed=self._list_changed, on_log=self._logged,
                                   listen=True, capabilities=_RELAYED_CAPABILITIES, **options) as client:
                    self._completions = "completions" in client.server_capabilities
                    if self.remote.log_level and client.era == "handshake" and "logging" in client.server_capabilities:
                        await client.set_logging_level(self.remote.log_level)  # 2026-07-28: in every envelope
                    await self._list(client, _KINDS)
                    self._up(client)
                    delay = RETRY_FIRST
                    if not started:
                        task_status.started()
                        started = True
                    reason = await self._serve(client)
            except (ClientError, OSError) as exc:  # OSError: a stdio command that cannot start, say
                reason = _one_line(exc)
            except Exception as exc:  # boundary: a bug here costs this upstream a reconnect, not the server
                logger.exception("upstream %s: unexpected error; reconnecting", self.label)
                reason = f"unexpected error: {_one_line(exc)}"
            finally:
                self.client = None
            self._set_down(reason)
            if not started:
                task_status.started()
                started = True
            await self._pause(delay)
            delay = min(delay * 2, RETRY_LAST)

    def _up(self, client: Any) -> None:
        self.client = client
        self.connects += 1
        was = self.down
        self.down = None
        if self.connects > 1 or was != "not connected yet":
            logger.warning("upstream %s is up again", self.label)
        logger.info("upstream %s: %d tool(s), %d resource(s), %d template(s), %d prompt(s) (%s era)", self.label,
                    len(self._listing["tools"]), len(self._listing["resources"]), len(self._listing["templates"]),
                    len(self._listing["prompts"]), client.era)

    def _set_down(self, reason: str) -> None:
        if self.down is None or self.down == "not connected yet":
            logger.warning("upstream %s is unavailable: %s; retrying in the background", self.label, reason)
        self.down = reason

    async def _serve(self, client: Any) -> str:
        """Until the session is lost: list again what the upstream says changed. Returns why
        it ended."""
        reason: str | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch, client)
            while reason is None:
                await self._wake.wait()
                self._wake = trio.Event()
                if self._broken is not None:
                    reason, self._broken = self._broken, None
                    break
                kinds, self._changed = self._changed, set()
                try:
                    await self._list(client, kinds)
                except ClientError as exc:
                    reason = _one_line(exc)
            nursery.cancel_scope.cancel()
        return reason

    async def _watch(self, client: Any) -> None:
        self._lost(await client.wait_lost())

    def _lost(self, reason: str) -> None:
        """The session is unusable (the process died, the connection broke, the HTTP session
        expired): answer calls as unavailable from now on, and open it again."""
        if self.client is not None:
            self.client = None
            self.down = reason
            logger.warning("upstream %s is unavailable: %s; retrying in the background", self.label, reason)
        self._broken = reason
        self._wake.set()

    async def _pause(self, delay: float) -> None:
        """Wait before the next attempt: ``delay``, cut short (after ``RETRY_FIRST``) when a
        call asks for the upstream."""
        self._retry = trio.Event()
        await trio.sleep(min(delay, RETRY_FIRST))
        with trio.move_on_after(max(0.0, delay - RETRY_FIRST)):
            await self._retry.wait()

    def _list_changed(self, kind: str) -> None:
        self._changed.add(kind)
        self._wake.set()

    def _logged(self, params: Any) -> None:
        """Upstream log messages no call claims (stdio and WebSocket cannot tell which)."""
        logger.debug("upstream %s says (%s): %s", self.label, params.level, params.data)

    # -- listing -----------------------------------------------------------------------------
    async def _list(self, client: Any, kinds: Iterable[str]) -> None:
        capabilities = client.server_capabilities
        kinds = set(kinds)
        if "tools" in kinds:
            self._listing["tools"] = await _all(client.list_tools) if "tools" in capabilities else []
        if "resources" in kinds:
            offered = "resources" in capabilities
            self._listing["resources"] = await _all(client.list_resources) if offered else []
            self._listing["templates"] = await _all(client.list_resource_templates) if offered else []
        if "prompts" in kinds:
            self._listing["prompts"] = await _all(client.list_prompts) if "prompts" in capabilities else []
        self.listed_at = time.time()
        self._publish(kinds)

    def _publish(self, kinds: Iterable[str]) -> None:
        """Put the listing in the host's registry under the mount's names, as one change;
        names that would clash there, or run over 128 characters, are left out (logged)."""
        mount = self.mount
        mounted = mount.prefixed(self._definitions())
        host = self.host.registry
        taken = host.keys().minus(mount.keys)
        clashes = mounted.keys().clashes(taken)
        if clashes:
            self._warn_once(f"left out, already defined in the host: {', '.join(clashes)}")
            mine = mounted.keys()
            mounted = mounted.swap(RegistryKeys(mine.tools & taken.tools, mine.resources & taken.resources,
                                                mine.templates & taken.templates, mine.prompts & taken.prompts), Registry())
        old = mount.keys
        self.host._update(lambda registry: registry.swap(old, mounted), set(kinds) or "none")
        mount.keys = mounted.keys()

    def _warn_once(self, text: str) -> None:
        if text not in self._warned:
            self._warned.add(text)
            logger.error("upstream %s: %s", self.label, text)

    def _fits(self, kind: str, name: str) -> bool:
        if len(self.mount.name(name)) <= MAX_NAME_LENGTH:
            return True
        self._warn_once(f"{kind} {name[:40]!r}... left out: its mounted name is over {MAX_NAME_LENGTH} characters")
        return False

    def _definitions(self) -> Registry:
        """The listing as definitions named as the upstream names them (the mount prefixes them)."""
        tools = {}
        for tool in self._listing["tools"]:
            if self._fits("tool", tool.name):
                tools[tool.name] = ToolDef(name=tool.name, fn=_ProxiedTool(self, tool.name),
                                           parser=_Arguments(f"tool {tool.name!r}", tool.input_schema),  # type: ignore[arg-type]
                                           output=_NO_SHAPE, wire=tool, is_async=True, coerce_arguments=False)
        resources = {resource.uri: ResourceDef(resource.uri, _ProxiedResource(self, resource.uri), _NO_ARGUMENTS,  # type: ignore[arg-type]
                                               resource, True, resource.mime_type or None)
                     for resource in self._listing["resources"]}
        templates = []
        completions: dict[Any, CompletionDef] = {}
        for template in self._listing["templates"]:
            pattern, variables = compile_template(template.uri_template)
            templates.append(TemplateDef(template.uri_template, pattern, variables, _ProxiedTemplate(self, template.uri_template),
                                         _VARIABLES, template, True, template.mime_type or None))  # type: ignore[arg-type]
            if self._completions:
                ref = ResourceTemplateRef(uri=template.uri_template)
                for variable in variables:
                    completions[("ref/resource", template.uri_template, variable)] = CompletionDef(
                        _ProxiedCompletion(self, ref, variable), True)
        prompts = {}
        for prompt in self._listing["prompts"]:
            if not self._fits("prompt", prompt.name):
                continue
            prompts[prompt.name] = PromptDef(prompt.name, _ProxiedPrompt(self, prompt.name), _PROMPT_ARGUMENTS, prompt, True)  # type: ignore[arg-type]
            if self._completions and prompt.arguments is not UNSET:
                ref = PromptRef(name=prompt.name)
                for argument in prompt.arguments:
                    completions[("ref/prompt", prompt.name, argument.name)] = CompletionDef(
                        _ProxiedCompletion(self, ref, argument.name), True)
        return Registry(tools=MappingProxyType(tools), resources=MappingProxyType(resources), templates=tuple(templates),
                        prompts=MappingProxyType(prompts), completions=MappingProxyType(completions))

    # -- forwarding ----------------------------------------------------------------------------
    def _unavailable(self) -> str:
        self._retry.set()  # a call wants it: try again now (no sooner than RETRY_FIRST after the last try)
        return f"upstream {self.label} is unavailable: {self.down}; retrying in the background"

    async def call(self, method: str, target: Any, *, arguments: Any = None, meta: dict[str, Any] | None = None,
                   progress: Callable[..., Any] | None = None, on_log: Callable[..., Any] | None = None,
                   asks: Callable[..., Any] | None = None, value: str = "", context: dict[str, str] | None = None) -> Any:
        """Send one request upstream and return its typed result: the one place a request
        leaves for the upstream (a tracing span wraps this). ``target``: the tool, the URI,
        the prompt, or the completion's reference; ``meta``: forwarded ``_meta``.

        Raises ``UpstreamUnavailable`` when there is no session, ``mcp_trio.client``'s errors
        otherwise (``McpError`` for the upstream's own error answer)."""
        client = self.client
        if client is None:
            raise UpstreamUnavailable(self._unavailable())
        if method == "tools/call":
            return await client.call_tool(target, arguments, progress=progress, on_log=on_log, asks=asks, timeout=None,
                                          meta=meta)
        if method == "resources/read":
            return await client.read_resource(target, timeout=None, meta=meta)
        if method == "prompts/get":
            return await client.get_prompt(target, arguments, timeout=None, meta=meta)
        if method == "completion/complete":
            return await client.complete(target, arguments, value, context=context, timeout=None)
        raise ValueError(f"the gateway does not forward {method}")

    async def _forward(self, method: str, target: Any, ctx: Any, relay: bool = False, **options: Any) -> Any:
        """``call`` within the limits: a concurrency slot, the request timeout (the wait for
        the slot included), the caller's progress and logs relayed in the caller's task."""
        self.calls += 1
        timeout = self.remote.request_timeout
        with trio.move_on_after(timeout) as deadline:
            self.waiting += 1
            try:
                await self._slots.acquire()
            finally:
                self.waiting -= 1
            self.in_flight += 1
            try:
                if not relay:
                    return await self.call(method, target, **options)
                return await self._relayed(method, target, ctx, options)
            except (ConnectionLost, ConnectError) as exc:
                self._lost(_one_line(exc))
                raise UpstreamUnavailable(self._unavailable()) from None
            except HTTPError as exc:
                if exc.status == 404:  # the upstream forgot our session (it restarted): open a new one
                    self._lost(f"its session ended (HTTP 404)")
                    raise UpstreamUnavailable(self._unavailable()) from None
                raise
            finally:
                self.in_flight -= 1
                self._slots.release()
        busy = f" ({self.in_flight} in flight, max_concurrency {self.remote.max_concurrency})" if self.waiting or self.in_flight else ""
        raise UpstreamUnavailable(f"upstream {self.label} did not answer {method} {_shown(target)} within {timeout:g} s"
                                  f"{busy}; try again later")

    async def _relayed(self, method: str, target: Any, ctx: Any, options: dict[str, Any]) -> Any:
        """``call`` with the upstream's progress and log messages for it relayed to our
        caller: sent from the caller's own task (so over HTTP they go on the caller's stream)."""
        send, receive = trio.open_memory_channel[tuple[str, tuple[Any, ...]]](RELAY_BUFFER)

        def queue(kind: str, *args: Any) -> None:
            try:
                send.send_nowait((kind, args))
            except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
                pass  # a flood of progress: the caller gets the latest ones, not all

        async def relay() -> None:
            async for kind, args in receive:
                try:
                    if kind == "progress":
                        await ctx.report_progress(*args)
                    else:
                        (params,) = args
                        await ctx.log(params.level, params.data, params.logger if params.logger is not UNSET else None)
                except (ValueError, trio.BrokenResourceError, trio.ClosedResourceError):
                    pass  # an unknown log level, or the caller has gone: nothing to relay to

        progress = (lambda p, total, message: queue("progress", p, total, message)) if ctx.progress_token is not None else None
        failure: Exception | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(relay)
            try:
                result = await self.call(method, target, progress=progress, on_log=lambda params: queue("log", params),
                                         asks=_Asks(ctx), **options)
            except Exception as exc:  # raised below, as itself: a nursery would wrap it in a group
                failure = exc
            finally:
                send.close()
        if failure is not None:
            raise failure
        return result

    # -- what the definitions call -----------------------------------------------------------
    def _block(self, block: Any) -> Any:
        """A content block of the upstream's as ours: resource URIs under the mount's prefix
        (a client reads them back through us)."""
        kind = type(block).__name__
        if kind == "ResourceLink":
            return msgspec.structs.replace(block, uri=self.mount.uri(block.uri))
        if kind == "EmbeddedResource":
            return EmbeddedResource(resource=self._contents(block.resource), annotations=block.annotations, meta=block.meta)
        return block

    def _contents(self, part: Any) -> TextResourceContents | BlobResourceContents:
        mounted = self.mount.uri(part.uri)
        if part.blob is not UNSET:
            return BlobResourceContents(uri=mounted, blob=part.blob, mime_type=part.mime_type, meta=part.meta)
        return TextResourceContents(uri=mounted, text=part.text if part.text is not UNSET else "", mime_type=part.mime_type,
                                    meta=part.meta)

    async def call_tool(self, name: str, arguments: Raw | None, ctx: Any) -> CallToolResult:
        """A proxied tool's call: the upstream's result (its blocks re-encoded as they came,
        resource URIs under the prefix), or an ``isError`` result of one line saying what
        went wrong with the upstream."""
        try:
            result = await self._forward("tools/call", name, ctx, relay=True, arguments=arguments,
                                         meta=forwarded_meta(ctx.request_meta))
            return CallToolResult(content=[self._block(block) for block in result.content], is_error=result.is_error,
                                  structured_content=result.structured_content, meta=_without_hop_meta(result.meta))
        except UpstreamUnavailable as exc:
            self.failures += 1
            return error_result(str(exc))
        except UpstreamError as exc:  # the upstream's own error answer: relayed as the model's to read
            self.failures += 1
            return error_result(f"upstream {self.label}: {exc.message}")
        except ClientError as exc:
            self.failures += 1
            return error_result(f"upstream {self.label}: {_one_line(exc)}")

    async def read_resource(self, uri: str, ctx: Any) -> list[Any]:
        result = await self._checked("resources/read", uri, ctx, meta=forwarded_meta(ctx.request_meta))
        return [self._contents(part) for part in result.contents]

    async def get_prompt(self, name: str, arguments: dict[str, str], ctx: Any) -> list[PromptMessage]:
        result = await self._checked("prompts/get", name, ctx, arguments=arguments, meta=forwarded_meta(ctx.request_meta))
        return [PromptMessage(role=message.role, content=self._block(message.content)) for message in result.messages]

    async def complete(self, ref: Any, argument: str, value: str, context: dict[str, str]) -> list[str]:
        result = await self._checked("completion/complete", ref, None, arguments=argument, value=value, context=context or None)
        return list(result.values)

    async def _checked(self, method: str, target: Any, ctx: Any, **options: Any) -> Any:
        """``_forward`` for requests with no ``isError``: the upstream's error answer is ours
        (its code, message and data), anything else ``-32603`` with one line."""
        try:
            return await self._forward(method, target, ctx, **options)
        except UpstreamError as exc:
            self.failures += 1
            raise McpError(exc.message, exc.data, code=exc.code) from None
        except UpstreamUnavailable as exc:
            self.failures += 1
            raise InternalError(str(exc)) from None
        except (ProtocolError, ClientError) as exc:
            self.failures += 1
            raise InternalError(f"upstream {self.label}: {_one_line(exc)}") from None

    def statistics(self) -> dict[str, Any]:
        return {
            "upstream": self.remote.label, "prefix": self.mount.prefix, "up": self.down is None, "down": self.down,
            "calls": self.calls, "failures": self.failures, "in_flight": self.in_flight, "waiting": self.waiting,
            "max_concurrency": self.remote.max_concurrency, "connects": self.connects, "listed_at": self.listed_at,
            "tools": len(self._listing["tools"]), "resources": len(self._listing["resources"]),
            "templates": len(self._listing["templates"]), "prompts": len(self._listing["prompts"]),
        }


class _Asks:
    """The upstream's questions to its client during one call (sampling, elicitation, roots),
    asked of our caller through its ``Context``, where the upstream's transport tells which
    call they belong to (HTTP, and 2026-07-28 input rounds). A 2026-07-28 caller is asked
    with an ``InputRequiredResult`` of ours; its retry calls the upstream again, answered."""

    __slots__ = ("ctx",)

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx

    async def __call__(self, method: str, params: Any) -> Any:
        ctx = self.ctx
        # Over HTTP the client asks from a task of its own: our question to our caller must
        # still name the caller's request (its stream), as one asked in the request's task does.
        request_id_var.set(ctx.request_id)
        params = params if isinstance(params, dict) else {}
        if method == "elicitation/create":
            return await ctx.elicit(str(params.get("message", "")), dict(params.get("requestedSchema") or {"type": "object"}))
        if method == "sampling/createMessage":
            asked = msgspec.convert(params, CreateMessageParams)
            return await ctx.sample(asked.messages, max_tokens=asked.max_tokens,
                                    system_prompt=asked.system_prompt or None,
                                    temperature=None if asked.temperature is UNSET else asked.temperature,
                                    stop_sequences=asked.stop_sequences or None,
                                    model_preferences=asked.model_preferences or None)
        if method == "roots/list":
            return {"roots": [msgspec.to_builtins(root) for root in await ctx.list_roots()]}
        if method == "ping":
            return {}
        raise UpstreamError(-32601, f"Method not found: {method} (the gateway relays sampling, elicitation and roots)")


async def _all(lister: Callable[..., Any]) -> list[Any]:
    """Every page of a listing; a server that does not serve this list answers -32601: empty."""
    try:
        return list(await lister())
    except UpstreamError as exc:
        if exc.code == -32601:
            return []
        raise


def _shown(target: Any) -> str:
    return repr(target) if isinstance(target, str) else type(target).__name__


def upstreams_of(server: Any) -> list[Upstream]:
    """One ``Upstream`` per remote mount of ``server`` and of the servers mounted in it."""
    found = []
    tracing = getattr(server, "tracing", None)
    tracer = tracing.client_tracer if tracing is not None else None
    for owner in (server, *server._mounted_servers()):
        for mount in owner.mounts:
            if mount.remote:
                found.append(Upstream(mount.source, mount, owner, tracer))
    return found
