"""Streamable HTTP for the stateless revision (2026-07-28): one POST, one request, one answer.

``McpHttpApp`` hands a POST here when it belongs to 2026-07-28: its ``MCP-Protocol-Version``
header names no handshake revision, or it carries no ``Mcp-Session-Id`` and its body is a
request with the stateless envelope. Then, with no session and nothing remembered:

* the body must be one request (a notification is acknowledged ``202`` and dropped: the
  revision defines none a client sends over HTTP; cancelling is closing the response);
* the spec's ladder, first failure wins: ``_meta`` carries the envelope (``-32602``), the
  routing headers agree with the body (``-32020``: ``MCP-Protocol-Version``, ``Mcp-Method``,
  ``Mcp-Name``, each at most once), the revision is served (``-32022``), the tool's
  ``Mcp-Param-*`` headers agree with its arguments (``-32020``). Refusals are JSON with the
  spec's statuses: 400 for those, 404 for ``-32601``, and 429/403/503 for admission;
* the request runs in this exchange's task through the answer kernel (``serving._kernel``),
  its carrier an ``Exchange`` (a ``serving.Peer``). It is answered as JSON when it finishes before saying
  anything else; once it sends a notification (progress, a log line it was asked for, a
  listen stream's messages), or has been silent for ``SSE_KEEPALIVE`` seconds, the answer
  becomes an SSE stream (``X-Accel-Buffering: no``) with a keep-alive comment every
  ``SSE_KEEPALIVE`` seconds of silence, ending with the result;
* the client closing the response cancels the request;
* ``GET`` and ``DELETE`` for this revision are ``405`` with ``Allow: POST`` (the app does that).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Protocol

import msgspec
import trio

from .._logging import principal_var, request_id_var
from ..serving import _kernel
from ..serving._request import InFlight
from ..offer._results import unsendable_reason, unsendable_reply
from ..protocol._errors import (
    HEADER_MISMATCH,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    MISSING_CLIENT_CAPABILITY,
    PARSE_ERROR,
    SHUTTING_DOWN,
    UNSUPPORTED_PROTOCOL_VERSION,
    McpError,
    ShuttingDown,
    UnsupportedProtocolVersion,
)
from ..protocol._era import EraDecision, decide_era
from ..protocol._headers import PROTOCOL_VERSION_HEADER, check_param_headers, header_params
from ..protocol._jsonrpc import ErrorObject, ErrorResponse, Message, MessageCodec, Notification, Request
from ._http_common import (
    ADMISSION_CODES,
    KEEPALIVE,
    SSE_HEADERS,
    SSE_KEEPALIVE,
    admission_status,
    error_body,
    respond_json,
    watch_disconnect,
)
from .h1 import Responder
from ..protocol._session import SessionState
from ..protocol._envelope import STATELESS_VERSIONS
from ..protocol._versions import ALL_VERSIONS

if TYPE_CHECKING:
    from ..auth import Principal

logger = logging.getLogger("mcp_trio.http.stateless")

#: JSON-RPC error -> HTTP status of a stateless answer given as JSON (others: 200; admission
#: refusals: ``_http_common.admission_status``).
_STATUS = {
    PARSE_ERROR: 400, INVALID_REQUEST: 400, INVALID_PARAMS: 400, HEADER_MISMATCH: 400,
    MISSING_CLIENT_CAPABILITY: 400, UNSUPPORTED_PROTOCOL_VERSION: 400, METHOD_NOT_FOUND: 404,
}


class StatelessHost(Protocol):
    """What this module needs of the HTTP app that hands it a POST (``http.McpHttpApp``)."""

    supervisor: Any
    json_response: bool
    authenticator: Any


class _Sink:
    """Where an exchange's notifications go: a rendezvous with the response writer, so a tool
    that talks faster than its client reads waits for it (nothing piles up in memory)."""

    def __init__(self) -> None:
        self.send, self.receive = trio.open_memory_channel[bytes](0)


class Exchange:
    """One stateless HTTP request, shaped like a ``Connection`` for the handlers it runs."""

    def __init__(self, app: StatelessHost, principal: Principal | None, peer: str | None, sink: _Sink | None) -> None:
        supervisor = app.supervisor
        self.supervisor = supervisor
        self.server = supervisor.server
        self.limits = supervisor.limits
        self.principal = principal
        self.peer = peer
        self.session_id = "stateless"
        self.encoder = msgspec.json.Encoder()
        self.codec = MessageCodec()
        self.state = SessionState()  # never initialized: nothing of the handshake era applies
        self.channel = None
        self.input_done: trio.Event | None = None
        self._sink = sink

    async def notify(self, method: str, params: Any = None) -> None:
        if self._sink is None:
            return  # JSON-only answers: what a request says along the way is dropped
        try:
            data = self.codec.encode(Notification(method, params))
        except (TypeError, ValueError, OverflowError) as exc:  # as a connection's writer does
            logger.warning("%s not sent: %s", method, unsendable_reason(exc))
            return
        try:
            await self._sink.send.send(b"data: " + data + b"\n\n")
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            logger.debug("%s dropped: the response is gone", method)

    def park(self, in_flight: InFlight) -> None:
        """Nothing to give back: an exchange holds no connection slot."""

    async def request(self, method: str, params: Any, result_type: type, *, in_flight: InFlight | None = None) -> Any:
        raise McpError(f"{method}: a stateless request cannot send requests to its client")  # pragma: no cover


async def _respond_error(responder: Responder, rid: Any, error: McpError, status: int | None = None,
                         headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await respond_json(responder, _STATUS.get(error.code, 200) if status is None else status, error_body(error, rid), headers or ())


async def post(app: StatelessHost, message: Message, decision: EraDecision, headers: dict[str, str], repeated: set[str],
               principal: Principal | None, peer: str | None, wants_sse: bool, responder: Responder) -> None:
    """Answer one stateless POST (its body already read and decoded into ``message``, its era
    decided: ``decision``, with ``headers`` folded)."""
    kind = type(message)
    if kind is Notification:
        version = headers.get(PROTOCOL_VERSION_HEADER, "")
        if version not in STATELESS_VERSIONS:
            await _respond_error(responder, None, UnsupportedProtocolVersion(
                "unsupported protocol version in the MCP-Protocol-Version header", {"supported": list(ALL_VERSIONS)}))
            return
        note: Notification = message  # type: ignore[assignment]
        if note.method in app.supervisor.registry.methods:
            # A custom method's notification: through the kernel (admission, middleware), no reply.
            era = decide_era(note.method, note.params, headers, repeated)
            await _kernel.notify(Exchange(app, principal, peer, None),
                                 InFlight(None, note.method, note.params, era if era.error is None else None))
        await responder.respond(202)
        return
    if kind is not Request:
        await _respond_error(responder, None, McpError("the body must be one JSON-RPC request or notification",
                                                  code=INVALID_REQUEST))
        return
    request: Request = message  # type: ignore[assignment]
    if request.method == "subscriptions/listen" and not wants_sse:
        await _respond_error(responder, request.id, McpError(
            "not acceptable: a listen stream is text/event-stream; list it in Accept", code=INVALID_REQUEST), 406)
        return
    try:
        if decision.error is not None:
            raise decision.error
        _check_tool_headers(app, decision, headers, repeated)
    except McpError as exc:
        await _respond_error(responder, request.id, exc)
        return
    if app.supervisor.shutting_down.is_set():
        await _respond_error(responder, request.id, ShuttingDown("server shutting down"), 503, [(b"retry-after", b"1")])
        return
    call = InFlight(request.id, request.method, request.params, decision)
    await _run(app, call, principal, peer, wants_sse and not (app.json_response and request.method != "subscriptions/listen"),
               responder)


def _check_tool_headers(app: StatelessHost, decision: EraDecision, headers: dict[str, str], repeated: set[str]) -> None:
    """The ladder's last rung: a tool's ``Mcp-Param-*`` headers agree with its arguments."""
    params = decision.params
    if params is None or not hasattr(params, "arguments") or not hasattr(params, "name"):
        return  # not tools/call, or params the handler will refuse
    tool = app.supervisor.registry.tools.get(params.name)
    if tool is not None:
        declared = _declared(tool)
        if declared:
            arguments = {} if params.arguments is msgspec.UNSET else msgspec.json.decode(params.arguments)
            check_param_headers(declared, arguments or {}, headers, repeated)


_declared_cache: dict[int, tuple[Any, dict[tuple[str, ...], tuple[str, str | None]]]] = {}


def _declared(tool: Any) -> dict[tuple[str, ...], tuple[str, str | None]]:
    """A tool's ``x-mcp-header`` annotations, worked out once per tool definition."""
    schema = tool.wire.input_schema
    cached = _declared_cache.get(id(tool))
    if cached is not None and cached[0] is schema:
        return cached[1]
    declared = header_params(schema)
    if len(_declared_cache) > 4096:
        _declared_cache.clear()
    _declared_cache[id(tool)] = (schema, declared)
    return declared


