"""``Context``: what a tool, resource or prompt function may ask for about its request.

A function gets one by annotating a parameter with ``Context``. It reaches back to the client
through its connection: progress and log notifications, and the server-to-client requests
(sampling, elicitation, roots) whose answers the connection routes back to the caller.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from msgspec import UNSET

from .protocol._errors import McpError
from .protocol._jsonrpc import RequestId
from .protocol._session import ClientProfile
from .protocol._types import (
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


class CapabilityMissing(McpError):
    """The client did not declare the capability a server->client request needs."""

    code = -32601


class Context:
    """The request a function is serving, and the way back to its client."""

    __slots__ = ("_connection", "_in_flight", "request_id", "method", "progress_token", "client", "principal")

    def __init__(
        self,
        connection: Connection,
        request_id: RequestId,
        method: str,
        progress_token: ProgressToken | None,
        client: ClientProfile | None,
        principal: Any = None,
        in_flight: InFlight | None = None,
    ) -> None:
        self._connection = connection
        self._in_flight = in_flight
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
        """Send ``notifications/message`` if the session's level (``logging/setLevel``) allows it."""
        if level not in LOG_LEVELS:
            raise ValueError(f"unknown log level {level!r}; expected one of {LOG_LEVELS}")
        if not self._connection.state.wants_log(level):
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
    ) -> CreateMessageResult:
        """Ask the client's model for a completion (``sampling/createMessage``)."""
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
        return await self._connection.request("sampling/createMessage", params, CreateMessageResult, in_flight=self._in_flight)

    async def elicit(self, message: str, schema: dict[str, Any] | type) -> ElicitResult:
        """Ask the user for structured input (``elicitation/create``, form mode).

        ``schema`` is a JSON Schema object with flat primitive properties, or a msgspec
        ``Struct``/dataclass type from which one is derived.
        """
        self._require("elicitation")
        if not isinstance(schema, dict):
            from ._schema import object_schema

            schema = object_schema(schema)
        params = ElicitParams(message=message, requested_schema=schema)
        return await self._connection.request("elicitation/create", params, ElicitResult, in_flight=self._in_flight)

    async def list_roots(self) -> list[Root]:
        """The filesystem roots the client exposes (``roots/list``)."""
        self._require("roots")
        result = await self._connection.request("roots/list", None, ListRootsResult, in_flight=self._in_flight)
        return result.roots

    def notify_resource_updated(self, uri: str) -> None:
        self._connection.supervisor.resource_updated(uri)

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

