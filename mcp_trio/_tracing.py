"""OpenTelemetry tracing, optional: ``pip install 'mcp-trio[otel]'``, then ``server.tracing = Tracing()``.

Nothing here imports OpenTelemetry until a ``Tracing`` is made: a server without one (the
default) pays one flag test per request, in the answer kernel, and never loads the SDK.

With one, every request gets a span (kind SERVER) around the kernel's whole answer, and
children for what happens inside it::

    tools/call add                       SERVER   the request (``Tracing.answer``)
    ├── admission                        INTERNAL the concurrency cap and rate limits (when any)
    ├── middleware audit                 INTERNAL one per middleware, nested as they call on
    │   └── execute_tool add             INTERNAL the tool's own function (``tool_call``)
    │       ├── sampling/createMessage   CLIENT   a round trip to the client (``client_request``)
    │       └── tools/call lookup        CLIENT   an upstream MCP server (``mcp_trio.client``)
    │           └── tools/call lookup    SERVER   ... its own span, when it traces too

Names and attributes follow the OpenTelemetry semantic conventions for MCP (status:
Development): first published in semantic-conventions v1.39.0 (``docs/gen-ai/mcp.md``), now
kept in open-telemetry/semantic-conventions-genai. A span is named ``{mcp.method.name}
{target}`` (the tool or prompt name) and carries ``mcp.method.name``, ``jsonrpc.request.id``,
``mcp.session.id``, ``mcp.protocol.version``, ``gen_ai.tool.name`` and
``gen_ai.operation.name = execute_tool`` (``tools/call``), ``gen_ai.prompt.name``,
``mcp.resource.uri``, ``client.address``; on failure ``error.type`` (the JSON-RPC code, or
``tool_error`` for an ``isError`` result), ``rpc.response.status_code`` and status ERROR with
the error's message. The caller is ``enduser.id`` (the principal's subject); how it ended is
``mcp_trio.outcome`` (``ok``, ``error``, ``tool_error``, ``cancelled``, ``input_required``).

Trace context, in: from ``params._meta`` (``traceparent``, ``tracestate``, ``baggage``: the
keys SEP-414 reserves, unprefixed), the request span's parent; else from the HTTP request's
own ``traceparent`` header; with both, the HTTP one is a link (the conventions' advice: one
HTTP request may carry several MCP messages and the other way round). Out: to the client, in
the ``_meta`` of sampling, elicitation and roots requests; to upstream servers, through the
client's ``tracer`` hook (``client_tracer``); to a tool's own HTTP calls, as the current
OpenTelemetry context of the tool's task (and thread) and as ``Context.trace_headers()``.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Awaitable, Callable, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import msgspec
import trio

from .protocol._errors import InvalidParams
from .protocol._params import params_type

if TYPE_CHECKING:
    from collections.abc import Iterator

#: The ``_meta`` keys (and HTTP headers) that carry trace context: W3C Trace Context and Baggage.
TRACE_KEYS = ("traceparent", "tracestate", "baggage")
#: Requests whose HTTP ``traceparent`` waits for their span at most (bounded; see ``carry``).
MAX_CARRIED = 4096
#: The OpenTelemetry libraries ``pip install 'mcp-trio[otel]'`` brings.
INSTALL_HINT = "pip install 'mcp-trio[otel]'"


class TracingUnavailable(RuntimeError):
    """Tracing was asked for but OpenTelemetry (or the chosen exporter) is not installed."""


class _Meta(msgspec.Struct):
    traceparent: str | None = None
    tracestate: str | None = None
    baggage: str | None = None


class _Params(msgspec.Struct):
    meta: _Meta | None = msgspec.field(default=None, name="_meta")


_decode_params = msgspec.json.Decoder(_Params).decode
#: The HTTP request's own trace context, for a request answered in its task (stateless HTTP).
_http_carrier: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("mcp_trio_http_trace", default=None)
#: The request whose span this task is inside (so the kernel's second pass runs untraced).
_answering: contextvars.ContextVar[Any] = contextvars.ContextVar("mcp_trio_answering", default=None)


def incoming(raw: Any) -> dict[str, str]:
    """The trace context a request carried in ``params._meta`` (raw JSON), as W3C headers;
    empty when it carried none. Needs no OpenTelemetry."""
    if raw is None:
        return {}
    try:
        meta = _decode_params(raw).meta
    except (msgspec.DecodeError, TypeError):
        return {}
    if meta is None or not isinstance(meta.traceparent, str):
        return {}
    return {key: value for key in TRACE_KEYS if isinstance(value := getattr(meta, key), str)}


def http_carrier(headers: Mapping[bytes, bytes]) -> dict[str, str] | None:
    """The trace context of an HTTP request's own headers (lower-case names), or None."""
    if b"traceparent" not in headers:
        return None
    return {key: headers[name].decode("latin-1") for key in TRACE_KEYS if (name := key.encode()) in headers}


