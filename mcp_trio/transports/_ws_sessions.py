"""WebSocket sessions, whichever server accepted the socket: one runner, one reaper, one handshake check.

Two servers open WebSocket sessions: the WebSocket transport (``websocket.py``, its own
listener and handshake) and ``/ws`` on the HTTP port (``http.py``: the h1 engine hands the
upgraded connection over). Both validate the upgrade with ``check_upgrade``, admit the
session with ``_sessions.SessionGate``, answer ``accept_head``, and then give the socket to
``WebSocketSessions.run``: the same channel (``WebSocketChannel``), the same ``Connection``,
the same heartbeat and idle timeout (one reaper task per server), the same close codes.

The reaper compares counters each session bumps (an int increment on the hot path, no clock
read), so a deadline is met to within a round: a quarter of the shortest of
``Limits.heartbeat_interval`` and ``Limits.idle_timeout`` (0 disables either). Quiet for a
heartbeat interval: pinged; no pong (nor anything else) within another: the TCP connection
is dropped. Idle for ``idle_timeout`` (no message either way, nothing in flight): closed
with 1000 and reason ``idle timeout``. At shutdown (``drain``) each session keeps answering
its peer's close frame while its requests finish.
"""

from __future__ import annotations

import base64
import logging
import math
from collections.abc import Iterable
from typing import Any

import trio
from wsproto.utilities import generate_accept_token

from .._containment import run_session
from ..serving._connection import Connection
from ._ws_channel import CLOSE_NORMAL, WebSocketChannel

logger = logging.getLogger("mcp_trio.websocket")

#: The subprotocol selected when the client offers it.
SUBPROTOCOL = "mcp"


