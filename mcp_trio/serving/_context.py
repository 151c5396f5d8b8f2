"""``Context``: what a tool, resource or prompt function may ask for about its request.

A function gets one by annotating a parameter with ``Context``. It reaches back to the client
through its connection: progress and log notifications, and the server-to-client requests
(sampling, elicitation, roots) whose answers the connection routes back to the caller.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import trio
from msgspec import UNSET

from ..protocol._errors import McpError
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

if TYPE_CHECKING:
    from ._connection import Connection, InFlight

T = TypeVar("T")


class CapabilityMissing(McpError):
    """The client did not declare the capability a server->client request needs."""

    code = -32601


class Context:
    """The request a function is serving, and the way back to its client."""

    __slots__ = ("_connection", "_depth", "_in_flight", "_modern", "request_id", "method", "progress_token", "client", "principal")

    def __init__(
        self,
        connection: Connection,
        request_id: RequestId,
        method: str,
        progress_token: ProgressToken | None,
        client: ClientProfile | None,
        principal: Any = None,
        in_flight: InFlight | None = None,
        *,
        depth: int = 0,
    ) -> None:
        self._connection = connection
        self._in_flight = in_flight
        #: The request's own envelope and input replay when it is stateless (2026-07-28).
        self._modern = in_flight.modern if in_flight is not None else None
        #: How many ``call_tool`` levels down this call is (0: called by the client).
        self._depth = depth
        self.request_id = request_id
        self.method = method
        self.progress_token = progress_token
        #: Who the client is and what it can do (revision, capabilities, clientInfo).
        self.client = client
        #: The authenticated caller (subject, scopes, claims), or None on a trusted channel.
        self.principal = principal

    @property
    def session_id(self) -> str:
        return self._connection.session_id

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
        await self._connection.notify("notifications/progress", params)

    async def log(self, level: str, data: Any, logger: str | None = None) -> None:
        """Send ``notifications/message`` if the session's level (``logging/setLevel``) allows it;
        under 2026-07-28, only if the request's ``_meta`` asked for ``level`` or lower."""
        if level not in LOG_LEVELS:
            raise ValueError(f"unknown log level {level!r}; expected one of {LOG_LEVELS}")
        modern = self._modern
        if not (self._connection.state.wants_log(level) if modern is None else modern.envelope.wants_log(level)):
            return
        params = LoggingMessageParams(level=level, data=data, logger=UNSET if logger is None else logger)
        await self._connection.notify("notifications/message", params)

    async def debug(self, data: Any, logger: str | None = None) -> None:
        await self.log("debug", data, logger)

    async def info(self, data: Any, logger: str | None = None) -> None:
        await self.log("info", data, logger)

    async def warning(self, data: Any, logger: str | None = None) -> None:
        await self.log("warning", data, logger)

    async def error(self, data: Any, logger: str | None = None) -> None:
        await self.log("error", data, logger)

    # -- server -> client requests ----------------------------------------------------------
    def _require(self, capability: str) -> None:
        if self._modern is not None:
            self._modern.require(capability)  # -32021, out of the tool
        if self.client is None or not self.client.supports(capability):
            raise CapabilityMissing(f"the client did not declare the {capability!r} capability")

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
        ``sampling-N``, N counting this request's sampling asks); see ``mcp_trio._stateless``.
        """
        self._require("sampling")
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
        if self._modern is not None:
            return await self._modern.ask(key, "sampling", "sampling/createMessage", params, CreateMessageResult)
        return await self._connection.request("sampling/createMessage", params, CreateMessageResult, in_flight=self._in_flight)

    async def elicit(self, message: str, schema: dict[str, Any] | type, *, key: str | None = None) -> ElicitResult:
        """Ask the user for structured input (``elicitation/create``, form mode).

        ``schema`` is a JSON Schema object with flat primitive properties, or a msgspec
        ``Struct``/dataclass type from which one is derived. ``key`` names this ask in a
        2026-07-28 ``InputRequiredResult`` (default: ``elicitation-N``).
        """
        self._require("elicitation")
        if not isinstance(schema, dict):
            from ..offer._schema import object_schema

            schema = object_schema(schema)
        params = ElicitParams(message=message, requested_schema=schema)
        if self._modern is not None:
            return await self._modern.ask(key, "elicitation", "elicitation/create", params, ElicitResult)
        return await self._connection.request("elicitation/create", params, ElicitResult, in_flight=self._in_flight)

    async def list_roots(self, *, key: str | None = None) -> list[Root]:
        """The filesystem roots the client exposes (``roots/list``; ``key``: as for ``elicit``)."""
        self._require("roots")
        if self._modern is not None:
            return (await self._modern.ask(key, "roots", "roots/list", None, ListRootsResult)).roots
        result = await self._connection.request("roots/list", None, ListRootsResult, in_flight=self._in_flight)
        return result.roots

    async def gather(self, *asks: Awaitable[T]) -> list[T]:
        """Await several asks (``ctx.elicit(...)``, ``ctx.sample(...)``, ``ctx.list_roots()``)
        together; their results, in order.

        Handshake era: the requests go to the client at once and run concurrently. 2026-07-28:
        every unanswered ask goes into one ``InputRequiredResult`` (one round trip, not one
        per ask; in a task, they wait together for ``tasks/update``). The first failure is
        raised as itself.
        """
        if self._modern is not None and not self._modern.live:
            from ._stateless import gather

            return await gather(*asks)
        results: list[Any] = [None] * len(asks)

        async def run(index: int, ask: Awaitable[T]) -> None:
            results[index] = await ask

        try:
            async with trio.open_nursery() as nursery:
                for index, ask in enumerate(asks):
                    nursery.start_soon(run, index, ask)
        except BaseExceptionGroup as group:
            if group.subgroup(trio.Cancelled) is not None:
                raise
            first = group.exceptions[0]
            while isinstance(first, BaseExceptionGroup):
                first = first.exceptions[0]
            raise first from None
        return results

    async def run_as_task(self) -> bool:
        """Go on as a task (the tasks extension of 2026-07-28): the caller gets a
        ``CreateTaskResult`` now and the outcome later, from ``tasks/get``.

        For tools declared with ``mcp_trio.task_support("optional" | "required")``. Returns
        False, and the call simply goes on, where it cannot be a task: the handshake era, a
        client that did not declare the extension, a tool not declared task-capable. See
        ``mcp_trio._tasks``.
        """
        modern = self._modern
        if modern is None or modern.task is None:
            return False
        escalated = self._connection.supervisor.stateless.tasks.escalate(modern, self._connection)
        await trio.lowlevel.checkpoint()  # let the request answer before the tool goes on
        return escalated

    @property
    def resumed(self) -> bool:
        """True when this is a 2026-07-28 retry that carried a valid ``requestState`` (the
        client is answering what an earlier round of this request asked)."""
        modern = self._modern
        return modern is not None and modern.inputs is not None and modern.inputs.resumed

    def notify_resource_updated(self, uri: str) -> None:
        self._connection.supervisor.resource_updated(uri)

    # -- composition: calling other tools ---------------------------------------------------
    async def call_tool(self, name: str, arguments: Mapping[str, Any] | None = None, *, raw: bool = False) -> Any:
        """Call another tool of this server, in process, as a client's ``tools/call`` would.

        Returns its value: the ``structuredContent`` (plain JSON data) when it has one, else
        its text, else its content blocks; raises ``ToolCallError`` when it failed
        (``isError``) and ``McpError`` for protocol errors (unknown or disabled tool, bad
        arguments, its timeout). ``raw=True``: the ``CallToolResult``, errors included.
        See ``mcp_trio._compose``.
        """
        from ._compose import call_tool

        return await call_tool(self, name, arguments, raw=raw)

    async def call_tools(self, *calls: tuple[str, Mapping[str, Any] | None], raw: bool = False) -> list[Any]:
        """Call several tools concurrently: ``await ctx.call_tools(("a", {...}), ("b", {...}))``.

        Returns their values in the order given. The first to fail cancels the rest and its
        exception is raised.
        """
        from ._compose import call_tools

        return await call_tools(self, calls, raw=raw)

    async def chain_tools(self, first: tuple[str, Mapping[str, Any] | None], *steps: tuple[str, Any]) -> Any:
        """Call tools in sequence, each fed the previous one's value; returns the last value.

        Each step is ``(name, feed)``: a function of the previous value returning the
        arguments, an argument name (``("forecast", "city")`` passes it as ``city``), a fixed
        mapping, or None (the previous value, an object, is the arguments)::

            await ctx.chain_tools(("geocode", {"q": "Paris"}), ("forecast", lambda p: {"lat": p["lat"], "lon": p["lon"]}))
        """
        from ._compose import chain_tools

        return await chain_tools(self, first, steps)

    # -- transport --------------------------------------------------------------------------
    def close_stream(self, retry: float | None = None) -> bool:
        """Close the HTTP stream carrying this request's messages, without ending the request.

        Streamable HTTP only (SSE polling, SEP-1699): the client reconnects with
        ``Last-Event-ID`` after ``retry`` seconds (default: the transport's) and receives the
        rest of the exchange, this request's result included. Frees a long call from holding
        a connection open. Returns False, doing nothing, where the transport has no resumable
        streams (stdio, WebSocket, an HTTP client older than 2025-11-25, JSON-only responses).
        """
        close = getattr(self._connection.channel, "close_stream", None)
        return bool(close is not None and close(self.request_id, retry))

