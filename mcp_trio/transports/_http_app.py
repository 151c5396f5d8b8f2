"""The HTTP app: every route of the HTTP port, answering an engine ``Request`` through a ``Responder``.

::

    POST/GET/DELETE /mcp    Streamable HTTP: one session = one Connection, keyed by Mcp-Session-Id
    GET /ws                 WebSocket: the WebSocket transport's session code (``_ws_sessions``)
    GET /healthz, /health   liveness and counts, JSON
    GET /metrics            Prometheus text
    /admin/...              operators: tools on/off, plugin reload, statistics (``admin.py``);
                            GET /admin from a browser: the operator page (``admin_page``)
    /.well-known/oauth-protected-resource...   RFC 9728 metadata (with an authenticator)
    GET /sse, POST /messages   the 2024-11-05 HTTP+SSE transport (``legacy_sse``; ``_legacy_sse``)

``McpHttpApp.handle(request, responder)`` is the h1 engine's handler interface, called
directly on the hot path (no ASGI scope is built): the body is whole, the path raw (routes
match it as sent: ``/%61dmin`` is not ``/admin``), and the head is checked once per request
(``_gate.fold_head``: framing, single headers). ``upgrade(request, stream, data)`` takes a
WebSocket upgrade on ``/ws`` over. Under hypercorn (HTTP/2, ``asgi_app``), ``h1.AsgiHost``
builds the same ``Request`` and ``Responder`` from ASGI, and ``asgi_websocket`` serves ``/ws``.

A handshake-era session is an ``HttpSession`` (``_http_session.py``); a 2026-07-28 POST is
answered by ``_stateless_http.py`` (which era: ``protocol._era``); who may connect is the
gate's (``_gate.HostPolicy``, one policy for every transport), and who may open a WebSocket
session is ``_sessions.SessionGate``, shared with the WebSocket server.

Limits (``Limits``): ``max_message_size`` is the body limit (413, checked against
Content-Length before reading, and counted while reading, by the engine or the ASGI shim);
``request_deadline`` bounds the time a request may take to arrive however it trickles (408);
``max_sessions`` (503 at initialize, or at ``GET /sse``); ``idle_timeout`` expires a session
with no HTTP exchange open for that long (0 disables); ``max_connections`` caps WebSockets
(503 at the handshake). Host and Origin are validated on every route (403).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import msgspec
import trio

from .._containment import describe_raised, is_failure, run_session
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
from ._gate import HostPolicy, TrustedProxies, auth_refusal, check_head, fold_head, is_loopback_address
from ._http_common import (
    ADMISSION_CODES,
    CLIENT_GONE,
    JSON,
    KEEPALIVE,
    SSE_HEADERS,
    SSE_KEEPALIVE,
    Refused,
    admission_status,
    error_body,
    refuse,
    refuse_head,
    respond_json,
    same_caller,
    watch_disconnect,
)
from ._http_session import SPILL_WAIT, SSE_RETRY_MS, HttpSession, SharedSessionTable, _Stream
from ._legacy_sse import LegacySse
from ._sessions import SessionGate, SessionRefused
from ._ws_sessions import UpgradeRefused, WebSocketSessions, accept_head, check_upgrade
from .admin import ADMIN_PATH, AdminApi
from .admin_page import AdminPage, ServedSettings
from .h1 import AsgiWebSocket, Request as HttpRequest, Responder
from .h1._asgi import Receive, Scope, Send

logger = logging.getLogger("mcp_trio.http")

MCP_PATH = b"/mcp"
WS_PATH = b"/ws"
HEALTH_PATHS = frozenset({b"/healthz", b"/health"})
METRICS_PATH = b"/metrics"
_ADMIN = ADMIN_PATH.encode()
_ADMIN_PREFIX = _ADMIN + b"/"
_MEMO_LIMIT = 256  # entries in the Accept memo (only ever grows with distinct values)
_NO_CONTENT: list[tuple[bytes, bytes]] = []

_encode = msgspec.json.Encoder().encode


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


class McpHttpApp:
    """Every route of the HTTP port (see the module docstring)."""

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
        legacy_sse: bool = False,
        trusted_proxies: TrustedProxies | None = None,
    ) -> None:
        """``nursery`` runs the sessions (each ends alone: ``run_session``); ``settings``:
        what the server was started with, for the operator page (built from these arguments
        when None); ``legacy_sse``: serve ``GET /sse`` and ``POST /messages`` too;
        ``trusted_proxies``: the peers whose forwarding headers name the client
        (``_gate.TrustedProxies``); None: the peer is the client."""
        self.supervisor = supervisor
        self.proxies = trusted_proxies or None
        #: Who may read ``/metrics`` (``metrics_access``): "public", "loopback" or "scope:NAME".
        self.metrics_access = metrics_access(metrics, authenticator)
        self.limits = supervisor.limits
        self._nursery = nursery
        self._authenticator = self.authenticator = authenticator
        self._metadata_paths = frozenset(p.encode() for p in authenticator.metadata_paths()) if authenticator is not None else frozenset()
        self.policy = HostPolicy(bind_host, allowed_hosts=allowed_hosts, allowed_origins=allowed_origins)
        #: Who may open a WebSocket session on ``/ws`` (shared with the WebSocket server).
        self.session_gate = SessionGate(supervisor, self.policy, authenticator)
        #: The live ``/ws`` sessions: the WebSocket transport's runner, heartbeat and idle reaper.
        self.ws_sessions = WebSocketSessions(supervisor, nursery)
        #: ``/admin``: tools on/off, plugin reload, statistics (see ``transports/admin.py``).
        self.admin = AdminApi(supervisor, authenticator)
        self._json_response = self.json_response = json_response
        self._codec = MessageCodec()
        self._accept_memo: dict[bytes, tuple[bool, bool]] = {}
        #: Live Streamable HTTP sessions by Mcp-Session-Id (cluster mode: those served here).
        self.sessions: dict[str, HttpSession] = {}
        #: Cluster mode: the sessions are the cluster's, served by any process; the bus's news
        #: of them (deleted, changed, an event for a GET stream, a client's answer) come here.
        self.shared_sessions: SharedSessionTable | None = None
        if supervisor.cluster is not None:
            self.shared_sessions = SharedSessionTable(supervisor.cluster.http_sessions, self.sessions, self._replica,
                                                      nursery.start_soon)
            supervisor.cluster.http_sessions.listen(self.shared_sessions)
        #: WebSocket sessions served through ASGI (``asgi_websocket``, under hypercorn).
        self._asgi_websockets = 0
        #: The 2024-11-05 HTTP+SSE transport, when served.
        self.legacy = LegacySse(self) if legacy_sse else None
        #: Everything under /admin: the operator page, its files, then the JSON API.
        self.admin_page = AdminPage(self.admin, self.sessions, settings or ServedSettings(
            supervisor.limits, authenticator=authenticator, bind_host=bind_host, json_response=json_response,
            allowed_hosts=ServedSettings.listed(allowed_hosts), allowed_origins=ServedSettings.listed(allowed_origins)))

    @property
    def websockets(self) -> int:
        """Open WebSocket sessions on ``/ws``."""
        return len(self.ws_sessions.channels) + self._asgi_websockets

    # -- the tasks the app runs beside the exchanges ---------------------------------------
    async def run_background(self) -> None:
        """The idle-session sweeper and the WebSocket reaper; runs until cancelled (shutdown)."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.expire_idle_sessions)
            nursery.start_soon(self.ws_sessions.reap)

    def drain(self) -> None:
        """Shutdown has begun: ``/ws`` sessions answer their peers' close frames as they drain."""
        self.ws_sessions.drain()

    # -- dispatch ---------------------------------------------------------------------------
    async def handle(self, request: HttpRequest, responder: Responder) -> None:
        """Answer one HTTP request (the engine's ``Handler``)."""
        try:
            await self._route(request, responder)
        except Exception:
            raise  # the engine answers 500 (or drops a response half sent), logged once
        except BaseException as exc:
            # Not even a SystemExit from code run on the request's behalf may reach the server.
            if not is_failure(exc):
                raise
            raise RuntimeError(f"the exchange raised {describe_raised(exc)}") from exc

    async def _route(self, request: HttpRequest, responder: Responder) -> None:
        if self.proxies is not None:  # behind trusted proxies: the client they name, from here on
            _behind(self.proxies, request)
        headers, refusal = fold_head(request.headers)
        if refusal is not None:
            await refuse_head(responder, refusal)
            return
        path = request.path
        method = request.method
        try:
            if not self.policy.allows(headers.get(b"host"), headers.get(b"origin")):
                raise Refused(403, INVALID_REQUEST, "forbidden: Host or Origin not allowed")
            if path == MCP_PATH:
                if method == "POST":
                    principal = await self.authenticate(request.headers)
                    await self._post(request, responder, headers, principal)
                    return
                if method != "GET" and method != "DELETE":
                    raise Refused(405, INVALID_REQUEST, "method not allowed", headers=[(b"allow", b"GET, POST, DELETE")])
                if b"mcp-session-id" not in headers and stateless_version_header(headers.get(b"mcp-protocol-version")):
                    # 2026-07-28 has no GET stream and no session to DELETE.
                    raise Refused(405, INVALID_REQUEST, "method not allowed: protocol revision 2026-07-28 is POST only",
                                  headers=[(b"allow", b"POST")])
                principal = await self.authenticate(request.headers)
                if method == "GET":
                    await self._get(responder, headers, principal, _host_of(request))
                else:
                    await self._delete(responder, headers, principal, _host_of(request))
            elif path == _ADMIN or path.startswith(_ADMIN_PREFIX):
                # Routed on the raw path; the admin API reads its names from the decoded one.
                decoded = path.decode("latin-1")
                status, content_type, body, extra = await self.admin_page(
                    method, unquote(decoded) if "%" in decoded else decoded, request.headers, _host_of(request))
                await responder.respond(status, [(b"content-type", content_type), *extra], body)
            elif path in self._metadata_paths and method in ("GET", "HEAD"):
                await respond_json(responder, 200, _encode(self._authenticator.metadata()))  # type: ignore[union-attr]
            elif path in HEALTH_PATHS or path == METRICS_PATH:
                if method not in ("GET", "HEAD"):
                    raise Refused(405, INVALID_REQUEST, "method not allowed", headers=[(b"allow", b"GET, HEAD")])
                if path == METRICS_PATH:
                    await self._check_metrics_access(request.headers, _host_of(request))
                    text = self._metrics_text()
                    if self.supervisor.cluster is not None:  # and the cluster's figures
                        text += await self.supervisor.cluster.metrics_text()
                    await responder.respond(200, [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")],
                                            text.encode())
                else:
                    status, body = self._health()
                    await respond_json(responder, status, body)
            elif self.legacy is not None and self.legacy.serves(path):
                await self.legacy.handle(request, responder, headers)
            else:
                raise Refused(404, INVALID_REQUEST, f"not found: {path.decode('latin-1')}")
        except Refused as refused:
            await refuse(responder, refused)

    # -- authentication ---------------------------------------------------------------------
    async def authenticate(self, headers: Iterable[tuple[bytes, bytes]]) -> Principal | None:
        """The caller of this request, or a 401/403/503 (with ``WWW-Authenticate``); None: no auth."""
        if self._authenticator is None:
            return None
        try:
            return await self._authenticator.authenticate(headers)
        except AuthError as exc:
            refusal = auth_refusal(self._authenticator, exc)
            raise Refused(refusal.status, refusal.code, refusal.message, headers=refusal.headers) from None

    # -- Streamable HTTP: POST --------------------------------------------------------------
    def accept_flags(self, headers: dict[bytes, bytes]) -> tuple[bool, bool]:
        """(accepts JSON, accepts SSE) of a request's Accept header, memoised."""
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
                raise _unavailable(exc) from None
            if found is None:
                raise Refused(404, INVALID_REQUEST, "session not found: unknown, expired or terminated Mcp-Session-Id")
            return found
        session = self.sessions.get(token.decode("latin-1"))
        # A session is bound to the caller that opened it: to anyone else it does not exist.
        if session is None or session.terminated or not same_caller(session.principal, principal):
            raise Refused(404, INVALID_REQUEST, "session not found: unknown, expired or terminated Mcp-Session-Id")
        return session

    @staticmethod
    def _check_version(headers: dict[bytes, bytes]) -> None:
        version = headers.get(b"mcp-protocol-version")
        if version is not None and version.decode("latin-1").strip() not in SUPPORTED_VERSIONS:
            raise Refused(400, INVALID_REQUEST, "bad request: unsupported MCP-Protocol-Version header; "
                          f"supported: {', '.join(SUPPORTED_VERSIONS)} (absent means {DEFAULT_HTTP_VERSION})")

    async def _post(self, request: HttpRequest, responder: Responder, headers: dict[bytes, bytes], principal: Principal | None) -> None:
        wants_json, wants_sse = self.accept_flags(headers)
        if not wants_json or not (wants_sse or self._json_response):
            raise Refused(406, INVALID_REQUEST, "not acceptable: Accept must list application/json and text/event-stream")
        content_type = headers.get(b"content-type", b"")
        if content_type != JSON and content_type.split(b";", 1)[0].strip().lower() != JSON:
            raise Refused(415, INVALID_REQUEST, "unsupported media type: Content-Type must be application/json")
        body = request.body
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
                session = await self._session(headers, principal, _host_of(request))
                if self.shared_sessions is not None:  # cluster mode: answers and cancellations for elsewhere
                    await self._relay_batch(session, body)
                await post_batch(session, body, self.limits.max_batch_size, self.supervisor.shutting_down.is_set(), responder)
                return
            raise Refused(400, error.code, error.message, message.id)  # type: ignore[union-attr]
        if b"mcp-session-id" not in headers:
            folded, repeated = fold_headers(request.headers)
            is_request = kind is Request
            decision = decide_era(message.method if is_request else None, message.params if is_request else None,  # type: ignore[union-attr]
                                  folded, repeated)
            if decision.stateless:
                # Protocol revision 2026-07-28: no session, the request carries its own envelope.
                await _stateless_http.post(self, message, decision, folded, repeated, principal, _host_of(request),
                                           wants_sse, responder)
                return
        if kind is Request and message.method == "initialize":  # type: ignore[union-attr]
            if b"mcp-session-id" in headers:
                session = await self._session(headers, principal, _host_of(request))
                await self._post_request(session, message, body, responder, created=False)  # type: ignore[arg-type]
            else:
                session = self._new_session(principal, _host_of(request))
                await self._post_request(session, message, body, responder, created=True)  # type: ignore[arg-type]
            return
        self._check_version(headers)
        session = await self._session(headers, principal, _host_of(request))
        if self.supervisor.shutting_down.is_set():
            raise Refused(503, SHUTTING_DOWN, "server shutting down", message.id if kind is Request else None)  # type: ignore[union-attr]
        if kind is Request:
            if tracing is not None:  # answered in the session's task: handed over
                tracing.carry(session.connection, message.id)  # type: ignore[union-attr]
            await self._post_request(session, message, body, responder, created=False)  # type: ignore[arg-type]
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
            raise _unavailable(exc) from None
        finally:
            session.end()
        await responder.respond(202, _NO_CONTENT)

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
                    raise _unavailable(exc) from None

    def session_room(self) -> None:
        """Refuse a new session (503) when shutting down or at ``max_sessions`` (the
        Streamable HTTP sessions and the legacy SSE ones together)."""
        if self.supervisor.shutting_down.is_set():
            raise Refused(503, SHUTTING_DOWN, "server shutting down")
        limit = self.limits.max_sessions
        if self.shared_sessions is not None:  # cluster mode: an idle replica gives way
            self.shared_sessions.make_room(limit - (len(self.legacy.sessions) if self.legacy is not None else 0))
        if len(self.sessions) + (len(self.legacy.sessions) if self.legacy is not None else 0) >= limit:
            self.supervisor.metrics.connections_refused += 1
            raise Refused(503, SERVER_OVERLOADED, f"too many sessions (limit {limit}); try again later",
                          headers=[(b"retry-after", b"1")])

    def _new_session(self, principal: Principal | None, peer: str | None) -> HttpSession:
        self.session_room()
        quota = self.take_session_quota(principal, peer)
        token = secrets.token_urlsafe(32)  # 43 visible ASCII characters, 256 random bits
        session = self._open(token, principal, peer)
        self._nursery.start_soon(self._run_session, session, quota)
        return session

    def _open(self, token: str, principal: Principal | None, peer: str | None) -> HttpSession:
        shared = self.shared_sessions
        if shared is None:
            session = HttpSession(token, self.limits, json_response=self._json_response, principal=principal)
            session.connection = Connection(self.supervisor, session, principal=principal, peer=peer)
        else:
            session = HttpSession(token, self.limits, json_response=self._json_response, principal=principal,
                                  shared=shared.shared, spawn=self._nursery.start_soon)
            # In a cluster, several processes ask the client things within one session: each
            # replica numbers its requests from a random start, so an answer finds its asker.
            session.connection = Connection(self.supervisor, session, principal=principal, peer=peer,
                                            first_request_id=secrets.randbits(31) << 20)
        self.sessions[token] = session
        return session

    def _replica(self, token: str, record: Any, principal: Principal | None, peer: str | None) -> HttpSession:
        """Cluster mode: serve here a session another process opened (its stored profile)."""
        limit = self.limits.max_sessions - (len(self.legacy.sessions) if self.legacy is not None else 0)
        if not self.shared_sessions.make_room(limit):  # type: ignore[union-attr]
            self.supervisor.metrics.connections_refused += 1
            raise Refused(503, SERVER_OVERLOADED, f"too many sessions (limit {self.limits.max_sessions}); try again later",
                          headers=[(b"retry-after", b"1")])
        session = self._open(token, principal, peer)
        session.connection.state.resume(record.profile, record.log_level)  # type: ignore[union-attr]
        self._nursery.start_soon(self._run_session, session, None)
        return session

    def take_session_quota(self, principal: Principal | None, peer: str | None) -> Any:
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

    async def _post_request(self, session: HttpSession, request: Request, body: bytes, responder: Responder, *,
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
                            raise _unavailable(exc, request.id) from None
                    extra.append((b"mcp-session-id", session.token.encode()))
                else:
                    session.terminate()  # initialize failed: no session to keep
            if stream.final and len(stream.events) == 1 and stream.close_retry is None:
                status = 200
                if stream.error is not None and stream.error.code in ADMISSION_CODES:
                    status, refusal = admission_status(stream.error, self._authenticator)
                    extra += refusal
                await respond_json(responder, status, stream.events[0][1], extra)
                return
            # Something came before the final reply (or the stream is to be closed): SSE.
            prefix = b""
            if not stream.done or stream.events:
                if session.resumable_streams:
                    prefix = b"id: %d-0\nretry: %d\ndata: \n\n" % (stream.number, SSE_RETRY_MS)
                    session.keep_resumable(stream)
            await self._sse(session, stream, 0, responder, [*SSE_HEADERS, *extra], prefix)
        finally:
            session.end()

    # -- Streamable HTTP: GET, DELETE -------------------------------------------------------
    async def _get(self, responder: Responder, headers: dict[bytes, bytes], principal: Principal | None,
                   peer: str | None = None) -> None:
        if not self.accept_flags(headers)[1]:
            raise Refused(406, INVALID_REQUEST, "not acceptable: Accept must list text/event-stream")
        self._check_version(headers)
        session = await self._session(headers, principal, peer)
        last = headers.get(b"last-event-id")
        if session.shared is not None and (last is None or not self._local_stream(session, last)):
            await self._get_shared(responder, session, last)
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
            prefix = b""
            if stream is session.standalone and session.resumable_streams:
                prefix = b"id: 0-%d\nretry: %d\ndata: \n\n" % (cursor, SSE_RETRY_MS)
            await self._sse(session, stream, cursor, responder, SSE_HEADERS, prefix)
        finally:
            session.end()

    @staticmethod
    def _local_stream(session: HttpSession, last: bytes) -> bool:
        """Whether ``Last-Event-ID`` names a request stream this process holds (cluster mode)."""
        number, _, _ = last.decode("latin-1").strip().partition("-")
        return number.isdigit() and int(number) != 0 and session.find_stream(int(number)) is not None

    async def _get_shared(self, responder: Responder, session: HttpSession, last: bytes | None) -> None:
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
            raise _unavailable(exc) from None
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
                await self._sse(session, stream, cursor, responder, SSE_HEADERS, prefix)
            finally:
                session.end()
        finally:
            stream.stopped = True
            stream.wake.set()

    async def _delete(self, responder: Responder, headers: dict[bytes, bytes], principal: Principal | None,
                      peer: str | None = None) -> None:
        self._check_version(headers)
        session = await self._session(headers, principal, peer)
        if self.shared_sessions is not None:
            try:
                await self.shared_sessions.delete(session)
            except ServerOverloaded as exc:
                raise _unavailable(exc) from None
        else:
            del self.sessions[session.token]
            session.terminate()
        await responder.respond(204)

    # -- SSE writing ------------------------------------------------------------------------
    async def _sse(self, session: HttpSession, stream: _Stream, cursor: int, responder: Responder,
                   headers: list[tuple[bytes, bytes]], prefix: bytes) -> None:
        """Answer with ``stream`` as SSE until it ends or the client goes away."""
        ended = False
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_disconnect, responder, nursery.cancel_scope)
            await self._pump(session, stream, cursor, responder, headers, prefix)
            ended = True
            nursery.cancel_scope.cancel()
        if ended:
            # Ended with the watcher gone, so that nothing cancels the last write half-way.
            await responder.end()

    async def _pump(self, session: HttpSession, stream: _Stream, cursor: int, responder: Responder,
                    headers: list[tuple[bytes, bytes]], prefix: bytes) -> None:
        """Start the response, then write ``stream``'s events after ``cursor`` until its final
        reply, its end, or a close (the caller ends the response).

        One listener per stream: a newer one (a reconnect that beat the old connection's
        timeout) takes over and this one's response is ended. When the client has gone, the
        caller's disconnect watcher cancels all of this.
        """
        if stream.listener is not None:
            stream.listener.cancel()
        with trio.CancelScope() as scope:
            stream.listener = scope
            try:
                chunk, cursor, final = stream.render_after(cursor)
                await responder.start(200, headers, prefix + chunk)
                while True:
                    if chunk:
                        stream.delivered = max(stream.delivered, cursor)
                    if stream.close_retry is not None and not final:
                        await responder.send(b"retry: %d\n\n" % stream.close_retry)
                        stream.close_retry = None
                        break
                    if final:
                        session.drop_resumable(stream)
                        break
                    if stream.done and cursor >= stream.seq:
                        break
                    if not stream.done:
                        with trio.move_on_after(SSE_KEEPALIVE) as idle:
                            await stream.lot.park()
                        if idle.cancelled_caught:
                            await responder.send(KEEPALIVE)
                    chunk, cursor, final = stream.render_after(cursor)
                    if chunk:
                        await responder.send(chunk)
            finally:
                if stream.listener is scope:
                    stream.listener = None
                    if not stream.final:
                        session.spill(stream)  # cluster mode: resumable from any process

    # -- WebSocket on /ws -------------------------------------------------------------------
    async def upgrade(self, request: HttpRequest, stream: trio.abc.Stream, data: bytes) -> None:
        """A WebSocket upgrade request, handed over by the engine with the connection's stream
        and the bytes read behind its head: the session runs in this connection's task, on
        the WebSocket transport's own session code. Refusals are HTTP answers (JSON-RPC error
        bodies, as on every route), then the engine closes the connection."""
        if self.proxies is not None:
            _behind(self.proxies, request)
        peer = _host_of(request)
        try:
            refusal = check_head(request.headers)
            if refusal is not None:
                raise UpgradeRefused(refusal.status, refusal.message)
            if request.path != WS_PATH:
                raise UpgradeRefused(404, f"not found: {request.path.decode('latin-1')}")
            key, subprotocol = check_upgrade(request.method, request.headers)
        except UpgradeRefused as refused:
            await _refuse_upgrade(stream, refused.status, INVALID_REQUEST, refused.reason, refused.headers)
            return
        try:
            principal, quota = await self.session_gate.admit(request.headers, peer, self.websockets)
        except SessionRefused as refused:
            if refused.status == 503:
                self.supervisor.metrics.connections_refused += 1
            await _refuse_upgrade(stream, refused.status, refused.code, refused.message, refused.headers)
            return
        del request  # a WebSocket session may last for hours: it holds nothing of its upgrade request
        try:
            await stream.send_all(accept_head(key, subprotocol))
        except BaseException:
            self.supervisor.quotas.release("sessions", quota)
            raise
        await self.ws_sessions.run(stream, data, principal, quota, peer)

    async def asgi_websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``/ws`` under an ASGI server (hypercorn): its WebSocket, its pings and size limit."""
        if (await receive())["type"] != "websocket.connect":
            return
        headers = [(name, value) for name, value in scope["headers"]]
        refusal = check_head(headers)
        if refusal is not None:
            await _asgi_ws_reject(scope, send, refusal.status, refusal.message)
            return
        raw = scope.get("raw_path") or scope["path"].encode()
        if raw != WS_PATH:
            await _asgi_ws_reject(scope, send, 404, "not found")
            return
        client = scope.get("client")
        peer = client[0] if client else None
        if self.proxies is not None:  # behind trusted proxies: the client they name
            peer = self.proxies.client(peer, headers).address
        try:
            principal, quota = await self.session_gate.admit(headers, peer, self.websockets)
        except SessionRefused as refused:
            if refused.status == 503:
                self.supervisor.metrics.connections_refused += 1
            await _asgi_ws_reject(scope, send, refused.status, refused.message, refused.headers, refused.code)
            return
        self._asgi_websockets += 1
        try:
            subprotocols = scope.get("subprotocols") or ()
            await send({"type": "websocket.accept", "subprotocol": "mcp" if "mcp" in subprotocols else None})
            channel = AsgiWebSocket(receive, send, self.limits.idle_timeout, self.supervisor.shutting_down)
            connection = Connection(self.supervisor, channel, principal=principal, peer=peer)
            channel.busy = lambda: connection.in_flight > 0
            try:
                await run_session(f"WebSocket session {connection.session_id}", connection.run)
            except* CLIENT_GONE:
                logger.debug("WebSocket client gone")
        finally:
            self._asgi_websockets -= 1
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
        principal = await self.authenticate(headers)
        if principal is None or principal.kind == "anonymous":
            raise Refused(401, INVALID_REQUEST, f"unauthorized: /metrics needs a credential with the {scope} scope",
                          headers=[(b"www-authenticate", self._authenticator.challenge().encode("latin-1"))])  # type: ignore[union-attr]
        if not principal.has_scope(scope):
            challenge = self._authenticator.challenge(insufficient_scope(frozenset({scope})))  # type: ignore[union-attr]
            raise Refused(403, FORBIDDEN, f"forbidden: /metrics needs the {scope} scope",
                          headers=[(b"www-authenticate", challenge.encode("latin-1"))])

    def _counts(self) -> dict[str, int]:
        connections = self.supervisor.connections
        counts = {
            "connections": len(connections),
            "sessions": len(self.sessions),
            "websockets": self.websockets,
            "in_flight": sum(c.in_flight for c in connections),
        }
        if self.legacy is not None:
            counts["legacy_sse_sessions"] = len(self.legacy.sessions)
        return counts

    def _health(self) -> tuple[int, bytes]:
        shutting_down = self.supervisor.shutting_down.is_set()
        body = {"status": "shutting_down" if shutting_down else "ok", **self._counts()}
        return (503 if shutting_down else 200), _encode(body)

    def _metrics_text(self) -> str:
        counts = self._counts()
        gauges = {
            "mcp_connections": ("Live MCP connections (WebSocket connections and HTTP sessions).", counts["connections"]),
            "mcp_http_sessions": ("Live Streamable HTTP sessions.", counts["sessions"]),
            "mcp_websocket_connections": ("Open WebSocket connections.", counts["websockets"]),
            "mcp_requests_in_flight": ("Requests read and not yet answered.", counts["in_flight"]),
        }
        if "legacy_sse_sessions" in counts:
            gauges["mcp_legacy_sse_sessions"] = ("Live 2024-11-05 HTTP+SSE sessions.", counts["legacy_sse_sessions"])
        return self.supervisor.metrics.render(gauges)

    # -- idle sessions ----------------------------------------------------------------------
    async def expire_idle_sessions(self) -> None:
        """End sessions with no HTTP exchange open for ``limits.idle_timeout`` (0: never);
        a legacy SSE session with no message either way for as long."""
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
            if self.legacy is not None:
                self.legacy.expire(now, idle)


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


def _behind(proxies: TrustedProxies, request: HttpRequest) -> None:
    """``request.client`` (and ``scheme``) as the trusted proxies name them."""
    client = request.client
    named = proxies.client(client[0] if client else None, request.headers)
    request.client = (named.address, 0) if named.address is not None else None
    if named.scheme is not None:
        request.scheme = named.scheme


def _unavailable(exc: ServerOverloaded, request_id: Any = None) -> Refused:
    """Cluster mode: Redis could not be reached for this request: 503 with ``Retry-After``."""
    return Refused(503, exc.code, exc.message, request_id, headers=[(b"retry-after", b"1")])


def _host_of(request: HttpRequest) -> str | None:
    client = request.client
    return client[0] if client else None


async def _refuse_upgrade(stream: trio.abc.Stream, status: int, code: int, message: str,
                          headers: Iterable[tuple[bytes, bytes]]) -> None:
    """An HTTP answer refusing a WebSocket upgrade (the connection closes after it)."""
    body = error_body(ErrorObject(code, message))
    try:
        phrase = HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        phrase = b""
    head = b"HTTP/1.1 %d %b\r\ncontent-type: application/json\r\ncontent-length: %d\r\n" % (status, phrase, len(body))
    head += b"".join(b"%b: %b\r\n" % (name, value) for name, value in headers)
    await stream.send_all(head + b"connection: close\r\n\r\n" + body)


async def _asgi_ws_reject(scope: Scope, send: Send, status: int, message: str, headers: Iterable[tuple[bytes, bytes]] = (),
                          code: int | None = None) -> None:
    """Refuse an ASGI WebSocket handshake with an HTTP status (a close 1008 when the server
    cannot answer one)."""
    if "websocket.http.response" in scope.get("extensions", {}):
        body = error_body(ErrorObject(code if code is not None else INVALID_REQUEST if status != 503 else SERVER_OVERLOADED, message))
        await send({"type": "websocket.http.response.start", "status": status,
                    "headers": [(b"content-type", JSON), (b"content-length", b"%d" % len(body)), *headers]})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1008})
