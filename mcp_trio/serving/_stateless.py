"""Serving the stateless revision (2026-07-28) on any transport, next to the handshake era.

A request whose ``params._meta`` carries its own envelope (``mcp_trio.protocol._stateless``)
is answered here, by ``answer``, from the envelope alone: no ``initialize``, no session state.
The handlers are the handshake era's (``_handlers``); what differs is around them:

* the client (``ctx.client``) is the request's envelope, built per request, never a session's;
* every result carries ``resultType``, the ``serverInfo`` stamp and, for lists, reads and
  ``server/discover``, ``ttlMs``/``cacheScope``; a missing resource is ``-32602``;
* ``ctx.log`` sends nothing unless the request's ``_meta`` asked for a level;
* the server never sends a request of its own. ``ctx.elicit``, ``ctx.sample`` and
  ``ctx.list_roots`` are answered by *replay* (below);
* ``subscriptions/listen`` replaces the GET stream and ``resources/subscribe``;
* a task-capable tool may go on as a task (``ctx.run_as_task``, ``mcp_trio._tasks``).

Which requests come here: on HTTP, every POST without ``Mcp-Session-Id`` whose
``MCP-Protocol-Version`` is not a handshake revision or whose body has the envelope
(``transports/_stateless_http``); on stdio and WebSocket, requests with the envelope (and
``server/discover``, ``subscriptions/listen``) until the connection sends ``initialize``:
the client's first requests decide a connection's era, as the spec's probe does.

Input-required replay
---------------------
The same tool code serves both eras::

    name = await ctx.elicit("Your name?", {...})          # handshake era: a request to the client
    answer = await ctx.sample(f"Greet {name.content}")     # 2026-07-28: see below

Under 2026-07-28 a tool runs until it asks for something the request has no answer for. That
ask raises ``InputRequired`` (a ``BaseException``: tool code's ``except Exception`` does not
swallow it); the request is answered with ``InputRequiredResult``: ``inputRequests`` keyed by
the ask's key, and a sealed ``requestState`` holding the answers used so far. The client
answers and retries with ``inputResponses`` and the state; the tool is **run again from the
start**, and each ask finds its answer by key (from the state, or from this round's
``inputResponses``) and returns at once, until the next unanswered one. ``ctx.gather(...)``
asks several at once (one round for all of them).

What this asks of tool code:

* it runs once per round: work done before the last ask is done again. Make it idempotent
  or do it after the asks (ask first, act last);
* the asks must come in the same order with the same questions given the same arguments and
  answers. An ask's default key is its kind and position (``elicitation-1``,
  ``sampling-2``); pass ``key=`` to name it. A recorded answer is only replayed to the same
  question (same method and params, by digest); a changed question is asked again;
* answers are the client's; ``requestState`` only proves which answers the client gave in
  earlier rounds of this request, for this caller, recently (``_request_state``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
import trio
from msgspec import UNSET, Raw

from . import _handlers
from .._containment import is_failure
from ..offer._results import unsendable_reason, unsendable_reply
from .._request_state import Answer, RequestStateCodec, digest, is_single_use, subject_of
from ._tasks import EXTENSION as TASKS_EXTENSION
from ._tasks import Task, Tasks, client_can_task, missing_extension, support_of
from ..protocol._errors import (
    INVALID_PARAMS,
    RESOURCE_NOT_FOUND,
    InternalError,
    InvalidParams,
    McpError,
    MethodNotFound,
    MissingClientCapability,
    ServerOverloaded,
)
from ..protocol._jsonrpc import ErrorResponse, Message, Request, Response, error_object
from ..protocol._stateless import (
    INPUT_METHODS,
    MODERN_METHODS,
    MODERN_ONLY_METHODS,
    SERVER_INFO_KEY,
    SUBSCRIPTION_ID_KEY,
    DiscoverResult,
    Envelope,
    InputRequiredResult,
    ListenParams,
    ModernCapabilities,
    ModernListChanged,
    ModernResources,
    ResultStamp,
    SubscriptionFilter,
    decode_envelope,
    decode_retry,
)
from ..protocol._versions import ALL_VERSIONS

if TYPE_CHECKING:
    from ._connection import Connection, InFlight
    from .._server import Server

logger = logging.getLogger("mcp_trio.stateless")

T = TypeVar("T")
_encode = msgspec.json.encode


# -- control flow out of tool code ------------------------------------------------------------
class InputRequired(BaseException):
    """A stateless request needs input its client has not given yet (never seen by clients).

    A ``BaseException``, like ``trio.Cancelled``: it must leave the tool whatever the tool
    catches, and the request is answered with ``InputRequiredResult`` from ``requests``.
    """

    #: Per-tool statistics (``_handlers.run_tool``) do not count a round as an error.
    counts_as_error = False
    #: Passes through ``_containment`` untouched: the server's own control flow.
    control_flow = True

    def __init__(self, requests: dict[str, tuple[str, dict[str, Any]]]) -> None:
        super().__init__(f"input required: {', '.join(requests)}")
        #: key -> (digest of the question, the input request: {"method", "params"}).
        self.requests = requests


class ProtocolEscape(BaseException):
    """Carries a protocol error (``-32021``) out of tool code, which reports its own failures
    as ``isError`` results: this one is the request's, not the tool's."""

    control_flow = True

    def __init__(self, error: McpError) -> None:
        super().__init__(error.message)
        self.error = error


def _unwrap(group: BaseExceptionGroup) -> BaseException:
    """One control-flow exception out of a nursery's group (``InputRequired`` requests merged)."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    for leaf in leaves:
        if not isinstance(leaf, (InputRequired, ProtocolEscape)):
            raise group
    escape = next((leaf for leaf in leaves if isinstance(leaf, ProtocolEscape)), None)
    if escape is not None:
        return escape
    merged: dict[str, tuple[str, dict[str, Any]]] = {}
    for leaf in leaves:
        merged.update(leaf.requests)  # type: ignore[union-attr]
    return InputRequired(merged)


