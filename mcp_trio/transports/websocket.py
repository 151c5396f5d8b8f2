"""The WebSocket transport: one MCP session per connection, one JSON-RPC message per text frame.

::

    TCP ─► handshake (h11: Host, Origin, capacity, auth) ─► WebSocketChannel ─► Connection actors
                                                                  ▲
                                  reaper (one task per server): heartbeat pings, idle timeout

The wire protocol is wsproto's, the sans-io WebSocket library trio-websocket is built on; the
I/O around it is ours, because a trio-websocket connection runs a reader task of its own and
hands messages to the session's reader through a memory channel. Here the session's reader
(``Connection``'s) *is* the WebSocket reader: ``WebSocketChannel.receive`` reads the socket and
turns wsproto frames into whole messages. That saves a task, a channel and a trip through the
scheduler per message, and lets us bound what a partial message costs: trio-websocket keeps
every fragment as an object of its own (one 1 MB message in 2-byte frames: ~30 MB held), here
a partial message is one ``bytearray`` of its size.

Choices a client can see:

* The subprotocol ``mcp`` is selected when the client offers it; a client offering none gets
  none. Every path is served (``/``, ``/ws``, ``/mcp``...).
* A binary frame closes the connection with 1003 (unsupported data) and a reason: the client's
  WebSocket library surfaces a close code and reason at once, whereas a JSON-RPC error with a
  null id would be unmatched by any request and could leave the client waiting forever.
  Requests already read are still answered before the close frame goes out.
* A message larger than ``Limits.max_message_size``, or in more than
  ``Limits.max_message_fragments`` frames, closes the connection with 1009 (message too big).
  A partial message is kept in one ``bytearray``, so it never costs more than its size.
* A request that is not a WebSocket upgrade gets 426; a forbidden ``Host`` or ``Origin`` 403;
  a server at ``Limits.max_connections`` (or shutting down) 503 with ``Retry-After``; a refused
  credential 401/403 with ``WWW-Authenticate`` (when an ``Authenticator`` is configured).
* Idle for ``Limits.idle_timeout`` (no message either way and nothing in flight): closed with
  1000 and reason ``idle timeout``. Quiet for ``Limits.heartbeat_interval``: pinged; no pong
  (nor anything else) within another interval: the TCP connection is dropped. Graceful
  shutdown: requests in flight get ``Limits.grace_period``, then the close code is 1001.
* A client's close frame is answered at once with the client's own code and reason (RFC 6455
  §5.5.1), also while the session drains at shutdown (then our 1001 is never sent).
* A client that stops reading stalls only its own writer; after ``Limits.send_timeout`` the
  connection is dropped (a frame is never half-sent and then continued).

Origin and Host (DNS rebinding defence), capacity, the credential and the caller's session
quota are checked at the handshake by ``_sessions.SessionGate``, the same admission as ``/ws``
on the HTTP port (its Host/Origin policy: ``_gate.HostPolicy``). What happens after the
handshake (the session, its heartbeat and idle timeout, the close codes) is
``_ws_sessions.WebSocketSessions``'s, shared with ``/ws`` on the HTTP port.
"""

from __future__ import annotations

import errno
import logging
import os
import socket as socket_module
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import h11
import trio

from .._limiter import RateLimits
from .._limits import Limits
from .._server import Server
from ..serving._supervisor import Supervisor
from ._gate import HostPolicy, TrustedProxies, check_head
from ._sessions import SessionGate, SessionRefused
from ._sockets import READ_SIZE as RECEIVE_SIZE
from ._sockets import SocketStream
from ._ws_channel import WebSocketChannel, _peer_host
from ._ws_sessions import SUBPROTOCOL, UpgradeRefused, WebSocketSessions, accept_head, check_upgrade

if TYPE_CHECKING:
    import ssl

    from ..auth import Authenticator
    from ..cluster import ClusterSettings

logger = logging.getLogger("mcp_trio.websocket")

__all__ = ["SUBPROTOCOL", "WebSocketChannel", "WebSocketServer", "serve_websocket"]

#: Largest HTTP upgrade request head (request line and headers) we read, in bytes.
MAX_HANDSHAKE_SIZE = 16 * 1024
#: accept() errors that mean "out of resources for now": wait and retry (as trio does).
_ACCEPT_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})

