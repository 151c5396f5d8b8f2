"""JSON-RPC batches, for sessions that negotiated protocol revision 2025-03-26.

2025-03-26 said implementations MUST support receiving batches; 2025-06-18 removed them. So a
session of that revision may send an array of messages, and any other session (or one not yet
initialized) is refused one, as before, with a message saying why. ``initialize`` may not be in
a batch (2025-03-26, "Lifecycle").

Each message of a batch is handled as if it had come alone (requests run concurrently, each in
its own task, under the same limits; notifications and replies to our requests take effect at
once); the replies to its requests are collected here (``BatchReplies``) and sent together as
one array, in the order they finish (JSON-RPC 2.0 section 6 lets them come in any order, and the
ids match them up). A batch of notifications only gets no answer. A batch larger than
``Limits.max_batch_size`` is refused whole (``-32600``), before anything of it runs.
"""

from __future__ import annotations

import logging

from ..offer._results import unsendable_reason, unsendable_reply
from ..protocol._errors import InvalidRequest
from ..protocol._jsonrpc import BatchReply, Malformed, Message, MessageCodec
from ..protocol._session import SessionState
from ..protocol._versions import BATCH_VERSIONS

logger = logging.getLogger("mcp_trio.connection")


def batches_allowed(state: SessionState) -> bool:
    """Whether the session negotiated a revision that has JSON-RPC batches."""
    client = state.client
    return client is not None and client.protocol_version in BATCH_VERSIONS


def refusal(state: SessionState) -> Malformed:
    """The error a batch gets where batches are not part of the session's revision."""
    client = state.client
    if client is None:
        why = "before initialize (a batch may not carry it)"
    else:
        why = f"in this session, which negotiated protocol revision {client.protocol_version}"
    return Malformed(None, InvalidRequest(
        f"JSON-RPC batches are part of protocol revision {', '.join(BATCH_VERSIONS)} only, not {why}: "
        "send one JSON-RPC object per message"))


class BatchReplies:
    """The replies of one batch's requests, gathered as they finish; the last one sends them.

    ``expect`` counts a request started; ``add`` takes its reply (None: it is not answered,
    the client cancelled it) and ``seal`` says every message of the batch has been read. Each
    returns the ``BatchReply`` to send once the last reply is in and the batch is sealed, else
    None; it is returned once.
    """

    __slots__ = ("_codec", "_frames", "_waiting", "_sealed", "_sent")

    def __init__(self, codec: MessageCodec) -> None:
        self._codec = codec
        self._frames: list[bytes] = []
        self._waiting = 0
        self._sealed = False
        self._sent = False

    def expect(self) -> None:
        self._waiting += 1

    def answer_now(self, reply: Message | Malformed) -> None:
        """A reply the reader gives at once (a malformed element, a duplicate id)."""
        self._frames.append(self._encoded(reply))

    def add(self, reply: Message | Malformed | None) -> BatchReply | None:
        self._waiting -= 1
        if reply is not None:
            self._frames.append(self._encoded(reply))
        return self._ready()

    def seal(self) -> BatchReply | None:
        self._sealed = True
        return self._ready()

    def _ready(self) -> BatchReply | None:
        if not self._sealed or self._waiting or self._sent:
            return None
        self._sent = True
        return BatchReply(self._frames) if self._frames else None

    def _encoded(self, reply: Message | Malformed) -> bytes:
        """``reply`` encoded; one JSON cannot carry (a lone surrogate) is refused alone, as the
        writer refuses it outside a batch."""
        try:
            return self._codec.encode(reply)
        except (TypeError, ValueError, OverflowError) as exc:
            replacement = unsendable_reply(reply, exc)
            logger.warning("the reply to request %r in a batch was refused: %s", getattr(reply, "id", None),
                           unsendable_reason(exc))
            if replacement is None:
                return self._codec.encode(Malformed(getattr(reply, "id", None), InvalidRequest("reply not sendable")))
            return self._codec.encode(replacement)
