"""One MCP session from the client's side: requests and their replies, both protocol eras,
typed methods, and what the server sends us (notifications, requests, input rounds).

The hot path is :meth:`Client.request`: encode, send, park the task until the reader (or, on
HTTP, the POST itself) hands over the reply with its id. Everything else is built on it.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, TypeVar

import msgspec
import trio

from ..protocol._headers import NAME_FIELDS, encode_header_value, header_params, param_header_values
from ..protocol._envelope import (
    CLIENT_CAPABILITIES_KEY,
    CLIENT_INFO_KEY,
    INPUT_METHODS,
    LOG_LEVEL_KEY,
    PROTOCOL_VERSION_KEY,
    SERVER_INFO_KEY,
)
from ..protocol._types import LOG_LEVELS
from ..protocol._versions import LATEST_STATELESS_VERSION, LATEST_VERSION, STATELESS_VERSIONS, SUPPORTED_VERSIONS
from ._errors import ClientError, ConnectError, ConnectionLost, EraError, HTTPError, McpError, ProtocolError, RequestTimeout
from ._types import (
    CallToolResult,
    CompleteResult,
    Completion,
    CreateMessageParams,
    ElicitParams,
    GetPromptResult,
    Implementation,
    ListPromptsResult,
    ListResourcesResult,
    ListResourceTemplatesResult,
    ListToolsResult,
    LoggingMessageParams,
    Prompt,
    PromptRef,
    ReadResourceResult,
    Resource,
    ResourceTemplate,
    ResourceTemplateRef,
    Root,
    Tool,
)
from ._tracing import RequestTracer
from ._wire import CLOSE_TIMEOUT, Incoming, OutNotification, OutRequest, OutResponse, decoder, encoder

logger = logging.getLogger("mcp_trio.client")

#: How long a request may wait for its answer unless told otherwise (``request_timeout=`` on
#: :func:`connect`, ``timeout=`` on each call; None waits for ever). It covers the whole call:
#: input rounds, and the callbacks that answer them, included.
DEFAULT_REQUEST_TIMEOUT = 60.0
#: How long opening the session may take: ``initialize`` (and ``notifications/initialized``)
#: or the ``server/discover`` probe, fallback included.
DEFAULT_HANDSHAKE_TIMEOUT = 30.0
#: Pages a ``list_*`` method follows before it gives up (a server that never stops paging).
DEFAULT_MAX_PAGES = 100
#: Input rounds (2026-07-28 ``InputRequiredResult``) one call answers before it gives up.
MAX_INPUT_ROUNDS = 10
#: Async handler calls waiting to run; past this, notifications for async handlers are
#: dropped (counted in ``Client.dropped_notifications``) rather than held without bound.
MAX_QUEUED_NOTIFICATIONS = 1000
#: What the client says it is (``clientInfo``) unless told otherwise.
CLIENT_INFO = {"name": "mcp-trio-client", "version": "0.1.0"}

Era = Literal["auto", "handshake", "stateless"]
HANDSHAKE: Literal["handshake"] = "handshake"
STATELESS: Literal["stateless"] = "stateless"

ProgressCallback = Callable[[float, "float | None", "str | None"], Any]
LogCallback = Callable[[LoggingMessageParams], Any]
SamplingCallback = Callable[[CreateMessageParams], Awaitable[Any]]
ElicitationCallback = Callable[[ElicitParams], Awaitable[Any]]
RootsCallback = Callable[[], Awaitable[Any]]
AsksCallback = Callable[[str, Any], Awaitable[Any]]
NotificationHandler = Callable[[str, Any], Any]
RequestHandler = Callable[[str, Any], Awaitable[Any]]
ListChangedHandler = Callable[[str], Any]
ResourceUpdatedHandler = Callable[[str], Any]

T = TypeVar("T")


class _Default:
    def __repr__(self) -> str:
        return "DEFAULT"


#: "Use the client's setting" (for ``timeout=``).
DEFAULT: Any = _Default()

_LIST_CHANGED = {
    "notifications/tools/list_changed": "tools",
    "notifications/prompts/list_changed": "prompts",
    "notifications/resources/list_changed": "resources",
}
_NO_CANCEL = frozenset({"initialize", "server/discover"})  # the spec forbids cancelling them


class _Pending:
    """One request in flight: where its reply lands (the task parks on it), and where what
    the server sends about it goes (logs, requests), when the transport can tell."""

    __slots__ = ("asks", "lost", "message", "on_log", "task")

    def __init__(self, on_log: LogCallback | None = None, asks: AsksCallback | None = None) -> None:
        self.message: Incoming | None = None
        self.task: Any = None
        self.lost: str | None = None
        self.on_log = on_log
        self.asks = asks


def _is_async(fn: Any) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))


def _to_builtins(value: Any) -> Any:
    return msgspec.to_builtins(value) if isinstance(value, msgspec.Struct) else value


class Client:
    """One MCP session. Made by :func:`connect`; use it only inside that block.

    See ``docs/client.md`` for every method. In short: typed calls (``call_tool``,
    ``list_tools``, ``read_resource``, ...) return msgspec Structs and follow the session's
    era; :meth:`request` is the raw JSON-RPC request for anything else.
    """

    def __init__(
        self,
        transport: Any,
        nursery: trio.Nursery,
        *,
        on_notification: NotificationHandler | None = None,
        on_request: RequestHandler | None = None,
        sampling: SamplingCallback | None = None,
        elicitation: ElicitationCallback | None = None,
        roots: RootsCallback | None = None,
        on_log: LogCallback | None = None,
        on_list_changed: ListChangedHandler | None = None,
        on_resource_updated: ResourceUpdatedHandler | None = None,
        capabilities: Mapping[str, Any] | None = None,
        client_info: Mapping[str, Any] | None = None,
        request_timeout: float | None = DEFAULT_REQUEST_TIMEOUT,
        log_level: str | None = None,
        tracer: RequestTracer | None = None,
    ) -> None:
        self._transport = transport
        #: Around each request, and the trace context to send with it (``_tracing``); None: none.
        self._tracer = tracer
        self._nursery = nursery
        self._inline = transport.inline_answers
        self._http = hasattr(transport, "send_dedicated")
        self._on_notification = on_notification
        self._on_request = on_request
        self._sampling = sampling
        self._elicitation = elicitation
        self._roots = roots
        self._on_log = on_log
        self._on_list_changed = on_list_changed
        self._on_resource_updated = on_resource_updated
        self._request_timeout = request_timeout
        if log_level is not None and log_level not in LOG_LEVELS:
            raise ValueError(f"log_level must be one of {', '.join(LOG_LEVELS)}")
        self._log_level = log_level
        self._client_info = dict(client_info or CLIENT_INFO)
        self._capabilities = self._offered(capabilities)
        self._pending: dict[Any, _Pending] = {}
        self._progress: dict[Any, ProgressCallback] = {}
        self._next_id = 0
        self._next_token = 0
        self._lost: str | None = None
        self._lost_event = trio.Event()
        self._queue_send, self._queue_receive = trio.open_memory_channel[tuple[Any, tuple[Any, ...]]](MAX_QUEUED_NOTIFICATIONS)
        self._param_headers: dict[str, dict[tuple[str, ...], tuple[str, str | None]]] = {}
        self._subscriptions: set[str] = set()
        self._listen_scope: trio.CancelScope | None = None
        self._listening = False
        self._envelope: dict[str, Any] | None = None
        #: ``"handshake"`` or ``"stateless"`` once the session is open; None before.
        self.era: str | None = None
        #: The negotiated revision (handshake era) or the one every request carries (stateless).
        self.protocol_version: str | None = None
        #: The ``initialize`` result as sent (handshake era), once :meth:`initialize` has run.
        self.initialize_result: dict[str, Any] | None = None
        #: The ``server/discover`` result as sent (2026-07-28), once :meth:`discover` has run.
        self.discover_result: dict[str, Any] | None = None
        #: Who the server says it is (from ``initialize``, or the serverInfo stamp of
        #: ``server/discover``); None when it did not say.
        self.server_info: Implementation | None = None
        #: The server's capabilities as sent (a dict: unknown keys are kept).
        self.server_capabilities: dict[str, Any] = {}
        #: The server's ``instructions``, if any.
        self.instructions: str | None = None
        #: Notifications for async handlers dropped because ``MAX_QUEUED_NOTIFICATIONS`` were waiting.
        self.dropped_notifications = 0
        #: Why the GET listen stream / ``subscriptions/listen`` stopped for good, if it did.
        self.listen_stopped: str | None = None
        if self._http:
            transport.deliver = self._deliver

    def _offered(self, extra: Mapping[str, Any] | None) -> dict[str, Any]:
        """The capabilities we declare: one per callback given, plus ``capabilities``."""
        offered: dict[str, Any] = {}
        if self._sampling is not None:
            offered["sampling"] = {}
        if self._elicitation is not None:
            offered["elicitation"] = {}
        if self._roots is not None:
            offered["roots"] = {"listChanged": True}
        offered.update(extra or {})
        return offered

    # -- what the caller sees -----------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        """The server's process id when this client spawned it (stdio), else None."""
        return self._transport.pid

    @property
    def session_id(self) -> str | None:
        """The Streamable HTTP session id the server assigned, if any."""
        return getattr(self._transport, "session_id", None)

    @property
    def lost(self) -> str | None:
        """Why the connection ended, once it has; None while it is up."""
        return self._lost

    async def wait_lost(self) -> str:
        """Wait until the connection ends (EOF, a closed WebSocket, the client closed) and
        return why. An HTTP client's connection ends only when it is closed: a failed POST is
        that request's error, not the session's end."""
        await self._lost_event.wait()
        return self._lost or "connection lost"

    @property
    def capabilities(self) -> dict[str, Any]:
        """What this client declares (``initialize``, or each 2026-07-28 request's envelope)."""
        return dict(self._capabilities)

    # -- opening the session ------------------------------------------------------------------
    async def open(self, era: Era = "auto", *, protocol_version: str | None = None,
                   timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT) -> None:
        """Open the session in ``era``: ``"handshake"`` (``initialize``), ``"stateless"``
        (``server/discover``) or ``"auto"`` (the spec's probe: ``server/discover`` first,
        ``initialize`` when the server does not speak 2026-07-28). :func:`connect` calls it;
        :class:`ConnectError` when it takes longer than ``timeout``."""
        if era not in ("auto", HANDSHAKE, STATELESS):
            raise ValueError(f"era must be 'auto', 'handshake' or 'stateless', not {era!r}")
        what = {"auto": "server/discover or initialize", HANDSHAKE: "initialize", STATELESS: "server/discover"}[era]
        with trio.move_on_after(math.inf if timeout is None else timeout) as scope:
            if era == HANDSHAKE:
                await self.initialize(protocol_version=protocol_version or LATEST_VERSION)
            elif era == STATELESS:
                await self.discover(protocol_version=protocol_version or LATEST_STATELESS_VERSION)
            else:
                await self._probe(protocol_version)
        if scope.cancelled_caught:
            raise ConnectError(f"the server did not answer {what} within {timeout:g} s")

    async def _probe(self, protocol_version: str | None) -> None:
        """``server/discover``, else ``initialize``. Only positive evidence of a 2026-07-28
        server adopts that era; an answer that says "not here" (an error, HTTP 4xx) falls
        back; an outage (no connection, HTTP 5xx, a 401) is an error, never an era verdict."""
        try:
            await self.discover(protocol_version=LATEST_STATELESS_VERSION)
            return
        except McpError as exc:
            if exc.code == -32022:
                data = exc.data if isinstance(exc.data, dict) else {}
                supported = data.get("supported")
                if isinstance(supported, list) and not any(v in SUPPORTED_VERSIONS for v in supported):
                    raise ConnectError(f"the server speaks only {', '.join(map(str, supported))}; "
                                       f"this client speaks {', '.join(SUPPORTED_VERSIONS + STATELESS_VERSIONS)}") from None
        except HTTPError as exc:
            if exc.status in (401, 403) or exc.status >= 500:
                raise
        except EraError:
            pass  # answered, but with no revision we speak statelessly
        self._envelope = None
        await self.initialize(protocol_version=protocol_version or LATEST_VERSION)

    async def initialize(
        self,
        *,
        protocol_version: str = LATEST_VERSION,
        capabilities: Mapping[str, Any] | None = None,
        client_info: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The handshake: ``initialize``, then ``notifications/initialized``. Returns the
        server's result as sent; later HTTP requests carry the negotiated protocol version.
        ``capabilities`` replaces what the client would declare (for tests of a server)."""
        if capabilities is not None:
            self._capabilities = dict(capabilities)
        if client_info is not None:
            self._client_info = dict(client_info)
        result = await self._roundtrip("initialize", {
            "protocolVersion": protocol_version,
            "capabilities": self._capabilities,
            "clientInfo": self._client_info,
        }, None, None)
        if not isinstance(result, dict):
            raise ProtocolError(f"initialize answered with {type(result).__name__}, not an object")
        self.initialize_result = result
        version = result.get("protocolVersion")
        self.protocol_version = version if isinstance(version, str) else protocol_version
        self.era = HANDSHAKE
        self.server_info = self._implementation(result.get("serverInfo"))
        caps = result.get("capabilities")
        self.server_capabilities = caps if isinstance(caps, dict) else {}
        instructions = result.get("instructions")
        self.instructions = instructions if isinstance(instructions, str) else None
        if self._http:
            self._transport.protocol_version = self.protocol_version
        await self.notify("notifications/initialized")
        return result

    async def discover(self, *, protocol_version: str = LATEST_STATELESS_VERSION) -> dict[str, Any]:
        """``server/discover`` (2026-07-28): what the server supports. When it lists a
        revision this client speaks statelessly, the session adopts it: every later request
        carries its envelope in ``params._meta``. :class:`EraError` when it lists none."""
        self._envelope = self._make_envelope(protocol_version)
        try:
            result = await self._stateless_call("server/discover", None, None, None)
        except BaseException:
            self._envelope = None
            raise
        if not isinstance(result, dict):
            self._envelope = None
            raise ProtocolError(f"server/discover answered with {type(result).__name__}, not an object")
        supported = result.get("supportedVersions")
        versions = supported if isinstance(supported, list) else []
        mutual = [v for v in STATELESS_VERSIONS if v in versions]
        if not mutual:
            self._envelope = None
            raise EraError(f"server/discover lists {', '.join(map(str, versions)) or 'no revision'}: "
                           f"none of {', '.join(STATELESS_VERSIONS)}, which this client speaks without a handshake")
        version = protocol_version if protocol_version in mutual else mutual[-1]
        self._envelope = self._make_envelope(version)
        self.discover_result = result
        self.protocol_version = version
        self.era = STATELESS
        meta = result.get("_meta")
        self.server_info = self._implementation(meta.get(SERVER_INFO_KEY) if isinstance(meta, dict) else None)
        caps = result.get("capabilities")
        self.server_capabilities = caps if isinstance(caps, dict) else {}
        instructions = result.get("instructions")
        self.instructions = instructions if isinstance(instructions, str) else None
        return result

    def _make_envelope(self, version: str) -> dict[str, Any]:
        envelope = {
            PROTOCOL_VERSION_KEY: version,
            CLIENT_CAPABILITIES_KEY: self._capabilities,
            CLIENT_INFO_KEY: self._client_info,
        }
        if self._log_level is not None:
            envelope[LOG_LEVEL_KEY] = self._log_level
        return envelope

    @staticmethod
    def _implementation(value: Any) -> Implementation | None:
        try:
            return msgspec.convert(value, Implementation) if isinstance(value, dict) else None
        except msgspec.ValidationError:
            return None

    # -- the raw protocol ---------------------------------------------------------------------
    async def request(self, method: str, params: Any = None, *, timeout: Any = DEFAULT,
                      progress: ProgressCallback | None = None) -> Any:
        """Send a request and wait for its reply; returns the ``result`` as sent (decoded
        JSON) or raises :class:`McpError`. ``params`` may be a ``msgspec.Raw`` holding
        encoded JSON. In the 2026-07-28 era the envelope is added to ``params._meta``; an
        ``InputRequiredResult`` is returned as is (the typed methods answer those).
        ``timeout``: seconds, None for no limit, default the client's ``request_timeout``;
        :class:`RequestTimeout` when it passes, and the server is told to stop."""
        if timeout is DEFAULT:
            timeout = self._request_timeout
        if self._envelope is None and progress is None:
            if timeout is None:
                return await self._roundtrip(method, params, None, None)
            with trio.move_on_after(timeout):
                return await self._roundtrip(method, params, None, None)
            raise RequestTimeout(f"{method} got no answer within {timeout:g} s")
        return await self._timed(method, timeout, self._call, method, params, progress, None, None, False)

    async def notify(self, method: str, params: Any = None) -> None:
        """Send a notification (no reply)."""
        if self._lost is not None:
            raise ConnectionLost(self._lost)
        await self._send(encoder.encode(OutNotification("2.0", method, msgspec.UNSET if params is None else params)), None, None)

    async def _timed(self, method: str, timeout: float | None, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        if timeout is None:
            return await fn(*args)
        with trio.move_on_after(timeout):
            return await fn(*args)
        raise RequestTimeout(f"{method} got no answer within {timeout:g} s")

    async def _call(self, method: str, params: Any, progress: ProgressCallback | None, on_log: LogCallback | None,
                    asks: AsksCallback | None, rounds: bool) -> Any:
        """One logical call: a progress token, the era's envelope, and (``rounds``) the
        2026-07-28 input rounds until the answer is complete."""
        token = None
        if progress is not None:
            self._next_token += 1
            token = f"mcp-trio-{self._next_token}"
            params = _with_meta(params, {"progressToken": token})
            self._progress[token] = progress
        try:
            if self._envelope is None:
                return await self._roundtrip(method, params, None, _Pending(on_log, asks))
            result = await self._stateless_call(method, params, on_log, asks)
            if not rounds:
                return result
            for _ in range(MAX_INPUT_ROUNDS):
                if type(result) is not dict or result.get("resultType") != "input_required":
                    return result
                params = await self._input_round(method, params, result, asks)
                result = await self._stateless_call(method, params, on_log, asks)
            raise ProtocolError(f"{method} still asked for input after {MAX_INPUT_ROUNDS} rounds")
        finally:
            if token is not None:
                del self._progress[token]

    async def _input_round(self, method: str, params: Any, result: dict[str, Any], asks: AsksCallback | None) -> Any:
        """Answer an ``InputRequiredResult``'s requests with the callbacks; the next round's
        params carry the answers and the server's ``requestState``."""
        requests = result.get("inputRequests")
        responses: dict[str, Any] = {}
        if isinstance(requests, dict):
            for key, ask in requests.items():
                if not isinstance(ask, dict) or not isinstance(ask.get("method"), str):
                    raise ProtocolError(f"{method}: input request {key!r} names no method")
                try:
                    responses[key] = _to_builtins(await self._ask(ask["method"], ask.get("params"), asks))
                except McpError as exc:
                    raise ProtocolError(f"{method}: cannot answer the server's {ask['method']} ({exc.message})") from None
        retry = dict(params) if isinstance(params, dict) else {}
        retry["inputResponses"] = responses
        state = result.get("requestState")
        if isinstance(state, str):
            retry["requestState"] = state
        else:
            retry.pop("requestState", None)
        return retry

    async def _stateless_call(self, method: str, params: Any, on_log: LogCallback | None, asks: AsksCallback | None,
                              dedicated: bool = False) -> Any:
        envelope = self._envelope
        assert envelope is not None
        if params is None:
            params = {"_meta": envelope}
        else:
            if isinstance(params, msgspec.Raw):
                params = msgspec.json.decode(params)
            if not isinstance(params, dict):
                raise TypeError(f"params of {method} must be an object in the 2026-07-28 era")
            params = _with_meta(params, envelope)
        headers = self._routing_headers(method, params) if self._http else None
        return await self._roundtrip(method, params, headers, _Pending(on_log, asks), dedicated)

    def _routing_headers(self, method: str, params: dict[str, Any]) -> list[tuple[bytes, bytes]]:
        """2026-07-28 over HTTP: the version, the method and the name repeated in headers."""
        assert self._envelope is not None
        headers = [(b"mcp-protocol-version", self._envelope[PROTOCOL_VERSION_KEY].encode()), (b"mcp-method", method.encode())]
        field = NAME_FIELDS.get(method)
        if field is not None:
            name = params.get(field)
            if isinstance(name, str):
                headers.append((b"mcp-name", encode_header_value(name).encode()))
                if method == "tools/call":
                    declared = self._param_headers.get(name)
                    if declared:
                        arguments = params.get("arguments")
                        if isinstance(arguments, msgspec.Raw):
                            arguments = msgspec.json.decode(arguments)
                        headers += [(k.encode(), v.encode()) for k, v in param_header_values(declared, arguments)]
        return headers

    async def _roundtrip(self, method: str, params: Any, headers: Any, pending: _Pending | None, dedicated: bool = False,
                         traced: bool = False) -> Any:
        """Send one request and park until its reply (or the connection's end)."""
        if self._tracer is not None and not traced:
            return await self._traced_roundtrip(method, params, headers, pending, dedicated)
        if self._lost is not None:
            raise ConnectionLost(self._lost)
        self._next_id += 1
        rid = self._next_id
        data = encoder.encode(OutRequest("2.0", rid, method, msgspec.UNSET if params is None else params))
        waiter = pending if pending is not None else _Pending()
        self._pending[rid] = waiter
        try:
            if dedicated:
                await self._transport.send_dedicated(data, headers, waiter)
            else:
                await self._send(data, headers, waiter)
            if waiter.message is None and waiter.lost is None:
                if self._inline:
                    raise ProtocolError(f"the server's HTTP answer to {method} carried no reply")
                waiter.task = trio.lowlevel.current_task()

                def abort(_: Any) -> Any:
                    waiter.task = None
                    return trio.lowlevel.Abort.SUCCEEDED

                await trio.lowlevel.wait_task_rescheduled(abort)
        except trio.Cancelled:
            if waiter.message is None and self._lost is None:
                self._forward_cancel(rid, method)
            raise
        finally:
            del self._pending[rid]
        message = waiter.message
        if message is None:
            raise ConnectionLost(waiter.lost or "connection lost")
        if message.error is not msgspec.UNSET:
            error = message.error if isinstance(message.error, dict) else {}
            code = error.get("code")
            raise McpError(code if isinstance(code, int) else 0, str(error.get("message", "")), error.get("data"))
        if message.result is msgspec.UNSET:
            raise ProtocolError(f"reply to {method} has neither result nor error")
        return message.result

    async def _traced_roundtrip(self, method: str, params: Any, headers: Any, pending: _Pending | None, dedicated: bool) -> Any:
        """``_roundtrip`` inside the tracer's span, its trace context in ``params._meta`` (and
        the POST's headers over HTTP)."""
        assert self._tracer is not None
        if isinstance(params, msgspec.Raw):
            params = msgspec.json.decode(params)
        with self._tracer.request(method, params) as carrier:
            if carrier:
                params = _with_meta(params, carrier)
                if self._http:
                    headers = [*(headers or ()), *((name.encode(), value.encode("latin-1")) for name, value in carrier.items())]
            return await self._roundtrip(method, params, headers, pending, dedicated, traced=True)

    def _forward_cancel(self, rid: int, method: str) -> None:
        """A request given up (cancelled, timed out): tell the server, from a task of our own
        (the caller is being cancelled). Over HTTP in the 2026-07-28 era closing the response
        already said it; ``initialize`` and ``server/discover`` are never cancelled."""
        if method in _NO_CANCEL or (self._http and self._envelope is not None):
            return
        try:
            self._nursery.start_soon(self._send_cancel, rid)
        except RuntimeError:
            pass  # the client is closing: nobody left to tell

    async def _send_cancel(self, rid: int) -> None:
        with trio.move_on_after(CLOSE_TIMEOUT):
            try:
                await self.notify("notifications/cancelled", {"requestId": rid, "reason": "cancelled by the client"})
            except ClientError:
                pass

    async def _send(self, data: bytes, headers: Any, call: Any) -> None:
        try:
            await self._transport.send(data, headers, call)
        except ConnectionLost as exc:
            if not self._inline:  # one HTTP request failing is not the session's end
                self._connection_lost(str(exc))
            raise

    # -- typed methods ------------------------------------------------------------------------
    async def _typed(self, method: str, params: Any, kind: type[T], *, timeout: Any = DEFAULT,
                     progress: ProgressCallback | None = None, on_log: LogCallback | None = None,
                     asks: AsksCallback | None = None) -> T:
        if timeout is DEFAULT:
            timeout = self._request_timeout
        rounds = method in INPUT_METHODS
        raw = await self._timed(method, timeout, self._call, method, params, progress, on_log, asks, rounds)
        return _convert(raw, kind, method)

    async def ping(self, *, timeout: Any = DEFAULT) -> None:
        """Check the server answers. The 2026-07-28 era has no ``ping``: it sends
        ``server/discover``, the cheapest request that era has."""
        if self.era == STATELESS:
            await self._timed("server/discover", self._timeout(timeout), self._call, "server/discover", None, None, None, None, False)
        else:
            await self.request("ping", timeout=timeout)

    def _timeout(self, timeout: Any) -> float | None:
        return self._request_timeout if timeout is DEFAULT else timeout

    async def list_tools_page(self, cursor: str | None = None, *, timeout: Any = DEFAULT) -> ListToolsResult:
        """One page of ``tools/list``; its ``next_cursor`` asks for the next."""
        page = await self._typed("tools/list", {} if cursor is None else {"cursor": cursor}, ListToolsResult, timeout=timeout)
        for tool in page.tools:
            declared = header_params(tool.input_schema)
            if declared:
                self._param_headers[tool.name] = declared
            else:
                self._param_headers.pop(tool.name, None)
        return page

    async def list_tools(self, *, max_pages: int = DEFAULT_MAX_PAGES, timeout: Any = DEFAULT) -> list[Tool]:
        """Every tool, following ``nextCursor`` for up to ``max_pages`` pages
        (:class:`ProtocolError` past that, or when the server repeats a cursor)."""
        return await self._all_pages(self.list_tools_page, "tools", "tools/list", max_pages, timeout)

    async def list_resources_page(self, cursor: str | None = None, *, timeout: Any = DEFAULT) -> ListResourcesResult:
        return await self._typed("resources/list", {} if cursor is None else {"cursor": cursor}, ListResourcesResult, timeout=timeout)

    async def list_resources(self, *, max_pages: int = DEFAULT_MAX_PAGES, timeout: Any = DEFAULT) -> list[Resource]:
        """Every resource (pages followed as by :meth:`list_tools`)."""
        return await self._all_pages(self.list_resources_page, "resources", "resources/list", max_pages, timeout)

    async def list_resource_templates_page(self, cursor: str | None = None, *, timeout: Any = DEFAULT) -> ListResourceTemplatesResult:
        return await self._typed("resources/templates/list", {} if cursor is None else {"cursor": cursor},
                                 ListResourceTemplatesResult, timeout=timeout)

    async def list_resource_templates(self, *, max_pages: int = DEFAULT_MAX_PAGES, timeout: Any = DEFAULT) -> list[ResourceTemplate]:
        """Every resource template (pages followed as by :meth:`list_tools`)."""
        return await self._all_pages(self.list_resource_templates_page, "resource_templates", "resources/templates/list",
                                     max_pages, timeout)

    async def list_prompts_page(self, cursor: str | None = None, *, timeout: Any = DEFAULT) -> ListPromptsResult:
        return await self._typed("prompts/list", {} if cursor is None else {"cursor": cursor}, ListPromptsResult, timeout=timeout)

    async def list_prompts(self, *, max_pages: int = DEFAULT_MAX_PAGES, timeout: Any = DEFAULT) -> list[Prompt]:
        """Every prompt (pages followed as by :meth:`list_tools`)."""
        return await self._all_pages(self.list_prompts_page, "prompts", "prompts/list", max_pages, timeout)

    async def _all_pages(self, page: Callable[..., Awaitable[Any]], field: str, method: str, max_pages: int, timeout: Any) -> list[Any]:
        items: list[Any] = []
        cursor: str | None = None
        seen: set[str] = set()
        for _ in range(max_pages):
            result = await page(cursor, timeout=timeout)
            items.extend(getattr(result, field))
            next_cursor = result.next_cursor
            if not isinstance(next_cursor, str):
                return items
            if next_cursor in seen:
                raise ProtocolError(f"{method}: the server sent cursor {next_cursor!r} twice")
            seen.add(next_cursor)
            cursor = next_cursor
        raise ProtocolError(f"{method} has more than {max_pages} pages: pass a larger max_pages, or page with {page.__name__}()")

    async def call_tool(
        self,
        name: str,
        arguments: Mapping[str, Any] | msgspec.Raw | None = None,
        *,
        progress: ProgressCallback | None = None,
        on_log: LogCallback | None = None,
        asks: AsksCallback | None = None,
        timeout: Any = DEFAULT,
        meta: Mapping[str, Any] | None = None,
    ) -> CallToolResult:
        """Call a tool. A tool's own failure is a result with ``is_error=True`` (not an
        exception); a protocol error (unknown tool, invalid arguments) is :class:`McpError`.

        ``arguments``: a mapping, or a ``msgspec.Raw`` of encoded JSON passed through as is.
        ``progress(progress, total, message)`` gets this call's progress notifications.
        ``on_log(params)`` gets its log messages where the transport tells which call they
        belong to (HTTP), else they go to the client's ``on_log``. ``asks(method, params)``
        answers the server's sampling/elicitation/roots requests for this call, instead of
        the client's callbacks, where the transport tells (HTTP, and 2026-07-28 input rounds).
        ``meta``: the request's ``params._meta`` (trace context, say), sent as given; the
        progress token and the 2026-07-28 envelope are added to a copy.
        """
        args: Any = arguments if isinstance(arguments, msgspec.Raw) else dict(arguments or {})
        return await self._typed("tools/call", _meta_of({"name": name, "arguments": args}, meta), CallToolResult,
                                 timeout=timeout, progress=progress, on_log=on_log, asks=asks)

    async def read_resource(self, uri: str, *, timeout: Any = DEFAULT, asks: AsksCallback | None = None,
                            meta: Mapping[str, Any] | None = None) -> ReadResourceResult:
        """Read a resource: its ``contents`` (text or base64 blob parts). ``meta``: as for
        :meth:`call_tool`."""
        return await self._typed("resources/read", _meta_of({"uri": uri}, meta), ReadResourceResult, timeout=timeout,
                                 asks=asks)

    async def get_prompt(self, name: str, arguments: Mapping[str, str] | None = None, *, timeout: Any = DEFAULT,
                         asks: AsksCallback | None = None, meta: Mapping[str, Any] | None = None) -> GetPromptResult:
        """Get a prompt filled in with ``arguments`` (string values, as the spec has them).
        ``meta``: as for :meth:`call_tool`."""
        return await self._typed("prompts/get", _meta_of({"name": name, "arguments": dict(arguments or {})}, meta),
                                 GetPromptResult, timeout=timeout, asks=asks)

    async def complete(self, ref: PromptRef | ResourceTemplateRef, argument: str, value: str, *,
                       context: Mapping[str, str] | None = None, timeout: Any = DEFAULT) -> Completion:
        """Suggestions for one argument of a prompt (``PromptRef(name=...)``) or a resource
        template (``ResourceTemplateRef(uri=...)``) given what is typed so far."""
        params: dict[str, Any] = {"ref": msgspec.to_builtins(ref), "argument": {"name": argument, "value": value}}
        if context:
            params["context"] = {"arguments": dict(context)}
        return (await self._typed("completion/complete", params, CompleteResult, timeout=timeout)).completion

    async def set_logging_level(self, level: str, *, timeout: Any = DEFAULT) -> None:
        """The least severe log level the server should send (``"debug"`` ... ``"emergency"``).
        Handshake era: ``logging/setLevel``. 2026-07-28: every later request's envelope
        carries it (the era asks per request)."""
        if level not in LOG_LEVELS:
            raise ValueError(f"level must be one of {', '.join(LOG_LEVELS)}")
        self._log_level = level
        if self._envelope is not None:
            self._envelope = {**self._envelope, LOG_LEVEL_KEY: level}
            return
        await self.request("logging/setLevel", {"level": level}, timeout=timeout)

    async def subscribe(self, uri: str, *, timeout: Any = DEFAULT) -> None:
        """Be told when a resource changes (``on_resource_updated``). Handshake era:
        ``resources/subscribe``. 2026-07-28: the URI joins the ``subscriptions/listen``
        filter, and the listen stream is (re)opened with it."""
        if self._envelope is not None:
            self._subscriptions.add(uri)
            self._restart_listen()
            return
        await self.request("resources/subscribe", {"uri": uri}, timeout=timeout)
        self._subscriptions.add(uri)

    async def unsubscribe(self, uri: str, *, timeout: Any = DEFAULT) -> None:
        """Stop :meth:`subscribe`'s notifications for ``uri``."""
        self._subscriptions.discard(uri)
        if self._envelope is not None:
            self._restart_listen()
            return
        await self.request("resources/unsubscribe", {"uri": uri}, timeout=timeout)

    async def roots_changed(self) -> None:
        """Tell the server the roots changed (``notifications/roots/list_changed``); it asks
        again with ``roots/list``. Handshake era only: in 2026-07-28 each request's answer
        asks for what it needs."""
        if self._envelope is not None:
            raise EraError("roots/list_changed is a handshake-era notification: in 2026-07-28 the server asks per request")
        await self.notify("notifications/roots/list_changed")

    # -- listening ----------------------------------------------------------------------------
    def start_listening(self) -> None:
        """Open the stream that carries what the server says unprompted (list changes,
        resource updates), held by a task of the client until it closes:

        * handshake era over HTTP: the session's GET stream, reconnected with
          ``Last-Event-ID`` when it drops;
        * 2026-07-28 (any transport): ``subscriptions/listen`` for every list change and the
          subscribed URIs, opened again when it ends or the subscriptions change;
        * handshake era over stdio or WebSocket: nothing to open (it all comes on the
          connection).

        :func:`connect` calls it when ``on_list_changed`` or ``on_resource_updated`` is given
        (or ``listen=True``).
        """
        if self._listening or self._lost is not None:
            return
        if self._envelope is None and not self._http:
            return
        self._listening = True
        self._nursery.start_soon(self._hold_listen)

    def _restart_listen(self) -> None:
        if not self._listening:
            self.start_listening()
        elif self._listen_scope is not None:
            self._listen_scope.cancel()

    async def _hold_listen(self) -> None:
        if self._envelope is None:
            self.listen_stopped = await self._transport.listen()
            return
        failures = 0
        while self._lost is None:
            with trio.CancelScope() as scope:
                self._listen_scope = scope
                notifications: dict[str, Any] = {"toolsListChanged": True, "promptsListChanged": True,
                                                 "resourcesListChanged": True}
                if self._subscriptions:
                    notifications["resourceSubscriptions"] = sorted(self._subscriptions)
                try:
                    await self._stateless_call("subscriptions/listen", {"notifications": notifications}, None, None,
                                               dedicated=self._http)
                    failures = 0
                except McpError as exc:
                    if exc.code == -32601:
                        self.listen_stopped = f"the server does not offer subscriptions/listen ({exc.message})"
                        return
                    failures += 1
                except HTTPError as exc:
                    if exc.status in (404, 405):
                        self.listen_stopped = f"the server does not offer subscriptions/listen (HTTP {exc.status})"
                        return
                    failures += 1
                except ClientError as exc:  # a broken or refused stream: listen again, later
                    if self._lost is not None:
                        return
                    logger.debug("subscriptions/listen ended: %s", exc)
                    failures += 1
            self._listen_scope = None
            if scope.cancelled_caught:
                continue  # the subscriptions changed: listen again at once
            await trio.sleep(min(30.0, 1.0 * 2 ** failures) if failures else 1.0)

    # -- what the server sends ----------------------------------------------------------------
    def _deliver_raw(self, data: bytes | str) -> None:
        try:
            message = decoder.decode(data)
        except msgspec.DecodeError as exc:
            raise ProtocolError(f"the server sent a message that is not JSON-RPC: {exc}: {data[:200]!r}") from None
        self._deliver(message, None)

    def _deliver(self, message: Incoming, call: Any) -> None:
        if message.method is msgspec.UNSET:
            waiter = self._pending.get(message.id) if type(message.id) is int else None
            if waiter is None or waiter.message is not None:
                return  # a late reply to a cancelled request, or a duplicate
            waiter.message = message
            if waiter.task is not None:
                trio.lowlevel.reschedule(waiter.task)
                waiter.task = None
        elif message.id is msgspec.UNSET:
            self._notification(message.method, None if message.params is msgspec.UNSET else message.params, call)
        else:
            try:
                self._nursery.start_soon(self._answer, message, call)
            except RuntimeError:
                pass  # closing

    def _notification(self, method: str, params: Any, call: _Pending | None) -> None:
        if method == "notifications/progress":
            token = params.get("progressToken") if isinstance(params, dict) else None
            callback = self._progress.get(token) if isinstance(token, str | int) else None
            if callback is not None:
                total = params.get("total")
                text = params.get("message")
                self._invoke(callback, (params.get("progress"), total, text if isinstance(text, str) else None))
        elif method == "notifications/message":
            target = call.on_log if call is not None and call.on_log is not None else self._on_log
            if target is not None:
                try:
                    entry = msgspec.convert(params, LoggingMessageParams)
                except msgspec.ValidationError:
                    logger.debug("a notifications/message with bad params: %r", params)
                else:
                    self._invoke(target, (entry,))
        elif method in _LIST_CHANGED:
            if self._on_list_changed is not None:
                self._invoke(self._on_list_changed, (_LIST_CHANGED[method],))
        elif method == "notifications/resources/updated":
            uri = params.get("uri") if isinstance(params, dict) else None
            if self._on_resource_updated is not None and isinstance(uri, str):
                self._invoke(self._on_resource_updated, (uri,))
        if self._on_notification is not None:
            self._invoke(self._on_notification, (method, params))

    def _invoke(self, handler: Any, args: tuple[Any, ...]) -> None:
        """Run a handler: a plain function at once (it must not block), an async one in
        arrival order on the handler task (bounded; dropped and counted past the bound).
        A handler's exception is logged and the session goes on."""
        if _is_async(handler):
            try:
                self._queue_send.send_nowait((handler, args))
            except trio.WouldBlock:
                self.dropped_notifications += 1
                if self.dropped_notifications == 1:
                    logger.warning("mcp_trio.client: notification handlers are %d calls behind; dropping notifications",
                                   MAX_QUEUED_NOTIFICATIONS)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                pass
            return
        try:
            handler(*args)
        except Exception as exc:  # noqa: BLE001 - a handler's bug must not end the session
            logger.warning("mcp_trio.client: a notification handler failed: %s", exc, exc_info=logger.isEnabledFor(logging.DEBUG))

    async def _run_handlers(self) -> None:
        """The task that runs async handlers one after the other, in arrival order."""
        async with self._queue_receive:
            async for handler, args in self._queue_receive:
                try:
                    await handler(*args)
                except Exception as exc:  # noqa: BLE001 - a handler's bug must not end the session
                    logger.warning("mcp_trio.client: a notification handler failed: %s", exc,
                                   exc_info=logger.isEnabledFor(logging.DEBUG))

    async def _answer(self, message: Incoming, call: _Pending | None) -> None:
        params = None if message.params is msgspec.UNSET else message.params
        try:
            result = await self._ask(message.method, params, call.asks if call is not None else None)
            reply = OutResponse("2.0", message.id, result=_to_builtins(result))
        except McpError as exc:
            error: dict[str, Any] = {"code": exc.code, "message": exc.message}
            if exc.data is not None:
                error["data"] = exc.data
            reply = OutResponse("2.0", message.id, error=error)
        except Exception as exc:  # noqa: BLE001 - a bug in a callback: tell the server, keep the session
            logger.warning("mcp_trio.client: the %s callback failed: %s", message.method, exc,
                           exc_info=logger.isEnabledFor(logging.DEBUG))
            reply = OutResponse("2.0", message.id, error={"code": -32603, "message": f"client callback failed: {exc}"})
        try:
            await self._send(encoder.encode(reply), None, None)
        except ClientError:
            pass  # the connection is gone: no one to answer

    async def _ask(self, method: str, params: Any, asks: AsksCallback | None) -> Any:
        """Answer one server request (handshake era) or input request (2026-07-28)."""
        if asks is not None:
            return await asks(method, params)
        if method == "sampling/createMessage" and self._sampling is not None:
            return await self._sampling(_params(params, CreateMessageParams, method))
        if method == "elicitation/create" and self._elicitation is not None:
            return await self._elicitation(_params(params, ElicitParams, method))
        if method == "roots/list" and self._roots is not None:
            roots = await self._roots()
            if isinstance(roots, list | tuple):
                return {"roots": [_to_builtins(r) for r in roots]}
            return roots
        if self._on_request is not None:
            return await self._on_request(method, params)
        if method == "ping":
            return {}
        raise McpError(-32601, f"Method not found: {method} (this client was given no callback for it)")

    # -- the end ------------------------------------------------------------------------------
    async def aclose(self) -> None:
        """Close the transport; requests still waiting fail with :class:`ConnectionLost`."""
        if self._lost is None:
            self._connection_lost("the client was closed")
        await self._transport.aclose()

    def _connection_lost(self, reason: str) -> None:
        if self._lost is not None:
            return
        self._lost = reason
        self._lost_event.set()
        for waiter in self._pending.values():
            if waiter.message is None and waiter.lost is None:
                waiter.lost = reason
                if waiter.task is not None:
                    trio.lowlevel.reschedule(waiter.task)
                    waiter.task = None

    async def _read(self) -> None:
        """The reader task of message transports. It never raises: a broken peer is
        recorded as the reason the connection was lost, and every waiter is woken."""
        try:
            reason = await self._transport.receive_loop(self._deliver_raw)
        except ProtocolError as exc:
            reason = f"protocol error: {exc}"
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            reason = f"connection broke: {exc or type(exc).__name__}"
        self._connection_lost(reason)



def _with_meta(params: Any, meta: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` with ``meta`` merged into its ``_meta`` (a copy; the caller's is untouched)."""
    if params is None:
        return {"_meta": dict(meta)}
    if isinstance(params, msgspec.Raw):
        params = msgspec.json.decode(params)
    if not isinstance(params, dict):
        raise TypeError("params must be an object to carry _meta")
    out = dict(params)
    own = out.get("_meta")
    out["_meta"] = {**own, **meta} if isinstance(own, dict) else dict(meta)
    return out


def _meta_of(params: dict[str, Any], meta: Mapping[str, Any] | None) -> dict[str, Any]:
    if meta:
        params["_meta"] = dict(meta)
    return params


def _convert(raw: Any, kind: type[T], method: str) -> T:
    try:
        return msgspec.convert(raw, kind)
    except msgspec.ValidationError as exc:
        raise ProtocolError(f"the server's {method} result is not a {kind.__name__}: {exc}") from None


def _params(raw: Any, kind: type[T], method: str) -> T:
    try:
        return msgspec.convert(raw, kind)
    except msgspec.ValidationError as exc:
        raise McpError(-32602, f"{method} params are not valid: {exc}") from None


__all__ = [
    "CLIENT_INFO",
    "DEFAULT",
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "DEFAULT_MAX_PAGES",
    "DEFAULT_REQUEST_TIMEOUT",
    "MAX_INPUT_ROUNDS",
    "MAX_QUEUED_NOTIFICATIONS",
    "Client",
    "Era",
]