# -- the answers a request replays ------------------------------------------------------------
_ANSWER_NAMES = {
    "elicitation/create": "an ElicitResult",
    "sampling/createMessage": "a CreateMessageResult",
    "roots/list": "a ListRootsResult",
}


class InputRound:
    """One run of a stateless request: the answers it may replay and the questions it asked."""

    __slots__ = ("_answers", "_counts", "asked", "used", "resumed")

    def __init__(self, answers: dict[str, tuple[str | None, Raw]], resumed: bool) -> None:
        #: key -> (digest of the question it answered, or None: given unasked, unchecked; response).
        self._answers = answers
        self._counts: dict[str, int] = {}
        #: Asked and unanswered: key -> (digest, input request).
        self.asked: dict[str, tuple[str, dict[str, Any]]] = {}
        #: Answers this run consumed, to seal into the next state.
        self.used: dict[str, Answer] = {}
        #: True when the request carried a verified ``requestState``.
        self.resumed = resumed

    def next_key(self, kind: str) -> str:
        count = self._counts.get(kind, 0) + 1
        self._counts[kind] = count
        return f"{kind}-{count}"

    def answer(self, key: str, method: str, params: Any, result_type: type[T]) -> T:
        """The replayed answer to this question, or ``InputRequired`` for it."""
        body = _encode(params) if params is not None else b"{}"
        question = digest(method.encode(), body)
        found = self._answers.get(key)
        if found is not None and (found[0] is None or found[0] == question):
            try:
                result = msgspec.json.decode(found[1], type=result_type)
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                raise ProtocolEscape(InvalidParams(
                    f"inputResponses[{key!r}] is not {_ANSWER_NAMES.get(method, 'a valid response')}: {exc}",
                    {"inputKey": key})) from None
            self.used[key] = Answer(question, found[1])
            return result
        request = {"method": method, "params": msgspec.Raw(body)}
        raise InputRequired({key: (question, request)})


async def gather(*asks: Awaitable[Any]) -> list[Any]:
    """Await several asks as one round (``Context.gather`` under 2026-07-28)."""
    results: list[Any] = []
    missing: dict[str, tuple[str, dict[str, Any]]] = {}
    for ask in asks:
        try:
            results.append(await ask)
        except InputRequired as required:
            missing.update(required.requests)
            results.append(None)
    if missing:
        raise InputRequired(missing)
    return results


