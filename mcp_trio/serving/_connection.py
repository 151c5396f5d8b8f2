"""One MCP session on one transport channel: a nursery of reader, dispatcher and writer.

::

    channel ─► reader ─► dispatcher ─┬─► request task ─┐
                 │                   └─► request task ─┼─► writer ─► channel
                 └─ responses to our own requests, cancellations: routed at once

* The reader decodes, answers malformed input itself, handles ``initialize`` in order (so a
  pipelined request after it sees the new phase), routes responses to our own requests and
  ``notifications/cancelled`` at once, and hands requests to the dispatcher.
* The dispatcher takes a slot (``max_in_flight``) before it starts a request task, so a
  flooding client stalls its own reader, nobody else.
* Request tasks run the answer kernel (``_kernel.answer``): one reply per request.
* The writer is the only task that sends; a frame is never half-written (the write is
  shielded, bounded by ``send_timeout``).

Shutdown cascades: EOF or ``stop_reading`` ends the reader; the dispatcher lets in-flight
requests finish within the grace period, then cancels them, each still answered; then the
writer drains and closes the channel.
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING, Any

import msgspec
import trio

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
#: Messages that end their request's exchange (the transport may close its stream after one).
_FINAL = frozenset({Response, ErrorResponse, Malformed})

#: What the writer gets: a message and the id of the client request it belongs to (its reply,
#: or a notification or request sent while serving it), or None for server-initiated ones.
Outgoing = tuple[Message | Malformed, RequestId | None]


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


class Connection:
    """One session: the actors, the session state and the maps between them."""

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
        self.subscriptions: set[str] = set()
        self._running: dict[RequestId, InFlight] = {}
        self._pending: dict[RequestId, _Pending] = {}
        self._next_request_id = first_request_id
        self._slots = trio.Semaphore(self.limits.max_in_flight)
        self._client_request_slots: trio.Semaphore | None = None  # made on the first request to the client
        self._reader_scope = trio.CancelScope()
        self._input_done = trio.Event()
        self._accepting = True
        self._drained: trio.Event | None = None
        self._out_send, self._out_recv = trio.open_memory_channel[Outgoing](0)
        self._side_nursery: trio.Nursery | None = None
        self._posted: set[tuple[str, str]] = set()
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
                        requests: trio.Nursery = await side.start(self._dispatcher)
                        try:
                            await self._reader(requests)
                        finally:
                            self._input_done.set()
                    self._side_nursery = None
        finally:
            self.supervisor.detach(self)
            for pending in self._pending.values():
                pending.done.set()

    def stop_reading(self) -> None:
        """Stop taking new messages; what is in flight still finishes (graceful shutdown)."""
        self._reader_scope.cancel()

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

    # -- reader -----------------------------------------------------------------------------
    async def _reader(self, requests: trio.Nursery) -> None:
        with self._reader_scope:
            try:
                await self._read_loop(requests)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                logger.debug("writer gone; reader stops")

    async def _read_loop(self, requests: trio.Nursery) -> None:
        decode = self.codec.decode
        receive = self.channel.receive
        out = self._out_send
        while True:
            try:
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
                await self._accept_request(message, requests)
            elif type(message) is Notification:
                self._on_notification(message, requests)
            elif type(message) is Malformed:
                if type(message.error) is BatchRefused:  # a JSON-RPC batch (``_batch``)
                    await self._read_batch(data, requests)
                else:
                    await out.send((message, message.id))
            else:
                self._route_reply(message)  # type: ignore[arg-type]

    async def _accept_request(self, request: Request, requests: trio.Nursery) -> None:
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
            await self._dispatch(request, requests, decision)
            return
        try:
            self.state.check_request(request.method)
        except McpError as exc:
            await out.send((ErrorResponse(request.id, error_object(exc)), request.id))
            return
        await self._dispatch(request, requests)

    async def _read_batch(self, data: bytes, requests: trio.Nursery) -> None:
        """A JSON-RPC batch: each message handled as if alone, the replies to its requests sent
        together (``_batch``); refused whole where the session's revision has no batches."""
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
                    await self._dispatch(message, requests, batch=batch)  # type: ignore[arg-type]
            elif kind is Notification:
                self._on_notification(message, requests)  # type: ignore[arg-type]
            elif kind is Malformed:
                batch.answer_now(message)
            else:
                self._route_reply(message)  # type: ignore[arg-type]
        reply = batch.seal()
        if reply is not None:
            await out.send((reply, None))  # type: ignore[arg-type]

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

    def _on_notification(self, note: Notification, requests: trio.Nursery) -> None:
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
            self._roots.changed(requests, note.params)  # @server.on_roots_changed (``_roots``)
        elif method in self.supervisor.registry.methods and self._accepting:
            # A custom method's notification: through the kernel (admission, middleware), no reply.
            decision = decide_era(method, note.params, in_session=self.state.client is not None)
            requests.start_soon(_kernel.notify, self, InFlight(None, method, note.params, decision if decision.error is None else None))
        # Other notifications (progress on our requests, unknown ones) need no action.

    def _route_reply(self, reply: Response | ErrorResponse) -> None:
        pending = self._pending.get(reply.id) if reply.id is not None else None
        if pending is None:
            logger.debug("dropping a response to unknown request id %r", reply.id)
            return
        pending.reply = reply
        pending.done.set()

    # -- dispatcher -------------------------------------------------------------------------
    async def _dispatcher(self, *, task_status: trio.TaskStatus[trio.Nursery] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the request nursery; when input ends, give in-flight requests the grace period."""
        async with trio.open_nursery() as requests:
            task_status.started(requests)
            try:
                await self._input_done.wait()
            except trio.Cancelled:
                # A hard stop (no graceful shutdown): the reader may still hold a request it
                # read before noticing; it must not start it in a nursery about to close.
                self._accepting = False
                raise
            if self._running:
                self._drained = trio.Event()
                with trio.move_on_after(self.limits.grace_period):
                    await self._drained.wait()
                for in_flight in list(self._running.values()):
                    in_flight.cancel(_CANCELLED_BY_SHUTDOWN)

    async def _dispatch(self, request: Request, requests: trio.Nursery, decision: EraDecision | None = None,
                        batch: BatchReplies | None = None) -> None:
        """Take an in-flight slot, then start the request's task (called by the reader).

        Taking the slot is synchronous when one is free (no extra trip through the scheduler
        on the hot path); when all are taken the reader waits here, so a flooding client
        stalls only its own reader.
        """
        if not self._accepting:
            logger.debug("hard stop: request %r read but not started", request.id)
            return
        in_flight = InFlight(request.id, request.method, request.params, decision)
        in_flight.batch = batch
        self._running[request.id] = in_flight
        try:
            self._slots.acquire_nowait()
        except trio.WouldBlock:
            try:
                await self._slots.acquire()
            except trio.Cancelled:
                # Shutdown stopped the reader while this request waited: it was read, so it
                # is still answered (with the shutdown error) rather than silently dropped.
                in_flight.cancel(_CANCELLED_BY_SHUTDOWN)
                if self._accepting:
                    requests.start_soon(self._run_request, request, in_flight)
                else:
                    del self._running[request.id]
                raise
        in_flight.holds_slot = True
        requests.start_soon(self._run_request, request, in_flight)

    async def _run_request(self, request: Request, in_flight: InFlight) -> None:
        request_id_var.set(request.id)
        started = time.perf_counter()
        try:
            with in_flight.scope:
                reply = await _kernel.answer(self, in_flight)
            if in_flight.scope.cancelled_caught or in_flight.reason is not None:
                if in_flight.reason == _CANCELLED_BY_CLIENT:
                    self._metrics.observe(request.method, "cancelled", time.perf_counter() - started)
                    if in_flight.batch is not None:  # its batch's other replies still go out
                        await self._send_batch(in_flight.batch.add(None))
                    return  # the client asked; the spec says not to answer
                reply = ErrorResponse(request.id, error_object(ShuttingDown("server shutting down: request cancelled after the grace period")))
                self._metrics.observe(request.method, "shutdown", time.perf_counter() - started)
            else:
                self._metrics.observe(request.method, "ok" if type(reply) is Response else "error", time.perf_counter() - started)
            if in_flight.batch is not None:  # a batch's request: its reply goes out with the others
                await self._send_batch(in_flight.batch.add(reply))
                return
            try:
                try:
                    # The writer is usually waiting: hand over without a trip through the
                    # scheduler (the task ends right after, so it has nothing to yield for).
                    self._out_send.send_nowait((reply, request.id))
                except trio.WouldBlock:
                    await self._out_send.send((reply, request.id))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                logger.debug("peer gone before its answer could be sent")
        finally:
            if in_flight.holds_slot:
                self._slots.release()
            del self._running[request.id]
            if self._drained is not None and not self._running:
                self._drained.set()

    async def _send_batch(self, reply: BatchReply | None) -> None:
        if reply is None:
            return
        try:
            await self._out_send.send((reply, None))  # type: ignore[arg-type]
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            logger.debug("peer gone before its batch's answer could be sent")

    # -- writer -----------------------------------------------------------------------------
    async def _writer(self, out_recv: trio.MemoryReceiveChannel[Outgoing]) -> None:
        """Encode and send everything, in order; the only task that writes to the channel.

        Whatever is already waiting is encoded and written together (``send_batch`` when the
        transport has it), so pipelined answers cost one write, not one each.
        """
        encode = self.codec.encode
        timeout = self.limits.send_timeout
        send_related = getattr(self.channel, "send_related", None)
        send_batch = getattr(self.channel, "send_batch", None)
        # One scope for the writer's life, shielded and given a deadline only while a write
        # is under way: a frame is never half-written, and a peer that stops reading for
        # ``send_timeout`` is closed. (A scope per write costs a measurable share per request.)
        try:
            with out_recv, trio.CancelScope() as writing:
                ended = False
                while not ended:
                    try:
                        batch = [await out_recv.receive()]
                    except trio.EndOfChannel:
                        break
                    while len(batch) < _MAX_BATCH:
                        try:
                            batch.append(out_recv.receive_nowait())
                        except trio.WouldBlock:
                            break
                        except trio.EndOfChannel:
                            ended = True
                            break
                    try:
                        frames = [encode(message) for message, _ in batch]
                    except (TypeError, ValueError, OverflowError):  # UnicodeEncodeError is a ValueError
                        batch, frames = self._encodable(batch)
                    writing.shield = True
                    writing.deadline = trio.current_time() + timeout
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
                    # An idle session keeps nothing of what it last wrote while it waits.
                    batch = frames = []  # type: ignore[assignment]
                    message = frame = None  # type: ignore[assignment]
            if writing.cancelled_caught:
                logger.warning("peer did not read for %.1f s; closing the connection", timeout)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            logger.debug("peer gone; writer stops")
        finally:
            self._reader_scope.cancel()
            with trio.CancelScope(shield=True):
                await self.channel.aclose()

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
        if tag in self._posted:
            return
        self._posted.add(tag)
        self._side_nursery.start_soon(self._deliver_posted, tag, Notification(method, params))

    async def _deliver_posted(self, tag: tuple[str, str], note: Notification) -> None:
        self._posted.discard(tag)
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
        }
