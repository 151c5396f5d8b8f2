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

An idle session is most of what a server with many clients holds, so it holds little: its
inbox is a rendezvous kept in three attributes (trio's memory channel of size 0 does the same
with five objects), and a stream's event buffer and parking lot are made when first used.
"""

from __future__ import annotations

import itertools
import logging
from collections import OrderedDict, deque
from typing import Any

import outcome
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

    __slots__ = ("_events", "_lot", "_retain", "close_retry", "delivered", "done", "error", "final", "listener", "number", "seq")

    def __init__(self, number: int, retain: int) -> None:
        self.number = number
        self._retain = retain
        self._events: deque[tuple[int, bytes, bool]] | None = None
        self._lot: trio.lowlevel.ParkingLot | None = None
        self.seq = 0
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

    @property
    def events(self) -> deque[tuple[int, bytes, bool]]:
        """The events kept, oldest first: ``(seq, data, final)`` (made when first used)."""
        events = self._events
        if events is None:
            events = self._events = deque(maxlen=self._retain)
        return events

    @events.setter
    def events(self, value: deque[tuple[int, bytes, bool]]) -> None:
        self._events = value

    @property
    def lot(self) -> trio.lowlevel.ParkingLot:
        """Where listeners wait for the next event (made when first used)."""
        lot = self._lot
        if lot is None:
            lot = self._lot = trio.lowlevel.ParkingLot()
        return lot

    def append(self, data: bytes, final: bool) -> None:
        self.seq += 1
        self.events.append((self.seq, data, final))
        if final:
            self.done = self.final = True
        if self._lot is not None:
            self._lot.unpark_all()

    def finish(self) -> None:
        self.done = True
        if self._lot is not None:
            self._lot.unpark_all()

    def render_after(self, cursor: int) -> tuple[bytes, int, bool]:
        """SSE text of the events after ``cursor``; the new cursor; True if the final is in it."""
        events = self._events
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
        #: The inbox: the Connection's reader while it waits, POSTs waiting to hand over.
        self._reader: trio.lowlevel.Task | None = None
        self._writers: OrderedDict[trio.lowlevel.Task, bytes] | None = None
        self._inbox_closed = False
        self._retain = max(1, limits.sse_replay_events)
        self._json_only = json_response
        #: Request id -> the stream its messages go to, until its final reply.
        self._requests: dict[RequestId, _Stream] = {}
        #: SSE request streams that may be resumed (oldest first), at most ``_max_resumable``.
        self._resumable: dict[int, _Stream] = {}
        self._max_resumable = limits.max_in_flight
        self._numbers = itertools.count(1)
        self._standalone: _Stream | None = None
        #: HTTP exchanges (POST handlers, SSE listeners) open on this session.
        self.active = 0
        self.last_active = trio.current_time()
        self.terminated = False
        self.closed = False

    @property
    def standalone(self) -> _Stream:
        """The session's own stream (server-initiated messages; what a GET drains), made
        when first used."""
        stream = self._standalone
        if stream is None:
            stream = self._standalone = _Stream(0, self._retain)
        return stream

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
        """Hand one message to the connection's reader (waits while it is busy; a rendezvous,
        so a flooding client waits on its own session). ``trio.ClosedResourceError`` once the
        session was terminated, ``trio.BrokenResourceError`` once its connection is done.

        When the reader is already waiting, the hand-off is synchronous: the caller goes on
        to wait for the reply without an extra trip through the scheduler.
        """
        if self._inbox_closed:
            raise trio.BrokenResourceError("the session has ended") if self.closed else trio.ClosedResourceError("the session has ended")
        reader = self._reader
        if reader is not None:
            self._reader = None
            trio.lowlevel.reschedule(reader, outcome.Value(body))
            return
        writers = self._writers
        if writers is None:
            writers = self._writers = OrderedDict()
        task = trio.lowlevel.current_task()
        writers[task] = body

        def abort(_: Any) -> trio.lowlevel.Abort:
            del writers[task]
            if not writers and self._writers is writers:
                self._writers = None
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

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
        self._close_inbox(trio.ClosedResourceError)

    def _close_inbox(self, refusal: type[Exception]) -> None:
        """No more deliveries: the reader sees EOF, POSTs still waiting get ``refusal``."""
        self._inbox_closed = True
        reader, self._reader = self._reader, None
        if reader is not None:
            trio.lowlevel.reschedule(reader, outcome.Error(trio.EndOfChannel()))
        writers, self._writers = self._writers, None
        for task in writers or ():
            trio.lowlevel.reschedule(task, outcome.Error(refusal("the session has ended")))

    # -- the connection's side (trio.abc.Channel) -------------------------------------------
    async def receive(self) -> bytes:
        """The next POSTed message (``trio.EndOfChannel`` once the session is terminated)."""
        await trio.lowlevel.checkpoint_if_cancelled()
        writers = self._writers
        if writers:
            task, body = writers.popitem(last=False)
            if not writers:
                self._writers = None
            trio.lowlevel.reschedule(task)
            await trio.lowlevel.cancel_shielded_checkpoint()
            return body
        if self._inbox_closed:
            raise trio.EndOfChannel
        if self._reader is not None:
            raise trio.BusyResourceError("another task is already receiving from this session")
        self._reader = trio.lowlevel.current_task()

        def abort(_: Any) -> trio.lowlevel.Abort:
            self._reader = None
            return trio.lowlevel.Abort.SUCCEEDED

        return await trio.lowlevel.wait_task_rescheduled(abort)  # type: ignore[no-any-return]

    async def send(self, data: bytes) -> None:
        self.standalone.append(data, False)

    async def send_related(self, data: bytes, related: RequestId | None, final: bool, error: ErrorObject | None = None) -> None:
        """Route one outgoing message: to its request's stream, else the standalone stream."""
        if related is not None:
            stream = self._requests.get(related)
            if final:
                if stream is not None:
                    del self._requests[related]
                    if not self._requests:
                        self._requests = {}  # an emptied dict keeps its table: an idle session need not
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
            self._close_inbox(trio.BrokenResourceError)
            for stream in [*self._requests.values(), *self._resumable.values(), *filter(None, [self._standalone])]:
                stream.finish()
            self._requests.clear()
            self._resumable.clear()
        await trio.lowlevel.checkpoint()
