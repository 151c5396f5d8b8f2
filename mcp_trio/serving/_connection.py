"""One MCP session on one transport channel: a nursery of session tasks and a writer.

::

    channel ─► leader: reads, runs each request ──┬─ done without waiting ─┐
                 │      until it first waits ──────┴─► (that task goes on   ├─► writer ─► channel
                 │      (then another task leads)       with the request) ──┘
                 └─ responses to our own requests, cancellations: routed at once

* One session task at a time *leads*: it reads, decodes, answers malformed input, handles
  ``initialize`` in order (so a pipelined request after it sees the new phase), routes
  responses to our own requests and ``notifications/cancelled`` at once, and runs each request
  itself, through the answer kernel (``_kernel.answer``). A request that never waits (ping, the
  lists, an ``async def`` tool that just computes) is answered with no task and no trip through
  the scheduler. When a request first waits, its task stops leading there and then: another
  task (parked from earlier, or new) takes over reading, and the request goes on in the task
  it started in, whose cancel scope is now that request's (``notifications/cancelled``,
  shutdown). When it is done, that task parks until it is asked to lead again. The first
  leader is the connection's own task (``run``): an idle session is three tasks, that one,
  the dispatcher and the writer.
* A request takes a slot (``max_in_flight``) before it runs, so a flooding client stalls its
  own reader, nobody else.
* The writer is the only task that sends; a frame is never half-written (the write is
  shielded, bounded by ``send_timeout``).

Shutdown cascades: EOF or ``stop_reading`` ends the reading; the dispatcher lets in-flight
requests finish within the grace period, then cancels them, each still answered; then the
writer drains and closes the channel.
"""

from __future__ import annotations

import contextvars
import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec
import trio
from outcome import Value

from .._channel import MessageTooLarge
from .._logging import principal_var, request_id_var, session_id_var
from ..offer._results import unsendable_reason, unsendable_reply
from ..protocol._era import HANDSHAKE, EraDecision, decide_era
from ..protocol._errors import (
    BatchRefused,
    InvalidRequest,
    McpError,
    PeerError,
    RequestTimeout,
    ShuttingDown,
)
from ..protocol._jsonrpc import (
    BatchReply,
    ErrorObject,
    ErrorResponse,
    Malformed,
    Message,
    MessageCodec,
    Notification,
    Request,
    RequestId,
    Response,
    error_object,
)
from ..protocol._params import cancelled_request_id, decode_result
from ..protocol._session import ClientProfile, SessionState
from . import _kernel
from ._handlers import initialize
from ._request import CANCELLED_BY_CLIENT as _CANCELLED_BY_CLIENT
from ._request import CANCELLED_BY_SHUTDOWN as _CANCELLED_BY_SHUTDOWN
from ._request import InFlight
from ._supervisor import Supervisor

if TYPE_CHECKING:
    from ._batch import BatchReplies
    from ._roots import RootsWatch

logger = logging.getLogger("mcp_trio.connection")
#: Messages the writer encodes and writes together at most.
_MAX_BATCH = 64
#: Room in the queue to the writer beyond one reply per in-flight request (``max_in_flight``):
#: notifications, and replies made while the writer was busy. A reply is handed over with no
#: trip through the scheduler (``send_nowait``); unbuffered, all but the first of a burst of
#: replies parked their task until the writer came round (measured +11 % on WebSocket 100×8;
#: ``statistics()["peak_buffer_used"]`` shows what a load uses).
_WRITER_SLACK = 16
#: Session tasks a connection keeps parked for the next requests that wait; more end when
#: their request is done (a burst of more waiting requests pays for new tasks, as it did when
#: every request had one).
_MAX_IDLE_TASKS = 16
#: Messages that end their request's exchange (the transport may close its stream after one).
_FINAL = frozenset({Response, ErrorResponse, Malformed})

#: What the writer gets: a message and the id of the client request it belongs to (its reply,
#: or a notification or request sent while serving it), or None for server-initiated ones.
Outgoing = tuple[Message | Malformed, RequestId | None]
#: Writer signals (in the message's place): take the leader's replies (``_WAKE``); write
#: what the channel kept from a write that could not wait (``_FLUSH``), before anything else.
_WAKE: Any = object()
_FLUSH: Any = object()
_WAKE_ITEM: Outgoing = (_WAKE, None)
_FLUSH_ITEM: Outgoing = (_FLUSH, None)


def _error_of(message: Message | Malformed) -> ErrorObject | None:
    if type(message) is ErrorResponse:
        return message.error  # type: ignore[union-attr]
    if type(message) is Malformed:
        return error_object(message.error)  # type: ignore[union-attr]
    return None


class _Pending:
    """A request we sent to the client, waiting for its answer."""

    __slots__ = ("done", "reply")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.reply: Response | ErrorResponse | None = None


