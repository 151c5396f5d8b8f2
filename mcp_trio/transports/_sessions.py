"""Who may open a WebSocket session, on either server: one admission, one set of answers.

A WebSocket reaches a session two ways: the WebSocket server's own handshake
(``websocket.py``, h11 and wsproto) and ``/ws`` on the HTTP port (``http.py``, hypercorn's
upgrade). Once the upgrade itself is valid, both ask ``SessionGate.admit``, in this order:
Host and Origin (``_gate.HostPolicy``: 403), shutting down (503), capacity
(``Limits.max_connections``: 503), the credential (``_gate.auth_refusal``: 401/403/503), the
caller's ``max_sessions_per_principal`` quota (429). A refusal is one ``SessionRefused``; each
server writes it in its own way (a plain-text HTTP answer, an ASGI ``websocket.http.response``).
"""

from __future__ import annotations

from typing import Any

from ..protocol._errors import INVALID_REQUEST, SERVER_OVERLOADED, QuotaExceeded
from ._gate import HostPolicy, auth_refusal

#: Seconds a client refused with 503 is asked to wait before it retries.
RETRY_AFTER = 5


class SessionRefused(Exception):
    """A session refused before it opened: HTTP status, JSON-RPC code, one line, headers."""

    def __init__(self, status: int, code: int, message: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or []


class SessionGate:
    """The admission of WebSocket sessions for one served server."""

    def __init__(self, supervisor: Any, policy: HostPolicy, authenticator: Any = None) -> None:
        self.supervisor = supervisor
        self.policy = policy
        self.authenticator = authenticator

    async def admit(self, headers: list[tuple[bytes, bytes]], peer: str | None, open_now: int) -> tuple[Any, Any]:
        """``(principal, quota)`` for a new session (release the quota when it ends), or
        ``SessionRefused``. ``open_now``: the sessions this server holds open already."""
        host = origin = None
        for name, value in headers:
            if name == b"host" or (name == b":authority" and host is None):
                host = value
            elif name == b"origin":
                origin = value
        if not self.policy.allows(host, origin):
            raise SessionRefused(403, INVALID_REQUEST, "forbidden: the Host or Origin header is not allowed (DNS rebinding protection)")
        supervisor = self.supervisor
        retry = [(b"retry-after", b"%d" % RETRY_AFTER)]
        if supervisor.shutting_down.is_set():
            raise SessionRefused(503, SERVER_OVERLOADED, "server shutting down", retry)
        limit = supervisor.limits.max_connections
        if open_now >= limit:
            raise SessionRefused(503, SERVER_OVERLOADED, f"server at capacity ({limit} connections); try again later", retry)
        principal = None
        if self.authenticator is not None:
            from ..auth import AuthError

            try:
                principal = await self.authenticator.authenticate(headers)
            except AuthError as exc:
                refusal = auth_refusal(self.authenticator, exc)
                raise SessionRefused(refusal.status, refusal.code, refusal.message, refusal.headers) from None
        try:
            quota = supervisor.quotas.acquire("sessions", principal, peer)
        except QuotaExceeded as exc:
            raise SessionRefused(429, exc.code, exc.message) from None
        return principal, quota
