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

Cluster mode (``shared``: the narrow store interface ``SharedSessions``; ``SharedSessionTable``
keeps an app's sessions in it). A session is the cluster's: any process serves it, each with a
replica of its own (a ``HttpSession`` and a ``Connection`` resumed from the stored profile).
A POST runs where it lands, its answer stream there too. The GET stream's events go through
the session's capped event log in Redis: appended by whichever process produces them, read back
by the process holding the GET (``_FedStream``, woken by the bus), with the log's ids, so
``Last-Event-ID`` resumes on any process. Messages no request asked for (``list_changed``,
``resources/updated``) are produced by every process for its replica, and kept only by the
one holding the GET. A request stream whose listener went away before its final reply is
spilled to the log too (``spill``), so a client resumes it wherever its GET lands. A session
of a single process carries none of this (its cluster attributes are class defaults).
"""

from __future__ import annotations

import itertools
import logging
import secrets
from collections import OrderedDict, deque
from collections.abc import Callable
from types import MappingProxyType
from typing import Any, Protocol

import outcome
import trio

from .._limits import Limits
from ..protocol._errors import McpError, QuotaExceeded
from ..protocol._jsonrpc import ErrorObject, MessageCodec, Notification, RequestId
from ..protocol._params import cancelled_request_id
from ..protocol._versions import at_least

logger = logging.getLogger("mcp_trio.http")

#: Milliseconds a client waits before reconnecting a dropped SSE stream (sent in priming events).
SSE_RETRY_MS = 1000
#: The revision whose clients understand priming events (empty ``data``) and resume POST streams.
_RESUMABLE_SINCE = "2025-11-25"
#: Cluster mode: seconds a GET resuming a request stream of another process waits for its
#: first spilled event (the other process notices its listener left) before a 400.
SPILL_WAIT = 5.0
#: Cluster mode: at most this many GET-stream events are read from the log at once.
_FETCH = 256


class SharedSessions(Protocol):
    """Where a cluster keeps handshake-era sessions (``serving._cluster.ClusterSessions``):
    the one interface the HTTP side uses. Every call may raise ``RedisUnavailable`` (a
    ``ServerOverloaded``: 503 with ``Retry-After``)."""

    #: Seconds an idle session lives in the store; seconds before a failed store is retried.
    session_ttl: float
    probe_interval: float

    def listen(self, hooks: Any) -> None: ...

    async def create(self, session_id: str, profile: Any, owner: str) -> bool: ...

    async def get(self, session_id: str) -> Any: ...

    async def delete(self, session_id: str) -> None: ...

    async def set_log_level(self, session_id: str, level: str) -> None: ...

    async def subscribe(self, session_id: str, uri: str, on: bool) -> None: ...

    async def mark_delivered(self, session_id: str, event_id: str) -> None: ...

    async def append(self, session_id: str, stream: int, data: bytes, *, seq: int | None = None,
                     final: bool = False) -> str | None: ...

    async def after(self, session_id: str, last_id: str | None, stream: int | None = None) -> list[Any]: ...

    async def send_input(self, session_id: str, data: bytes) -> None: ...


def owner_of(principal: Any) -> str:
    """Who a session belongs to, as stored: the principal's kind and subject ("" when none)."""
    return "" if principal is None else f"{principal.kind}:{principal.subject}"


class _Stream:
    """The events of one SSE stream, kept for the listener and for ``Last-Event-ID`` replay.

    ``append`` never blocks: the connection's writer serves every POST of the session, and one
    slow HTTP reader must not stall the others. Memory is bounded by ``retain`` events; a
    listener that falls further behind skips to the oldest kept event.
    """

    __slots__ = ("_events", "_lot", "_retain", "close_retry", "delivered", "done", "error", "final", "listener", "number", "seq",
                 "spilled", "spill_lock")

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
        #: Cluster mode: events up to this seq are in the shared log (None: not spilled).
        self.spilled: int | None = None
        self.spill_lock: trio.Lock | None = None

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


class _FedStream(_Stream):
    """Cluster mode: an SSE stream fed from the session's shared log by ``follow`` (one per
    GET). Stream 0 (the GET stream) is shown with the log's ids (``0-<log id>``); a spilled
    request stream keeps its own ``<stream>-<seq>`` ids."""

    __slots__ = ("ids", "wake", "stopped")

    def __init__(self, number: int, retain: int) -> None:
        super().__init__(number, retain)
        #: seq -> the log's id of that event (stream 0).
        self.ids: dict[int, str] = {}
        self.wake = trio.Event()
        self.stopped = False

    def render_after(self, cursor: int) -> tuple[bytes, int, bool]:
        if self.number != 0:
            return super().render_after(cursor)
        events = self.events
        if not events or events[-1][0] <= cursor:
            return b"", cursor, False
        first = events[0][0]
        cursor = max(cursor, first - 1)
        parts = [b"event: message\nid: 0-%b\ndata: %b\n\n" % (self.ids[seq].encode(), data)
                 for seq, data, _ in itertools.islice(events, cursor - first + 1, None)]
        return b"".join(parts), events[-1][0], False

    def take(self, event_id: str, data: bytes) -> None:
        self.append(data, False)
        self.ids[self.seq] = event_id
        if len(self.ids) > 2 * (self.events.maxlen or 1):
            for seq in [seq for seq in self.ids if seq < self.events[0][0]]:
                del self.ids[seq]


class HttpSession(trio.abc.Channel[bytes]):
    """One Streamable HTTP session: the channel of its Connection, and the routing of replies."""

    # Cluster mode's attributes, as a session of one process has them (set per instance only
    # in cluster mode, so that an idle session of one process holds none of them).
    shared: SharedSessions | None = None
    _spawn: Callable[..., None] | None = None
    checked_at = 0.0
    stale = False
    fed: dict[int, _FedStream] = MappingProxyType({})  # type: ignore[assignment]  # read-only: written in cluster mode only

    def __init__(self, token: str, limits: Limits, *, json_response: bool, principal: Any = None,
                 shared: SharedSessions | None = None, spawn: Callable[..., None] | None = None) -> None:
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
        if shared is not None:
            #: Cluster mode: the store every process shares; None (the class's): this process alone.
            self.shared = shared
            self._spawn = spawn
            # Request stream numbers are in ids a client may bring to any process: in a cluster
            # they start at random, so that two processes' streams of one session never share one.
            self._numbers = itertools.count(secrets.randbits(40) + 1)
            #: When the store was last read for this session (renewing it), and whether it
            #: must be read before the next request (a bus event said it changed).
            self.checked_at = trio.current_time()
            #: The streams fed from the log here, by number (0: the GET stream; a newer GET
            #: replaces the one before).
            self.fed = {}
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
        for fed in list(self.fed.values()):
            fed.stopped = True
            fed.finish()

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
        if self.shared is None:
            self.standalone.append(data, False)
        elif 0 in self.fed:
            # A message no request asked for: every process serving the session makes it for
            # its replica; the one holding the GET stream keeps it.
            await self._log(data)

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
                    if stream.spilled is not None:
                        await self._spill(stream)
                else:
                    logger.debug("reply to %r dropped: its POST is gone (cancelled)", related)
                return
            if stream is not None and not self._json_only:
                stream.append(data, False)
                if stream.spilled is not None:
                    await self._spill(stream)
                return
        if self.shared is None:
            self.standalone.append(data, False)
        else:
            await self._log(data)  # this request's message for the GET stream, wherever it is held

    # -- cluster mode -------------------------------------------------------------------------
    async def _log(self, data: bytes) -> None:
        """Append a GET-stream event to the shared log (the process holding the GET hears it)."""
        assert self.shared is not None
        try:
            if await self.shared.append(self.token, 0, data) is not None:
                self.wake_fed(0)
        except (McpError, ValueError) as error:  # Redis away, or larger than a stored value
            logger.warning("a message for the GET stream of a session was dropped: %s", error)

    def spill(self, stream: _Stream) -> None:
        """A request stream's listener left before its final reply: from now on its events
        are in the shared log too (those not written yet first), for a GET on any process."""
        if (self.shared is None or type(stream) is not _Stream or stream.done or stream.spilled is not None
                or self._spawn is None):
            return
        stream.spilled = stream.delivered
        stream.spill_lock = trio.Lock()
        self._spawn(self._spill, stream)

    async def _spill(self, stream: _Stream) -> None:
        """Append the stream's events not in the log yet, in order (one writer at a time)."""
        assert self.shared is not None and stream.spill_lock is not None
        async with stream.spill_lock:
            for seq, data, final in list(stream.events):
                if seq <= (stream.spilled or 0):
                    continue
                try:
                    await self.shared.append(self.token, stream.number, data, seq=seq, final=final)
                except (McpError, ValueError) as error:
                    logger.warning("a message of a request's SSE stream could not be kept for a resume: %s", error)
                stream.spilled = seq

    def feed(self, number: int) -> _FedStream:
        """A stream fed from the shared log for one GET (cluster mode), replacing the one
        before for the same stream (a client that reconnected before the old one was seen to
        go); run ``follow`` to feed it."""
        old = self.fed.pop(number, None)
        if old is not None:
            old.stopped = True
            old.finish()
        stream = self.fed[number] = _FedStream(number, self._retain)
        return stream

    async def follow(self, stream: _FedStream, after: str | None = None) -> None:
        """Feed ``stream`` from the shared log until it is stopped, the session ends, or (a
        request stream) its final event is in. Stream 0 reads the events after log id
        ``after``; a request stream its events after ``stream.seq``. Stream 0 records what
        its listener was written, so a new GET without ``Last-Event-ID`` goes on from there."""
        assert self.shared is not None
        shared, token, number = self.shared, self.token, stream.number
        cursor = after
        recorded: str | None = after
        try:
            while not stream.stopped and not stream.done:
                stream.wake = trio.Event()
                try:
                    events = await shared.after(token, cursor, 0) if number == 0 else await shared.after(token, None, number)
                except McpError as error:
                    logger.debug("reading a session's events failed: %s", error)
                    with trio.move_on_after(shared.probe_interval):
                        await stream.wake.wait()
                    continue
                for event in events:
                    if number == 0:
                        stream.take(event.id, event.data)
                        cursor = event.id
                    elif event.seq is not None and event.seq > stream.seq:
                        stream.seq = event.seq - 1  # the stream's own numbering, as its POST had it
                        stream.append(event.data, event.final)
                recorded = await self._record_delivered(stream, recorded)
                if not events or number != 0:
                    await stream.wake.wait()
        finally:
            if self.fed.get(number) is stream:
                del self.fed[number]
            stream.finish()
            with trio.move_on_after(shared.probe_interval) as scope:
                scope.shield = True
                await self._record_delivered(stream, recorded)

    async def _record_delivered(self, stream: _FedStream, recorded: str | None) -> str | None:
        if stream.number != 0 or not stream.delivered:
            return recorded
        written = stream.ids.get(stream.delivered)
        if written is None or written == recorded:
            return recorded
        try:
            await self.shared.mark_delivered(self.token, written)  # type: ignore[union-attr]
        except (McpError, LookupError):
            return recorded
        return written

    def wake_fed(self, number: int) -> None:
        """The bus says an event for stream ``number`` of this session is in the log."""
        fed = self.fed.get(number)
        if fed is not None:
            fed.wake.set()

    async def persist_log_level(self, level: str) -> None:
        """``logging/setLevel``: every process serving the session learns it (cluster mode)."""
        if self.shared is not None:
            await self.shared.set_log_level(self.token, level)

    async def persist_subscription(self, uri: str, on: bool) -> None:
        """``resources/(un)subscribe``: kept for the process holding the GET (cluster mode)."""
        if self.shared is not None:
            await self.shared.subscribe(self.token, uri, on)

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


class SharedSessionTable:
    """Cluster mode: an HTTP app's sessions are the cluster's (``SharedSessions``).

    ``find`` serves a session this process has a replica of, reading the store when the
    replica was not checked for a while (renewing the session there) or a bus event said it
    changed; otherwise it makes a replica from the store (``make_replica``, the app's). It also
    hears the bus (``SessionHooks``): a session deleted anywhere is dropped here, a changed one
    is read again, a GET-stream event wakes the stream fed here, a client's answer reaches the
    replica whose request asked for it.
    """

    def __init__(self, shared: SharedSessions, sessions: dict[str, HttpSession],
                 make_replica: Callable[[str, Any, Any, str | None], HttpSession],
                 spawn: Callable[..., None]) -> None:
        self.shared = shared
        self.sessions = sessions
        self._make_replica = make_replica
        self._spawn = spawn
        #: A replica reads the store at least this often while in use (renewing the session).
        self.refresh_interval = max(0.001, shared.session_ttl / 4)
        self._codec = MessageCodec()

    # -- the app's requests -----------------------------------------------------------------
    async def find(self, token: str, principal: Any, peer: str | None) -> HttpSession | None:
        """The session ``token`` for ``principal``, served here; None when it does not exist
        for that caller (expired, deleted anywhere, or another caller's)."""
        session = self.sessions.get(token)
        if session is not None and not session.terminated:
            # A session is bound to the caller that opened it: to anyone else it does not exist.
            if owner_of(session.principal) != owner_of(principal):
                return None
            if session.stale or trio.current_time() - session.checked_at >= self.refresh_interval:
                if not await self.refresh(session):
                    return None
            return session
        record = await self.shared.get(token)
        if record is None or record.owner != owner_of(principal):
            return None
        session = self.sessions.get(token)
        if session is not None and not session.terminated:  # made by a request that read it too
            return session
        session = self._make_replica(token, record, principal, peer)
        self._apply(session, record)
        return session

    async def created(self, session: HttpSession) -> None:
        """A session's ``initialize`` succeeded here: store it for every process."""
        connection = session.connection
        await self.shared.create(session.token, connection.state.client, owner_of(session.principal))
        session.checked_at = trio.current_time()

    async def refresh(self, session: HttpSession) -> bool:
        """Read the session from the store (renewing it); False (and dropped here) when gone."""
        record = await self.shared.get(session.token)
        if record is None:
            self.drop(session)
            return False
        self._apply(session, record)
        return True

    async def delete(self, session: HttpSession) -> None:
        """DELETE: the session ends here at once, in the store, and on every other process."""
        self.drop(session)
        await self.shared.delete(session.token)

    def make_room(self, limit: int) -> bool:
        """Stop serving the least recently used idle replica here when ``limit`` sessions are
        served (a replica is a cache of the store: nothing is lost); False: none is idle."""
        if len(self.sessions) < limit:
            return True
        idle = [session for session in self.sessions.values() if session.active == 0]
        if not idle:
            return False
        self.drop(min(idle, key=lambda session: session.last_active))
        return True

    def drop(self, session: HttpSession) -> None:
        """Stop serving ``session`` here (the store is untouched)."""
        if self.sessions.get(session.token) is session:
            del self.sessions[session.token]
        session.terminate()

    async def relay(self, session: HttpSession, body: bytes) -> None:
        """A client message that answers a request of ours, or cancels one of its own: the
        request may run on another process, so every process serving the session gets it."""
        await self.shared.send_input(session.token, body)

    def _apply(self, session: HttpSession, record: Any) -> None:
        """Bring a replica up to date: its log level, its resource subscriptions."""
        session.checked_at = trio.current_time()
        session.stale = False
        connection = session.connection
        if connection is None:
            return
        connection.state.log_level = record.log_level
        supervisor = connection.supervisor
        wanted = set(record.subscriptions)
        for uri in connection.subscriptions - wanted:
            supervisor.unsubscribe(connection, uri)
        for uri in wanted - connection.subscriptions:
            try:
                supervisor.subscribe(connection, uri)
            except QuotaExceeded as error:  # this process's own quota: updates here are missed
                logger.debug("subscription to %s not taken up here: %s", uri, error)

    async def _refresh_quietly(self, session: HttpSession) -> None:
        try:
            await self.refresh(session)
        except McpError as error:
            logger.debug("reading a session again failed: %s", error)

    async def _deliver(self, session: HttpSession, data: bytes) -> None:
        with trio.move_on_after(session.connection.limits.client_request_timeout if session.connection else 1.0):
            try:
                await session.deliver(data)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                pass

    # -- what the bus says (serving._cluster.SessionHooks) -----------------------------------
    def session_deleted(self, session_id: str) -> None:
        session = self.sessions.get(session_id)
        if session is not None:
            self.drop(session)

    def session_changed(self, session_id: str) -> None:
        session = self.sessions.get(session_id)
        if session is not None:
            session.stale = True
            if 0 in session.fed:  # it holds the GET: its subscriptions matter now
                self._spawn(self._refresh_quietly, session)

    def session_event(self, session_id: str, stream: int) -> None:
        session = self.sessions.get(session_id)
        if session is not None:
            session.wake_fed(stream)

    def session_input(self, session_id: str, data: bytes) -> None:
        session = self.sessions.get(session_id)
        if session is None or session.terminated:
            return
        message = self._codec.decode(data)
        if type(message) is Notification and message.method == "notifications/cancelled":
            cancelled = cancelled_request_id(message)
            if cancelled is not None:
                session.abandon(cancelled)
        self._spawn(self._deliver, session, data)

    def resync(self) -> None:
        for session in list(self.sessions.values()):
            self.session_changed(session.token)
