"""``connect()``: a target string to an open session, and the one place that closes it."""

from __future__ import annotations

import os
import shlex
import ssl
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, Protocol, TypeVar

import trio

from ._client import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_REQUEST_TIMEOUT,
    AsksCallback,
    Client,
    ElicitationCallback,
    Era,
    ListChangedHandler,
    LogCallback,
    NotificationHandler,
    RequestHandler,
    ResourceUpdatedHandler,
    RootsCallback,
    SamplingCallback,
)
from ._errors import TargetError
from ._http import DEFAULT_MAX_CONNECTIONS, HTTPTransport, TokenProvider
from ._stdio import StdioTransport
from ._tracing import RequestTracer
from ._websocket import WebSocketTransport
from ._wire import DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_MESSAGE_SIZE

__all__ = ["Transport", "connect", "open_client", "parse_target"]


def parse_target(target: str | Sequence[str]) -> tuple[str, Any]:
    """``("stdio", argv)``, ``("ws", url)`` or ``("http", url)``; :class:`TargetError` otherwise."""
    if not isinstance(target, str):
        argv = list(target)
        if not argv:
            raise TargetError("an empty command")
        return "stdio", argv
    if target.startswith("stdio:"):
        argv = shlex.split(target[len("stdio:") :])
        if not argv:
            raise TargetError("stdio: needs a command, e.g. 'stdio:python -m mcp_trio serve'")
        return "stdio", argv
    scheme = target.split("://", 1)[0].lower() if "://" in target else ""
    if scheme in ("ws", "wss"):
        return "ws", target
    if scheme in ("http", "https"):
        return "http", target
    raise TargetError(f"unknown target {target!r}: use stdio:COMMAND, ws://, wss://, http:// or https://")


@asynccontextmanager
async def connect(
    target: str | Sequence[str],
    *,
    era: Era | None = "auto",
    protocol_version: str | None = None,
    headers: Mapping[str, str] | None = None,
    token_provider: TokenProvider | None = None,
    sampling: SamplingCallback | None = None,
    elicitation: ElicitationCallback | None = None,
    roots: RootsCallback | None = None,
    on_log: LogCallback | None = None,
    on_list_changed: ListChangedHandler | None = None,
    on_resource_updated: ResourceUpdatedHandler | None = None,
    on_notification: NotificationHandler | None = None,
    on_request: RequestHandler | None = None,
    listen: bool | None = None,
    log_level: str | None = None,
    capabilities: Mapping[str, Any] | None = None,
    client_info: Mapping[str, Any] | None = None,
    request_timeout: float | None = DEFAULT_REQUEST_TIMEOUT,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ssl_context: ssl.SSLContext | None = None,
    stderr: Any = None,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    tracer: RequestTracer | None = None,
) -> AsyncIterator[Client]:
    """Connect to an MCP server, open a session and yield a :class:`Client`; close it all at
    the end of the block. Every argument is described in ``docs/client.md``; in short:

    ``target``: ``stdio:COMMAND ARGS`` (or a list of arguments), ``ws(s)://...``,
    ``http(s)://.../mcp``. ``era``: ``"auto"`` (probe ``server/discover``, else
    ``initialize``), ``"handshake"``, ``"stateless"``, or None to open no session (call
    :meth:`Client.initialize` or :meth:`Client.discover` yourself). ``sampling``,
    ``elicitation``, ``roots``: async callbacks answering the server (their capabilities are
    declared). ``on_log``, ``on_list_changed``, ``on_resource_updated``, ``on_notification``:
    handlers, plain or async. ``headers`` and ``token_provider``: credentials. ``tracer``: a
    span around each request and its trace context sent along (``OtelRequestTracer``).
    """
    kind, where = parse_target(target)
    headers = dict(headers or {})
    try:
        async with AsyncExitStack() as stack:
            # The transport first: a WebSocket owns a nursery of its own, which must
            # outlive the client's.
            transport: Any
            if kind == "stdio":
                transport = await StdioTransport.open(where, max_message_size=max_message_size, stderr=stderr, cwd=cwd, env=env)
            elif kind == "ws":
                if token_provider is not None:
                    headers["Authorization"] = "Bearer " + await token_provider(False)
                transport = await WebSocketTransport.open(where, headers=headers, ssl_context=ssl_context,
                                                          max_message_size=max_message_size, timeout=connect_timeout)
            else:
                transport = HTTPTransport(where, headers=headers, ssl_context=ssl_context, max_message_size=max_message_size,
                                          max_connections=max_connections, connect_timeout=connect_timeout,
                                          token_provider=token_provider)
            stack.push_async_callback(transport.aclose)
            client = await stack.enter_async_context(open_client(
                transport, era=era, protocol_version=protocol_version, sampling=sampling, elicitation=elicitation,
                roots=roots, on_log=on_log, on_list_changed=on_list_changed, on_resource_updated=on_resource_updated,
                on_notification=on_notification, on_request=on_request, listen=listen, log_level=log_level,
                capabilities=capabilities, client_info=client_info, request_timeout=request_timeout,
                handshake_timeout=handshake_timeout, tracer=tracer))
            yield client
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


