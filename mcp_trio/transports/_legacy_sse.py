"""The HTTP+SSE transport of protocol revision 2024-11-05, for clients that still speak it.

::

    GET  /sse                        opens a session: an SSE stream whose first event, ``endpoint``,
                                     names where to post (``/messages?session_id=<id>``)
    POST /messages?session_id=<id>   one JSON-RPC message: 202 Accepted; every answer, and
                                     everything the server sends, comes as a ``message`` event
                                     on the session's stream

Served only when asked (``legacy_sse``; ``mcp-trio serve --legacy-sse``, ``[server]
legacy_sse``): otherwise both paths are 404. A session is a ``serving.Connection`` like any
other, on the same supervisor, admission, limits and gate: the Host/Origin policy and the
credential are checked on every request, a session belongs to the caller that opened it
(anyone else gets 404), it counts against ``max_sessions`` (with the Streamable HTTP
sessions; 503) and the caller's ``max_sessions_per_principal`` (429), and it ends when its
stream does: the client closing it, ``idle_timeout`` with no message either way and nothing
in flight, or shutdown (in-flight requests get the grace period first).

The session runs in the ``GET /sse`` exchange's own task; its writer writes each event
straight to that response (``send_batch``: what is ready in one write), so a client that
stops reading stalls only its own session, and the engine's ``send_timeout`` drops it. POSTs
hand their body to the session's reader through a rendezvous: a flooding client waits for
its own session.
"""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING, Any, Protocol

import trio

from .._containment import run_session
from ..protocol._errors import INVALID_REQUEST
from ..serving._connection import Connection
from ._http_common import JSON, SSE_HEADERS, Refused, same_caller
from .h1 import Request, Responder

if TYPE_CHECKING:
    from ..auth import Principal

logger = logging.getLogger("mcp_trio.http.legacy_sse")

SSE_PATH = b"/sse"
MESSAGES_PATH = b"/messages"
#: The query parameter naming the session in the ``endpoint`` URL.
SESSION_PARAMETER = b"session_id"


class LegacyHost(Protocol):
    """What this module needs of the HTTP app that serves it (``_http_app.McpHttpApp``)."""

    supervisor: Any

    def accept_flags(self, headers: dict[bytes, bytes]) -> tuple[bool, bool]: ...

    async def authenticate(self, headers: Any) -> Principal | None: ...

    def session_room(self) -> None: ...

    def take_session_quota(self, principal: Principal | None, peer: str | None) -> Any: ...


class LegacySession(trio.abc.Channel[bytes]):
    """One 2024-11-05 session: the channel of its Connection. POST bodies come in through
    ``deliver``; what the Connection writes goes out as SSE ``message`` events."""

    __slots__ = ("_inbox_receive", "_inbox_send", "_responder", "connection", "last_active", "principal", "token")

    def __init__(self, token: str, principal: Principal | None, responder: Responder) -> None:
        self.token = token
        #: Who opened the session; every POST must authenticate as the same caller.
        self.principal = principal
        self.connection: Connection | None = None
        self._responder = responder
        self._inbox_send, self._inbox_receive = trio.open_memory_channel[bytes](0)
        self.last_active = trio.current_time()

    async def deliver(self, body: bytes) -> None:
        """Hand one POSTed message to the session's reader (waits while it is busy)."""
        self.last_active = trio.current_time()
        try:
            self._inbox_send.send_nowait(body)
        except trio.WouldBlock:
            await self._inbox_send.send(body)

    def terminate(self) -> None:
        """End the session: its reader sees EOF; requests in flight finish."""
        self._inbox_send.close()

    # -- the connection's side (trio.abc.Channel) -------------------------------------------
    async def receive(self) -> bytes:
        return await self._inbox_receive.receive()

    async def send(self, data: bytes) -> None:
        self.last_active = trio.current_time()
        await self._responder.send(b"event: message\ndata: %b\n\n" % data)

    async def send_batch(self, messages: list[bytes]) -> None:
        self.last_active = trio.current_time()
        await self._responder.send(b"".join(b"event: message\ndata: %b\n\n" % data for data in messages))

    async def aclose(self) -> None:
        self._inbox_send.close()
        self._inbox_receive.close()
        await trio.lowlevel.checkpoint()


