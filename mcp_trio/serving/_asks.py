"""How a request's questions to its client are answered: one "asks" object per request, per era.

``Context.elicit``, ``sample``, ``list_roots`` and ``gather`` ask the client something; what
that means depends on the request's era, decided once when the request arrived:

* ``SessionAsks`` (handshake era): a real request to the client over the session, answered
  while the tool waits; a missing capability is ``-32601`` (raised in the tool);
* ``ReplayAsks`` (stateless era): the answer recorded in this round's ``inputResponses`` or
  ``requestState`` (``_replay``), else ``InputRequired`` ends the round; in a task, the ask
  waits for ``tasks/update``; a missing capability is ``-32021``, the request's error.

``Context`` holds one and never tests the era itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, MutableMapping
from typing import Any, TypeVar

import trio

from ..protocol._errors import METHOD_NOT_FOUND, InternalError, MissingClientCapability, NoSessionError
from ..protocol._session import ClientProfile
from ._peer import Peer
from ._replay import InputRequired, ProtocolEscape, decode_answer, gather
from ._request import InFlight

T = TypeVar("T")


async def gather_live(*asks: Awaitable[T]) -> list[T]:
    """Await asks concurrently; their results in order; the first failure raised as itself."""
    results: list[Any] = [None] * len(asks)

    async def run(index: int, ask: Awaitable[T]) -> None:
        results[index] = await ask

    try:
        async with trio.open_nursery() as nursery:
            for index, ask in enumerate(asks):
                nursery.start_soon(run, index, ask)
    except BaseExceptionGroup as group:
        if group.subgroup(trio.Cancelled) is not None:
            raise
        first = group.exceptions[0]
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None
    return results


class SessionAsks:
    """Handshake era: asks are requests to the client over its session."""

    __slots__ = ("_peer", "_call", "_client")

    resumed = False

    def __init__(self, peer: Peer, call: InFlight | None, client: ClientProfile | None) -> None:
        self._peer = peer
        self._call = call
        self._client = client

    def wants_log(self, level: str) -> bool:
        return self._peer.state.wants_log(level)

    def require(self, capability: str) -> None:
        client = self._client
        if client is None or not client.supports(capability):
            raise MissingClientCapability(f"the client did not declare the {capability!r} capability", code=METHOD_NOT_FOUND)

    async def ask(self, key: str | None, kind: str, method: str, params: Any, result_type: type[T]) -> T:
        tracing = self._peer.supervisor.tracing
        if tracing is not None:  # a CLIENT span around the round trip, its context in params._meta
            return await tracing.client_request(method, params, lambda sent: self._peer.request(
                method, sent, result_type, in_flight=self._call))  # type: ignore[no-any-return]
        return await self._peer.request(method, params, result_type, in_flight=self._call)

    async def gather(self, *asks: Awaitable[Any]) -> list[Any]:
        return await gather_live(*asks)

    def run_as_task(self) -> bool:
        return False

    def session_state(self) -> MutableMapping[str, Any]:
        return self._peer.session_state


class ReplayAsks:
    """Stateless era: asks are answered from the request's own answers (or, in a task, waited
    for); an unanswered one ends the round with ``InputRequired``."""

    __slots__ = ("_peer", "_call")

    def __init__(self, peer: Peer, call: InFlight) -> None:
        self._peer = peer
        self._call = call

    @property
    def resumed(self) -> bool:
        inputs = self._call.inputs
        return inputs is not None and inputs.resumed

    def wants_log(self, level: str) -> bool:
        envelope = self._call.envelope
        return envelope is not None and envelope.wants_log(level)

    def require(self, capability: str) -> None:
        """``-32021`` out of the tool when the request did not declare ``capability``."""
        envelope = self._call.envelope
        if envelope is None or not envelope.profile.supports(capability):
            raise ProtocolEscape(MissingClientCapability(
                f"this request needs the client capability {capability!r}, which its "
                f"params._meta['io.modelcontextprotocol/clientCapabilities'] does not declare",
                {"requiredCapabilities": {capability: {}}}))

    async def ask(self, key: str | None, kind: str, method: str, params: Any, result_type: type[T]) -> T:
        """The answer to one ask: replayed, or (in a task) waited for; else ``InputRequired``."""
        call = self._call
        inputs = call.inputs
        if inputs is None:
            raise ProtocolEscape(InternalError(f"{method} is not available while serving {call.method}"))
        key = key or inputs.next_key(kind)
        try:
            return inputs.answer(key, method, params, result_type)
        except InputRequired as required:
            task = call.task
            if task is None or not task.escalated.is_set():
                raise
            response = await task.ask(key, required.requests[key][1])
        return decode_answer(response, key, method, result_type)

    async def gather(self, *asks: Awaitable[Any]) -> list[Any]:
        if self._call.escalated:
            return await gather_live(*asks)
        return await gather(*asks)

    def run_as_task(self) -> bool:
        return self._peer.supervisor.stateless.tasks.escalate(self._call, self._peer)

    def session_state(self) -> MutableMapping[str, Any]:
        """There is no session in protocol revision 2026-07-28: nothing to keep state in."""
        raise NoSessionError(
            f"ctx.session_state: this {self._call.method} request is protocol revision 2026-07-28, which has no "
            "session to keep state in; keep it in a store of your own (ctx.lifespan) keyed by what the client sends")
