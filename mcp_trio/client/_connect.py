"""``connect()``: a target string to an open session, and the one place that closes it."""

from __future__ import annotations

import os
import shlex
import ssl
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

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

__all__ = ["connect", "parse_target"]


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
            # outlive ours.
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
            async with trio.open_nursery() as nursery:
                client = Client(
                    transport, nursery, on_notification=on_notification, on_request=on_request, sampling=sampling,
                    elicitation=elicitation, roots=roots, on_log=on_log, on_list_changed=on_list_changed,
                    on_resource_updated=on_resource_updated, capabilities=capabilities, client_info=client_info,
                    request_timeout=request_timeout, log_level=log_level, tracer=tracer,
                )
                if kind != "http":
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
