"""The one interface between transports and connections: a ``trio.abc.Channel[bytes]``.

A transport adapter turns a byte stream or a WebSocket into whole messages (``receive``
returns one JSON-RPC message's bytes, ``send`` writes one) and raises ``trio.EndOfChannel``
when the peer is done. The only extra it may raise is ``MessageTooLarge``, after it has
skipped the oversized message, so the connection can answer it and go on.
"""

from __future__ import annotations


class MessageTooLarge(Exception):
    """A message longer than the transport's limit arrived and was discarded."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"message of at least {size} bytes exceeds the limit of {limit} bytes")
        self.size = size
        self.limit = limit