class _SessionTask:
    """One of a connection's session tasks: it leads (reads, and runs requests until one
    waits), runs the request that made it stop leading, or is parked until asked to lead.

    It has one cancel scope for its whole life: cancelling it stops the reading while the
    task leads, and cancels its request once the request has waited (the only times anyone
    can run to cancel anything). A cancelled scope stays cancelled, so that task then ends.
    """

    __slots__ = ("task", "scope", "leading", "busy", "parked")

    def __init__(self, scope: trio.CancelScope, parked: list[_SessionTask]) -> None:
        self.task = trio.lowlevel.current_task()
        self.scope = scope
        self.leading = False
        #: Running a request that has not waited yet (then ``stop_reading`` must not cancel
        #: the scope: that request is not the reading).
        self.busy = False
        self.parked = parked

    async def wait_to_lead(self) -> bool:
        """Park until asked to lead (True), or until the connection reads no more (False)."""
        self.parked.append(self)
        return await trio.lowlevel.wait_task_rescheduled(self._abort)  # type: ignore[no-any-return]

    def _abort(self, raise_cancel: object) -> trio.lowlevel.Abort:
        self.parked.remove(self)  # the connection is torn down while this task waited
        return trio.lowlevel.Abort.SUCCEEDED


class _run_until_it_waits:  # noqa: N801 (used as a function: ``await _run_until_it_waits(...)``)
    """``await coro`` (in ``context``, when given), calling ``on_wait()`` the first time it waits.

    The coroutine runs in the calling task from start to end (its cancel scopes, its
    ``current_task()``, the wait it registered are that task's: nothing moves between tasks);
    ``on_wait`` runs once, at the moment it first yields to trio, so the caller can hand its
    other job (reading, writing) to another task before this one is suspended. It must not
    raise: the coroutine's wait is registered by then. A request gets a context of its own,
    as a task of its own would: what it sets does not leak to the next.

    An iterator, not a generator: an idle session's leader waits in ``receive`` through one,
    and a generator kept its frame (~0.6 KiB a session) for as long as the session was idle.
    """

    __slots__ = ("_coro", "_on_wait", "_context")

    def __init__(self, coro: Any, on_wait: Callable[[], None], context: contextvars.Context | None = None) -> None:
        self._coro = coro
        self._on_wait: Callable[[], None] | None = on_wait
        self._context = context

    def __await__(self) -> _run_until_it_waits:
        return self

    def __next__(self) -> Any:
        # The first step (``await`` starts here). StopIteration (the coroutine's result)
        # passes through: it ends the ``await`` with no wait.
        context = self._context
        trap = context.run(self._coro.send, None) if context is not None else self._coro.send(None)
        on_wait = self._on_wait
        if on_wait is not None:
            self._on_wait = None
            on_wait()
        return trap

    def send(self, value: Any) -> Any:
        # Resumed by trio after a wait: ``on_wait`` has run by then.
        context = self._context
        return context.run(self._coro.send, value) if context is not None else self._coro.send(value)

    def throw(self, *exc_info: Any) -> Any:
        """Thrown in by trio (``Cancelled``, say): passed on to the coroutine."""
        exc = exc_info[1] if len(exc_info) > 1 and exc_info[1] is not None else exc_info[0]
        context = self._context
        return context.run(self._coro.throw, exc) if context is not None else self._coro.throw(exc)

    def close(self) -> None:
        self._coro.close()


