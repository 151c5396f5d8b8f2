"""A handshake-era Streamable HTTP session: the channel its Connection reads and writes.

Each session is an ``HttpSession``: the ``trio.abc.Channel[bytes]`` of its Connection. POST
bodies go in through ``receive`` (a rendezvous channel: a flooding client waits on its own
session's reader). Everything the Connection writes arrives through ``send_related`` with the
id of the client request it belongs to, and whether it is that request's final reply; it
lands, without ever blocking the writer, on one of two kinds of ``_Stream``:

* a request's stream, made when its POST arrived. The POST handler waits for the first message:
  the final reply alone is answered as ``application/json``; anything before it (progress, logs,
  sampling/elicitation requests) turns the answer into an SSE stream, primed with an event id
  and a ``retry`` field, that ends with the final reply;
* the session's standalone stream, for server-initiated messages (list_changed,
  resources/updated) and for messages of a request whose POST is gone. A GET drains it.

A stream keeps its last ``limits.sse_replay_events`` events, each with an id ``<stream>-<seq>``,
so a client that lost an SSE connection (or was asked to poll, ``Context.close_stream``) resumes
it with ``GET`` + ``Last-Event-ID`` and gets what it missed, then the rest, on that stream only.
A final reply never goes on the standalone stream: if its POST was cancelled, it is dropped.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from typing import Any

import trio

from .._limits import Limits
from ..protocol._jsonrpc import ErrorObject, RequestId
from ..protocol._versions import at_least

logger = logging.getLogger("mcp_trio.http")

#: Milliseconds a client waits before reconnecting a dropped SSE stream (sent in priming events).
SSE_RETRY_MS = 1000
#: The revision whose clients understand priming events (empty ``data``) and resume POST streams.
_RESUMABLE_SINCE = "2025-11-25"


class _Stream:
    """The events of one SSE stream, kept for the listener and for ``Last-Event-ID`` replay.

    ``append`` never blocks: the connection's writer serves every POST of the session, and one
    slow HTTP reader must not stall the others. Memory is bounded by ``retain`` events; a
    listener that falls further behind skips to the oldest kept event.
    """

    __slots__ = ("close_retry", "delivered", "done", "error", "events", "final", "listener", "lot", "number", "seq")

    def __init__(self, number: int, retain: int) -> None:
        self.number = number
        self.events: deque[tuple[int, bytes, bool]] = deque(maxlen=retain)
        self.seq = 0
        self.lot = trio.lowlevel.ParkingLot()
        #: No more events will come (the final reply is in, or the exchange was abandoned).
        self.done = False
        self.final = False
        #: The cancel scope of the response currently writing this stream, if any.
        self.listener: trio.CancelScope | None = None
        #: Highest seq written to a listener (a fresh GET starts after it).
        self.delivered = 0
        #: Set by ``close_stream``: end the current response, keep the stream resumable.
        self.close_retry: int | None = None
        #: The final reply's error, when it is one (an admission refusal maps to a status).
        self.error: ErrorObject | None = None

    def append(self, data: bytes, final: bool) -> None:
        self.seq += 1
        self.events.append((self.seq, data, final))
        if final:
            self.done = self.final = True
        self.lot.unpark_all()

    def finish(self) -> None:
        self.done = True
        self.lot.unpark_all()

    def render_after(self, cursor: int) -> tuple[bytes, int, bool]:
        """SSE text of the events after ``cursor``; the new cursor; True if the final is in it."""
        events = self.events
        if not events or events[-1][0] <= cursor:
            return b"", cursor, False
        first = events[0][0]
        if cursor < first - 1:
            logger.debug("SSE stream %d: listener fell behind; %d event(s) skipped", self.number, first - 1 - cursor)
            cursor = first - 1
        number = self.number
        parts = []
        final = False
        for seq, data, is_final in itertools.islice(events, cursor - first + 1, None):
            parts.append(b"event: message\nid: %d-%d\ndata: %b\n\n" % (number, seq, data))
            final = is_final
        return b"".join(parts), events[-1][0], final


class HttpSession(trio.abc.Channel[bytes]):
    """One Streamable HTTP session: the channel of its Connection, and the routing of replies."""

    def __init__(self, token: str, limits: Limits, *, json_response: bool, principal: Any = None) -> None:
        self.token = token
        #: Who opened the session; every later request must authenticate as the same caller.
        self.principal = principal
        #: The session's ``serving.Connection`` (set by the app once made).
        self.connection: Any = None
        self._inbox_send, self._inbox_recv = trio.open_memory_channel[bytes](0)
        self._retain = max(1, limits.sse_replay_events)
        self._json_only = json_response
        #: Request id -> the stream its messages go to, until its final reply.
        self._requests: dict[RequestId, _Stream] = {}
        #: SSE request streams that may be resumed (oldest first), at most ``_max_resumable``.
        self._resumable: dict[int, _Stream] = {}
        self._max_resumable = limits.max_in_flight
        self._numbers = itertools.count(1)
        self.standalone = _Stream(0, self._retain)
        #: HTTP exchanges (POST handlers, SSE listeners) open on this session.
        self.active = 0
        self.last_active = trio.current_time()
        self.terminated = False
        self.closed = False
        self.ended = trio.Event()

    # -- what the HTTP side asks ------------------------------------------------------------
    @property
    def resumable_streams(self) -> bool:
        """True when the client understands priming events and resumes POST streams."""
        client = self.connection.state.client if self.connection is not None else None
        return client is not None and at_least(client.protocol_version, _RESUMABLE_SINCE)

    def begin(self) -> None:
        self.active += 1

    def end(self) -> None:
        self.active -= 1
        self.last_active = trio.current_time()

    def open_request(self, request_id: RequestId) -> _Stream | None:
        """Register the stream of a request arriving by POST; None if that id is in flight."""
        if request_id in self._requests:
            return None
        stream = self._requests[request_id] = _Stream(next(self._numbers), self._retain)
        return stream

    def forget_request(self, request_id: RequestId) -> None:
        self._requests.pop(request_id, None)

    def abandon(self, request_id: RequestId) -> None:
        """The client cancelled ``request_id``: no reply will come; end its POST's response."""
        stream = self._requests.pop(request_id, None)
        if stream is not None:
            self._resumable.pop(stream.number, None)
            stream.finish()

    def keep_resumable(self, stream: _Stream) -> None:
        self._resumable[stream.number] = stream
        while len(self._resumable) > self._max_resumable:
            oldest = next(iter(self._resumable))
            del self._resumable[oldest]

    def drop_resumable(self, stream: _Stream) -> None:
        self._resumable.pop(stream.number, None)

    def find_stream(self, number: int) -> _Stream | None:
        return self.standalone if number == 0 else self._resumable.get(number)

    async def deliver(self, body: bytes) -> None:
        """Hand one message to the connection's reader (waits while it is busy).

        When the reader is already waiting, the hand-off is synchronous: the caller goes on
        to wait for the reply without an extra trip through the scheduler.
        """
        try:
            self._inbox_send.send_nowait(body)
        except trio.WouldBlock:
            await self._inbox_send.send(body)

    def close_stream(self, request_id: RequestId, retry: float | None) -> bool:
        """``Context.close_stream``: end the request's SSE response now; it stays resumable."""
        if self._json_only or not self.resumable_streams:
            return False
        stream = self._requests.get(request_id)
        if stream is None:
            return False
        stream.close_retry = SSE_RETRY_MS if retry is None else max(0, round(retry * 1000))
        stream.lot.unpark_all()
        return True

    def terminate(self) -> None:
        """End the session (DELETE, idle expiry): its reader sees EOF, in-flight requests drain."""
        self.terminated = True
        self._inbox_send.close()

    # -- the connection's side (trio.abc.Channel) -------------------------------------------
    async def receive(self) -> bytes:
        return await self._inbox_recv.receive()

    async def send(self, data: bytes) -> None:
        self.standalone.append(data, False)

    async def send_related(self, data: bytes, related: RequestId | None, final: bool, error: ErrorObject | None = None) -> None:
        """Route one outgoing message: to its request's stream, else the standalone stream."""
        if related is not None:
            stream = self._requests.get(related)
            if final:
                if stream is not None:
                    del self._requests[related]
                    stream.error = error
                    stream.append(data, True)
                else:
                    logger.debug("reply to %r dropped: its POST is gone (cancelled)", related)
                return
            if stream is not None and not self._json_only:
                stream.append(data, False)
                return
        self.standalone.append(data, False)

    async def aclose(self) -> None:
        """The connection is done: end every response still open on this session."""
        if not self.closed:
            self.closed = True
            self._inbox_send.close()
            self._inbox_recv.close()
            for stream in [*self._requests.values(), *self._resumable.values(), self.standalone]:
                stream.finish()
            self._requests.clear()
            self._resumable.clear()
        await trio.lowlevel.checkpoint()
