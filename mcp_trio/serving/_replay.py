"""Input-required replay: how a stateless (2026-07-28) request's asks are answered.

The same tool code serves both eras::

    name = await ctx.elicit("Your name?", {...})          # handshake era: a request to the client
    answer = await ctx.sample(f"Greet {name.content}")     # 2026-07-28: see below

Under 2026-07-28 a tool runs until it asks for something the request has no answer for. That
ask raises ``InputRequired`` (a ``BaseException``: tool code's ``except Exception`` does not
swallow it); the request is answered with ``InputRequiredResult``: ``inputRequests`` keyed by
the ask's key, and a sealed ``requestState`` holding the answers used so far. The client
answers and retries with ``inputResponses`` and the state; the tool is **run again from the
start**, and each ask finds its answer by key (from the state, or from this round's
``inputResponses``) and returns at once, until the next unanswered one. ``ctx.gather(...)``
asks several at once (one round for all of them).

What this asks of tool code:

* it runs once per round: work done before the last ask is done again. Make it idempotent
  or do it after the asks (ask first, act last);
* the asks must come in the same order with the same questions given the same arguments and
  answers. An ask's default key is its kind and position (``elicitation-1``,
  ``sampling-2``); pass ``key=`` to name it. A recorded answer is only replayed to the same
  question (same method and params, by digest); a changed question is asked again;
* answers are the client's; ``requestState`` only proves which answers the client gave in
  earlier rounds of this request, for this caller, recently (``_request_state``).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar

import msgspec
from msgspec import Raw

from .._request_state import Answer, digest
from ..protocol._errors import InvalidParams, McpError

T = TypeVar("T")
_encode = msgspec.json.encode


class InputRequired(BaseException):
    """A stateless request needs input its client has not given yet (never seen by clients).

    A ``BaseException``, like ``trio.Cancelled``: it must leave the tool whatever the tool
    catches, and the request is answered with ``InputRequiredResult`` from ``requests``.
    """

    #: Per-tool statistics (``_calls.run_tool``) do not count a round as an error.
    counts_as_error = False
    #: Passes through ``_containment`` untouched: the server's own control flow.
    control_flow = True

    def __init__(self, requests: dict[str, tuple[str, dict[str, Any]]]) -> None:
        super().__init__(f"input required: {', '.join(requests)}")
        #: key -> (digest of the question, the input request: {"method", "params"}).
        self.requests = requests


class ProtocolEscape(BaseException):
    """Carries a protocol error (``-32021``) out of tool code, which reports its own failures
    as ``isError`` results: this one is the request's, not the tool's."""

    control_flow = True

    def __init__(self, error: McpError) -> None:
        super().__init__(error.message)
        self.error = error


def unwrap(group: BaseExceptionGroup) -> BaseException:
    """One control-flow exception out of a nursery's group (``InputRequired`` requests merged);
    the group itself, raised again, when anything else is in it."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    for leaf in leaves:
        if not isinstance(leaf, (InputRequired, ProtocolEscape)):
            raise group
    escape = next((leaf for leaf in leaves if isinstance(leaf, ProtocolEscape)), None)
    if escape is not None:
        return escape
    merged: dict[str, tuple[str, dict[str, Any]]] = {}
    for leaf in leaves:
        merged.update(leaf.requests)  # type: ignore[union-attr]
    return InputRequired(merged)


_ANSWER_NAMES = {
    "elicitation/create": "an ElicitResult",
    "sampling/createMessage": "a CreateMessageResult",
    "roots/list": "a ListRootsResult",
}


def decode_answer(response: Raw, key: str, method: str, result_type: type[T]) -> T:
    """A client's answer to one ask as ``result_type``; ``-32602`` (out of the tool) if it is not."""
    try:
        return msgspec.json.decode(response, type=result_type)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ProtocolEscape(InvalidParams(
            f"inputResponses[{key!r}] is not {_ANSWER_NAMES.get(method, 'a valid response')}: {exc}",
            {"inputKey": key})) from None


class InputRound:
    """One run of a stateless request: the answers it may replay and the questions it asked."""

    __slots__ = ("_answers", "_counts", "asked", "used", "resumed")

    def __init__(self, answers: dict[str, tuple[str | None, Raw]], resumed: bool) -> None:
        #: key -> (digest of the question it answered, or None: given unasked, unchecked; response).
        self._answers = answers
        self._counts: dict[str, int] = {}
        #: Asked and unanswered: key -> (digest, input request).
        self.asked: dict[str, tuple[str, dict[str, Any]]] = {}
        #: Answers this run consumed, to seal into the next state.
        self.used: dict[str, Answer] = {}
        #: True when the request carried a verified ``requestState``.
        self.resumed = resumed

    def next_key(self, kind: str) -> str:
        count = self._counts.get(kind, 0) + 1
        self._counts[kind] = count
        return f"{kind}-{count}"

    def answer(self, key: str, method: str, params: Any, result_type: type[T]) -> T:
        """The replayed answer to this question, or ``InputRequired`` for it."""
        body = _encode(params) if params is not None else b"{}"
        question = digest(method.encode(), body)
        found = self._answers.get(key)
        if found is not None and (found[0] is None or found[0] == question):
            result = decode_answer(found[1], key, method, result_type)
            self.used[key] = Answer(question, found[1])
            return result
        request = {"method": method, "params": msgspec.Raw(body)}
        raise InputRequired({key: (question, request)})


async def gather(*asks: Awaitable[Any]) -> list[Any]:
    """Await several asks as one round (``Context.gather`` under 2026-07-28)."""
    results: list[Any] = []
    missing: dict[str, tuple[str, dict[str, Any]]] = {}
    for ask in asks:
        try:
            results.append(await ask)
        except InputRequired as required:
            missing.update(required.requests)
            results.append(None)
    if missing:
        raise InputRequired(missing)
    return results
