"""The one interface between transports and connections: a ``trio.abc.Channel[bytes]``.

A transport adapter turns a byte stream or a WebSocket into whole messages (``receive``
returns one JSON-RPC message's bytes, ``send`` writes one) and raises ``trio.EndOfChannel``
when the peer is done. The only extra it may raise is ``MessageTooLarge``, after it has
skipped the oversized message, so the connection can answer it and go on.
"""

from __future__ import annotations

from typing import Protocol

from .protocol._jsonrpc import ErrorObject, RequestId


class MessageTooLarge(Exception):
    """A message longer than the transport's limit arrived and was discarded."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"message of at least {size} bytes exceeds the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class RoutedChannel(Protocol):
    """What a transport offers when it must know which request a message belongs to.

    Streamable HTTP answers each POST on its own response (JSON or an SSE stream) and sends
    server-initiated messages on the GET stream. A channel with ``send_related`` gets every
    outgoing message with ``related``, the id of the client request it belongs to (None for
    server-initiated messages), ``final``, True for the reply that ends that request, and
    ``error``, the error object when that reply is an error (so HTTP can answer a refused
    request with its status: 429, 403, 503).
    """

    async def send_related(self, data: bytes, related: RequestId | None, final: bool, error: ErrorObject | None) -> None: ...


class BatchChannel(Protocol):
    """A channel that can write several messages at once (the writer batches what is ready)."""

    async def send_batch(self, messages: list[bytes]) -> None: ...


class NowaitChannel(Protocol):
    """A channel that can write without waiting, when the peer is keeping up.

    ``send_batch_nowait`` writes ``messages`` at once if the socket or pipe takes them (True),
    and never waits: whatever it could not write (part of a frame, or all of it), it keeps,
    and returns False; ``flush`` then writes what was kept (the connection's writer calls it,
    shielded and bounded by ``send_timeout``, before anything else is sent). It raises nothing:
    a broken peer is found by ``flush``. The connection writes a reply this way from the task
    that made it, at the moment that task would wait anyway, when its writer has nothing to do:
    a request answered with no trip through the scheduler at all (stdio and WebSocket, whose
    sockets and pipes are non-blocking). A channel offers it only when its stream can: it
    leaves the attribute ``None`` otherwise (TLS, threads, in-memory streams).
    """

    def send_batch_nowait(self, messages: list[bytes]) -> bool: ...

    # Optional: ``message_ready()`` is True when ``receive`` would return a message without
    # waiting (one is buffered whole). The connection then keeps batching replies; when it is
    # False the replies are written before the read (stdio has it; without it they are written
    # the moment the read waits).

    async def flush(self) -> None: ...