# -- one stateless request --------------------------------------------------------------------
class ModernRequest:
    """What a stateless request carries through its handler (``InFlight.modern``)."""

    __slots__ = ("envelope", "inputs", "request_id", "task")

    def __init__(self, envelope: Envelope, request_id: Any) -> None:
        self.envelope = envelope
        self.request_id = request_id
        #: Set for tools/call, prompts/get and resources/read.
        self.inputs: InputRound | None = None
        #: The task this call may become (``ctx.run_as_task``): task-capable tools only.
        self.task: Task | None = None

    @property
    def live(self) -> bool:
        """True once the call is a task: asks wait for ``tasks/update`` instead of replaying."""
        return self.task is not None and self.task.escalated.is_set()

    @property
    def client(self) -> Any:
        return self.envelope.profile

    def require(self, capability: str) -> None:
        """``-32021`` out of the tool when the request did not declare ``capability``."""
        if not self.envelope.profile.supports(capability):
            raise ProtocolEscape(MissingClientCapability(
                f"this request needs the client capability {capability!r}, which its "
                f"params._meta['io.modelcontextprotocol/clientCapabilities'] does not declare",
                {"requiredCapabilities": {capability: {}}}))

    async def ask(self, key: str | None, kind: str, method: str, params: Any, result_type: type[T]) -> T:
        """The answer to one ask: replayed, or (in a task) waited for; else ``InputRequired``."""
        inputs = self.inputs
        if inputs is None:  # pragma: no cover - Context is built for input methods only
            raise ProtocolEscape(InternalError(f"{method} is not available while serving this request"))
        key = key or inputs.next_key(kind)
        try:
            return inputs.answer(key, method, params, result_type)
        except InputRequired as required:
            task = self.task
            if task is None or not task.escalated.is_set():
                raise
            response = await task.ask(key, required.requests[key][1])
        try:
            return msgspec.json.decode(response, type=result_type)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise ProtocolEscape(InvalidParams(
                f"inputResponses[{key!r}] is not {_ANSWER_NAMES.get(method, 'a valid response')}: {exc}", {"inputKey": key})) from None


def accept(request: Request) -> ModernRequest | McpError | None:
    """Classify a request ``looks_modern`` said yes to: its envelope, the error that refuses
    it (``-32602`` malformed envelope, ``-32022`` unsupported revision), or None when it is a
    handshake-era request after all (the key was only mentioned, not in ``_meta``)."""
    try:
        raw = decode_envelope(request.params, required=request.method in MODERN_ONLY_METHODS)
        return None if raw is None else ModernRequest(raw.resolve(), request.id)
    except McpError as exc:
        return exc


class _Target(msgspec.Struct):
    name: Any = None
    uri: Any = None
    arguments: Any = None


_target_decoder = msgspec.json.Decoder(_Target)


def _request_digest(method: str, params: Raw | None) -> str:
    """What a ``requestState`` is bound to: the method, the name or URI, the arguments."""
    try:
        target = _target_decoder.decode(params if params is not None else b"{}")
    except (msgspec.ValidationError, msgspec.DecodeError):
        target = _Target()
    name = target.name if method != "resources/read" else target.uri
    arguments = msgspec.json.encode(target.arguments, order="sorted")
    return digest(method.encode(), _encode(name), arguments)


def _single_use(conn: Any, request: Request) -> bool:
    """Whether the request calls a tool that accepts each ``requestState`` once."""
    if request.method != "tools/call":
        return False
    try:
        name = _tool_name.decode(request.params if request.params is not None else b"{}").name
    except (msgspec.ValidationError, msgspec.DecodeError):
        return False
    tool = conn.supervisor.registry.tools.get(name) if isinstance(name, str) else None
    return tool is not None and is_single_use(tool.fn)