async def _run(app: StatelessHost, call: InFlight, principal: Principal | None,
               peer: str | None, streaming: bool, responder: Responder) -> None:
    sink = _Sink() if streaming else None
    exchange = Exchange(app, principal, peer, sink)
    request_id_var.set(call.id)
    principal_var.set(principal)
    metrics = app.supervisor.metrics
    started = time.perf_counter()
    reply: list[Message] = []

    async def run() -> None:
        try:
            reply.append(await _kernel.answer(exchange, call))
        finally:
            if sink is not None:
                sink.send.close()

    outcome = "cancelled"
    answer: _Answer | None = None
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_disconnect, responder, nursery.cancel_scope)
            if sink is None:
                await run()
                answer = _json_answer(app, exchange, reply[0])
            else:
                nursery.start_soon(run)
                answer = await _answer_stream(app, responder, exchange, sink, reply)
            nursery.cancel_scope.cancel()
        # The response's last piece goes out after the disconnect watcher is gone, so that
        # nothing cancels it half-way (and with it the engine's own bookkeeping).
        if answer is not None:
            outcome = answer.outcome
            if answer.streamed:
                await responder.send(answer.body)
                await responder.end()
            else:
                await respond_json(responder, answer.status, answer.body, answer.headers)
    finally:
        metrics.observe(call.method, outcome, time.perf_counter() - started)


