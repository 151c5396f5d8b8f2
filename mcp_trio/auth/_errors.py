"""``AuthError``: a refused credential, with a reason for logs and a status hint for HTTP.

Its message is one of a fixed set of sentences chosen here: it never quotes the token, a
claim, or any other text the caller sent (which could be a secret, or header injection).
"""

from __future__ import annotations

import math
from collections.abc import Iterable


class AuthError(Exception):
    """Authentication or authorization failed.

    - ``reason``: a short fixed code for logs and tests (``"expired"``, ``"bad_signature"``…).
    - ``status``: the HTTP status a transport should answer with: 401 (no or bad credential),
      403 (authenticated, but a scope is missing), 400 (a malformed request, RFC 6750 §3.1).
    - ``error``: the RFC 6750 error code for ``WWW-Authenticate``: ``None`` when no
      credential was sent at all, ``"invalid_token"``, ``"invalid_request"`` or
      ``"insufficient_scope"``.
    - ``required_scopes``: for ``insufficient_scope``, what would have been enough.
    - ``retry_after``: for 503 (the identity provider cannot be asked now), whole seconds to
      wait, sent as ``Retry-After``.

    Over WebSocket the handshake is refused with ``status``; per-call scope refusals inside a
    session are JSON-RPC errors (``-32003``), not this.
    """

    def __init__(
        self,
        reason: str,
        description: str,
        *,
        status: int = 401,
        error: str | None = "invalid_token",
        required_scopes: Iterable[str] = (),
        retry_after: int | None = None,
    ) -> None:
        super().__init__(description)
        self.reason = reason
        self.description = description
        self.status = status
        self.error = error
        self.required_scopes = tuple(sorted(required_scopes))
        self.retry_after = retry_after

    @property
    def label(self) -> str:
        """One word for the answer's message: ``forbidden``, ``unavailable`` or ``unauthorized``."""
        return {403: "forbidden", 503: "unavailable"}.get(self.status, "unauthorized")

    def __repr__(self) -> str:
        return f"AuthError({self.reason!r}, status={self.status})"


def missing_credentials() -> AuthError:
    return AuthError("missing", "authentication required", error=None)


def insufficient_scope(required_scopes: Iterable[str]) -> AuthError:
    return AuthError("insufficient_scope", "the credential lacks a required scope",
                     status=403, error="insufficient_scope", required_scopes=required_scopes)


def provider_unavailable(retry_after: float) -> AuthError:
    """503: the token cannot be checked now (the identity provider did not answer); never a pass."""
    return AuthError("provider_unavailable", "the identity provider cannot be reached; try again later",
                     status=503, error=None, retry_after=max(1, math.ceil(retry_after)))