class Connection:
    """One session: the actors, the session state and the maps between them."""

    # Slots: a session has more attributes than CPython shares the keys of (30), and each idle
    # session paid ~1.6 KiB of instance dict for them.
    __slots__ = (
        "_accepting",
        "_base_context",
        "_client_request_slots",
        "_drained",
        "_input_done",
        "_leader",
        "_metrics",
        "_next_request_id",
        "_out_recv",
        "_out_send",
        "_parked",
        "_peak_buffer_used",
        "_pending",
        "_posted",
        "_requests",
        "_roots",
        "_running",
        "_send_nowait",
        "_session_state",
        "_side_nursery",
        "_slots",
        "_stop_requested",
        "_subscriptions",
        "_unsent",
        "_unsent_taken",
        "_writer_gone",
        "_writer_idle",
        "channel",
        "codec",
        "encoder",
        "limits",
        "peer",
        "principal",
        "server",
        "session_id",
        "state",
        "supervisor",
    )

    def __init__(
        self,
        supervisor: Supervisor,
        channel: trio.abc.Channel[bytes],
        *,
        session_id: str | None = None,
        principal: Any = None,
        peer: str | None = None,
        first_request_id: int = 0,
    ) -> None:
        """``principal``: the authenticated caller (``mcp_trio.auth.Principal``), set by the
        transport at connect time; None on a trusted channel with no auth configured (stdio).
        ``peer``: the remote address (host only, no port), which keys the rate limit of
        anonymous callers; None when there is none (stdio, in-memory).
        ``first_request_id``: where the ids of our requests to the client start (cluster mode:
        several processes serve one session, and a client's answer must find its asker)."""
        self.supervisor = supervisor
        self._metrics = supervisor.metrics
        self.server = supervisor.server
        self.limits = supervisor.limits
        self.channel = channel
        self.session_id = session_id or supervisor.next_session_id()
        self.principal = principal
        self.peer = peer
        self.state = SessionState()
        self.codec = MessageCodec(self.limits.max_message_size)
        self.encoder = msgspec.json.Encoder()
        self._subscriptions: set[str] | None = None  # made at first use (``subscriptions``)
        self._running: dict[RequestId, InFlight] = {}
        self._pending: dict[RequestId, _Pending] = {}
        self._next_request_id = first_request_id
        self._slots = trio.Semaphore(self.limits.max_in_flight)
        self._client_request_slots: trio.Semaphore | None = None  # made on the first request to the client
        self._input_done = trio.Event()
        self._accepting = True
        self._drained: trio.Event | None = None
        self._out_send, self._out_recv = trio.open_memory_channel[Outgoing](self.limits.max_in_flight + _WRITER_SLACK)
        self._peak_buffer_used = 0
        self._side_nursery: trio.Nursery | None = None
        #: Server-initiated notifications queued and not sent yet (None when there are none).
        self._posted: set[tuple[str, str]] | None = None
        #: The session task reading now (None between two, or once input is over).
        self._leader: _SessionTask | None = None
        #: Session tasks parked until asked to lead.
        self._parked: list[_SessionTask] = []
        self._stop_requested = False
        self._requests: trio.Nursery | None = None
        #: The context session tasks start from (a copy of the connection's, taken once).
        self._base_context: contextvars.Context | None = None
        #: Replies the leader made without waiting, not handed to the writer yet: written
        #: when the leader is about to wait for input (``_flush_unsent``), or taken by the
        #: writer when it comes round.
        self._unsent: list[Outgoing] = []
        self._unsent_taken: trio.Event | None = None
        self._writer_idle = False  # parked in receive() with nothing queued (see _flush_unsent)
        self._writer_gone = False
        self._send_nowait = getattr(channel, "send_batch_nowait", None)
        self._session_state: dict[str, Any] | None = None
        self._roots: RootsWatch | None = None

    @property
    def client(self) -> ClientProfile | None:
        return self.state.client

    @property
    def session_state(self) -> dict[str, Any]:
        """``ctx.session_state``: this session's own mapping, made at first use, gone with it."""
        if self._session_state is None:
            self._session_state = {}
        return self._session_state

    @property
    def subscriptions(self) -> set[str]:
        """The resource URIs this session subscribed to; made at first use (an empty set is
        216 bytes, and most sessions never subscribe)."""
        if self._subscriptions is None:
            self._subscriptions = set()
        return self._subscriptions

    @property
    def in_flight(self) -> int:
        """Requests read and not yet answered."""
        return len(self._running)

    # -- lifecycle --------------------------------------------------------------------------
    async def run(self) -> None:
        """Serve the session until the peer leaves or the server shuts down."""
        session_id_var.set(self.session_id)
        principal_var.set(self.principal)
        self.supervisor.attach(self)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer, self._out_recv)
                # Closing the send side, however this block ends, lets the writer drain and stop.
                with self._out_send:
                    async with trio.open_nursery() as side:
                        self._side_nursery = side
                        await side.start(self._dispatcher)
                        # This task is the first session task: a task of its own that only
                        # read, while this one waited for the end of input, cost an idle
                        # session ~1 KiB (its Task, coroutine frames and wait).
                        await self._session_task()
                        await self._input_done.wait()  # when its request was cancelled, say
                    self._side_nursery = None
        finally:
            self.supervisor.detach(self)
            for pending in self._pending.values():
                pending.done.set()

    def stop_reading(self) -> None:
        """Stop taking new messages; what is in flight still finishes (graceful shutdown)."""
        self._stop_requested = True
        leader = self._leader
        if leader is not None and not leader.busy:
            leader.scope.cancel()  # it is waiting to read (or for a slot): stop that wait
        # Else the leader is running a request (one that asked for this, say): it stops
        # before its next read; and between two leaders, the next one stops before reading.

    @property
    def input_done(self) -> trio.Event:
        """Set when this connection will read no more (EOF, shutdown): long waits end then."""
        return self._input_done

    def park(self, in_flight: InFlight) -> None:
        """Give back ``in_flight``'s slot for good: it now waits on the server, not on this
        connection's input (a ``subscriptions/listen`` stream), and must not stall the reader."""
        if in_flight.holds_slot:
            self._slots.release()
            in_flight.holds_slot = False

    # -- session tasks: reading, and requests that wait -------------------------------------
    async def _session_task(self) -> None:
        """Lead; when a request it runs waits, finish that request, then park until asked to
        lead again. Ends when input is over, or when its scope was cancelled (a request of
        its was cancelled), or when enough tasks are parked already."""
        me = _SessionTask(trio.CancelScope(), self._parked)
        with me.scope:
            while True:
                self._leader = me
                me.leading = True
                try:
                    await self._read_loop(me)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    logger.debug("writer gone; reading stops")
                finally:
                    if me.leading:  # reading ended here: EOF, peer or writer gone, stop_reading
                        me.leading = False
                        self._end_input()
                if self._input_done.is_set() or me.scope.cancel_called or len(self._parked) >= _MAX_IDLE_TASKS:
                    return
                if not await me.wait_to_lead():
                    return

    def _end_input(self) -> None:
        self._leader = None
        self._input_done.set()
        self._flush_unsent()

    def _flush_unsent(self) -> None:
        """Write the leader's replies now, if the writer has nothing to do (called as the
        leader is about to wait for input: synchronous, and it never raises).

        Written from here, without waiting (``_channel.NowaitChannel``), a request costs no
        trip through the scheduler at all: measured, half the CPU of a sequential call over
        stdio. What the channel cannot take at once it keeps, and the writer flushes it under
        its own deadline before writing anything else. When the writer is busy, it takes the
        replies when it comes round; a channel that cannot write without waiting hands them
        to the writer too.
        """
        if not self._unsent or not self._writer_idle or not self._out_recv.statistics().tasks_waiting_receive:
            return
        try:
            nowait = self._send_nowait
            if nowait is None:
                self._out_send.send_nowait(_WAKE_ITEM)
                return
            unsent, self._unsent = self._unsent, []
            _, frames = self._frames(unsent)
            if frames and not nowait(frames):
                self._out_send.send_nowait(_FLUSH_ITEM)
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.WouldBlock):
            logger.debug("writer gone; replies dropped")
        except Exception:  # boundary: raising here, as a task is about to wait, would corrupt trio
            logger.exception("replies could not be written; the session stops reading")
            self._writer_gone = True
            self.stop_reading()

    async def _unsent_to_writer(self) -> None:
        """The leader has made a full batch of replies without waiting: the writer takes it
        before the leader goes on (so a client that stops reading stalls the reading)."""
        self._flush_unsent()
        while self._unsent and not self._writer_gone:
            if self._writer_idle and self._out_recv.statistics().tasks_waiting_receive:
                self._out_send.send_nowait(_WAKE_ITEM)
            taken = self._unsent_taken = trio.Event()
            await taken.wait()

    def _hand_over(self, me: _SessionTask) -> None:
        """``me``'s request waits: another task leads from now on (a parked one, or a new one).

        Called as that request is about to wait: synchronous, and it never raises.
        """
        me.leading = False
        me.busy = False
        self._leader = None
        try:
            if self._stop_requested or not self._accepting:
                self._end_input()
            elif self._parked:
                trio.lowlevel.reschedule(self._parked.pop().task, Value(True))
            else:
                assert self._requests is not None and self._base_context is not None
                # From the connection's context, not the request's (what it set stays its own).
                self._base_context.run(self._requests.start_soon, self._session_task)
        except Exception:  # boundary: raising here, as a task is about to wait, would corrupt trio
            logger.exception("no task could take over reading; the session stops reading")
            self._end_input()

    async def _read_loop(self, me: _SessionTask) -> None:
        """Read and handle messages while ``me`` leads; returns at EOF or once it does not."""
        decode = self.codec.decode
        receive = self.channel.receive
        # Replies made without waiting are written when no whole message is buffered
        # (``message_ready``, stdio), else the moment the read waits. Writing each at once
        # instead was measured worse: stdio 8-pipelined fell from ~42k to ~30k calls/s (A B A B,
        # loaded 2 cores) with one write per reply; this order took sequential p50 from ~75 to
        # ~66 us with pipelined unchanged.
        ready = getattr(self.channel, "message_ready", None)
        out = self._out_send
        while me.leading:
            if self._stop_requested:
                return
            try:
                if self._unsent and ready is not None and not ready():
                    # Nothing more to answer before the read would wait: write the replies
                    # first, so they are not behind a read that finds nothing.
                    self._flush_unsent()
                    data = await receive()
                elif self._unsent:  # replies to write when the reading would wait
                    data = await _run_until_it_waits(receive(), self._flush_unsent)
                else:
                    data = await receive()
            except trio.EndOfChannel:
                return
            except MessageTooLarge as exc:
                await out.send((Malformed(None, InvalidRequest(str(exc))), None))
                continue
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            message = decode(data)
            if type(message) is Request:
                await self._accept_request(message, me)
            elif type(message) is Notification:
                self._on_notification(message)
            elif type(message) is Malformed:
                if type(message.error) is BatchRefused:  # a JSON-RPC batch (``_batch``)
                    await self._read_batch(data)
                else:
                    await out.send((message, message.id))
            else:
                self._route_reply(message)  # type: ignore[arg-type]
            # Waiting for the next message, an idle session keeps nothing of the last one.
            data = message = None  # type: ignore[assignment]

    async def _accept_request(self, request: Request, me: _SessionTask) -> None:
        out = self._out_send
        if request.id in self._running:
            await out.send((Malformed(request.id, InvalidRequest(f"duplicate request id {request.id!r}: a request with this id is still in flight")), request.id))
            return
        if request.method == "initialize":
            # Answered here, in arrival order, so requests pipelined behind it see the new phase.
            if self.supervisor.admission.shared is not None:  # cluster mode: charged in Redis first
                try:
                    await self.supervisor.admission.charge_shared(self)
                except McpError as exc:
                    await out.send((ErrorResponse(request.id, error_object(exc)), request.id))
                    return
            await out.send((self._initialize(request), request.id))
            return
        # The era (protocol._era): once initialized (a client profile is set), a connection is
        # the handshake era's and pays one test; before that, the client's first requests
        # decide, as the spec's probe does.
        decision = HANDSHAKE if self.state.client is not None else decide_era(request.method, request.params)
        if decision is not HANDSHAKE:
            if decision.error is not None:
                await out.send((ErrorResponse(request.id, error_object(decision.error)), request.id))
                return
            await self._run(InFlight(request.id, request.method, request.params, decision), me)
            return
        try:
            self.state.check_request(request.method)
        except McpError as exc:
            await out.send((ErrorResponse(request.id, error_object(exc)), request.id))
            return
        await self._run(InFlight(request.id, request.method, request.params), me)

    async def _read_batch(self, data: bytes) -> None:
        """A JSON-RPC batch: each message handled as if alone, the replies to its requests sent
        together (``_batch``); refused whole where the session's revision has no batches.

        Its requests each get a task of their own (``_run_batched``): the reading goes on in
        this task while they run (batches are a 2025-03-26 rarity, not the hot path)."""
        from ._batch import BatchReplies, batches_allowed
        from ._batch import refusal as batch_refusal

        out = self._out_send
        if not batches_allowed(self.state):
            await out.send((batch_refusal(self.state), None))
            return
        items = self.codec.split_batch(data, self.limits.max_batch_size)
        if type(items) is Malformed:
            await out.send((items, None))
            return
        batch = BatchReplies(self.codec)
        for _, message in items:  # type: ignore[union-attr]
            kind = type(message)
            if kind is Request:
                if message.id in self._running:  # type: ignore[union-attr]
                    batch.answer_now(Malformed(message.id, InvalidRequest(  # type: ignore[union-attr]
                        f"duplicate request id {message.id!r}: a request with this id is still in flight")))  # type: ignore[union-attr]
                elif message.method == "initialize":  # type: ignore[union-attr]
                    batch.answer_now(Malformed(message.id, InvalidRequest("initialize may not be part of a JSON-RPC batch")))  # type: ignore[union-attr]
                else:
                    batch.expect()
                    await self._start_batched(message, batch)  # type: ignore[arg-type]
            elif kind is Notification:
                self._on_notification(message)  # type: ignore[arg-type]
            elif kind is Malformed:
                batch.answer_now(message)
            else:
                self._route_reply(message)  # type: ignore[arg-type]
        reply = batch.seal()
        if reply is not None:
            await out.send((reply, None))  # type: ignore[arg-type]

    async def _start_batched(self, request: Request, batch: BatchReplies) -> None:
        """Take a slot for a batch's request and start its task."""
        if not self._accepting or self._requests is None:
            logger.debug("hard stop: request %r read but not started", request.id)
            return
        in_flight = InFlight(request.id, request.method, request.params)
        in_flight.batch = batch
        self._running[request.id] = in_flight
        if not await self._take_slot(in_flight):
            return
        self._requests.start_soon(self._run_batched, in_flight)

    async def _run_batched(self, in_flight: InFlight) -> None:
        request_id_var.set(in_flight.id)
        started = time.perf_counter()
        scope = in_flight.scope = trio.CancelScope()
        if in_flight.reason is not None:
            scope.cancel()
        try:
            with scope:
                reply: Message | None = await _kernel.answer(self, in_flight)
            if scope.cancelled_caught:
                reply = None
            await self._settle(in_flight, reply, started)
        finally:
            self._done(in_flight)

    def _initialize(self, request: Request) -> Message:
        try:
            admission = self.supervisor.admission
            if admission.limiter is not None:
                # initialize is charged to the caller's bucket like any request: opening
                # sessions is no way around the rate limit. (Answered at once, it never counts
                # as running: the concurrency cap does not apply.)
                admission.charge(self)
            return Response(request.id, initialize(self, InFlight(request.id, request.method, request.params)))
        except McpError as exc:
            return ErrorResponse(request.id, error_object(exc))

    def _on_notification(self, note: Notification) -> None:
        method = note.method
        if method == "notifications/cancelled":
            request_id = cancelled_request_id(note)
            in_flight = self._running.get(request_id) if request_id is not None else None
            if in_flight is not None:
                in_flight.cancel(_CANCELLED_BY_CLIENT)
        elif method == "notifications/initialized":
            self.state.initialized_notified = True
        elif method == "notifications/roots/list_changed":
            if self._roots is None:
                from ._roots import RootsWatch  # only sessions whose client changes its roots pay for it

                self._roots = RootsWatch(self)
            if self._requests is not None:
                self._roots.changed(self._requests, note.params)  # @server.on_roots_changed (``_roots``)
        elif method in self.supervisor.registry.methods and self._accepting and self._requests is not None:
            # A custom method's notification: through the kernel (admission, middleware), no reply.
            decision = decide_era(method, note.params, in_session=self.state.client is not None)
            self._requests.start_soon(_kernel.notify, self, InFlight(None, method, note.params, decision if decision.error is None else None))
        # Other notifications (progress on our requests, unknown ones) need no action.

    def _route_reply(self, reply: Response | ErrorResponse) -> None:
        pending = self._pending.get(reply.id) if reply.id is not None else None
        if pending is None:
            logger.debug("dropping a response to unknown request id %r", reply.id)
            return
        pending.reply = reply
        pending.done.set()

    # -- dispatcher -------------------------------------------------------------------------
    async def _dispatcher(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the session tasks' nursery (the first leader is ``run``'s own task); when input
        ends, give in-flight requests the grace period."""
        async with trio.open_nursery() as requests:
            self._requests = requests
            self._base_context = contextvars.copy_context()
            task_status.started()  # the connection's own task leads first (``run``)
            try:
                await self._input_done.wait()
            except trio.Cancelled:
                # A hard stop (no graceful shutdown): nothing new may start in a nursery
                # about to close.
                self._accepting = False
                raise
            while self._parked:  # parked tasks end; busy ones end after their request
                trio.lowlevel.reschedule(self._parked.pop().task, Value(False))
            if self._running:
                self._drained = trio.Event()
                with trio.move_on_after(self.limits.grace_period):
                    await self._drained.wait()
                for in_flight in list(self._running.values()):
                    in_flight.cancel(_CANCELLED_BY_SHUTDOWN)

    async def _run(self, in_flight: InFlight, me: _SessionTask) -> None:
        """Run a request in ``me`` (leading): to its end if it never waits, else ``me`` hands
        the reading over when it first does and goes on with the request alone.

        Taking the slot is synchronous when one is free; when all are taken the leader waits
        here, so a flooding client stalls only its own reading.
        """
        request_id = in_flight.id
        self._running[request_id] = in_flight
        if not await self._take_slot(in_flight):
            return
        in_flight.scope = me.scope
        context = contextvars.copy_context()
        context.run(request_id_var.set, request_id)
        started = time.perf_counter()
        me.busy = True
        try:
            try:
                reply: Message | None = await _run_until_it_waits(_kernel.answer(self, in_flight),
                                                                  lambda: self._hand_over(me), context)
            except trio.Cancelled:
                if in_flight.reason is None:
                    raise  # not this request's cancellation: the connection is going away
                # Its own (its task's scope): answered (shutdown) or not (the client asked),
                # then the cancellation goes on to the scope, which ends this task.
                await self._settle(in_flight, None, started, shield=True)
                raise
            await self._settle(in_flight, reply, started, inline=me.leading)
        finally:
            me.busy = False
            self._done(in_flight)

    async def _take_slot(self, in_flight: InFlight) -> bool:
        """Take an in-flight slot for ``in_flight`` (registered in ``_running``): at once when
        one is free; else the reading waits here, so a flooding client stalls only its own
        reading. False when there will be none (a hard stop): it is then gone from ``_running``."""
        try:
            self._slots.acquire_nowait()
        except trio.WouldBlock:
            self._flush_unsent()  # what was answered already must not wait for a slot too
            try:
                await self._slots.acquire()
            except trio.Cancelled:
                # Shutdown stopped the reading while this request waited: it was read, so it
                # is still answered (with the shutdown error) rather than silently dropped.
                del self._running[in_flight.id]
                in_flight.reason = _CANCELLED_BY_SHUTDOWN
                await self._settle(in_flight, None, time.perf_counter(), shield=True)
                raise
        in_flight.holds_slot = True
        return True

    def _done(self, in_flight: InFlight) -> None:
        in_flight.scope = None  # done: a late cancellation of it must not reach the next one
        if in_flight.holds_slot:
            self._slots.release()
        del self._running[in_flight.id]
        if self._drained is not None and not self._running:
            self._drained.set()

    async def _settle(self, in_flight: InFlight, reply: Message | None, started: float, *, shield: bool = False,
                      inline: bool = False) -> None:
        """Count the request and hand its one reply to the writer (none when the client
        cancelled it; the shutdown error when shutdown did). ``inline``: the leader answered
        it without waiting; the reply joins ``_unsent``."""
        reason = in_flight.reason
        if reason is not None:
            if reason == _CANCELLED_BY_CLIENT:
                self._metrics.observe(in_flight.method, "cancelled", time.perf_counter() - started)
                if in_flight.batch is not None:  # its batch's other replies still go out
                    await self._send_batch(in_flight.batch.add(None), shield)
                return  # the client asked; the spec says not to answer
            reply = ErrorResponse(in_flight.id, error_object(ShuttingDown("server shutting down: request cancelled after the grace period")))
            self._metrics.observe(in_flight.method, "shutdown", time.perf_counter() - started)
        else:
            self._metrics.observe(in_flight.method, "ok" if type(reply) is Response else "error", time.perf_counter() - started)
        if in_flight.batch is not None:  # a batch's request: its reply goes out with the others
            await self._send_batch(in_flight.batch.add(reply), shield)
            return
        item = (reply, in_flight.id)
        if inline:
            unsent = self._unsent
            unsent.append(item)  # type: ignore[arg-type]
            if len(unsent) >= _MAX_BATCH:
                await self._unsent_to_writer()
            return
        try:
            try:
                # The writer's queue has room for every in-flight reply: no trip through the
                # scheduler (the writer runs once for the whole burst).
                self._out_send.send_nowait(item)  # type: ignore[arg-type]
            except trio.WouldBlock:
                # Shielded only when already cancelled: the writer's own deadline bounds it.
                with trio.CancelScope(shield=shield):
                    await self._out_send.send(item)  # type: ignore[arg-type]
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            logger.debug("peer gone before its answer could be sent")

    async def _send_batch(self, reply: BatchReply | None, shield: bool) -> None:
        if reply is None:
            return
        try:
            with trio.CancelScope(shield=shield):
                await self._out_send.send((reply, None))  # type: ignore[arg-type]
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            logger.debug("peer gone before its batch's answer could be sent")

    # -- writer -----------------------------------------------------------------------------
    async def _writer(self, out_recv: trio.MemoryReceiveChannel[Outgoing]) -> None:
        """Encode and send everything, in order; the only task that writes to the channel.

        Whatever is already waiting is encoded and written together (``send_batch`` when the
        transport has it), so pipelined answers cost one write, not one each.
        """
        timeout = self.limits.send_timeout
        send_related = getattr(self.channel, "send_related", None)
        send_batch = getattr(self.channel, "send_batch", None)
        # One scope for the writer's life, shielded and given a deadline only while a write
        # is under way: a frame is never half-written, and a peer that stops reading for
        # ``send_timeout`` is closed. (A scope per write costs a measurable share per request.)
        flush = getattr(self.channel, "flush", None)
        try:
            with out_recv, trio.CancelScope() as writing:
                ended = False
                while not ended:
                    flushing = False
                    if self._unsent:
                        batch: list[Outgoing] = []
                    else:
                        self._writer_idle = True
                        try:
                            item = await out_recv.receive()
                        except trio.EndOfChannel:
                            ended = True
                            batch = []
                        else:
                            # _FLUSH is sent only to an idle writer: it comes first.
                            batch = [] if item[0] is _FLUSH or item[0] is _WAKE else [item]
                            flushing = item[0] is _FLUSH
                        finally:
                            self._writer_idle = False
                    while not ended and len(batch) < _MAX_BATCH:
                        try:
                            item = out_recv.receive_nowait()
                        except trio.WouldBlock:
                            break
                        except trio.EndOfChannel:
                            ended = True
                            break
                        if item[0] is not _WAKE:
                            batch.append(item)
                    if self._unsent:  # the leader's replies, after what was queued before them
                        batch += self._unsent
                        self._unsent.clear()
                        if self._unsent_taken is not None:
                            self._unsent_taken.set()
                            self._unsent_taken = None
                    if len(batch) > self._peak_buffer_used:
                        self._peak_buffer_used = len(batch)
                    if not batch and not flushing:
                        continue
                    batch, frames = self._frames(batch)
                    writing.shield = True
                    writing.deadline = trio.current_time() + timeout
                    if flushing and flush is not None:
                        await flush()
                    if send_related is not None:
                        for (message, related), frame in zip(batch, frames):
                            await send_related(frame, related, type(message) in _FINAL, _error_of(message))
                    elif send_batch is not None:
                        if frames:
                            await send_batch(frames)
                    else:
                        for frame in frames:
                            await self.channel.send(frame)
                    writing.deadline = math.inf
                    writing.shield = False
                    # An idle session keeps nothing of what it last wrote while it waits (not
                    # even an empty list: the next one is made once there is something to write).
                    batch = frames = item = message = frame = None  # type: ignore[assignment]
            if writing.cancelled_caught:
                logger.warning("peer did not read for %.1f s; closing the connection", timeout)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            logger.debug("peer gone; writer stops")
        finally:
            self._writer_gone = True
            self._unsent = []
            if self._unsent_taken is not None:
                self._unsent_taken.set()
            self.stop_reading()
            with trio.CancelScope(shield=True):
                await self.channel.aclose()

    def _frames(self, batch: list[Outgoing]) -> tuple[list[Outgoing], list[bytes]]:
        """``batch`` encoded (``_encodable`` when one of its messages cannot be)."""
        encode = self.codec.encode
        try:
            return batch, [encode(message) for message, _ in batch]
        except (TypeError, ValueError, OverflowError):  # UnicodeEncodeError is a ValueError
            return self._encodable(batch)

    def _encodable(self, batch: list[Outgoing]) -> tuple[list[Outgoing], list[bytes]]:
        """``batch`` and its frames, each message that cannot be encoded replaced (or dropped).

        A user function can return text JSON cannot carry: a lone surrogate, which
        ``os.listdir``, ``os.environ`` and ``errors="surrogateescape"`` decoding produce, or
        an object msgspec does not know. Its request is refused, not the session: a tool's
        reply becomes an ``isError`` result the model can read, any other reply ``-32603``,
        both saying what was wrong; a notification is dropped with a warning. Nothing of the
        offending text is sent (the slow path: taken only after a batch failed to encode).
        """
        encode = self.codec.encode
        kept: list[Outgoing] = []
        frames: list[bytes] = []
        for message, related in batch:
            try:
                frames.append(encode(message))
            except (TypeError, ValueError, OverflowError) as exc:
                replacement = unsendable_reply(message, exc)
                if replacement is None:
                    logger.warning("%s not sent: %s", getattr(message, "method", "a message"), unsendable_reason(exc))
                    continue
                logger.warning("the reply to request %r was refused: %s", getattr(message, "id", None), unsendable_reason(exc))
                frames.append(encode(replacement))
                message = replacement
            kept.append((message, related))
        return kept, frames

    # -- used by handlers and Context -------------------------------------------------------
    async def notify(self, method: str, params: Any = None) -> None:
        """Send a notification to the client (from a request task)."""
        await self._out_send.send((Notification(method, params), request_id_var.get()))

    def post_notification(self, method: str, params: Any = None, *, key: str = "") -> None:
        """Queue a server-initiated notification without waiting (for the supervisor).

        Repeats of the same (method, key) while one is still queued are coalesced: a slow
        client costs one pending task per kind of change, not one per change.
        """
        if self._side_nursery is None or not self.state.client:
            return
        tag = (method, key)
        posted = self._posted
        if posted is None:
            posted = self._posted = set()
        elif tag in posted:
            return
        posted.add(tag)
        self._side_nursery.start_soon(self._deliver_posted, tag, Notification(method, params))

    async def _deliver_posted(self, tag: tuple[str, str], note: Notification) -> None:
        posted = self._posted
        if posted is not None:
            posted.discard(tag)
            if not posted:
                self._posted = None  # an idle session keeps no empty set
        try:
            await self._out_send.send((note, None))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            logger.debug("connection closed before %s was sent", note.method)

    async def request(self, method: str, params: Any, result_type: type, *, in_flight: InFlight | None = None) -> Any:
        """Send a request to the client and wait for its answer (sampling, elicitation, roots).

        While waiting, the calling request gives back its in-flight slot: it is parked on the
        client, and the client's answer must not queue behind a reader stalled on a full
        dispatcher.
        """
        if self._client_request_slots is None:
            self._client_request_slots = trio.Semaphore(self.limits.max_client_requests)
        async with self._client_request_slots:
            self._next_request_id += 1
            request_id = self._next_request_id
            pending = _Pending()
            self._pending[request_id] = pending
            released = in_flight is not None and in_flight.holds_slot
            if released:
                self._slots.release()
                in_flight.holds_slot = False  # type: ignore[union-attr]
            try:
                # Encoded here, so a question the client cannot be sent (text with a lone
                # surrogate) fails the tool that asks it, not the session's writer.
                encoded = msgspec.Raw(self.encoder.encode(params)) if params is not None else None
                await self._out_send.send((Request(request_id, method, encoded), request_id_var.get()))
                with trio.move_on_after(self.limits.client_request_timeout) as waited:
                    await pending.done.wait()
                if waited.cancelled_caught:
                    await self._cancel_client_request(request_id, "timed out")
                    raise RequestTimeout(f"the client did not answer {method} within {self.limits.client_request_timeout:g} s")
            except trio.Cancelled:
                with trio.CancelScope(shield=True, deadline=trio.current_time() + 1.0):
                    await self._cancel_client_request(request_id, "request cancelled")
                raise
            finally:
                del self._pending[request_id]
                if released:
                    await self._slots.acquire()
                    in_flight.holds_slot = True  # type: ignore[union-attr]
        reply = pending.reply
        if reply is None:
            raise PeerError(f"the connection closed before the client answered {method}")
        if isinstance(reply, ErrorResponse):
            raise PeerError(f"the client refused {method}: {reply.error.message}", reply.error.data, code=reply.error.code)
        return decode_result(reply.result, result_type, method)

    async def _cancel_client_request(self, request_id: int, reason: str) -> None:
        try:
            await self._out_send.send((Notification("notifications/cancelled", {"requestId": request_id, "reason": reason}), request_id_var.get()))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            logger.debug("peer gone; no need to cancel request %d", request_id)

    def statistics(self) -> dict[str, int]:
        return {
            "in_flight": len(self._running),
            "client_requests_pending": len(self._pending),
            "slots_free": self._slots.value,
            # Most messages the writer found queued at once (what sizes ``_WRITER_SLACK``).
            "peak_buffer_used": self._peak_buffer_used,
            "parked_tasks": len(self._parked),
        }
