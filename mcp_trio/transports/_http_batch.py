"""A JSON-RPC batch POSTed to a Streamable HTTP session of protocol revision 2025-03-26.

2025-03-26 lets a POST body be an array of requests, notifications and responses. Here each
message goes to the session's connection as if it had been POSTed alone (each request gets its
own stream, as ``_http_app.py`` gives one POST), and the answer to the POST carries all of their
replies:

* only notifications and responses: ``202 Accepted``, no body;
* requests, each answered with nothing before its reply: one ``application/json`` array of
  the replies (a malformed element's error among them);
* anything else (progress, logs, a sampling request sent while a tool runs): an SSE stream
  carrying every message of every request of the batch as it comes, ending when the last
  request has its reply. 2025-03-26 clients do not resume streams, so it has no event ids to
  resume from beyond the streams' own.

``initialize`` may not be in a batch; a session of any other revision, or a batch past
``Limits.max_batch_size``, is refused whole with 400 before any of it runs (``serving._batch``
says the same for stdio and WebSocket).
"""

from __future__ import annotations

import trio

from ..protocol._errors import INVALID_REQUEST, SHUTTING_DOWN, InvalidRequest
from ..protocol._jsonrpc import Malformed, MessageCodec, Notification, Request, RequestId
from ..protocol._params import cancelled_request_id
from ..protocol._versions import BATCH_VERSIONS
from ._http_common import SSE_HEADERS, Refused, respond_json, watch_disconnect
from ._http_session import HttpSession, _Stream
from .h1 import Responder

_codec = MessageCodec()


async def post_batch(session: HttpSession, body: bytes, max_items: int, shutting_down: bool, responder: Responder) -> None:
    """Answer one POSTed batch on ``session`` (see the module's docstring)."""
    client = session.connection.state.client if session.connection is not None else None
    if client is None or client.protocol_version not in BATCH_VERSIONS:
        negotiated = f"this session negotiated {client.protocol_version}" if client is not None else "no session"
        raise Refused(400, INVALID_REQUEST, f"JSON-RPC batches are part of protocol revision {', '.join(BATCH_VERSIONS)} "
                                            f"only ({negotiated}): send one JSON-RPC object per POST")
    items = _codec.split_batch(body, max_items)
    if isinstance(items, Malformed):
        raise Refused(400, items.error.code, items.error.message)
    if shutting_down:
        raise Refused(503, SHUTTING_DOWN, "server shutting down")
    answered: list[bytes] = []  # replies given here (malformed elements, refused requests)
    streams: list[tuple[RequestId, _Stream]] = []
    deliveries: list[bytes] = []
    for data, message in items:
        if isinstance(message, Malformed):
            answered.append(_codec.encode(message))
            continue
        if type(message) is Request:
            if message.method == "initialize":
                answered.append(_codec.encode(Malformed(message.id, InvalidRequest("initialize may not be part of a JSON-RPC batch"))))
                continue
            stream = session.open_request(message.id)
            if stream is None:
                answered.append(_codec.encode(Malformed(message.id, InvalidRequest(
                    f"duplicate request id {message.id!r}: a request with this id is still in flight"))))
                continue
            streams.append((message.id, stream))
        elif type(message) is Notification and message.method == "notifications/cancelled":
            cancelled = cancelled_request_id(message)
            if cancelled is not None:
                session.abandon(cancelled)
        deliveries.append(data)
    session.begin()
    try:
        try:
            for data in deliveries:
                await session.deliver(data)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            for request_id, _ in streams:
                session.forget_request(request_id)
            raise Refused(404, INVALID_REQUEST, "session not found: the session has ended") from None
        if not streams:
            if answered:
                await respond_json(responder, 200, b"[" + b",".join(answered) + b"]")
            else:
                await responder.respond(202)
            return
        pending = [stream for _, stream in streams]
        while not all(stream.done for stream in pending) and all(_only_final(stream) for stream in pending):
            await _wait_any(pending)
        if all(stream.final and len(stream.events) == 1 for stream in pending):
            replies = answered + [stream.events[0][1] for stream in pending]
            await respond_json(responder, 200, b"[" + b",".join(replies) + b"]")
            return
        await _stream_all(pending, answered, responder)
    finally:
        session.end()


def _only_final(stream: _Stream) -> bool:
    """Nothing but (at most) its final reply has come on ``stream`` so far."""
    return not stream.events or (len(stream.events) == 1 and stream.events[0][2])


async def _wait_any(streams: list[_Stream]) -> None:
    """Until something happens on one of ``streams`` after now (an event, or its end)."""
    async with trio.open_nursery() as nursery:
        for stream in streams:
            if not stream.done:
                nursery.start_soon(_park_then_cancel, stream, stream.seq, nursery.cancel_scope)


async def _park_then_cancel(stream: _Stream, seen: int, scope: trio.CancelScope) -> None:
    # Checked and parked with no checkpoint between: nothing appended meanwhile is missed.
    if stream.seq == seen and not stream.done:
        await stream.lot.park()
    scope.cancel()


async def _stream_all(streams: list[_Stream], answered: list[bytes], responder: Responder) -> None:
    """The batch's answer as one SSE stream: every request's messages as they come."""
    await responder.start(200, SSE_HEADERS, b"".join(b"event: message\ndata: %b\n\n" % reply for reply in answered))
    ended = False
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch_disconnect, responder, nursery.cancel_scope)
        cursors = [0] * len(streams)
        while True:
            chunks = []
            for index, stream in enumerate(streams):
                chunk, cursors[index], _ = stream.render_after(cursors[index])
                chunks.append(chunk)
            data = b"".join(chunks)
            if data:
                await responder.send(data)
            if all(stream.done and cursors[i] >= stream.seq for i, stream in enumerate(streams)):
                break
            await _wait_any([s for i, s in enumerate(streams) if not (s.done and cursors[i] >= s.seq)])
        ended = True
        nursery.cancel_scope.cancel()
    if ended:
        await responder.end()