class _Answer:
    """The end of an answer: a whole JSON response, or the last event of an SSE stream."""

    __slots__ = ("body", "headers", "outcome", "status", "streamed")

    def __init__(self, outcome: str, body: bytes, status: int = 200, headers: list[tuple[bytes, bytes]] | None = None,
                 streamed: bool = False) -> None:
        self.outcome, self.body, self.status, self.headers, self.streamed = outcome, body, status, headers or [], streamed


def _encode_reply(exchange: Exchange, message: Message) -> tuple[bytes, Message]:
    """The reply's bytes; one that cannot be encoded (a lone surrogate) is refused instead."""
    try:
        return exchange.codec.encode(message), message
    except (TypeError, ValueError, OverflowError) as exc:
        logger.warning("the reply to request %r was refused: %s", getattr(message, "id", None), unsendable_reason(exc))
        replacement = unsendable_reply(message, exc)
        if replacement is None:  # pragma: no cover - a request's answer is always a reply
            raise
        return exchange.codec.encode(replacement), replacement


def _json_answer(app: StatelessHost, exchange: Exchange, message: Message) -> _Answer:
    """A JSON answer: its outcome, status, headers and body."""
    body, message = _encode_reply(exchange, message)
    error = message.error if type(message) is ErrorResponse else None  # type: ignore[union-attr]
    if error is None:
        return _Answer("ok", body)
    status, extra = _status(app, error)
    return _Answer("error", body, status, extra)


def _status(app: StatelessHost, error: ErrorObject) -> tuple[int, list[tuple[bytes, bytes]]]:
    if error.code in ADMISSION_CODES:
        return admission_status(error, app.authenticator)
    if error.code == SHUTTING_DOWN:
        return 503, [(b"retry-after", b"1")]
    return _STATUS.get(error.code, 200), []


async def _answer_stream(app: StatelessHost, responder: Responder, exchange: Exchange, sink: _Sink,
                         reply: list[Message]) -> _Answer:
    """JSON if the request finishes first, silently; else SSE until the reply (see the module).
    Returns the answer's end, which the caller writes."""
    first: bytes | None = None
    done = False
    with trio.move_on_after(SSE_KEEPALIVE):
        try:
            first = await sink.receive.receive()
        except trio.EndOfChannel:
            done = True
    if done:
        return _json_answer(app, exchange, reply[0])
    await responder.start(200, SSE_HEADERS, first if first is not None else KEEPALIVE)
    while True:
        chunk = KEEPALIVE
        with trio.move_on_after(SSE_KEEPALIVE):
            try:
                chunk = await sink.receive.receive()
            except trio.EndOfChannel:
                break
        await responder.send(chunk)
    body, message = _encode_reply(exchange, reply[0])
    return _Answer("ok" if type(message) is not ErrorResponse else "error", b"data: " + body + b"\n\n", streamed=True)