def _import_otel() -> Any:
    try:
        from opentelemetry import trace
    except ImportError:
        raise TracingUnavailable(f"tracing needs OpenTelemetry, which is not installed: {INSTALL_HINT}") from None
    return trace


class Tracing:
    """OpenTelemetry tracing for a served server: ``server.tracing = Tracing()``.

    ``tracer_provider``: where spans go (default: OpenTelemetry's global provider, which the
    application or ``opentelemetry-instrument`` sets up; ``tracing_provider()`` builds one
    exporting over OTLP). ``propagator``: how context is read and written (default: the
    global one, W3C Trace Context and Baggage).
    """

    def __init__(self, tracer_provider: Any = None, *, propagator: Any = None) -> None:
        trace = _import_otel()
        from opentelemetry import context, propagate
        from opentelemetry.trace import Link, SpanKind, Status, StatusCode

        self._trace, self._context, self._Link = trace, context, Link
        self._SpanKind, self._Status, self._ERROR = SpanKind, Status, StatusCode.ERROR
        self._SERVER, self._INTERNAL = SpanKind.SERVER, SpanKind.INTERNAL
        self._empty = context.Context()
        provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
        self.provider = provider
        self._tracer = provider.get_tracer("mcp_trio")
        self._propagator = propagator if propagator is not None else propagate.get_global_textmap()
        self._carried: dict[tuple[int, Any], dict[str, str]] = {}
        self._chains: dict[int, tuple[tuple[Any, ...], tuple[Any, ...]]] = {}
        self._client: Any = None

    # -- the request span ---------------------------------------------------------------------
    async def answer(self, peer: Any, call: Any, inner: Callable[[Any, Any], Awaitable[Any]]) -> Any:
        """The kernel's answer to ``call``, inside the request's span (``inner`` is the kernel
        itself: it sees this call is being traced and runs as it would untraced)."""
        meta = incoming(call.raw)
        http = self._carried.pop((id(peer), call.id), None) if self._carried else None
        if http is None:
            http = _http_carrier.get()
        links = None
        if meta:
            parent = self._propagator.extract(meta)
            if http:
                linked = self._trace.get_current_span(self._propagator.extract(http)).get_span_context()
                if linked.is_valid:
                    links = [self._Link(linked, {"mcp_trio.link": "http"})]
        elif http:
            parent = self._propagator.extract(http)
        else:
            parent = self._empty  # a trace of its own, whatever the task inherited
        method = call.method
        attributes: dict[str, Any] = {"mcp.method.name": method}
        if call.id is not None:
            attributes["jsonrpc.request.id"] = str(call.id)
        if call.envelope is None:
            attributes["mcp.session.id"] = peer.session_id
            client = peer.state.client
            if client is not None:
                attributes["mcp.protocol.version"] = client.protocol_version
        else:
            attributes["mcp.protocol.version"] = call.envelope.profile.protocol_version
        if peer.peer:
            attributes["client.address"] = peer.peer
        principal = peer.principal
        if principal is not None:
            attributes["enduser.id"] = principal.subject
        name = _target(method, _params_of(call), attributes)
        span = self._tracer.start_span(name, context=parent, kind=self._SERVER, attributes=attributes, links=links,
                                       record_exception=False, set_status_on_exception=False)
        token = self._context.attach(self._trace.set_span_in_context(span, parent))
        answering = _answering.set(call)
        try:
            reply = await inner(peer, call)
        except trio.Cancelled:
            span.set_attribute("mcp_trio.outcome", "cancelled")
            raise
        except BaseException as exc:  # the kernel answers every failure: only a bug of ours gets here
            span.set_attributes({"mcp_trio.outcome": "error", "error.type": type(exc).__qualname__})
            raise
        else:
            if name == method and call.params is not None:  # params decoded by the kernel only now
                target = _target(method, call.params, updates := {})
                if updates:
                    span.update_name(target)
                    span.set_attributes(updates)
            self._outcome(span, call, reply)
            return reply
        finally:
            _answering.reset(answering)
            self._context.detach(token)
            span.end()

    @staticmethod
    def answering(call: Any) -> bool:
        """Whether this task is inside ``call``'s span already (the kernel's second pass)."""
        return _answering.get() is call

    def _outcome(self, span: Any, call: Any, reply: Any) -> None:
        if call.reason is not None:  # cancelled by the client, or by shutdown
            span.set_attributes({"mcp_trio.outcome": "cancelled", "error.type": "cancelled"})
            span.set_status(self._Status(self._ERROR, f"cancelled by {call.reason}"))
            return
        error = getattr(reply, "error", None)
        if error is not None:
            code = str(error.code)
            span.set_attributes({"mcp_trio.outcome": "error", "error.type": code, "rpc.response.status_code": code})
            span.set_status(self._Status(self._ERROR, error.message))
            return
        result = getattr(reply, "result", None)
        if result is not None and _is_tool_error(result):
            span.set_attributes({"mcp_trio.outcome": "tool_error", "error.type": "tool_error"})
            span.set_status(self._Status(self._ERROR, "the tool's result is an error (isError)"))
        elif result is not None and _is_input_required(result):
            span.set_attribute("mcp_trio.outcome", "input_required")
        else:
            span.set_attribute("mcp_trio.outcome", "ok")

    # -- HTTP transport context ----------------------------------------------------------------
    def from_http(self, headers: Mapping[bytes, bytes]) -> None:
        """Note an HTTP request's own trace context for the request(s) it carries: those
        answered in this task (stateless HTTP) read it here."""
        _http_carrier.set(http_carrier(headers))

    def carry(self, peer: Any, request_id: Any) -> None:
        """Hand the HTTP request's trace context (``from_http``) to the span of request
        ``request_id``, answered in another task, on ``peer`` (a session's connection).
        Bounded: past ``MAX_CARRIED`` waiting, the oldest are dropped."""
        carrier = _http_carrier.get()
        if carrier is None:
            return
        if len(self._carried) >= MAX_CARRIED:
            del self._carried[next(iter(self._carried))]
        self._carried[(id(peer), request_id)] = carrier

    # -- child spans ---------------------------------------------------------------------------
    def _fail(self, span: Any, exc: BaseException) -> None:
        """Mark ``span`` ERROR for ``exc``: ``error.type`` the JSON-RPC code of an ``McpError``,
        ``cancelled``, else the exception's type (recorded on the span)."""
        if isinstance(exc, trio.Cancelled):
            span.set_attribute("error.type", "cancelled")
            span.set_status(self._Status(self._ERROR, "cancelled"))
            return
        code = getattr(exc, "code", None)
        span.set_attribute("error.type", str(code) if isinstance(code, int) else type(exc).__qualname__)
        span.record_exception(exc)
        span.set_status(self._Status(self._ERROR, str(exc) or type(exc).__name__))

    @contextmanager
    def span(self, name: str, attributes: Mapping[str, Any] | None = None, *, kind: str = "INTERNAL") -> Iterator[Any]:
        """A child span of the current one around a block, current inside it; an exception
        marks it ERROR (``_fail``)."""
        span = self._tracer.start_span(name, kind=getattr(self._SpanKind, kind), attributes=attributes,
                                       record_exception=False, set_status_on_exception=False)
        token = self._context.attach(self._trace.set_span_in_context(span))
        try:
            yield span
        except BaseException as exc:
            self._fail(span, exc)
            raise
        finally:
            self._context.detach(token)
            span.end()

    async def tool_call(self, name: str, call: Awaitable[Any]) -> Any:
        """Run a tool's function (``call``) inside its span: its own code, its thread and
        whatever it calls see that span as the current context."""
        span = self._tracer.start_span(f"execute_tool {name}", kind=self._INTERNAL,
                                       attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name},
                                       record_exception=False, set_status_on_exception=False)
        token = self._context.attach(self._trace.set_span_in_context(span))
        try:
            return await call
        except BaseException as exc:
            self._fail(span, exc)
            raise
        finally:
            self._context.detach(token)
            span.end()

    def _in_request(self) -> bool:
        """Whether a request's span is current (a custom notification has none: its
        admission and middleware get no orphan spans of their own)."""
        return bool(self._trace.get_current_span().get_span_context().is_valid)

    async def admit(self, admission: Any, peer: Any, method: str, tool: str | None) -> None:
        """Admission (cap, rate limits; a shared limiter's round trip) inside its span."""
        if not self._in_request():
            if admission.shared is None:
                admission.enter(peer, method, tool)
            else:
                await admission.admit(peer, method, tool)
            return
        with self.span("admission", {"mcp.method.name": method, **({"gen_ai.tool.name": tool} if tool else {})}):
            if admission.shared is None:
                admission.enter(peer, method, tool)
            else:
                await admission.admit(peer, method, tool)

    def middleware(self, chain: tuple[Any, ...]) -> tuple[Any, ...]:
        """``chain`` with each middleware inside a span of its own (made once per chain)."""
        cached = self._chains.get(id(chain))
        if cached is not None and cached[0] is chain:
            return cached[1]
        wrapped = tuple(self._traced_middleware(middleware) for middleware in chain)
        if len(self._chains) > 64:
            self._chains.clear()
        self._chains[id(chain)] = (chain, wrapped)
        return wrapped

    def _traced_middleware(self, middleware: Any) -> Any:
        name = f"middleware {getattr(middleware, '__qualname__', type(middleware).__name__)}"

        @functools.wraps(middleware)
        async def traced(request: Any, call_next: Any) -> Any:
            if not self._in_request():
                return await middleware(request, call_next)
            with self.span(name, {"mcp.method.name": request.method}):
                return await middleware(request, call_next)

        return traced

    async def client_request(self, method: str, params: Any, send: Callable[[Any], Awaitable[Any]]) -> Any:
        """A request to the client (sampling, elicitation, roots) inside a CLIENT span, the
        span's context in its ``params._meta``: ``send(params)`` sends it and waits."""
        with self.span(method, {"mcp.method.name": method}, kind="CLIENT"):
            carrier: dict[str, str] = {}
            self._propagator.inject(carrier)
            body = {} if params is None else msgspec.to_builtins(params)
            if isinstance(body, dict):
                body["_meta"] = {**(body.get("_meta") or {}), **carrier}
                params = body
            return await send(params)

    def headers(self) -> dict[str, str]:
        """The current span's context as W3C headers (``traceparent``, ``tracestate``...)."""
        carrier: dict[str, str] = {}
        self._propagator.inject(carrier)
        return carrier

    @property
    def client_tracer(self) -> Any:
        """The ``tracer`` to give ``mcp_trio.client.connect`` (or ``Client``) for upstream
        servers: a CLIENT span per request, its context sent in ``params._meta`` (and in
        the ``traceparent`` header over HTTP)."""
        if self._client is None:
            from .client import OtelRequestTracer

            self._client = OtelRequestTracer(self.provider, propagator=self._propagator)
        return self._client


