"""Streamable HTTP (MCP 2025-11-25) and WebSocket on one port, on hypercorn's trio worker.

``serve_http`` runs a supervisor and one ASGI app (written here, no framework) under
``hypercorn.trio.serve``::

    POST/GET/DELETE /mcp    Streamable HTTP: one session = one Connection, keyed by Mcp-Session-Id
    GET /ws                 WebSocket: one Connection per socket, one message per text frame
    GET /healthz, /health   liveness and counts, JSON
    GET /metrics            Prometheus text
    /admin/...              operators: tools on/off, plugin reload, statistics (``admin.py``);
                            GET /admin from a browser: the operator page (``admin_page``)

Its parts: a handshake-era session is an ``HttpSession`` (``_http_session.py``); a
2026-07-28 POST is answered by ``_stateless_http.py`` (which era: ``protocol._era``); the ASGI
helpers both use are ``_asgi.py``; who may connect is the gate's (``_gate.HostPolicy``, one
policy for every transport), and who may open a WebSocket session is ``_sessions.SessionGate``,
shared with the WebSocket server.

Limits (``Limits``): ``max_message_size`` is the body limit (413, checked against
Content-Length before reading, and counted while reading); ``request_deadline`` bounds the
time a body may take to arrive however it trickles (408; headers are bounded by hypercorn's
keep-alive timeout); ``max_sessions`` (503 at initialize); ``idle_timeout`` expires a session
with no HTTP exchange open for that long (0 disables); ``max_connections`` caps WebSockets
(503 at the handshake). Host and Origin are validated on every route (403).
"""

from __future__ import annotations

import logging
import math
import secrets
import warnings
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from typing import TYPE_CHECKING, Any

import msgspec
import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve

from .._containment import is_failure, run_session
from .._limiter import RateLimits
from .._limits import Limits
from .._server import Server
from ..auth import AuthError, Authenticator, Principal, insufficient_scope
from ..protocol._era import decide_era, stateless_version_header
from ..protocol._errors import (
    FORBIDDEN,
    INVALID_REQUEST,
    SERVER_OVERLOADED,
    SHUTTING_DOWN,
    BatchRefused,
    QuotaExceeded,
    ServerOverloaded,
)
from ..protocol._headers import fold_headers
from ..protocol._jsonrpc import ErrorObject, ErrorResponse, Malformed, MessageCodec, Notification, Request, Response
from ..protocol._params import cancelled_request_id
from ..protocol._versions import DEFAULT_HTTP_VERSION, SUPPORTED_VERSIONS
from ..serving._connection import Connection
from ..serving._supervisor import Supervisor
from . import _stateless_http
from ._asgi import (
    ADMISSION_CODES,
    CLIENT_GONE,
    JSON,
    KEEPALIVE,
    SSE_HEADERS,
    SSE_KEEPALIVE,
    Receive,
    Refused,
    Scope,
    Send,
    admission_status,
    error_body,
    refuse,
    refuse_head,
    respond,
    watch_disconnect,
    ws_reject,
)
from ._gate import (
    HostPolicy,
    TrustedProxies,
    auth_refusal,
    check_head,
    continue_refusal,
    is_loopback_address,
    is_loopback_name,
    route_path,
)
from ._http_session import SPILL_WAIT, SSE_RETRY_MS, HttpSession, SharedSessionTable, _Stream
from ._sessions import SessionGate, SessionRefused
from .admin import ADMIN_PATH, AdminApi
from .admin_page import AdminPage, ServedSettings

if TYPE_CHECKING:
    from ..cluster import ClusterSettings

logger = logging.getLogger("mcp_trio.http")

MCP_PATH = "/mcp"
WS_PATH = "/ws"
HEALTH_PATHS = frozenset({"/healthz", "/health"})
METRICS_PATH = "/metrics"

#: WebSocket close codes.
WS_GOING_AWAY = 1001
WS_UNSUPPORTED_DATA = 1003
#: Extra seconds hypercorn gives open HTTP exchanges after our own grace period has run out.
_HYPERCORN_GRACE_MARGIN = 2.0
_MEMO_LIMIT = 256  # entries in the Accept memo (only ever grows with distinct values)

_encode = msgspec.json.Encoder().encode


# ---------------------------------------------------------------------------------------------
# header checks
# ---------------------------------------------------------------------------------------------
def _accepts(value: bytes) -> tuple[bool, bool]:
    """(accepts JSON, accepts SSE) from an Accept header; media ranges count."""
    json = sse = False
    for part in value.split(b","):
        media = part.split(b";", 1)[0].strip().lower()
        if media in (b"application/json", b"application/*", b"*/*"):
            json = True
        if media in (b"text/event-stream", b"text/*", b"*/*"):
            sse = True
    return json, sse


