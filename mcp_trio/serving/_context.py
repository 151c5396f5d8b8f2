"""``Context``: what a tool, resource or prompt function may ask for about its request.

A function gets one by annotating a parameter with ``Context``. It reaches back to the client
through its connection: progress and log notifications, and the server-to-client requests
(sampling, elicitation, roots) whose answers the connection routes back to the caller.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, MutableMapping
from typing import Any, Generic, TypeVar

import msgspec
import trio
from msgspec import UNSET

from .._tracing import incoming
from ..offer._schema import ContextParameter, object_schema
from ..protocol._errors import MissingClientCapability
from ..protocol._jsonrpc import RequestId
from ..protocol._session import ClientProfile
from ..protocol._types import (
    LOG_LEVELS,
    CreateMessageParams,
    CreateMessageResult,
    ElicitParams,
    ElicitResult,
    ListRootsResult,
    LoggingMessageParams,
    ModelPreferences,
    ProgressParams,
    ProgressToken,
    Root,
    SamplingMessage,
)
from . import _compose
from ._asks import ReplayAsks, SessionAsks
from ._peer import Peer
from ._request import InFlight

T = TypeVar("T")
#: The type of what the server's lifespan yields (``Context[AppState]``: ``ctx.lifespan`` is an ``AppState``).
L = TypeVar("L")


class _MetaOnly(msgspec.Struct):
    meta: Any = msgspec.field(default=None, name="_meta")


_META_ONLY = msgspec.json.Decoder(_MetaOnly)

#: The client did not declare the capability a server->client request needs (one error for one
#: fact, either era: ``-32601`` in the handshake era, ``-32021`` in the stateless one).
CapabilityMissing = MissingClientCapability


class Context(ContextParameter, Generic[L]):
    """The request a function is serving, and the way back to its client.

    Annotate ``ctx: Context`` or, to type what the server's lifespan yields,
    ``ctx: Context[AppState]``: then ``ctx.lifespan`` is an ``AppState`` to a type checker.
    """

    __slots__ = ("_peer", "_depth", "_call", "_asks", "request_id", "method", "progress_token", "client", "principal")

    def __init__(
        self,
        peer: Peer,
        call: InFlight,
        progress_token: ProgressToken | None = None,
        *,
        client: ClientProfile | None = None,
        asks: SessionAsks | ReplayAsks | None = None,
        depth: int = 0,
    ) -> None:
        self._peer = peer
        self._call = call
        #: How this request's questions to its client are answered (its era's way, ``_asks``).
        self._asks = asks if asks is not None else (
            ReplayAsks(peer, call) if call.envelope is not None else SessionAsks(peer, call, client))
        #: How many ``call_tool`` levels down this call is (0: called by the client).
        self._depth = depth
        self.request_id: RequestId = call.id
        self.method = call.method
        self.progress_token = progress_token
        #: Who the client is and what it can do (revision, capabilities, clientInfo).
        self.client = client
        #: The authenticated caller (subject, scopes, claims), or None on a trusted channel.
        self.principal = peer.principal

    @classmethod
    def for_request(cls, peer: Peer, call: InFlight, meta: Any) -> Context:
        """The Context of a request, its progress token read from ``params._meta``."""
        token = None
        if meta is not UNSET and meta is not None and meta.progress_token is not UNSET:
            token = meta.progress_token
        envelope = call.envelope  # a stateless request: its client is its own envelope's
        client = peer.state.client if envelope is None else envelope.profile
        return cls(peer, call, token, client=client)

    @property
    def session_id(self) -> str:
        return self._peer.session_id

    # -- state -------------------------------------------------------------------------------
    @property
    def lifespan(self) -> L:
        """What the server's lifespan yielded (``@server.lifespan``): one value per process,
        shared by every request. ``RuntimeError`` when the server has no lifespan."""
        supervisor = self._peer.supervisor
        if supervisor.server.lifespan_factory is None:
            raise RuntimeError(f"server {supervisor.server.name!r} has no lifespan: decorate an async generator "
                               "with @server.lifespan to give ctx.lifespan a value")
        return supervisor.lifespan  # type: ignore[no-any-return]

    @property
    def session_state(self) -> MutableMapping[str, Any]:
        """A mapping of this session's own, for what a tool keeps between calls of one client
        (a cart, a cursor, a login): empty at the first use, gone when the session ends.

        Handshake era only: a 2026-07-28 request belongs to no session, and asking raises
        ``NoSessionError`` (keep such state in a store of your own, keyed by what the
        client sends; see the README, "Lifespan and session state").
        """
        return self._asks.session_state()

    @property
    def request_meta(self) -> dict[str, Any]:
        """The request's ``params._meta`` as the client sent it (a new dict each time; ``{}``
        when there is none): trace context, vendor keys, the progress token, and in the
        2026-07-28 era its envelope. Read from the raw params: the decoded ones keep only
        the keys this server uses."""
        raw = self._call.raw
        if raw is None:
            return {}
        try:
            meta = _META_ONLY.decode(raw).meta
        except (msgspec.DecodeError, msgspec.ValidationError):
            return {}
        return meta if isinstance(meta, dict) else {}

    # -- composition's view (``_compose.Caller``) --------------------------------------------
    @property
    def depth(self) -> int:
        return self._depth

    @property
    def peer(self) -> Peer:
        return self._peer

    def child(self) -> Context:
        """The Context of a tool this one calls: the same request, one level down, no progress."""
        return Context(self._peer, self._call, None, client=self.client, asks=self._asks, depth=self._depth + 1)

    # -- notifications ----------------------------------------------------------------------
    async def report_progress(self, progress: float, total: float | None = None, message: str | None = None) -> None:
        """Send ``notifications/progress`` (only when the request carried a ``progressToken``)."""
        if self.progress_token is None:
            return
        params = ProgressParams(
            progress_token=self.progress_token,
            progress=progress,
            total=UNSET if total is None else total,
            message=UNSET if message is None else message,
        )
        await self._peer.notify("notifications/progress", params)

    async def log(self, level: str, data: Any, logger: str | None = None) -> None:
        """Send ``notifications/message`` if the session's level (``logging/setLevel``) allows it;
        under 2026-07-28, only if the request's ``_meta`` asked for ``level`` or lower."""
        if level not in LOG_LEVELS:
            raise ValueError(f"unknown log level {level!r}; expected one of {LOG_LEVELS}")
        if not self._asks.wants_log(level):
            return
        params = LoggingMessageParams(level=level, data=data, logger=UNSET if logger is None else logger)
        await self._peer.notify("notifications/message", params)

    async def debug(self, data: Any, logger: str | None = None) -> None:
        await self.log("debug", data, logger)

    async def info(self, data: Any, logger: str | None = None) -> None:
        await self.log("info", data, logger)

    async def warning(self, data: Any, logger: str | None = None) -> None:
        await self.log("warning", data, logger)

    async def error(self, data: Any, logger: str | None = None) -> None:
        await self.log("error", data, logger)

    # -- server -> client requests ----------------------------------------------------------

    async def sample(
        self,
        messages: str | list[SamplingMessage] | list[dict[str, Any]],
        *,
        max_tokens: int = 1000,
        system_prompt: str | None = None,
        temperature: float | None = None,
        stop_sequences: list[str] | None = None,
        model_preferences: ModelPreferences | None = None,
        key: str | None = None,
    ) -> CreateMessageResult:
        """Ask the client's model for a completion (``sampling/createMessage``).

        ``key`` names this ask in a 2026-07-28 ``InputRequiredResult`` (default:
        ``sampling-N``, N counting this request's sampling asks); see ``mcp_trio.serving._replay``.
        """
        self._asks.require("sampling")
        if isinstance(messages, str):
            messages = [SamplingMessage(role="user", content={"type": "text", "text": messages})]
        params = CreateMessageParams(
            messages=messages,  # type: ignore[arg-type]
            max_tokens=max_tokens,
            system_prompt=UNSET if system_prompt is None else system_prompt,
            temperature=UNSET if temperature is None else temperature,
            stop_sequences=UNSET if stop_sequences is None else stop_sequences,
            model_preferences=UNSET if model_preferences is None else model_preferences,
        )
        return await self._asks.ask(key, "sampling", "sampling/createMessage", params, CreateMessageResult)

    async def elicit(self, message: str, schema: dict[str, Any] | type, *, key: str | None = None) -> ElicitResult:
        """Ask the user for structured input (``elicitation/create``, form mode).

        ``schema`` is a JSON Schema object with flat primitive properties, or a msgspec
        ``Struct``/dataclass type from which one is derived. ``key`` names this ask in a
        2026-07-28 ``InputRequiredResult`` (default: ``elicitation-N``).
        """
        self._asks.require("elicitation")
        if not isinstance(schema, dict):
            schema = object_schema(schema)
        params = ElicitParams(message=message, requested_schema=schema)
        return await self._asks.ask(key, "elicitation", "elicitation/create", params, ElicitResult)

    async def list_roots(self, *, key: str | None = None) -> list[Root]:
        """The filesystem roots the client exposes (``roots/list``; ``key``: as for ``elicit``)."""
        self._asks.require("roots")
        return (await self._asks.ask(key, "roots", "roots/list", None, ListRootsResult)).roots

    async def gather(self, *asks: Awaitable[T]) -> list[T]:
        """Await several asks (``ctx.elicit(...)``, ``ctx.sample(...)``, ``ctx.list_roots()``)
        together; their results, in order.

        Handshake era: the requests go to the client at once and run concurrently. 2026-07-28:
        every unanswered ask goes into one ``InputRequiredResult`` (one round trip, not one
        per ask; in a task, they wait together for ``tasks/update``). The first failure is
        raised as itself.
        """
        return await self._asks.gather(*asks)

    async def run_as_task(self) -> bool:
        """Go on as a task (the tasks extension of 2026-07-28): the caller gets a
        ``CreateTaskResult`` now and the outcome later, from ``tasks/get``.

        For tools declared with ``mcp_trio.task_support("optional" | "required")``. Returns
        False, and the call simply goes on, where it cannot be a task: the handshake era, a
        client that did not declare the extension, a tool not declared task-capable. See
        ``mcp_trio.serving._tasks``.
        """
        escalated = self._asks.run_as_task()
        if escalated:
            await trio.lowlevel.checkpoint()  # let the request answer before the tool goes on
        return escalated

    @property
    def resumed(self) -> bool:
        """True when this is a 2026-07-28 retry that carried a valid ``requestState`` (the
        client is answering what an earlier round of this request asked)."""
        return self._asks.resumed

    def notify_resource_updated(self, uri: str) -> None:
        self._peer.supervisor.resource_updated(uri)

    # -- composition: calling other tools ---------------------------------------------------
    async def call_tool(self, name: str, arguments: Mapping[str, Any] | None = None, *, raw: bool = False) -> Any:
        """Call another tool of this server, in process, as a client's ``tools/call`` would.

        Returns its value: the ``structuredContent`` (plain JSON data) when it has one, else
        its text, else its content blocks; raises ``ToolCallError`` when it failed
        (``isError``) and ``McpError`` for protocol errors (unknown or disabled tool, bad
        arguments, its timeout). ``raw=True``: the ``CallToolResult``, errors included.
        See ``mcp_trio.serving._compose``.
        """
        return await _compose.call_tool(self, name, arguments, raw=raw)

    async def call_tools(self, *calls: tuple[str, Mapping[str, Any] | None], raw: bool = False) -> list[Any]:
        """Call several tools concurrently: ``await ctx.call_tools(("a", {...}), ("b", {...}))``.

        Returns their values in the order given. The first to fail cancels the rest and its
        exception is raised.
        """
        return await _compose.call_tools(self, calls, raw=raw)

    async def chain_tools(self, first: tuple[str, Mapping[str, Any] | None], *steps: tuple[str, Any]) -> Any:
        """Call tools in sequence, each fed the previous one's value; returns the last value.

        Each step is ``(name, feed)``: a function of the previous value returning the
        arguments, an argument name (``("forecast", "city")`` passes it as ``city``), a fixed
        mapping, or None (the previous value, an object, is the arguments)::

            await ctx.chain_tools(("geocode", {"q": "Paris"}), ("forecast", lambda p: {"lat": p["lat"], "lon": p["lon"]}))
        """
        return await _compose.chain_tools(self, first, steps)

    # -- tracing ----------------------------------------------------------------------------
    def trace_headers(self) -> dict[str, str]:
        """W3C trace context headers (``traceparent``, ``tracestate``, ``baggage``) to put on
        this function's own outgoing calls (HTTP, queues), so they join the request's trace.

        With tracing on (``server.tracing``): the current span's context, the tool's own span
        (an OpenTelemetry-instrumented HTTP client finds it as the current context anyway).
        Off: the context the caller sent in ``params._meta``, passed through unchanged
        (SEP-414), so downstream services still join the caller's trace; empty if it sent none.
        """
        tracing = self._peer.supervisor.tracing
        if tracing is not None:
            return tracing.headers()  # type: ignore[no-any-return]
        return incoming(self._call.raw)

    # -- transport --------------------------------------------------------------------------
    def close_stream(self, retry: float | None = None) -> bool:
        """Close the HTTP stream carrying this request's messages, without ending the request.

        Streamable HTTP only (SSE polling, SEP-1699): the client reconnects with
        ``Last-Event-ID`` after ``retry`` seconds (default: the transport's) and receives the
        rest of the exchange, this request's result included. Frees a long call from holding
        a connection open. Returns False, doing nothing, where the transport has no resumable
        streams (stdio, WebSocket, an HTTP client older than 2025-11-25, JSON-only responses).
        """
        close = getattr(self._peer.channel, "close_stream", None)
        return bool(close is not None and close(self.request_id, retry))

