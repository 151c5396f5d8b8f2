"""One request while it runs: the in-flight record every layer above reads.

Made once per request by whatever carries it (a connection's reader, an HTTP exchange), it
holds what the request is (id, method, params decoded once into the method's struct), which
era it belongs to (a stateless request's envelope, ``protocol._era``), and how it ends (its
cancel scope, and why it was cancelled). Admission reads the cost key from it, middleware the
typed view, the handler its params: nobody decodes the params bytes again.
"""

from __future__ import annotations

from typing import Any

import trio
from msgspec import Raw

from ..protocol._envelope import Envelope
from ..protocol._era import EraDecision
from ..protocol._jsonrpc import RequestId
from ..protocol._params import decode_params, params_type
from ._replay import InputRound

CANCELLED_BY_CLIENT = "client"
CANCELLED_BY_SHUTDOWN = "shutdown"


class InFlight:
    """A request between arrival and answer."""

    __slots__ = ("id", "method", "raw", "params", "envelope", "scope", "reason", "holds_slot", "inputs", "task", "batch")

    def __init__(self, request_id: RequestId, method: str, raw: Raw | None, decision: EraDecision | None = None) -> None:
        self.id = request_id
        self.method = method
        #: The params as sent (kept for digests of input rounds and for custom methods).
        self.raw = raw
        #: The params decoded into the method's struct (``decode``), once.
        self.params: Any = decision.params if decision is not None else None
        #: The request's own envelope when it is a stateless (2026-07-28) request, else None.
        self.envelope: Envelope | None = decision.envelope if decision is not None else None
        #: The cancel scope the request runs in, set by whoever runs it (a connection's
        #: session task, whose scope it is while the request runs); None until then.
        self.scope: trio.CancelScope | None = None
        self.reason: str | None = None
        #: True while the request holds one of its connection's ``max_in_flight`` slots.
        self.holds_slot = False
        #: Stateless input methods: the answers this run may replay (``_replay``).
        self.inputs: InputRound | None = None
        #: Stateless ``tools/call`` of a task-capable tool: the task it may become (``_tasks.Task``).
        self.task: Any = None
        #: The JSON-RPC batch it came in (``_batch.BatchReplies``: its reply goes out with the others).
        self.batch: Any = None

    @property
    def stateless(self) -> bool:
        return self.envelope is not None

    def decode(self) -> Any:
        """The params in the method's struct (decoded now unless the era decision did), or the
        raw params for a method with no struct here; ``-32602`` when they do not fit."""
        params = self.params
        if params is None:
            tp = params_type(self.method, False)
            params = self.params = self.raw if tp is None else decode_params(self.raw, tp, self.method)
        return params

    def cancel(self, reason: str) -> None:
        """Cancel the request (its scope, once it runs); its runner reads ``reason``."""
        if self.reason is None:
            self.reason = reason
        if self.scope is not None:
            self.scope.cancel()

    @property
    def escalated(self) -> bool:
        """True once the call is a task: its asks wait for ``tasks/update`` instead of replaying."""
        task = self.task
        return task is not None and task.escalated.is_set()
