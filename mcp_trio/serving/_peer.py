"""``Peer``: what a handler needs from whatever carries its request.

Three things carry requests: a connection (stdio, WebSocket, a Streamable HTTP session), a
stateless HTTP exchange (one POST, one answer), and a task (a tool call that outlived its
request). Handlers, ``Context`` and the tool-call path are written against this Protocol, not
against any of them, so none of them imports the others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import msgspec
import trio

from .._limits import Limits
from ..protocol._session import SessionState
from ._request import InFlight
from ._supervisor import Supervisor

if TYPE_CHECKING:
    from .._server import Server


class Peer(Protocol):
    """The carrier of a request, as handlers see it."""

    supervisor: Supervisor
    server: Server
    limits: Limits
    #: The authenticated caller (``mcp_trio.auth.Principal``); None on a trusted channel.
    principal: Any
    #: The remote address (host only), which keys the rate limit of anonymous callers.
    peer: str | None
    session_id: str
    encoder: msgspec.json.Encoder
    #: The handshake session's state (never initialized for a stateless exchange).
    state: SessionState
    #: The transport channel, for what only some transports offer (``close_stream``); may be None.
    channel: Any

    @property
    def session_state(self) -> dict[str, Any]:
        """The session's own mapping (``ctx.session_state``); asked only in the handshake era,
        so a carrier of stateless requests alone need not have it."""

    @property
    def input_done(self) -> trio.Event | None:
        """Set when nothing more will be read from this peer (long waits end then)."""

    async def notify(self, method: str, params: Any = None) -> None:
        """Send a notification that belongs to the current request."""

    async def request(self, method: str, params: Any, result_type: type, *, in_flight: InFlight | None = None) -> Any:
        """Send a request to the client and return its answer (handshake era only)."""

    def park(self, in_flight: InFlight) -> None:
        """Give back the request's in-flight slot for good (it now waits on the server)."""