class Stateless:
    """One served server's stateless side: result stamps, the state codec, listen streams."""

    def __init__(self, server: Server) -> None:
        self.server = server
        codec = getattr(server, "request_state", None)
        self.codec: RequestStateCodec = codec if codec is not None else RequestStateCodec()
        self.stamp = ResultStamp(server.info, round(getattr(server, "cache_ttl", 0.0) * 1000))
        self.server_info = self._server_info = server.info
        self.listeners: set[Listener] = set()
        #: The tasks extension: tasks of task-capable tools, and the nursery they run in.
        self.tasks = Tasks(self)

    # -- notifications for listen streams (called by the supervisor) ------------------------
    def list_changed(self, kind: str) -> None:
        for listener in self.listeners:
            listener.list_changed(kind)

    def resource_updated(self, uri: str) -> None:
        for listener in self.listeners:
            listener.resource_updated(uri)

    # -- answering ---------------------------------------------------------------------------
    def open_inputs(self, conn: Any, request: Request) -> InputRound:
        """The answers a retry brings: its verified ``requestState`` and its ``inputResponses``."""
        responses, state = decode_retry(request.params)
        if state is None:
            # First round, or a client retrying without a state (it had none): answers given
            # unasked are taken as they are, checked only by decoding.
            answers: dict[str, tuple[str | None, Raw]] = {k: (None, v) for k, v in (responses or {}).items()}
            return InputRound(answers, resumed=False)
        payload = self.codec.open(state, subject=subject_of(conn.principal),
                                  request=_request_digest(request.method, request.params),
                                  single_use=_single_use(conn, request))
        answers = {key: (answer.digest, answer.response) for key, answer in payload.ans.items()}
        for key, question in payload.pend.items():
            if responses is not None and key in responses:
                answers[key] = (question, responses[key])  # extra, unasked keys are ignored
        return InputRound(answers, resumed=True)

    def input_required(self, conn: Any, request: Request, inputs: InputRound, required: InputRequired) -> InputRequiredResult:
        pending = {key: question for key, (question, _) in required.requests.items()}
        state = self.codec.seal(subject=subject_of(conn.principal), request=_request_digest(request.method, request.params),
                                answers=inputs.used, pending=pending)
        return InputRequiredResult(
            result_type="input_required",
            input_requests={key: ask for key, (_, ask) in required.requests.items()},
            request_state=state,
            meta={SERVER_INFO_KEY: self._server_info},
        )

    def scope(self, conn: Any, method: str) -> str:
        """``cacheScope``: ``private`` when the answer may depend on who asks."""
        return "private" if conn.principal is not None or method == "resources/read" else "public"


async def answer(conn: Connection, request: Request, in_flight: InFlight) -> Message:
    """Run one stateless request and convert its outcome to one reply: the only place.

    ``conn`` is a ``Connection`` (stdio, WebSocket) or anything shaped like one (a stateless
    HTTP exchange); ``in_flight.modern`` holds the request's envelope.
    """
    modern: ModernRequest = in_flight.modern  # type: ignore[attr-defined]
    supervisor = conn.supervisor
    stateless: Stateless = supervisor.stateless
    method = request.method
    try:
        try:
            if method not in MODERN_METHODS:
                raise MethodNotFound(f"method not found: {method!r} (not part of protocol revision 2026-07-28)",
                                     {"method": method})
            handler = _MODERN_HANDLERS.get(method) or _handlers.HANDLERS[method]
            if method in INPUT_METHODS:
                modern.inputs = stateless.open_inputs(conn, request)
            result = await supervisor.admitted(conn, handler, request, in_flight)
        except BaseExceptionGroup as group:
            raise _unwrap(group) from None
        if type(result) is Raw:
            return Response(request.id, result)
        try:
            encoded = conn.encoder.encode(result)
        except (TypeError, ValueError, OverflowError) as exc:  # text with a lone surrogate, say
            logger.warning("the reply to %s was refused: %s", method, unsendable_reason(exc))
            replacement = unsendable_reply(Response(request.id, result), exc)
            if type(replacement) is not Response:
                return replacement  # type: ignore[return-value]
            encoded = conn.encoder.encode(replacement.result)  # type: ignore[union-attr]
        return Response(request.id, stateless.stamp.stamp(method, encoded, stateless.scope(conn, method)))
    except InputRequired as required:
        inputs = modern.inputs
        if inputs is None:  # pragma: no cover - asks are only possible on input methods
            return ErrorResponse(request.id, error_object(InternalError("input required outside an input method")))
        return Response(request.id, stateless.input_required(conn, request, inputs, required))
    except ProtocolEscape as escape:
        return ErrorResponse(request.id, error_object(escape.error))
    except McpError as exc:
        if exc.code == RESOURCE_NOT_FOUND:  # SEP-2164: -32602, with the URI in data
            return ErrorResponse(request.id, error_object(InvalidParams(exc.message, exc.data, code=INVALID_PARAMS)))
        return ErrorResponse(request.id, error_object(exc))
    except Exception:
        logger.exception("unexpected error in %s", method)
        return ErrorResponse(request.id, error_object(InternalError("internal error")))
    except BaseException as exc:  # SystemExit and the like, raised by user code outside call_user
        if not is_failure(exc):
            raise
        logger.error("unexpected %s in %s", type(exc).__name__, method, exc_info=exc)
        return ErrorResponse(request.id, error_object(InternalError("internal error")))


