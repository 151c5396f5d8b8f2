"""The client's tracing hook: a span around each request, its trace context sent along.

``connect(..., tracer=...)`` (or ``Client(..., tracer=...)``) takes any object with a
``request(method, params)`` context manager (``RequestTracer``): it is entered around each
request to the server and yields the trace context to send with it, as W3C header names
(``traceparent``, ``tracestate``, ``baggage``). The client puts them in the request's
``params._meta`` (SEP-414: those keys, unprefixed), and over HTTP also in the POST's headers.
An exception leaving the block is the request's failure.

``OtelRequestTracer`` is that object for OpenTelemetry (``pip install 'mcp-trio[otel]'``): a
CLIENT span named ``{method} {tool or prompt}`` with the MCP conventions' attributes (see
``mcp_trio._tracing``), a child of the current span: inside a traced tool, an upstream call is
part of the caller's trace. A gateway serving a traced server gets one from
``server.tracing.client_tracer``. Without a tracer the client pays one ``is None`` test per
request and imports nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

import trio


class RequestTracer(Protocol):
    """What ``tracer=`` takes: a context manager around each request, yielding the trace
    context to send with it (W3C names to values; empty: send nothing)."""

    def request(self, method: str, params: Any) -> AbstractContextManager[Mapping[str, str]]: ...


class OtelRequestTracer:
    """OpenTelemetry spans for the client's requests (``tracer_provider``: default the global
    one; ``propagator``: default the global W3C Trace Context and Baggage)."""

    def __init__(self, tracer_provider: Any = None, *, propagator: Any = None) -> None:
        try:
            from opentelemetry import propagate, trace
            from opentelemetry.trace import SpanKind, Status, StatusCode
        except ImportError:
            raise RuntimeError("client tracing needs OpenTelemetry, which is not installed: pip install 'mcp-trio[otel]'") from None
        provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
        self._tracer = provider.get_tracer("mcp_trio.client")
        self._propagator = propagator if propagator is not None else propagate.get_global_textmap()
        self._kind, self._Status, self._ERROR = SpanKind.CLIENT, Status, StatusCode.ERROR

    @contextmanager
    def request(self, method: str, params: Any) -> Iterator[Mapping[str, str]]:
        attributes: dict[str, Any] = {"mcp.method.name": method}
        name = method
        target = params.get("name") if isinstance(params, dict) else None
        if isinstance(target, str) and method in ("tools/call", "prompts/get"):
            name = f"{method} {target}"
            attributes["gen_ai.tool.name" if method == "tools/call" else "gen_ai.prompt.name"] = target
            if method == "tools/call":
                attributes["gen_ai.operation.name"] = "execute_tool"
        elif isinstance(params, dict) and isinstance(params.get("uri"), str):
            attributes["mcp.resource.uri"] = params["uri"]
        with self._tracer.start_as_current_span(name, kind=self._kind, attributes=attributes, record_exception=False,
                                                set_status_on_exception=False) as span:
            carrier: dict[str, str] = {}
            self._propagator.inject(carrier)
            try:
                yield carrier
            except trio.Cancelled:
                span.set_attribute("error.type", "cancelled")
                span.set_status(self._Status(self._ERROR, "cancelled"))
                raise
            except BaseException as exc:
                code = getattr(exc, "code", None)
                error_type = str(code) if isinstance(code, int) else type(exc).__qualname__
                span.set_attributes({"error.type": error_type, **({"rpc.response.status_code": error_type} if isinstance(code, int) else {})})
                span.set_status(self._Status(self._ERROR, str(exc) or type(exc).__name__))
                raise