# ---------------------------------------------------------------------------------------------
# the ASGI app
# ---------------------------------------------------------------------------------------------
class McpHttpApp:
    """The ASGI application: Streamable HTTP at /mcp, WebSocket at /ws, health and metrics."""

    def __init__(
        self,
        supervisor: Supervisor,
        nursery: trio.Nursery,
        *,
        bind_host: str = "127.0.0.1",
        allowed_hosts: Iterable[str] | None = None,
        allowed_origins: Iterable[str] | None = None,
        json_response: bool = False,
        authenticator: Authenticator | None = None,
        metrics: str | None = None,
        settings: ServedSettings | None = None,
        trusted_proxies: TrustedProxies | None = None,
    ) -> None:
        """``settings``: what ``serve_http`` was called with, for the operator page (built
        from these arguments when None). ``trusted_proxies``: the peers whose forwarding
        headers name the client (``_gate.TrustedProxies``); None: the peer is the client."""
        self.supervisor = supervisor
        self.proxies = trusted_proxies or None
        #: Who may read ``/metrics`` (``metrics_access``): "public", "loopback" or "scope:NAME".
        self.metrics_access = metrics_access(metrics, authenticator)
        self.limits = supervisor.limits
        self._nursery = nursery
        self._authenticator = self.authenticator = authenticator
        self._metadata_paths = frozenset(authenticator.metadata_paths()) if authenticator is not None else frozenset()
        self.policy = HostPolicy(bind_host, allowed_hosts=allowed_hosts, allowed_origins=allowed_origins)
        #: Who may open a WebSocket session on ``/ws`` (shared with the WebSocket server).
        self.session_gate = SessionGate(supervisor, self.policy, authenticator)
        #: ``/admin``: tools on/off, plugin reload, statistics (see ``transports/admin.py``).
        self.admin = AdminApi(supervisor, authenticator)
        self._json_response = self.json_response = json_response
        self._codec = MessageCodec()
        self._accept_memo: dict[bytes, tuple[bool, bool]] = {}
        #: Live Streamable HTTP sessions by Mcp-Session-Id (cluster mode: those served here).
        self.sessions: dict[str, HttpSession] = {}
        #: Cluster mode: the sessions are the cluster's, served by any process.
        self.shared_sessions: SharedSessionTable | None = None
        if supervisor.cluster is not None:
            self.shared_sessions = SharedSessionTable(supervisor.cluster.http_sessions, self.sessions, self._replica,
                                                      nursery.start_soon)
        #: Open WebSocket connections.
        self.websockets = 0
        #: Everything under /admin: the operator page, its files, then the JSON API.
        self.admin_page = AdminPage(self.admin, self.sessions, settings or ServedSettings(
            supervisor.limits, authenticator=authenticator, bind_host=bind_host, json_response=json_response,
            allowed_hosts=ServedSettings.listed(allowed_hosts), allowed_origins=ServedSettings.listed(allowed_origins)))

    # -- dispatch ---------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        try:
            try:
                if kind == "http":
                    await self._http(scope, receive, send)
                elif kind == "websocket":
                    await self._websocket(scope, receive, send)
                elif kind == "lifespan":
                    await self._lifespan(receive, send)
            except* CLIENT_GONE:
                # A write after the client left (raw, or from an SSE response's nursery): hypercorn
                # drops most such writes itself, but its close of the connection races ours.
                logger.debug("client gone during a %s exchange", kind)
        except BaseException as exc:
            # One exchange's failure is its own (hypercorn answers 500 if nothing was sent):
            # not even a SystemExit from code run on its behalf may reach the server's nursery.
            if not is_failure(exc):
                raise
            logger.error("%s exchange failed; the server goes on", kind, exc_info=exc)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.proxies is not None:  # behind trusted proxies: the client they name, from here on
            scope = _behind(self.proxies, scope, "http")
        raw_headers = scope["headers"]
        headers = dict(raw_headers)
        refusal = check_head(raw_headers)
        if refusal is None and b"expect" in headers:
            refusal = continue_refusal(raw_headers, self.limits.max_message_size)
        if refusal is not None:
            if refusal.status != 413:  # a body over the limit is not read: the connection closes
                await self._discard_body(receive)
            await refuse_head(send, refusal)
            return
        path = route_path(scope.get("raw_path"), scope["path"])  # "/%61dmin" is not "/admin"
        method = scope["method"]
        try:
            if not self.policy.allows(headers.get(b"host") or headers.get(b":authority"), headers.get(b"origin")):
                raise Refused(403, INVALID_REQUEST, "forbidden: Host or Origin not allowed")
            if path == MCP_PATH:
                if method not in ("POST", "GET", "DELETE"):
                    raise Refused(405, INVALID_REQUEST, "method not allowed", headers=[(b"allow", b"GET, POST, DELETE")])
                if (method != "POST" and b"mcp-session-id" not in headers
                        and stateless_version_header(headers.get(b"mcp-protocol-version"))):
                    # 2026-07-28 has no GET stream and no session to DELETE.
                    raise Refused(405, INVALID_REQUEST, "method not allowed: protocol revision 2026-07-28 is POST only",
                                   headers=[(b"allow", b"POST")])
                principal = await self._authenticate(scope["headers"])
                peer = scope.get("client")
                peer_host = peer[0] if peer else None
                if method == "POST":
                    await self._post(receive, send, headers, principal, peer_host, scope["headers"])
                elif method == "GET":
                    await self._get(receive, send, headers, principal, peer_host)
                else:
                    await self._delete(send, headers, principal, peer_host)
            elif path == ADMIN_PATH or path.startswith(ADMIN_PATH + "/"):
                peer = scope.get("client")
                # Routed on the raw path; the admin API reads its names from the decoded one.
                status, content_type, body, extra = await self.admin_page(method, scope["path"], scope["headers"], peer[0] if peer else None)
                await respond(send, status, body, content_type, headers=extra)
            elif path in self._metadata_paths and method in ("GET", "HEAD"):
                await respond(send, 200, _encode(self._authenticator.metadata()))  # type: ignore[union-attr]
            elif path in HEALTH_PATHS or path == METRICS_PATH:
                if method not in ("GET", "HEAD"):
                    raise Refused(405, INVALID_REQUEST, "method not allowed", headers=[(b"allow", b"GET, HEAD")])
                if path == METRICS_PATH:
                    client = scope.get("client")
                    await self._check_metrics_access(scope["headers"], client[0] if client else None)
                    text = self._metrics_text()
                    if self.supervisor.cluster is not None:  # and the cluster's figures
                        text += await self.supervisor.cluster.metrics_text()
                    await respond(send, 200, text.encode(), b"text/plain; version=0.0.4; charset=utf-8")
                else:
                    status, body = self._health()
                    await respond(send, status, body)
            else:
                raise Refused(404, INVALID_REQUEST, f"not found: {path}")
        except Refused as refused:
            await refuse(send, refused)

    async def _discard_body(self, receive: Receive) -> None:
        """Read and drop what the server framed as this request's body (bounded by the size
        limit and the request deadline) before the gate's refusal: hypercorn reading on while
        the answer is written would see what follows the body (a smuggled request) as a
        request of its own, fail, and drop the connection before the answer is out."""
        size = 0
        with trio.move_on_after(self.limits.request_deadline):
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return
                size += len(message.get("body", b""))
                if not message.get("more_body", False) or size > self.limits.max_message_size:
                    return

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- authentication ---------------------------------------------------------------------
    async def _authenticate(self, headers: Iterable[tuple[bytes, bytes]]) -> Principal | None:
        """The caller of this request, or a 401/403/503 (with ``WWW-Authenticate``); None: no auth."""
        if self._authenticator is None:
            return None
        try:
            return await self._authenticator.authenticate(headers)
        except AuthError as exc:
            refusal = auth_refusal(self._authenticator, exc)
            raise Refused(refusal.status, refusal.code, refusal.message, headers=refusal.headers) from None

    # -- Streamable HTTP: POST --------------------------------------------------------------
    def _accept_flags(self, headers: dict[bytes, bytes]) -> tuple[bool, bool]:
        value = headers.get(b"accept", b"")
        flags = self._accept_memo.get(value)
        if flags is None:
            flags = _accepts(value)
            if len(self._accept_memo) < _MEMO_LIMIT:
                self._accept_memo[value] = flags
        return flags

    async def _session(self, headers: dict[bytes, bytes], principal: Principal | None, peer: str | None = None) -> HttpSession:
        token = headers.get(b"mcp-session-id")
        if token is None:
            raise Refused(400, INVALID_REQUEST, "bad request: missing Mcp-Session-Id header (send initialize first)")
        if self.shared_sessions is not None:  # cluster mode: any process serves any session
            try:
                found = await self.shared_sessions.find(token.decode("latin-1"), principal, peer)
            except ServerOverloaded as exc:  # Redis unreachable
                raise Refused(503, exc.code, exc.message, headers=[(b"retry-after", b"1")]) from None
            if found is None:
                raise Refused(404, INVALID_REQUEST, "session not found: unknown, expired or terminated Mcp-Session-Id")
            return found
        session = self.sessions.get(token.decode("latin-1"))
        # A session is bound to the caller that opened it: to anyone else it does not exist.
        if session is None or session.terminated or not _same_caller(session.principal, principal):
            raise Refused(404, INVALID_REQUEST, "session not found: unknown, expired or terminated Mcp-Session-Id")
        return session

    @staticmethod
    def _check_version(headers: dict[bytes, bytes]) -> None:
        version = headers.get(b"mcp-protocol-version")
        if version is not None and version.decode("latin-1").strip() not in SUPPORTED_VERSIONS:
            raise Refused(400, INVALID_REQUEST, "bad request: unsupported MCP-Protocol-Version header; "
                           f"supported: {', '.join(SUPPORTED_VERSIONS)} (absent means {DEFAULT_HTTP_VERSION})")

    async def _read_body(self, receive: Receive, headers: dict[bytes, bytes], deadline: float) -> bytes:
        """The whole body, within the size limit and the request deadline (413, 408)."""
        limit = self.limits.max_message_size
        declared = headers.get(b"content-length")
        expected = -1
        if declared is not None:
            expected = int(declared)  # h11 has validated it
            if expected > limit:
                raise Refused(413, INVALID_REQUEST, f"request body of {expected} bytes exceeds the limit of {limit} bytes")
        # Fast path: a small body usually arrives with the headers and is already queued for
        # us. hypercorn's ``receive`` is a trio memory channel's: take it without a trip
        # through the scheduler or a deadline scope (both cost more than the rest of this).
        receive_nowait = getattr(getattr(receive, "__self__", None), "receive_nowait", None)
        if receive_nowait is not None and expected > 0:
            try:
                message = receive_nowait()
            except trio.WouldBlock:
                pass
            else:
                chunk = message.get("body", b"") if message["type"] == "http.request" else b""
                if len(chunk) == expected:
                    return chunk
                return await self._read_rest(receive, [chunk] if chunk else [], len(chunk), message, limit, expected, deadline)
        return await self._read_rest(receive, [], 0, None, limit, expected, deadline)

    async def _read_rest(self, receive: Receive, chunks: list[bytes], size: int, message: dict[str, Any] | None,
                         limit: int, expected: int, deadline: float) -> bytes:
        if message is not None:
            if message["type"] != "http.request":
                raise Refused(400, INVALID_REQUEST, "client disconnected")
            if not message.get("more_body", False):
                return b"".join(chunks)
        with trio.move_on_at(deadline) as waited:
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    raise Refused(400, INVALID_REQUEST, "client disconnected")
                chunk = message.get("body", b"")
                if chunk:
                    size += len(chunk)
                    if size > limit:
                        raise Refused(413, INVALID_REQUEST, f"request body exceeds the limit of {limit} bytes")
                    chunks.append(chunk)
                # With Content-Length, the last byte is the end: no wait for the empty message.
                if not message.get("more_body", False) or size == expected:
                    break
        if waited.cancelled_caught:
            raise Refused(408, INVALID_REQUEST, f"request body not received within {self.limits.request_deadline:g} s")
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _post(self, receive: Receive, send: Send, headers: dict[bytes, bytes], principal: Principal | None,
                    peer: str | None, raw_headers: list[tuple[bytes, bytes]] | None = None) -> None:
        deadline = trio.current_time() + self.limits.request_deadline
        wants_json, wants_sse = self._accept_flags(headers)
        if not wants_json or not (wants_sse or self._json_response):
            raise Refused(406, INVALID_REQUEST, "not acceptable: Accept must list application/json and text/event-stream")
        content_type = headers.get(b"content-type", b"")
        if content_type.split(b";", 1)[0].strip().lower() != JSON:
            raise Refused(415, INVALID_REQUEST, "unsupported media type: Content-Type must be application/json")
        body = await self._read_body(receive, headers, deadline)
        message = self._codec.decode(body)
        kind = type(message)
        tracing = self.supervisor.tracing
        if tracing is not None:  # the POST's own trace context (traceparent), for its request's span
            tracing.from_http(headers)
        if kind is Malformed:
            error = message.error  # type: ignore[union-attr]
            if type(error) is BatchRefused and b"mcp-session-id" in headers:  # revision 2025-03-26 (``_http_batch``)
                from ._http_batch import post_batch

                self._check_version(headers)
                session = await self._session(headers, principal, peer)
                if self.shared_sessions is not None:  # cluster mode: answers and cancellations for elsewhere
                    await self._relay_batch(session, body)
                await post_batch(session, body, self.limits.max_batch_size,
                                 self.supervisor.shutting_down.is_set(), receive, send)
                return
            raise Refused(400, error.code, error.message, message.id)  # type: ignore[union-attr]
        if b"mcp-session-id" not in headers:
            folded, repeated = fold_headers(raw_headers if raw_headers is not None else list(headers.items()))
            is_request = kind is Request
            decision = decide_era(message.method if is_request else None, message.params if is_request else None,  # type: ignore[union-attr]
                                  folded, repeated)
            if decision.stateless:
                # Protocol revision 2026-07-28: no session, the request carries its own envelope.
                await _stateless_http.post(self, message, decision, folded, repeated, principal, peer, wants_sse, receive, send)
                return
        if kind is Request and message.method == "initialize":  # type: ignore[union-attr]
            if b"mcp-session-id" in headers:
                session = await self._session(headers, principal, peer)
                await self._post_request(session, message, body, receive, send, created=False)  # type: ignore[arg-type]
            else:
                session = self._new_session(principal, peer)
                await self._post_request(session, message, body, receive, send, created=True)  # type: ignore[arg-type]
            return
        self._check_version(headers)
        session = await self._session(headers, principal, peer)
        if self.supervisor.shutting_down.is_set():
            raise Refused(503, SHUTTING_DOWN, "server shutting down", message.id if kind is Request else None)  # type: ignore[union-attr]
        if kind is Request:
            if tracing is not None:  # answered in the session's task: handed over
                tracing.carry(session.connection, message.id)  # type: ignore[union-attr]
            await self._post_request(session, message, body, receive, send, created=False)  # type: ignore[arg-type]
            return
        # A notification or a response (to our sampling/elicitation/roots request): 202.
        if kind is Notification and message.method == "notifications/cancelled":  # type: ignore[union-attr]
            cancelled = cancelled_request_id(message)  # type: ignore[arg-type]
            if cancelled is not None:
                session.abandon(cancelled)
        session.begin()
        try:
            await session.deliver(body)
            if self.shared_sessions is not None and (kind is not Notification or message.method == "notifications/cancelled"):  # type: ignore[union-attr]
                # An answer to our request, or a cancellation: what it concerns may run on
                # another process of the cluster.
                await self.shared_sessions.relay(session, body)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise Refused(404, INVALID_REQUEST, "session not found: the session has ended") from None
        except ServerOverloaded as exc:  # Redis unreachable
            raise Refused(503, exc.code, exc.message, headers=[(b"retry-after", b"1")]) from None
        finally:
            session.end()
        await send({"type": "http.response.start", "status": 202, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    async def _relay_batch(self, session: HttpSession, body: bytes) -> None:
        """Cluster mode: a batch's answers to our requests and its cancellations, relayed to
        every process serving the session (as single ones are)."""
        items = self._codec.split_batch(body, self.limits.max_batch_size)
        if isinstance(items, Malformed):
            return  # post_batch refuses it
        for data, item in items:
            if type(item) in (Response, ErrorResponse) or (type(item) is Notification
                                                          and item.method == "notifications/cancelled"):  # type: ignore[union-attr]
                try:
                    await self.shared_sessions.relay(session, data)  # type: ignore[union-attr]
                except ServerOverloaded as exc:
                    raise Refused(503, exc.code, exc.message, headers=[(b"retry-after", b"1")]) from None

    def _new_session(self, principal: Principal | None, peer: str | None) -> HttpSession:
        if self.supervisor.shutting_down.is_set():
            raise Refused(503, SHUTTING_DOWN, "server shutting down")
        if self.shared_sessions is not None:  # cluster mode: an idle replica gives way
            self.shared_sessions.make_room(self.limits.max_sessions)
        if len(self.sessions) >= self.limits.max_sessions:
            self.supervisor.metrics.connections_refused += 1
            raise Refused(503, SERVER_OVERLOADED, f"too many sessions (limit {self.limits.max_sessions}); try again later",
                           headers=[(b"retry-after", b"1")])
        quota = self._take_session_quota(principal, peer)
        token = secrets.token_urlsafe(32)  # 43 visible ASCII characters, 256 random bits
        session = self._open(token, principal, peer)
        self._nursery.start_soon(self._run_session, session, quota)
        return session

    def _open(self, token: str, principal: Principal | None, peer: str | None) -> HttpSession:
        shared = self.shared_sessions
        session = HttpSession(token, self.limits, json_response=self._json_response, principal=principal,
                              shared=shared.shared if shared is not None else None, spawn=self._nursery.start_soon)
        # In a cluster, several processes ask the client things within one session: each
        # replica numbers its requests from a random start, so an answer finds its asker.
        first = secrets.randbits(31) << 20 if shared is not None else 0
        session.connection = Connection(self.supervisor, session, principal=principal, peer=peer, first_request_id=first)
        self.sessions[token] = session
        return session

    def _replica(self, token: str, record: Any, principal: Principal | None, peer: str | None) -> HttpSession:
        """Cluster mode: serve here a session another process opened (its stored profile)."""
        if not self.shared_sessions.make_room(self.limits.max_sessions):  # type: ignore[union-attr]
            self.supervisor.metrics.connections_refused += 1
            raise Refused(503, SERVER_OVERLOADED, f"too many sessions (limit {self.limits.max_sessions}); try again later",
                           headers=[(b"retry-after", b"1")])
        session = self._open(token, principal, peer)
        session.connection.state.resume(record.profile, record.log_level)  # type: ignore[union-attr]
        self._nursery.start_soon(self._run_session, session, None)
        return session

    def _take_session_quota(self, principal: Principal | None, peer: str | None) -> Any:
        """The caller's ``max_sessions_per_principal``: one more session, or 429 naming it."""
        try:
            return self.supervisor.quotas.acquire("sessions", principal, peer)
        except QuotaExceeded as exc:
            raise Refused(429, exc.code, exc.message, data=exc.data) from None

    async def _run_session(self, session: HttpSession, quota: Any = None) -> None:
        """One session, in the app's nursery: whatever ends it ends it alone (``run_session``)."""
        try:
            await run_session(f"HTTP session {session.connection.session_id}", session.connection.run)  # type: ignore[union-attr]
        finally:
            self.supervisor.quotas.release("sessions", quota)
            session.terminated = True
            if self.sessions.get(session.token) is session:
                del self.sessions[session.token]
            session.ended.set()

    async def _post_request(self, session: HttpSession, request: Request, body: bytes, receive: Receive, send: Send, *,
                            created: bool) -> None:
        stream = session.open_request(request.id)
        if stream is None:
            raise Refused(400, INVALID_REQUEST, f"duplicate request id {request.id!r}: a request with this id is still in flight", request.id)
        session.begin()
        try:
            try:
                await session.deliver(body)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                session.forget_request(request.id)
                if self.supervisor.shutting_down.is_set():
                    raise Refused(503, SHUTTING_DOWN, "server shutting down", request.id) from None
                raise Refused(404, INVALID_REQUEST, "session not found: the session has ended", request.id) from None
            while not stream.events and not stream.done and stream.close_retry is None:
                await stream.lot.park()
            extra: list[tuple[bytes, bytes]] = []
            if created:
                if session.connection is not None and session.connection.state.client is not None:
                    if self.shared_sessions is not None:
                        try:  # stored for every process before the client learns the id
                            await self.shared_sessions.created(session)
                        except ServerOverloaded as exc:
                            session.terminate()
                            raise Refused(503, exc.code, exc.message, request.id, headers=[(b"retry-after", b"1")]) from None
                    extra.append((b"mcp-session-id", session.token.encode()))
                else:
                    session.terminate()  # initialize failed: no session to keep
            if stream.final and len(stream.events) == 1 and stream.close_retry is None:
                status = 200
                if stream.error is not None and stream.error.code in ADMISSION_CODES:
                    status, refusal = admission_status(stream.error, self._authenticator)
                    extra += refusal
                await respond(send, status, stream.events[0][1], headers=extra)
                return
            # Something came before the final reply (or the stream is to be closed): SSE.
            await send({"type": "http.response.start", "status": 200, "headers": [*SSE_HEADERS, *extra]})
            prefix = b""
            if not stream.done or stream.events:
                if session.resumable_streams:
                    prefix = b"id: %d-0\nretry: %d\ndata: \n\n" % (stream.number, SSE_RETRY_MS)
                    session.keep_resumable(stream)
            await self._sse(session, stream, 0, receive, send, prefix)
        finally:
            session.end()

    # -- Streamable HTTP: GET, DELETE -------------------------------------------------------
    async def _get(self, receive: Receive, send: Send, headers: dict[bytes, bytes], principal: Principal | None,
                   peer: str | None = None) -> None:
        if not self._accept_flags(headers)[1]:
            raise Refused(406, INVALID_REQUEST, "not acceptable: Accept must list text/event-stream")
        self._check_version(headers)
        session = await self._session(headers, principal, peer)
        last = headers.get(b"last-event-id")
        if session.shared is not None and (last is None or not self._local_stream(session, last)):
            await self._get_shared(receive, send, session, last)
            return
        if last is not None:
            number_text, _, seq_text = last.decode("latin-1").strip().partition("-")
            try:
                number, cursor = int(number_text), int(seq_text)
            except ValueError:
                raise Refused(400, INVALID_REQUEST, "bad request: malformed Last-Event-ID header (expected <stream>-<seq>)") from None
            stream = session.find_stream(number)
            if stream is None:
                raise Refused(400, INVALID_REQUEST, "bad request: the stream the Last-Event-ID header names "
                               "is unknown, finished or expired")
            cursor = max(0, min(cursor, stream.seq))
        else:
            stream = session.standalone
            cursor = stream.delivered
        session.begin()
        try:
            await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
            prefix = b""
            if stream is session.standalone and session.resumable_streams:
                prefix = b"id: 0-%d\nretry: %d\ndata: \n\n" % (cursor, SSE_RETRY_MS)
            await self._sse(session, stream, cursor, receive, send, prefix)
        finally:
            session.end()

    @staticmethod
    def _local_stream(session: HttpSession, last: bytes) -> bool:
        """Whether ``Last-Event-ID`` names a request stream this process holds (cluster mode)."""
        number, _, _ = last.decode("latin-1").strip().partition("-")
        return number.isdigit() and int(number) != 0 and session.find_stream(int(number)) is not None

    async def _get_shared(self, receive: Receive, send: Send, session: HttpSession, last: bytes | None) -> None:
        """Cluster mode: a GET stream (or a request stream resumed) fed from the shared log."""
        shared = session.shared
        assert shared is not None
        prefix = b""
        parts = last.decode("latin-1").strip().split("-") if last is not None else []
        try:
            if last is None:
                # A new GET goes on after the last event a listener was written, wherever; with
                # none yet, it gets every event kept (as one process's GET stream does).
                record = await shared.get(session.token)
                if record is None:
                    raise Refused(404, INVALID_REQUEST, "session not found: unknown, expired or terminated Mcp-Session-Id")
                after = record.delivered or "0-0"
                stream = session.feed(0)
            elif len(parts) == 3 and parts[0] == "0" and all(p.isdigit() and len(p) <= 20 for p in parts[1:]):
                after = f"{parts[1]}-{parts[2]}"
                stream = session.feed(0)
            elif len(parts) == 2 and all(p.isdigit() and len(p) <= 20 for p in parts) and int(parts[0]) != 0:
                after = None
                stream = session.feed(int(parts[0]))
                stream.seq = cursor = int(parts[1])
            else:
                raise Refused(400, INVALID_REQUEST, "bad request: malformed Last-Event-ID header")
        except ServerOverloaded as exc:
            raise Refused(503, exc.code, exc.message, headers=[(b"retry-after", b"1")]) from None
        if stream.number == 0:
            cursor = 0
        self._nursery.start_soon(session.follow, stream, after)
        try:
            if stream.number != 0:
                # A request stream of another process: its events are in the log once that
                # process saw its listener go; wait a little for the first.
                with trio.move_on_after(SPILL_WAIT):
                    while not stream.events and not stream.done:
                        await stream.lot.park()
                if not stream.events:
                    raise Refused(400, INVALID_REQUEST, "bad request: the stream the Last-Event-ID header names "
                                   "is unknown, finished or expired")
            elif session.resumable_streams:
                prefix = b"id: 0-%b\nretry: %d\ndata: \n\n" % (after.encode(), SSE_RETRY_MS)  # type: ignore[union-attr]
            session.begin()
            try:
                await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
                await self._sse(session, stream, cursor, receive, send, prefix)
            finally:
                session.end()
        finally:
            stream.stopped = True
            stream.wake.set()

    async def _delete(self, send: Send, headers: dict[bytes, bytes], principal: Principal | None, peer: str | None = None) -> None:
        self._check_version(headers)
        session = await self._session(headers, principal, peer)
        if self.shared_sessions is not None:
            try:
                await self.shared_sessions.delete(session)
            except ServerOverloaded as exc:
                raise Refused(503, exc.code, exc.message, headers=[(b"retry-after", b"1")]) from None
        else:
            del self.sessions[session.token]
            session.terminate()
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    # -- SSE writing ------------------------------------------------------------------------
    async def _sse(self, session: HttpSession, stream: _Stream, cursor: int, receive: Receive, send: Send, prefix: bytes) -> None:
        """Write ``stream`` on this response until it ends or the client goes away."""
        ended = False
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_disconnect, receive, nursery.cancel_scope)
            await self._pump(session, stream, cursor, send, prefix)
            ended = True
            nursery.cancel_scope.cancel()
        if ended:
            # The last message ends the exchange, and the server answers that with
            # http.disconnect: sent with the watcher gone, so that nothing cancels it half-way
            # (and with it the server's handling of ``Connection: close`` and keep-alive).
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _pump(self, session: HttpSession, stream: _Stream, cursor: int, send: Send, prefix: bytes) -> None:
        """Write ``stream``'s events after ``cursor`` until its final reply, its end, or a close
        (the caller ends the response).

        One listener per stream: a newer one (a reconnect that beat the old connection's
        timeout) takes over and this one's response is ended. When the client has gone, the
        caller's disconnect watcher cancels all of this.
        """
        if stream.listener is not None:
            stream.listener.cancel()
        with trio.CancelScope() as scope:
            stream.listener = scope
            try:
                while True:
                    chunk, cursor, final = stream.render_after(cursor)
                    if prefix:
                        chunk, prefix = prefix + chunk, b""
                    if stream.close_retry is not None and not final:
                        chunk += b"retry: %d\n\n" % stream.close_retry
                        stream.close_retry = None
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                        break
                    if chunk:
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                        stream.delivered = max(stream.delivered, cursor)
                    if final:
                        session.drop_resumable(stream)
                        break
                    if stream.done:
                        if cursor >= stream.seq:
                            break
                        continue  # more came in while the last chunk was being written
                    with trio.move_on_after(SSE_KEEPALIVE) as idle:
                        await stream.lot.park()
                    if idle.cancelled_caught:
                        await send({"type": "http.response.body", "body": KEEPALIVE, "more_body": True})
            finally:
                if stream.listener is scope:
                    stream.listener = None
                    if not stream.final:
                        session.spill(stream)  # cluster mode: resumable from any process

    # -- WebSocket --------------------------------------------------------------------------
    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        if self.proxies is not None:
            scope = _behind(self.proxies, scope, "ws")
        refusal = check_head(scope["headers"])
        if refusal is not None:
            await ws_reject(scope, send, refusal.status, refusal.message)
            return
        if route_path(scope.get("raw_path"), scope["path"]) != WS_PATH:
            await ws_reject(scope, send, 404, "not found")
            return
        client = scope.get("client")
        peer = client[0] if client else None
        try:
            principal, quota = await self.session_gate.admit(scope["headers"], peer, self.websockets)
        except SessionRefused as refused:
            if refused.status == 503:
                self.supervisor.metrics.connections_refused += 1
            await ws_reject(scope, send, refused.status, refused.message, refused.headers, refused.code)
            return
        self.websockets += 1
        try:
            subprotocols = scope.get("subprotocols") or ()
            await send({"type": "websocket.accept", "subprotocol": "mcp" if "mcp" in subprotocols else None})
            channel = _AsgiWebSocket(receive, send, self.limits.idle_timeout, self.supervisor.shutting_down)
            connection = Connection(self.supervisor, channel, principal=principal, peer=peer)
            channel.busy = lambda: connection.in_flight > 0
            await run_session(f"WebSocket session {connection.session_id}", connection.run)
        finally:
            self.websockets -= 1
            self.supervisor.quotas.release("sessions", quota)

    # -- health and metrics -----------------------------------------------------------------
    async def _check_metrics_access(self, headers: list[tuple[bytes, bytes]], peer: str | None) -> None:
        """``/metrics`` lists tool names, admin-scoped ones included: who may read it is a
        setting (``metrics_access``). Refusals are 401/403 as on ``/mcp``."""
        access = self.metrics_access
        if access == "public":
            return
        if access == "loopback":
            if not is_loopback_address(peer):
                raise Refused(403, INVALID_REQUEST, "forbidden: /metrics is served to loopback clients only")
            return
        scope = access.partition(":")[2]
        principal = await self._authenticate(headers)
        if principal is None or principal.kind == "anonymous":
            raise Refused(401, INVALID_REQUEST, f"unauthorized: /metrics needs a credential with the {scope} scope",
                           headers=[(b"www-authenticate", self._authenticator.challenge().encode("latin-1"))])  # type: ignore[union-attr]
        if not principal.has_scope(scope):
            challenge = self._authenticator.challenge(insufficient_scope(frozenset({scope})))  # type: ignore[union-attr]
            raise Refused(403, FORBIDDEN, f"forbidden: /metrics needs the {scope} scope",
                           headers=[(b"www-authenticate", challenge.encode("latin-1"))])

    def _counts(self) -> dict[str, int]:
        connections = self.supervisor.connections
        return {
            "connections": len(connections),
            "sessions": len(self.sessions),
            "websockets": self.websockets,
            "in_flight": sum(c.in_flight for c in connections),
        }

    def _health(self) -> tuple[int, bytes]:
        shutting_down = self.supervisor.shutting_down.is_set()
        body = {"status": "shutting_down" if shutting_down else "ok", **self._counts()}
        return (503 if shutting_down else 200), _encode(body)

    def _metrics_text(self) -> str:
        counts = self._counts()
        return self.supervisor.metrics.render({
            "mcp_connections": ("Live MCP connections (WebSocket connections and HTTP sessions).", counts["connections"]),
            "mcp_http_sessions": ("Live Streamable HTTP sessions.", counts["sessions"]),
            "mcp_websocket_connections": ("Open WebSocket connections.", counts["websockets"]),
            "mcp_requests_in_flight": ("Requests read and not yet answered.", counts["in_flight"]),
        })

    # -- idle sessions ----------------------------------------------------------------------
    async def expire_idle_sessions(self) -> None:
        """End sessions with no HTTP exchange open for ``limits.idle_timeout`` (0: never)."""
        idle = self.limits.idle_timeout
        if idle <= 0:
            return
        # A sweep every quarter of the timeout: a session ends between 1 and 1.25 timeouts.
        interval = max(idle / 4, 0.01)
        while True:
            await trio.sleep(interval)
            now = trio.current_time()
            for token, session in list(self.sessions.items()):
                if session.active == 0 and now - session.last_active >= idle:
                    logger.debug("session expired after %.1f s idle", now - session.last_active)
                    del self.sessions[token]
                    session.terminate()


def metrics_access(value: str | None, authenticator: Authenticator | None) -> str:
    """Who may read ``/metrics``: ``"public"``, ``"loopback"`` (loopback peers only) or
    ``"scope:NAME"`` (a credential holding scope NAME). Default (None): ``"scope:admin"`` when
    the server authenticates callers, as the admin surface does; else ``"public"`` (a server
    with no authentication serves everything to whoever can reach it anyway)."""
    if value is None:
        return "scope:admin" if authenticator is not None else "public"
    value = value.strip()
    if value in ("public", "loopback"):
        return value
    kind, _, scope = value.partition(":")
    if kind != "scope" or not scope or " " in scope:
        raise ValueError(f"metrics access must be 'public', 'loopback' or 'scope:NAME', not {value!r}")
    if authenticator is None:
        raise ValueError(f"metrics access {value!r} needs authentication configured (no credential can be checked)")
    return value


def _behind(proxies: TrustedProxies, scope: Scope, plain: str) -> Scope:
    """``scope`` with ``client`` (and ``scheme``) as the trusted proxies name them."""
    peer = scope.get("client")
    named = proxies.client(peer[0] if peer else None, scope["headers"])
    scheme = scope.get("scheme")
    if named.scheme is not None:
        scheme = named.scheme if plain == "http" else ("wss" if named.scheme == "https" else "ws")
    return {**scope, "client": (named.address, 0) if named.address is not None else None, "scheme": scheme}


def _same_caller(owner: Principal | None, caller: Principal | None) -> bool:
    return owner is None or (caller is not None and caller.kind == owner.kind and caller.subject == owner.subject)


class _AsgiWebSocket(trio.abc.Channel[bytes]):
    """An ASGI WebSocket as a message channel: one JSON-RPC message per text frame.

    The message size limit is hypercorn's (``websocket_max_message_size``, close 1009); it
    also answers pings and sends its own (``websocket_ping_interval``). A binary frame closes
    the connection with 1003; so much silence (``idle_timeout``, nothing in flight) with 1001;
    graceful shutdown with 1001 too, as the WebSocket transport does (hypercorn itself answers
    a client's close frame, with the client's code).
    """

    def __init__(self, receive: Receive, send: Send, idle_timeout: float, shutting_down: trio.Event) -> None:
        self._receive = receive
        self._send = send
        self._idle = idle_timeout if idle_timeout > 0 else math.inf
        self._shutting_down = shutting_down
        self._disconnected = False
        self._close: tuple[int, str] | None = None
        self.busy: Callable[[], bool] = lambda: False

    async def receive(self) -> bytes:
        while True:
            with trio.move_on_after(self._idle):
                message = await self._receive()
                kind = message["type"]
                if kind == "websocket.receive":
                    text = message.get("text")
                    if text is not None:
                        return text.encode()
                    self._close = (WS_UNSUPPORTED_DATA, "binary frames are not supported: send each JSON-RPC message as one text frame")
                    raise trio.EndOfChannel
                if kind == "websocket.disconnect":
                    self._disconnected = True
                    raise trio.EndOfChannel
                continue
            if not self.busy():
                self._close = (WS_GOING_AWAY, "idle timeout")
                raise trio.EndOfChannel

    async def send(self, data: bytes) -> None:
        if self._disconnected:
            raise trio.BrokenResourceError("WebSocket closed by the peer")
        await self._send({"type": "websocket.send", "text": data.decode()})

    async def aclose(self) -> None:
        if not self._disconnected:
            self._disconnected = True
            code, reason = self._close or ((WS_GOING_AWAY, "server shutting down") if self._shutting_down.is_set() else (1000, ""))
            await self._send({"type": "websocket.close", "code": code, "reason": reason})


# ---------------------------------------------------------------------------------------------
# serving
# ---------------------------------------------------------------------------------------------
class _Config(Config):
    """hypercorn's settings, plus ``reuse_port`` (several processes serving one port).

    hypercorn sets ``SO_REUSEPORT`` on the sockets it creates only when it runs several
    workers itself; ``serve`` runs one and warns about ``workers``, so it is raised just while
    the sockets are made.
    """

    reuse_port = False

    def create_sockets(self) -> Any:
        if not self.reuse_port:
            return super().create_sockets()
        workers, self.workers = self.workers, 2
        try:
            return super().create_sockets()
        finally:
            self.workers = workers


def hypercorn_config(host: str, port: int, limits: Limits, *, certfile: str | None = None, keyfile: str | None = None,
                     reuse_port: bool = False) -> Config:
    """hypercorn settings derived from our limits."""
    config = _Config()
    config.reuse_port = reuse_port
    config.bind = [f"[{host}]:{port}" if host.count(":") > 1 and not host.startswith("[") else f"{host}:{port}"]
    if certfile is not None:
        config.certfile = certfile
        config.keyfile = keyfile
    config.graceful_timeout = limits.grace_period + _HYPERCORN_GRACE_MARGIN
    config.keep_alive_timeout = limits.keep_alive_timeout
    config.websocket_max_message_size = limits.max_message_size
    config.websocket_ping_interval = limits.heartbeat_interval or None
    config.accesslog = None
    config.errorlog = logging.getLogger("mcp_trio.http.hypercorn")
    return config


async def serve_http(
    server: Server,
    limits: Limits | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    allowed_origins: Iterable[str] | None = None,
    allowed_hosts: Iterable[str] | None = None,
    certfile: str | None = None,
    keyfile: str | None = None,
    json_response: bool = False,
    authenticator: Authenticator | None = None,
    handle_signals: bool = False,
    reuse_port: bool = False,
    rate_limits: RateLimits | None = None,
    metrics: str | None = None,
    engine: str = "hypercorn",
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    watch_signals: bool | None = None,
    trusted_proxies: Iterable[str] | None = None,
    proxy_headers: str = "x-forwarded",
    cluster: ClusterSettings | None = None,
) -> None:
    """Serve ``server`` over Streamable HTTP (``/mcp``) and WebSocket (``/ws``) on one port.

    Reports the bound port with ``task_status.started`` (``port=0`` picks a free one). Runs
    until ``supervisor.shutdown()`` (SIGINT/SIGTERM with ``handle_signals``, the same keyword as
    ``serve_websocket``'s; ``watch_signals`` is its old name, deprecated): it then stops
    accepting, lets in-flight requests finish within ``limits.grace_period`` (the rest are
    answered with an error), ends every session and returns.

    ``allowed_hosts``: Host values accepted (``name`` or ``name:port``; ``"*"`` for any);
    default: the loopback names when bound to loopback, else unchecked. ``allowed_origins``:
    Origin values accepted (``scheme://host[:port]``, ``"*"``); default: loopback origins when
    bound to loopback, else same-origin only. ``json_response``: answer every request with
    JSON; messages sent while serving it then go on the session's GET stream.
    ``authenticator``: every request to ``/mcp`` (and each WebSocket handshake) must carry a
    credential it accepts (401/403 with ``WWW-Authenticate`` otherwise); a session belongs to
    the caller that opened it. ``reuse_port``: bind with ``SO_REUSEPORT``, so that several
    processes (each with its own supervisor and sessions) share the port. ``metrics``: who
    may read ``/metrics`` (``metrics_access``: "public", "loopback", "scope:NAME"; default
    "scope:admin" with an ``authenticator``, else "public"). ``engine``: ``"hypercorn"``
    (HTTP/1.1 and HTTP/2) or ``"h1"`` (the lean HTTP/1.1 engine, ``transports/h1``).
    ``trusted_proxies``: addresses or networks (``10.0.0.0/8``) of the proxies in front,
    whose ``proxy_headers`` (``"x-forwarded"``: X-Forwarded-For/-Proto; ``"forwarded"``:
    RFC 7239) name the client: its address keys rate limits and quotas, decides ``/admin``'s
    loopback rule and is the session's peer. From any other peer those headers are ignored.
    ``cluster``: take part in a cluster on Redis: handshake-era sessions served by any
    process, shared rate limits, switches, plugin reloads and tasks (docs/cluster.md).
    """
    if engine not in ("hypercorn", "h1"):
        raise ValueError(f"engine must be 'hypercorn' or 'h1', not {engine!r}")
    if watch_signals is not None:
        warnings.warn("serve_http(watch_signals=...) is now handle_signals=..., as for serve_websocket", DeprecationWarning,
                      stacklevel=2)
        handle_signals = handle_signals or watch_signals
    limits = limits or Limits()
    metrics = metrics_access(metrics, authenticator)  # a bad value stops the server here
    proxies = TrustedProxies(trusted_proxies, proxy_headers) if trusted_proxies else None
    config = hypercorn_config(host, port, limits, certfile=certfile, keyfile=keyfile, reuse_port=reuse_port)
    if allowed_hosts is None and not is_loopback_name(host):
        logger.warning("serving on %s with no allowed_hosts: the Host header is not checked (DNS rebinding)", host)
    async with trio.open_nursery() as nursery:
        supervisor: Supervisor = await nursery.start(Supervisor(server, limits, rate_limits=rate_limits, cluster=cluster).run)
        if handle_signals:
            nursery.start_soon(supervisor.watch_signals)
        async with trio.open_nursery() as sessions:
            settings = ServedSettings(limits, rate_limits=rate_limits, authenticator=authenticator, bind_host=host,
                                      allowed_hosts=ServedSettings.listed(allowed_hosts),
                                      allowed_origins=ServedSettings.listed(allowed_origins), tls=certfile is not None,
                                      json_response=json_response, reuse_port=reuse_port,
                                      trusted_proxies=tuple(trusted_proxies or ()), proxy_headers=proxy_headers)
            app = McpHttpApp(supervisor, sessions, bind_host=host, allowed_hosts=settings.allowed_hosts,
                             allowed_origins=settings.allowed_origins, json_response=json_response, authenticator=authenticator,
                             metrics=metrics, settings=settings, trusted_proxies=proxies)
            sweeper = trio.CancelScope()
            sessions.start_soon(_in_scope, sweeper, app.expire_idle_sessions)
            if app.shared_sessions is not None:  # cluster mode: the bus's news of sessions come here
                supervisor.cluster.http_sessions.listen(app.shared_sessions)
            if engine == "h1":
                from .h1 import H1Limits
                from .h1._asgi import serve_asgi

                h1_limits = H1Limits.from_limits(limits, grace_period=config.graceful_timeout)
                serve = partial(serve_asgi, app, limits, h1_limits, host=host, port=port, certfile=certfile, keyfile=keyfile,
                                reuse_port=reuse_port, error_body=_h1_error_body, shutdown_trigger=supervisor.shutting_down.wait)
            else:
                serve = partial(hypercorn_serve, app, config, shutdown_trigger=supervisor.shutting_down.wait)
            binds: list[str] = await sessions.start(serve)
            bound_port = int(binds[0].rpartition(":")[2])
            for bind in binds:
                logger.info("serving MCP on %s%s (WebSocket %s%s)", bind, MCP_PATH, bind.replace("http", "ws", 1), WS_PATH)
            task_status.started(bound_port)
            await supervisor.shutting_down.wait()
            # hypercorn stops accepting and gives open exchanges its graceful timeout; every
            # session drains (shutdown() stopped their readers) and ends its responses.
            sweeper.cancel()
        supervisor.close()
        nursery.cancel_scope.cancel()


def _h1_error_body(status: int, message: str) -> tuple[bytes, bytes]:
    """The h1 engine's own refusals (400, 408, 413, 431...), as JSON-RPC errors like ours."""
    return JSON, error_body(ErrorObject(SERVER_OVERLOADED if status == 503 else INVALID_REQUEST, message))


async def _in_scope(scope: trio.CancelScope, fn: Callable[[], Awaitable[None]]) -> None:
    with scope:
        await fn()