def _params_of(call: Any) -> Any:
    """The request's params, decoded now when the kernel would decode them anyway (a method
    of the protocol's; never a custom method's, whose own type the kernel decodes): so the
    span is named for its tool or prompt from the start. None if they do not decode (the
    kernel answers that)."""
    if call.params is None and params_type(call.method, False) is not None:
        try:
            call.decode()
        except InvalidParams:  # the kernel decodes again and answers -32602
            return None
    return call.params


def _target(method: str, params: Any, attributes: dict[str, Any]) -> str:
    """The span's name, ``{method} {tool or prompt}``; the target's attributes added."""
    if params is None:
        return method
    name = getattr(params, "name", None)
    if method == "tools/call" and isinstance(name, str):
        attributes["gen_ai.tool.name"] = name
        attributes["gen_ai.operation.name"] = "execute_tool"
        return f"{method} {name}"
    if method == "prompts/get" and isinstance(name, str):
        attributes["gen_ai.prompt.name"] = name
        return f"{method} {name}"
    uri = getattr(params, "uri", None) if method.startswith("resources/") else None
    if isinstance(uri, str):
        attributes["mcp.resource.uri"] = uri
    return method


def _is_tool_error(result: Any) -> bool:
    if type(result) is msgspec.Raw:
        return b'"isError":true' in bytes(result)
    return getattr(result, "is_error", False) is True