class Transport(Protocol):
    """What :func:`open_client` speaks over: whole JSON-RPC messages both ways.

    ``send`` writes one encoded message (``headers`` and ``call`` are for HTTP; a message
    transport ignores them); ``receive_loop`` hands every message the server sends to
    ``deliver`` until the connection ends, and returns why it ended (or raises
    :class:`ProtocolError`); ``aclose`` closes it and is called more than once. ``pid`` is the
    server's process id when the transport spawned it, else None. ``mcp_trio.testing``'s
    in-memory transport is one; the stdio and WebSocket transports are others.
    """

    inline_answers: bool
    pid: int | None

    async def send(self, data: bytes, headers: Any = None, call: Any = None) -> None: ...

    async def receive_loop(self, deliver: Callable[[bytes], None]) -> str: ...

    async def aclose(self) -> None: ...


C = TypeVar("C", bound=Client)


@asynccontextmanager
async def open_client(
    transport: Transport,
    *,
    client_class: type[C] = Client,  # type: ignore[assignment]
    era: Era | None = "auto",
    protocol_version: str | None = None,
    sampling: SamplingCallback | None = None,
    elicitation: ElicitationCallback | None = None,
    roots: RootsCallback | None = None,
    on_log: LogCallback | None = None,
    on_list_changed: ListChangedHandler | None = None,
    on_resource_updated: ResourceUpdatedHandler | None = None,
    on_notification: NotificationHandler | None = None,
    on_request: RequestHandler | None = None,
    listen: bool | None = None,
    log_level: str | None = None,
    capabilities: Mapping[str, Any] | None = None,
    client_info: Mapping[str, Any] | None = None,
    request_timeout: float | None = DEFAULT_REQUEST_TIMEOUT,
    handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
    tracer: RequestTracer | None = None,
) -> AsyncIterator[C]:
    """A session over a transport already open (:class:`Transport`): what :func:`connect`
    does once it has opened its own. The options are :func:`connect`'s; ``client_class``
    makes the client (a subclass of :class:`Client`, as ``mcp_trio.testing`` does). The
    transport is closed at the end of the block."""
    try:
        async with trio.open_nursery() as nursery:
            client = client_class(
                transport, nursery, on_notification=on_notification, on_request=on_request, sampling=sampling,
                elicitation=elicitation, roots=roots, on_log=on_log, on_list_changed=on_list_changed,
                on_resource_updated=on_resource_updated, capabilities=capabilities, client_info=client_info,
                request_timeout=request_timeout, log_level=log_level, tracer=tracer,
            )
            if not transport.inline_answers:
                nursery.start_soon(client._read)
            nursery.start_soon(client._run_handlers)
            try:
                if era is not None:
                    await client.open(era, protocol_version=protocol_version, timeout=handshake_timeout)
                    handlers = (on_list_changed, on_resource_updated, on_log, on_notification, on_request, sampling,
                                elicitation, roots)
                    if listen or (listen is None and any(h is not None for h in handlers)):
                        client.start_listening()
                yield client
            finally:
                client._connection_lost("the client was closed")
                await transport.aclose()
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # The reader never raises, so a group holds the block's own exception (or a
        # handler's): hand it back unwrapped, as a plain ``async with`` would.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


_ = AsksCallback  # re-exported for type hints of per-call ``asks``