# -- server/discover --------------------------------------------------------------------------
def capabilities(server: Server) -> ModernCapabilities:
    """What this server offers under 2026-07-28 (list changes arrive on listen streams)."""
    return ModernCapabilities(
        tools=ModernListChanged(list_changed=True),
        resources=ModernResources(subscribe=True, list_changed=True),
        prompts=ModernListChanged(list_changed=True),
        logging={},
        completions={},
        extensions={TASKS_EXTENSION: {}},
    )


async def discover(conn: Connection, request: Request, in_flight: InFlight) -> DiscoverResult:
    server = conn.server
    return DiscoverResult(
        supported_versions=list(ALL_VERSIONS),
        capabilities=capabilities(server),
        instructions=server.instructions if server.instructions else UNSET,
    )


# -- subscriptions/listen ---------------------------------------------------------------------
_LIST_KINDS = {
    "tools": ("tools_list_changed", "notifications/tools/list_changed"),
    "prompts": ("prompts_list_changed", "notifications/prompts/list_changed"),
    "resources": ("resources_list_changed", "notifications/resources/list_changed"),
}


#: ``subscriptions/listen`` streams open at once on one connection (stdio, WebSocket), and in
#: one server process; past either, another is refused with ``-32030``.
MAX_LISTENS_PER_CONNECTION = 16
MAX_LISTENS = 10_000


class Listener:
    """One ``subscriptions/listen`` stream's filter and its undelivered notifications.

    The supervisor posts without waiting; repeats of a notification still undelivered are
    coalesced, so a slow stream costs one pending entry per kind and URI, not one per change.
    """

    __slots__ = ("_kinds", "_uris", "owner", "pending", "wake")

    def __init__(self, kinds: frozenset[str], uris: frozenset[str], owner: Any = None) -> None:
        #: The connection the stream is on (its count is limited per connection).
        self.owner = owner
        self._kinds = kinds
        self._uris = uris
        self.pending: dict[tuple[str, str], dict[str, Any] | None] = {}
        self.wake = trio.Event()

    def _post(self, method: str, key: str, params: dict[str, Any] | None) -> None:
        self.pending[(method, key)] = params
        self.wake.set()

    def list_changed(self, kind: str) -> None:
        if kind in self._kinds:
            self._post(_LIST_KINDS[kind][1], "", None)

    def resource_updated(self, uri: str) -> None:
        if uri in self._uris:
            self._post("notifications/resources/updated", uri, {"uri": uri})

    def take(self) -> list[tuple[str, dict[str, Any] | None]]:
        taken = [(method, params) for (method, _), params in self.pending.items()]
        self.pending.clear()
        self.wake = trio.Event()
        return taken


def _agreed(conn: Any, wanted: SubscriptionFilter) -> tuple[SubscriptionFilter, frozenset[str], frozenset[str]]:
    """The subset of the filter honoured: list kinds we notify, resources the caller may read."""
    kinds = set()
    agreed = SubscriptionFilter()
    for kind, (attr, _) in _LIST_KINDS.items():
        if getattr(wanted, attr) is True:
            kinds.add(kind)
            setattr(agreed, attr, True)
    uris: set[str] = set()
    if wanted.resource_subscriptions is not UNSET:
        registry = conn.supervisor.registry
        principal = conn.principal
        asked: list[str] = wanted.resource_subscriptions  # type: ignore[assignment]
        cap = conn.limits.max_subscriptions_per_session
        if len(asked) > cap:
            raise InvalidParams(f"a listen stream may name at most {cap} resources (max_subscriptions_per_session); "
                                f"this one names {len(asked)}", {"limit": cap})
        for uri in asked:
            _handlers.check_uri_length(conn, uri)
            scopes = _handlers.known_resource_scopes(registry, uri)
            # Honoured: resources that exist and that the caller may read; the rest are left
            # out of the agreed filter (the client sees which).
            if scopes is not None and (principal is None or _handlers._allowed(principal, scopes)):
                uris.add(uri)
        agreed.resource_subscriptions = sorted(uris)
    return agreed, frozenset(kinds), frozenset(uris)


