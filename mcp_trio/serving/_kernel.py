"""The answer kernel: every request, either era, any transport, task or not, takes this path.

::

    envelope ─► admission ─► middleware ─► handler ─► one reply
    (the era     (_admission:  (offer.       (_handlers,    (Response, or ErrorResponse
     decision,    cost key,     _middleware:  _stateless,    from _outcome.error_of: the
     params       cap, rate)    the chain)    custom)        one conversion)
     decoded)

The carrier (a connection's request task, a stateless HTTP exchange) has made the in-flight
record (``_request.InFlight``): the era is decided (``protocol._era``) and, for a stateless
request, its params are decoded with its envelope. ``answer`` does the rest and returns the one
reply; ``notify`` runs a custom notification the same way and returns nothing.

What costs nothing when unused: no admission policy is one flag test, no middleware one empty
tuple test (no request view is built), a handshake-era request never touches the stateless side,
no tracing (``mcp_trio._tracing``, an optional extra) one ``is None`` test.
"""

from __future__ import annotations

import logging
from typing import Any

from msgspec import Raw

from .._containment import call_user, is_failure
from ..offer._middleware import run_chain, view_type
from ..offer._registry import MethodDef
from ..offer._results import unsendable_reason, unsendable_reply
from ..protocol._envelope import INPUT_METHODS, STATELESS_METHODS
from ..protocol._errors import InternalError, MethodNotFound
from ..protocol._jsonrpc import ErrorResponse, Message, Response, error_object
from ._admission import cost_key
from ._context import Context
from ._handlers import HANDLERS, Handler
from ._outcome import error_of
from ._peer import Peer
from ._replay import InputRequired, unwrap
from ._request import InFlight
from ._stateless import STATELESS_HANDLERS

logger = logging.getLogger("mcp_trio.requests")


async def answer(peer: Peer, call: InFlight) -> Message:
    """Run one request and convert its outcome to its one reply: the only place."""
    tracing = peer.supervisor.tracing
    if tracing is not None and not tracing.answering(call):  # tracing on: this, inside its span
        return await tracing.answer(peer, call, answer)  # type: ignore[no-any-return]
    try:
        try:
            supervisor = peer.supervisor
            registry = supervisor.registry
            handler = HANDLERS.get(call.method) if call.envelope is None else None
            if handler is None:
                handler = _handler(call, registry.methods)
            if call.params is None:
                call.decode()
            if call.envelope is not None and call.method in INPUT_METHODS:
                call.inputs = supervisor.stateless.open_inputs(peer, call)
            if supervisor.admission.active or registry.middleware:
                result = await _admitted(peer, call, handler)
            else:  # no policy, no middleware: two tests on the hot path
                result = await handler(peer, call)
        except BaseExceptionGroup as group:
            raise unwrap(group) from None
        if call.envelope is None:
            return Response(call.id, result)
        return _stamped(peer, call, result)
    except InputRequired as required:
        return Response(call.id, peer.supervisor.stateless.input_required(peer, call, required))
    except BaseException as exc:
        return ErrorResponse(call.id, error_of(exc, call.method, stateless=call.envelope is not None))


async def notify(peer: Peer, call: InFlight) -> bool:
    """Run a notification of a custom method (``@server.method``) through admission and
    middleware; nothing is answered, failures are logged. False when no custom method has
    its name (the caller then ignores it, as JSON-RPC says)."""
    methods = peer.supervisor.registry.methods
    if call.method not in methods:
        return False
    try:
        handler = _handler(call, methods)
        await _admitted(peer, call, handler)
    except BaseException as exc:
        if not is_failure(exc):
            raise
        logger.debug("notification %s failed", call.method, exc_info=exc)
    return True


async def _admitted(peer: Peer, call: InFlight, handler: Handler) -> Any:
    """admission ─► middleware ─► handler, for a server with a policy or middleware."""
    supervisor = peer.supervisor
    admission = supervisor.admission
    tracing = supervisor.tracing
    chain = supervisor.registry.middleware
    if tracing is not None and chain:
        chain = tracing.middleware(chain)  # each middleware in a span of its own
    if not admission.active:
        return await _through(chain, peer, call, handler)
    tool = cost_key(call.method, call.params)
    if tracing is not None:
        await tracing.admit(admission, peer, call.method, tool)
    elif admission.shared is None:
        admission.enter(peer, call.method, tool)
    else:
        await admission.admit(peer, call.method, tool)
    try:
        return await _through(chain, peer, call, handler)
    finally:
        admission.leave()


async def _through(chain: tuple[Any, ...], peer: Peer, call: InFlight, handler: Handler) -> Any:
    if not chain:  # no middleware: no view, no chain
        return await handler(peer, call)
    envelope = call.envelope
    view = view_type(call.method, call.method in peer.supervisor.registry.methods)(
        call.method, call.id, call.params, peer.principal, peer.session_id, envelope is not None,
        peer.state.client if envelope is None else envelope.profile)
    return await run_chain(chain, view, handler, peer, call)


def _handler(call: InFlight, methods: Any) -> Handler:
    """The handler of ``call``'s method in its era (custom methods in both); -32601 if none.
    A custom method's params are decoded here, into its own type."""
    method = call.method
    if call.envelope is None:
        handler = HANDLERS.get(method)
    else:
        handler = STATELESS_HANDLERS.get(method) or (HANDLERS.get(method) if method in STATELESS_METHODS else None)
    if handler is not None:
        return handler
    custom: MethodDef | None = methods.get(method)
    if custom is not None:
        if call.params is None:
            call.params = custom.decode(call.raw)
        return _custom
    if call.envelope is None:
        raise MethodNotFound(f"method not found: {method!r}")
    raise MethodNotFound(f"method not found: {method!r} (not part of protocol revision 2026-07-28)", {"method": method})


async def _custom(peer: Peer, call: InFlight) -> Any:
    """A custom method's handler: its function, with the params (and the Context) it takes."""
    definition: MethodDef = peer.supervisor.registry.methods[call.method]
    kwargs: dict[str, Any] = {}
    if definition.params_param is not None:
        kwargs[definition.params_param] = call.params
    if definition.context_param is not None:
        kwargs[definition.context_param] = Context.for_request(peer, call, None)
    return await call_user(definition.fn, definition.is_async, kwargs)


def _stamped(peer: Peer, call: InFlight, result: Any) -> Message:
    """A stateless result: encoded once, with the fields every 2026-07-28 result carries."""
    if type(result) is Raw:
        return Response(call.id, result)
    try:
        encoded = peer.encoder.encode(result)
    except (TypeError, ValueError, OverflowError) as exc:  # text with a lone surrogate, say
        logger.warning("the reply to %s was refused: %s", call.method, unsendable_reason(exc))
        replacement = unsendable_reply(Response(call.id, result), exc)
        if type(replacement) is not Response:
            return replacement  # type: ignore[return-value]
        encoded = peer.encoder.encode(replacement.result)  # type: ignore[union-attr]
    if not encoded.startswith(b"{"):
        error = InternalError(f"the result of {call.method} is not a JSON object, which protocol revision 2026-07-28 requires")
        return ErrorResponse(call.id, error_object(error))
    side = peer.supervisor.stateless
    return Response(call.id, side.stamp.stamp(call.method, encoded, side.scope(peer, call.method)))