class LegacySse:
    """``GET /sse`` and ``POST /messages`` of one HTTP app, and its live legacy sessions."""

    def __init__(self, app: LegacyHost) -> None:
        self.app = app
        #: Live sessions by id.
        self.sessions: dict[str, LegacySession] = {}

    @staticmethod
    def serves(path: bytes) -> bool:
        return path == SSE_PATH or path == MESSAGES_PATH

    async def handle(self, request: Request, responder: Responder, headers: dict[bytes, bytes]) -> None:
        """Answer a request for ``SSE_PATH`` or ``MESSAGES_PATH`` (the gate has passed it)."""
        if request.path == SSE_PATH:
            if request.method != "GET":
                raise Refused(405, INVALID_REQUEST, "method not allowed", headers=[(b"allow", b"GET")])
            if b"accept" in headers and not self.app.accept_flags(headers)[1]:
                raise Refused(406, INVALID_REQUEST, "not acceptable: Accept must list text/event-stream")
            principal = await self.app.authenticate(request.headers)
            await self._open(request, responder, principal)
            return
        if request.method != "POST":
            raise Refused(405, INVALID_REQUEST, "method not allowed", headers=[(b"allow", b"POST")])
        principal = await self.app.authenticate(request.headers)
        session = self._session(request.query, principal)
        content_type = headers.get(b"content-type", b"")
        if content_type.split(b";", 1)[0].strip().lower() != JSON:
            raise Refused(415, INVALID_REQUEST, "unsupported media type: Content-Type must be application/json")
        try:
            await session.deliver(request.body)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise Refused(404, INVALID_REQUEST, "session not found: the session has ended") from None
        await responder.respond(202, [(b"content-type", b"text/plain; charset=utf-8")], b"Accepted")

    def _session(self, query: bytes, principal: Principal | None) -> LegacySession:
        token = None
        for pair in query.split(b"&"):
            name, _, value = pair.partition(b"=")
            if name == SESSION_PARAMETER:
                token = value.decode("latin-1")
                break
        if not token:
            raise Refused(400, INVALID_REQUEST, "bad request: missing session_id (open the stream with GET /sse first)")
        session = self.sessions.get(token)
        if session is None or not same_caller(session.principal, principal):
            raise Refused(404, INVALID_REQUEST, "session not found: unknown or ended session_id")
        return session

    async def _open(self, request: Request, responder: Responder, principal: Principal | None) -> None:
        app = self.app
        app.session_room()
        peer = request.client[0] if request.client else None
        quota = app.take_session_quota(principal, peer)
        try:
            token = secrets.token_urlsafe(32)  # 256 random bits
            session = LegacySession(token, principal, responder)
            connection = session.connection = Connection(app.supervisor, session, principal=principal, peer=peer)
            self.sessions[token] = session
            try:
                await responder.start(200, SSE_HEADERS, b"event: endpoint\ndata: %b%b?%b=%b\n\n" % (
                    request.root_path, MESSAGES_PATH, SESSION_PARAMETER, token.encode()))
                ended = False
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_watch, responder, session, nursery.cancel_scope)
                    await run_session(f"legacy SSE session {connection.session_id}", connection.run)
                    ended = True
                    nursery.cancel_scope.cancel()
                if ended and not responder.disconnected:
                    await responder.end()
            finally:
                del self.sessions[token]
        finally:
            app.supervisor.quotas.release("sessions", quota)

    def expire(self, now: float, idle: float) -> None:
        """End the sessions with no message either way for ``idle`` seconds and nothing in flight."""
        for session in list(self.sessions.values()):
            connection = session.connection
            if now - session.last_active >= idle and connection is not None and connection.in_flight == 0:
                logger.debug("legacy SSE session expired after %.1f s idle", now - session.last_active)
                session.terminate()


async def _watch(responder: Responder, session: LegacySession, scope: trio.CancelScope) -> None:
    """The client closed the stream: the session reads no more, and its requests in flight
    finish (their answers have nowhere to go). If the session does not end by itself within
    a moment (a request that does not finish), it is cancelled."""
    await responder.wait_disconnected()
    session.terminate()
    connection = session.connection
    if connection is not None:
        connection.stop_reading()
        limits = connection.limits
        await trio.sleep(limits.grace_period)
    scope.cancel()