# -- the handshake ------------------------------------------------------------------------------
async def _send_refusal(stream: trio.abc.Stream, refused: UpgradeRefused) -> None:
    from http import HTTPStatus

    try:
        phrase = HTTPStatus(refused.status).phrase
    except ValueError:
        phrase = "Error"
    body = (refused.reason + "\n").encode()
    head = [f"HTTP/1.1 {refused.status} {phrase}", "Content-Type: text/plain; charset=utf-8",
            f"Content-Length: {len(body)}", "Connection: close"]
    head += [f"{name.decode('latin-1')}: {value.decode('latin-1')}" for name, value in refused.headers]
    await stream.send_all(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)


# -- the server ---------------------------------------------------------------------------------
class WebSocketServer:
    """A running WebSocket endpoint, as ``serve_websocket`` reports it through ``task_status``.

    ``port`` is the first bound port (the one to use after binding port 0), ``addresses`` all
    of them; ``shutdown()`` starts the graceful shutdown; ``statistics()`` gives the counts.
    """

    def __init__(
        self,
        supervisor: Supervisor,
        policy: HostPolicy,
        *,
        authenticator: Authenticator | None = None,
        scheme: str = "ws",
        trusted_proxies: TrustedProxies | None = None,
    ) -> None:
        self.supervisor = supervisor
        #: The proxies whose forwarding headers name the client (None: the peer is the client).
        self.proxies = trusted_proxies or None
        self.limits = supervisor.limits
        self.policy = policy
        self.authenticator = authenticator
        #: Who may open a session: Host/Origin, capacity, credential, quota (shared with /ws on HTTP).
        self.gate = SessionGate(supervisor, policy, authenticator)
        self.scheme = scheme
        self.addresses: list[tuple[str, int]] = []
        #: Live sessions (set once serving: it needs the sessions nursery).
        self.sessions: WebSocketSessions | None = None
        #: TCP connections still in the opening handshake.
        self.handshaking = 0
        self.refused: dict[int, int] = {}
        self._handshakes: set[trio.CancelScope] = set()
        self._nursery: trio.Nursery | None = None
        self._accepting = trio.CancelScope()
        self._reaping = trio.CancelScope()

    @property
    def channels(self) -> set[WebSocketChannel]:
        """Live sessions (accepted WebSockets)."""
        return self.sessions.channels if self.sessions is not None else set()

    @property
    def port(self) -> int:
        return self.addresses[0][1]

    @property
    def urls(self) -> list[str]:
        return [f"{self.scheme}://{f'[{host}]' if ':' in host else host}:{port}/" for host, port in self.addresses]

    def shutdown(self) -> None:
        """Begin graceful shutdown (the same as ``supervisor.shutdown()``)."""
        self.supervisor.shutdown()

    def accept_stream(self, stream: trio.abc.Stream) -> None:
        """Serve one connection accepted elsewhere (any trio ``Stream``: in-memory in tests,
        a socket handed over by another listener), handshake included, like a TCP one."""
        if self._nursery is None or self.supervisor.shutting_down.is_set():
            raise trio.ClosedResourceError("the server is not accepting connections")
        self._nursery.start_soon(self._handle, stream)

    def statistics(self) -> dict[str, Any]:
        return {"connections": len(self.channels), "handshaking": self.handshaking, "refused": dict(self.refused)}

    # -- serving ----------------------------------------------------------------------------
    async def _serve(self, listeners: Sequence[trio.abc.Listener[Any]], *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Accept connections until shutdown, then let the sessions drain (bounded)."""
        limits = self.limits
        async with trio.open_nursery() as sessions:
            self._nursery = sessions
            self.sessions = WebSocketSessions(self.supervisor, sessions)
            for listener in listeners:
                inner = listener.transport_listener if isinstance(listener, trio.SSLListener) else listener
                if isinstance(inner, trio.SocketListener):
                    host, port = inner.socket.getsockname()[:2]
                    self.addresses.append((str(host), int(port)))
            sessions.start_soon(self._accept, listeners)
            sessions.start_soon(self._reap)
            task_status.started()
            await self.supervisor.shutting_down.wait()
            logger.info("websocket: shutting down; %d session(s) draining", len(self.channels))
            self._accepting.cancel()
            self._reaping.cancel()
            for scope in list(self._handshakes):
                scope.cancel()
            self.sessions.drain()
            # Sessions drain by themselves (grace period, then the writer, then the closing
            # handshake); this bound only catches what would outlive all three.
            sessions.cancel_scope.deadline = trio.current_time() + limits.grace_period + limits.send_timeout + limits.handshake_timeout + 1.0

    async def _accept(self, listeners: Sequence[trio.abc.Listener[Any]]) -> None:
        with self._accepting:
            async with trio.open_nursery() as nursery:
                for listener in listeners:
                    nursery.start_soon(self._accept_from, listener)

    async def _accept_from(self, listener: trio.abc.Listener[Any]) -> None:
        """Accept connections (like ``trio.serve_listeners``, minus a frame per connection)."""
        sessions = self._nursery
        assert sessions is not None
        async with listener:
            while True:
                try:
                    stream = await listener.accept()
                except OSError as exc:
                    if exc.errno not in _ACCEPT_CAPACITY_ERRNOS:
                        raise
                    logger.error("accept: %s (out of file descriptors?); retrying in 100 ms", os.strerror(exc.errno or 0))
                    await trio.sleep(0.1)
                    continue
                if isinstance(stream, trio.SocketStream):
                    stream = SocketStream(socket_module.socket(fileno=stream.socket.detach()))
                sessions.start_soon(self._handle, stream)

    def _refuse(self, status: int) -> None:
        self.refused[status] = self.refused.get(status, 0) + 1
        if status in (503, 408):
            self.supervisor.metrics.connections_refused += 1

    async def _handle(self, stream: trio.abc.Stream) -> None:
        """One TCP connection: the opening handshake, then one MCP session."""
        try:
            if self.handshaking >= self.limits.max_connections:
                self._refuse(503)  # a flood of connections that never finish their handshake
                return
            opened = await self._open(stream)
            if opened is None:
                return
            trailing, principal, quota, client = opened
            assert self.sessions is not None
            await self.sessions.run(stream, trailing, principal, quota, client)
        except Exception:
            logger.exception("websocket connection failed")
        finally:
            await trio.aclose_forcefully(stream)

    async def _open(self, stream: trio.abc.Stream) -> tuple[bytes, Any, Any, str | None] | None:
        """The opening handshake, bounded by ``Limits.handshake_timeout``; None if refused."""
        self.handshaking += 1
        try:
            with trio.move_on_after(self.limits.handshake_timeout) as scope:
                self._handshakes.add(scope)
                try:
                    return await self._handshake(stream)
                finally:
                    self._handshakes.discard(scope)
            if not self.supervisor.shutting_down.is_set():
                logger.debug("handshake not completed within %g s; dropped", self.limits.handshake_timeout)
                self._refuse(408)
            return None
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return None
        finally:
            self.handshaking -= 1

    async def _handshake(self, stream: trio.abc.Stream) -> tuple[bytes, Any, Any, str | None] | None:
        """(bytes after the upgrade request, the principal, the session quota it holds, the
        client's address), or None."""
        http = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HANDSHAKE_SIZE)
        request: h11.Request | None = None
        try:
            while True:
                event = http.next_event()
                if event is h11.NEED_DATA:
                    http.receive_data(await stream.receive_some(RECEIVE_SIZE))
                elif type(event) is h11.Request:
                    request = event
                    refusal = check_head(list(event.headers))  # before waiting for any body
                    if refusal is not None:
                        raise UpgradeRefused(refusal.status, refusal.message)
                elif type(event) is h11.Data:
                    raise UpgradeRefused(400, "a WebSocket upgrade request has no body")
                elif type(event) is h11.EndOfMessage or event is h11.PAUSED:
                    break
                else:  # ConnectionClosed: the peer left before finishing its request
                    return None
            assert request is not None
            key, subprotocol = check_upgrade(request.method.decode("latin-1"), list(request.headers))
            client = _peer_host(stream)
            if self.proxies is not None:  # behind trusted proxies: the client they name
                client = self.proxies.client(client, request.headers).address
            try:
                principal, quota = await self.gate.admit(list(request.headers), client, len(self.channels))
            except SessionRefused as refused:
                raise UpgradeRefused(refused.status, refused.message, refused.headers) from None
        except h11.RemoteProtocolError as exc:
            # Never quote h11's message: it holds the offending line, which may carry a token.
            self._refuse(exc.error_status_hint)
            await _send_refusal(stream, UpgradeRefused(exc.error_status_hint, "bad HTTP request: malformed request line or header"))
            return None
        except UpgradeRefused as refused:
            self._refuse(refused.status)
            logger.debug("upgrade refused (%d): %s", refused.status, refused.reason)
            await _send_refusal(stream, refused)
            return None
        trailing, _ = http.trailing_data
        try:
            await stream.send_all(accept_head(key, subprotocol))
        except BaseException:
            self.supervisor.quotas.release("sessions", quota)
            raise
        return bytes(trailing), principal, quota, client

    async def _reap(self) -> None:
        """Heartbeat and idle timeout of every session (``WebSocketSessions.reap``), until shutdown."""
        assert self.sessions is not None
        with self._reaping:
            await self.sessions.reap()


async def serve_websocket(
    server: Server,
    limits: Limits | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    allowed_origins: Iterable[str] | None = None,
    allowed_hosts: Iterable[str] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    authenticator: Authenticator | None = None,
    handle_signals: bool = False,
    listeners: Sequence[trio.abc.Listener[Any]] | None = None,
    reuse_port: bool = False,
    rate_limits: RateLimits | None = None,
    cluster: ClusterSettings | None = None,
    task_status: trio.TaskStatus[WebSocketServer] = trio.TASK_STATUS_IGNORED,
    trusted_proxies: Iterable[str] | None = None,
    proxy_headers: str = "x-forwarded",
) -> None:
    """Serve ``server`` over WebSocket (``wss://`` with ``ssl_context``) until shut down.

    Reports a ``WebSocketServer`` through ``task_status`` once listening (its ``port`` is the
    real one when ``port`` is 0). Returns after a graceful shutdown (``supervisor.shutdown()``,
    or SIGINT/SIGTERM when ``handle_signals``): new connections are refused, sessions stop
    reading, requests in flight get ``Limits.grace_period``, then each connection closes with
    1001. ``allowed_origins``/``allowed_hosts``: see ``_gate.HostPolicy`` (one policy for
    every transport). ``authenticator``:
    checked once per connection at the handshake; its principal applies to the whole session.
    ``listeners``: accept from these instead of binding ``host``/``port`` (pre-bound sockets;
    an empty list serves only the streams given to ``WebSocketServer.accept_stream``).
    ``reuse_port``: bind with ``SO_REUSEPORT``, so several processes (``--workers``) share
    the port and the kernel spreads connections over them. ``trusted_proxies``,
    ``proxy_headers``: the proxies in front, whose forwarding headers name the client (as for
    ``serve_http``); from any other peer those headers are ignored. ``cluster``: take part in a
    cluster on Redis (shared rate limits, switches, plugin reloads, tasks; docs/cluster.md).
    """
    limits = limits or Limits()
    proxies = TrustedProxies(trusted_proxies, proxy_headers) if trusted_proxies else None
    if listeners is not None:
        bound: list[Any] = list(listeners)
    elif reuse_port:
        bound = await _reuse_port_listeners(host, port, ssl_context)
    elif ssl_context is None:
        bound = await trio.open_tcp_listeners(port, host=host)
    else:
        bound = await trio.open_ssl_over_tcp_listeners(port, ssl_context, host=host, https_compatible=True)
    policy = HostPolicy(host, allowed_origins=allowed_origins, allowed_hosts=allowed_hosts)
    if policy.any_host and allowed_hosts is None:
        logger.warning("serving on %s with no allowed_hosts: the Host header is not checked (DNS rebinding)", host)
    async with trio.open_nursery() as nursery:
        supervisor: Supervisor = await nursery.start(Supervisor(server, limits, rate_limits=rate_limits, cluster=cluster).run)
        if handle_signals:
            nursery.start_soon(supervisor.watch_signals)
        endpoint = WebSocketServer(supervisor, policy, authenticator=authenticator, scheme="ws" if ssl_context is None else "wss",
                                   trusted_proxies=proxies)
        try:
            async with trio.open_nursery() as serving:
                await serving.start(endpoint._serve, bound)
                if endpoint.addresses:
                    logger.info("serving MCP over WebSocket at %s", ", ".join(endpoint.urls))
                task_status.started(endpoint)
            # _serve has returned: shutdown has begun and every session has ended.
        finally:
            supervisor.close()
            nursery.cancel_scope.cancel()


async def _reuse_port_listeners(host: str, port: int, ssl_context: ssl.SSLContext | None) -> list[Any]:
    """One listening socket on ``host:port`` with ``SO_REUSEPORT`` set before ``bind``."""
    family = trio.socket.AF_INET6 if ":" in host else trio.socket.AF_INET
    sock = trio.socket.socket(family, trio.socket.SOCK_STREAM)
    try:
        sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEADDR, 1)
        sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEPORT, 1)
        await sock.bind((host, port))
        sock.listen(socket_module.SOMAXCONN)
    except OSError:
        sock.close()
        raise
    listener: trio.abc.Listener[Any] = trio.SocketListener(sock)
    if ssl_context is not None:
        listener = trio.SSLListener(listener, ssl_context, https_compatible=True)
    return [listener]
