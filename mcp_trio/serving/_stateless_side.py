"""One served server's stateless side (2026-07-28): result stamps, requestState, listen streams.

The supervisor owns one. Around the handlers that both eras share, a stateless request needs:
the stamp every result carries (``resultType``, ``serverInfo``, ``ttlMs``/``cacheScope``); the
sealed ``requestState`` of input rounds (``open_inputs`` on the way in, ``input_required`` on
the way out); the ``subscriptions/listen`` streams the supervisor posts list changes and
resource updates to; and the tasks of task-capable tools (``_tasks``).
"""

from __future__ import annotations

from typing import Any

import msgspec
import trio
from msgspec import Raw

from .._request_state import RequestStateCodec, digest, is_single_use, subject_of
from ..protocol._envelope import SERVER_INFO_KEY, InputRequiredResult, ResultStamp
from ..protocol._params import retry_of
from ._replay import InputRequired, InputRound
from ._request import InFlight
from ._tasks import Tasks

_encode = msgspec.json.encode

#: ``subscriptions/listen`` streams open at once on one connection (stdio, WebSocket), and in
#: one server process; past either, another is refused with ``-32030``.
MAX_LISTENS_PER_CONNECTION = 16
MAX_LISTENS = 10_000

#: List kind -> (the filter's flag, the notification).
LIST_KINDS = {
    "tools": ("tools_list_changed", "notifications/tools/list_changed"),
    "prompts": ("prompts_list_changed", "notifications/prompts/list_changed"),
    "resources": ("resources_list_changed", "notifications/resources/list_changed"),
}


class Listener:
    """One ``subscriptions/listen`` stream's filter and its undelivered notifications.

    The supervisor posts without waiting; repeats of a notification still undelivered are
    coalesced, so a slow stream costs one pending entry per kind and URI, not one per change.
    """

    __slots__ = ("_kinds", "_uris", "owner", "pending", "wake")

    def __init__(self, kinds: frozenset[str], uris: frozenset[str], owner: Any = None) -> None:
        #: The connection the stream is on (its count is limited per connection).
        self.owner = owner
        self._kinds = kinds
        self._uris = uris
        self.pending: dict[tuple[str, str], dict[str, Any] | None] = {}
        self.wake = trio.Event()

    def _post(self, method: str, key: str, params: dict[str, Any] | None) -> None:
        self.pending[(method, key)] = params
        self.wake.set()

    def list_changed(self, kind: str) -> None:
        if kind in self._kinds:
            self._post(LIST_KINDS[kind][1], "", None)

    def resource_updated(self, uri: str) -> None:
        if uri in self._uris:
            self._post("notifications/resources/updated", uri, {"uri": uri})

    def take(self) -> list[tuple[str, dict[str, Any] | None]]:
        taken = [(method, params) for (method, _), params in self.pending.items()]
        self.pending.clear()
        self.wake = trio.Event()
        return taken


def _request_digest(call: InFlight) -> str:
    """What a ``requestState`` is bound to: the method, the name or URI, the arguments."""
    params = call.params
    if call.method == "resources/read":
        name = getattr(params, "uri", None)
    else:
        name = getattr(params, "name", None)
    given = getattr(params, "arguments", None)
    if isinstance(given, Raw):
        given = msgspec.json.decode(given)
    arguments = msgspec.json.encode(given if given is not msgspec.UNSET else None, order="sorted")
    return digest(call.method.encode(), _encode(name), arguments)


class StatelessSide:
    """One served server's stateless side: result stamps, the state codec, listen streams, tasks."""

    def __init__(self, server: Any) -> None:
        self.server = server
        codec = getattr(server, "request_state", None)
        self.codec: RequestStateCodec = codec if codec is not None else RequestStateCodec()
        self.stamp = ResultStamp(server.info, round(getattr(server, "cache_ttl", 0.0) * 1000))
        self.server_info = server.info
        self.listeners: set[Listener] = set()
        #: The tasks extension: tasks of task-capable tools, and the nursery they run in.
        self.tasks = Tasks(self.server_info)

    # -- notifications for listen streams (called by the supervisor) ------------------------
    def list_changed(self, kind: str) -> None:
        for listener in self.listeners:
            listener.list_changed(kind)

    def resource_updated(self, uri: str) -> None:
        for listener in self.listeners:
            listener.resource_updated(uri)

    # -- input rounds -------------------------------------------------------------------------
    def open_inputs(self, peer: Any, call: InFlight) -> InputRound:
        """The answers a retry brings: its verified ``requestState`` and its ``inputResponses``."""
        responses, state = retry_of(call.decode())
        if state is None:
            # First round, or a client retrying without a state (it had none): answers given
            # unasked are taken as they are, checked only by decoding.
            answers: dict[str, tuple[str | None, Raw]] = {k: (None, v) for k, v in (responses or {}).items()}
            return InputRound(answers, resumed=False)
        payload = self.codec.open(state, subject=subject_of(peer.principal), request=_request_digest(call),
                                  single_use=self._single_use(peer, call))
        answers = {key: (answer.digest, answer.response) for key, answer in payload.ans.items()}
        for key, question in payload.pend.items():
            if responses is not None and key in responses:
                answers[key] = (question, responses[key])  # extra, unasked keys are ignored
        return InputRound(answers, resumed=True)

    @staticmethod
    def _single_use(peer: Any, call: InFlight) -> bool:
        """Whether the request calls a tool that accepts each ``requestState`` once."""
        if call.method != "tools/call":
            return False
        tool = peer.supervisor.registry.tools.get(call.params.name)
        return tool is not None and is_single_use(tool.fn)

    def input_required(self, peer: Any, call: InFlight, required: InputRequired) -> InputRequiredResult:
        inputs = call.inputs
        assert inputs is not None  # asks are only possible on input methods
        pending = {key: question for key, (question, _) in required.requests.items()}
        state = self.codec.seal(subject=subject_of(peer.principal), request=_request_digest(call),
                                answers=inputs.used, pending=pending)
        return InputRequiredResult(
            result_type="input_required",
            input_requests={key: ask for key, (_, ask) in required.requests.items()},
            request_state=state,
            meta={SERVER_INFO_KEY: self.server_info},
        )

    @staticmethod
    def scope(peer: Any, method: str) -> str:
        """``cacheScope``: ``private`` when the answer may depend on who asks."""
        return "private" if peer.principal is not None or method == "resources/read" else "public"