class UpgradeRefused(Exception):
    """The upgrade request is refused with an HTTP status, a one-line reason and headers."""

    def __init__(self, status: int, reason: str, headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = list(headers)


def _tokens(headers: list[tuple[bytes, bytes]], name: bytes) -> list[str]:
    """The comma-separated tokens of every ``name`` header, stripped and lowercased."""
    return [token.strip().lower() for key, value in headers if key == name for token in value.decode("latin-1").split(",") if token.strip()]


def _one(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    values = [value for key, value in headers if key == name]
    if len(values) > 1:
        raise UpgradeRefused(400, f"more than one {name.decode()} header")
    return values[0].decode("latin-1") if values else None


def check_upgrade(method: str, headers: list[tuple[bytes, bytes]]) -> tuple[bytes, str | None]:
    """Validate the upgrade itself: (key, subprotocol), or ``UpgradeRefused``. Who may open a
    session is the gate's (``SessionGate.admit``), next."""
    if method != "GET":
        raise UpgradeRefused(405, "a WebSocket upgrade is a GET request", [(b"allow", b"GET")])
    if "websocket" not in _tokens(headers, b"upgrade") or "upgrade" not in _tokens(headers, b"connection"):
        raise UpgradeRefused(426, f'this endpoint serves MCP over WebSocket: connect with a WebSocket client (subprotocol "{SUBPROTOCOL}")',
                             [(b"upgrade", b"websocket"), (b"connection", b"Upgrade")])
    if _one(headers, b"sec-websocket-version") != "13":
        raise UpgradeRefused(426, "unsupported WebSocket version: 13 is supported", [(b"sec-websocket-version", b"13")])
    key = _one(headers, b"sec-websocket-key")
    try:
        valid_key = key is not None and len(base64.b64decode(key.strip(), validate=True)) == 16
    except ValueError:
        valid_key = False
    if not valid_key:
        raise UpgradeRefused(400, "missing or malformed Sec-WebSocket-Key", [(b"sec-websocket-version", b"13")])
    _one(headers, b"host")  # two are refused here, as the gate refuses them on HTTP
    _one(headers, b"origin")
    subprotocol = SUBPROTOCOL if SUBPROTOCOL in _tokens(headers, b"sec-websocket-protocol") else None
    return key.strip().encode("latin-1"), subprotocol  # type: ignore[union-attr]


def accept_head(key: bytes, subprotocol: str | None) -> bytes:
    """The ``101 Switching Protocols`` answer accepting an upgrade with ``key``."""
    head = b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: %b\r\n" % (
        generate_accept_token(key))
    if subprotocol is not None:
        head += b"sec-websocket-protocol: %b\r\n" % subprotocol.encode("latin-1")
    return head + b"\r\n"


class WebSocketSessions:
    """The live WebSocket sessions of one server, their reaper, and their drain at shutdown.

    ``nursery`` runs the short tasks the reaper and ``drain`` start (pings, drops, listening
    for a peer's close frame while a session drains): the server's sessions nursery, which
    outlives the reaper.
    """

    def __init__(self, supervisor: Any, nursery: trio.Nursery) -> None:
        self.supervisor = supervisor
        self.limits = supervisor.limits
        self._nursery = nursery
        #: Live sessions (accepted WebSockets).
        self.channels: set[WebSocketChannel] = set()

    def __len__(self) -> int:
        return len(self.channels)

    async def run(self, stream: trio.abc.Stream, trailing: bytes, principal: Any, quota: Any, peer: str | None) -> None:
        """Serve one session on an accepted (upgraded) stream; releases ``quota`` when it ends.
        The caller closes the stream afterwards."""
        try:
            channel = WebSocketChannel(stream, self.limits, self.supervisor.shutting_down, trailing_data=trailing)
            connection = Connection(self.supervisor, channel, principal=principal, peer=peer)
            channel.connection = connection
            channel.quiet_since = channel.idle_since = trio.current_time()
            self.channels.add(channel)
            try:
                await run_session(f"WebSocket session {connection.session_id}", connection.run)
            finally:
                self.channels.discard(channel)
        finally:
            self.supervisor.quotas.release("sessions", quota)

    def drain(self) -> None:
        """Shutdown has begun: each session answers its peer's close frame while it drains."""
        for channel in list(self.channels):
            self._nursery.start_soon(channel.answer_peer_close)

    async def reap(self) -> None:
        """The reaper (see the module docstring); runs until cancelled (at shutdown)."""
        heartbeat = self.limits.heartbeat_interval
        idle = self.limits.idle_timeout
        periods = [period for period in (heartbeat, idle) if 0 < period < math.inf]
        if not periods:
            return
        while True:
            await trio.sleep(min(periods) / 4)
            now = trio.current_time()
            for channel in self.channels:
                if not channel.closing and not channel.dead:
                    self._watch(channel, now, heartbeat, idle)

    def _watch(self, channel: WebSocketChannel, now: float, heartbeat: float, idle: float) -> None:
        nursery = self._nursery
        if channel.received != channel.seen_received or not channel._reading:
            # Heard from the peer (or not listening to it: then its silence proves nothing).
            channel.seen_received = channel.received
            channel.quiet_since = now
            channel.ping_at = None
        elif heartbeat > 0:
            if channel.ping_at is None:
                if now - channel.quiet_since >= heartbeat:
                    channel.ping_at = now
                    nursery.start_soon(channel.ping)
            elif now - channel.ping_at >= heartbeat:
                assert channel.connection is not None
                logger.info("session %s: no pong within %g s; dropping the connection", channel.connection.session_id, heartbeat)
                if not channel.abort():
                    nursery.start_soon(channel.drop)
                return
        connection = channel.connection
        assert connection is not None
        if channel.activity != channel.seen_activity or connection.in_flight:
            channel.seen_activity = channel.activity
            channel.idle_since = now
        elif idle > 0 and now - channel.idle_since >= idle:
            logger.debug("session %s idle for %g s; closing", connection.session_id, idle)
            channel.closing = True
            channel.close_code = CLOSE_NORMAL
            channel.close_reason = "idle timeout"
            connection.stop_reading()
            nursery.start_soon(channel.answer_peer_close)