def _is_input_required(result: Any) -> bool:
    if type(result) is msgspec.Raw:
        return b'"resultType":"input_required"' in bytes(result)
    return getattr(result, "result_type", None) == "input_required"


def tracing_provider(service_name: str | None = None, exporter: str = "otlp", endpoint: str | None = None) -> Any:
    """An SDK ``TracerProvider`` exporting in batches (a background thread): ``exporter``
    ``"otlp"`` (OTLP over HTTP/protobuf to ``endpoint``, the base URL as
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` gives it; default: that variable, else
    ``http://localhost:4318``), ``"console"`` (JSON lines on stderr: stdout may be the
    protocol's) or ``"none"`` (spans recorded, then dropped: what the instrumentation alone
    costs). ``service_name``: default ``OTEL_SERVICE_NAME``, else OpenTelemetry's own
    (``unknown_service``). The sampler is OpenTelemetry's (``OTEL_TRACES_SAMPLER``)."""
    _import_otel()
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        raise TracingUnavailable(f"tracing needs the OpenTelemetry SDK, which is not installed: {INSTALL_HINT}") from None
    provider = TracerProvider(resource=Resource.create({"service.name": service_name} if service_name else {}))
    if exporter == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            raise TracingUnavailable(f"the otlp exporter needs opentelemetry-exporter-otlp-proto-http: {INSTALL_HINT}") from None
        traces = None if endpoint is None else endpoint.rstrip("/") + "/v1/traces"
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=traces)))
    elif exporter == "console":
        import sys

        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter(out=sys.stderr)))
    elif exporter != "none":
        raise ValueError(f"tracing exporter must be 'otlp', 'console' or 'none', not {exporter!r}")
    return provider