async def listen(conn: Connection, request: Request, in_flight: InFlight) -> Raw:
    """Acknowledge, then forward what the filter asks for until shutdown (or the client leaves).

    Every message carries ``_meta[io.modelcontextprotocol/subscriptionId]``, the listen
    request's id. Graceful end (server shutdown, the connection's input closed): the result,
    ``{"resultType": "complete", "_meta": {subscriptionId, serverInfo}}``. A client ends it by
    cancelling the request (stdio, WebSocket) or closing the response (HTTP).
    """
    params = _handlers.decode_params(request.params, ListenParams, request.method)
    agreed, kinds, uris = _agreed(conn, params.notifications)
    sid = request.id
    tag = {SUBSCRIPTION_ID_KEY: sid}
    supervisor = conn.supervisor
    stateless: Stateless = supervisor.stateless
    if len(stateless.listeners) >= MAX_LISTENS:
        raise ServerOverloaded(f"too many subscriptions/listen streams ({MAX_LISTENS}); try again later")
    if sum(other.owner is conn for other in stateless.listeners) >= MAX_LISTENS_PER_CONNECTION:
        raise ServerOverloaded(f"too many subscriptions/listen streams on this connection ({MAX_LISTENS_PER_CONNECTION})")
    quota = supervisor.quotas.acquire("listens", conn.principal, conn.peer)
    listener = Listener(kinds, uris, conn)
    conn.park(in_flight)  # waits on the server, not on this connection's input: free the slot
    stateless.listeners.add(listener)
    try:
        await conn.notify("notifications/subscriptions/acknowledged", {"notifications": agreed, "_meta": tag})
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_cancel_after, supervisor.shutting_down.wait, nursery.cancel_scope)
            input_done = conn.input_done
            if input_done is not None:
                nursery.start_soon(_cancel_after, input_done.wait, nursery.cancel_scope)
            while True:
                await listener.wake.wait()
                for method, note in listener.take():
                    await conn.notify(method, {**(note or {}), "_meta": tag})
    finally:
        stateless.listeners.discard(listener)
        supervisor.quotas.release("listens", quota)
    body = _encode({"resultType": "complete", "_meta": {SUBSCRIPTION_ID_KEY: sid, SERVER_INFO_KEY: stateless._server_info}})
    return Raw(body)


async def _cancel_after(wait: Callable[[], Awaitable[Any]], scope: trio.CancelScope) -> None:
    await wait()
    scope.cancel()


# -- tools/call, and the tasks extension ------------------------------------------------------
class _ToolName(msgspec.Struct):
    name: Any = None


_tool_name = msgspec.json.Decoder(_ToolName)


async def call_tool(conn: Connection, request: Request, in_flight: InFlight) -> Any:
    """``tools/call``: a task-capable tool (``_tasks.task_support``) runs in a task of its own
    when the request's client can do tasks; a ``required`` one is refused (-32021) otherwise."""
    modern: ModernRequest = in_flight.modern  # type: ignore[assignment]
    try:
        name = _tool_name.decode(request.params if request.params is not None else b"{}").name
    except (msgspec.ValidationError, msgspec.DecodeError):
        name = None
    tool = conn.supervisor.registry.tools.get(name) if isinstance(name, str) else None
    if tool is not None and tool.enabled:
        support = support_of(tool)
        if support != "forbidden":
            if client_can_task(modern):
                return await conn.supervisor.stateless.tasks.call_tool(conn, request, in_flight, modern)
            if support == "required":
                raise missing_extension()
    return await _handlers.call_tool(conn, request, in_flight)


async def tasks_get(conn: Connection, request: Request, in_flight: InFlight) -> Raw:
    return await conn.supervisor.stateless.tasks.get(conn, request, in_flight)


async def tasks_update(conn: Connection, request: Request, in_flight: InFlight) -> Raw:
    return await conn.supervisor.stateless.tasks.update(conn, request, in_flight)


async def tasks_cancel(conn: Connection, request: Request, in_flight: InFlight) -> Raw:
    return await conn.supervisor.stateless.tasks.cancel(conn, request, in_flight)


_MODERN_HANDLERS: dict[str, Callable[..., Awaitable[Any]]] = {
    "server/discover": discover,
    "subscriptions/listen": listen,
    "tools/call": call_tool,
    "tasks/get": tasks_get,
    "tasks/update": tasks_update,
    "tasks/cancel": tasks_cancel,
}
