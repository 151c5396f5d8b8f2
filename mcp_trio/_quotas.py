"""Per-principal quotas: how much of the server one caller may hold at once.

Server-wide caps (``max_sessions``, ``MAX_TASKS``, ``MAX_LISTENS``) keep the process alive;
they do not stop one caller from taking all of it and leaving nothing for the others. A
quota does: each principal may hold at most so many sessions (HTTP sessions and WebSocket
connections), tasks, listen streams and resource subscriptions (``Limits.max_*_per_principal``).
Past one, the request is refused with ``-32032`` (HTTP 429) naming the quota.

Who counts as one principal: an authenticated caller by its kind and subject (every token of
one API key or one ``sub`` together); an anonymous caller (``allow_anonymous``) by its remote
address, as the rate limiter keys it. A connection with no principal at all (no
authentication configured: stdio, an open server) has no quota of its own: the server-wide
limits apply.

The supervisor owns one ``Quotas``; like its other state it is changed only by synchronous
calls, so a check and its increment are atomic under trio.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from ._limits import Limits
from .protocol._errors import QuotaExceeded

#: quota -> (the ``Limits`` field that sets it, what it counts, what the caller can do).
QUOTAS: dict[str, tuple[str, str, str]] = {
    "sessions": ("max_sessions_per_principal", "open sessions",
                 "end one (DELETE an HTTP session, close a WebSocket) or let idle ones expire"),
    "tasks": ("max_tasks_per_principal", "tasks",
              "cancel some, or wait until finished ones expire"),
    "listens": ("max_listens_per_principal", "open subscriptions/listen streams",
                "close one first"),
    "subscriptions": ("max_subscriptions_per_principal", "resource subscriptions",
                      "unsubscribe from some first"),
}


def quota_key(principal: Any, peer: str | None) -> Hashable | None:
    """Whose quota a caller draws on; None when it has none (no authentication configured)."""
    if principal is None:
        return None
    if principal.kind == "anonymous":
        return ("peer", peer) if peer else None
    return (principal.kind, principal.subject)


class Quotas:
    """What each principal holds now, by quota (see the module's docstring)."""

    def __init__(self, limits: Limits) -> None:
        self.limits = {name: getattr(limits, field) for name, (field, _, _) in QUOTAS.items()}
        self._held: dict[str, dict[Hashable, int]] = {name: {} for name in QUOTAS}

    def acquire(self, name: str, principal: Any, peer: str | None = None, count: int = 1) -> Hashable | None:
        """Take ``count`` of quota ``name`` for this caller, or raise ``QuotaExceeded``.

        Returns the key to ``release`` with (None: the caller has no quota; nothing taken).
        """
        key = quota_key(principal, peer)
        if key is None:
            return None
        held = self._held[name]
        now = held.get(key, 0)
        limit = self.limits[name]
        if now + count > limit:
            field, what, advice = QUOTAS[name]
            raise QuotaExceeded(f"quota exceeded: this caller already holds {now} {what} ({field} = {limit}); {advice}",
                                {"quota": field, "limit": limit})
        held[key] = now + count
        return key

    def release(self, name: str, key: Hashable | None, count: int = 1) -> None:
        if key is None:
            return
        held = self._held[name]
        left = held.get(key, 0) - count
        if left > 0:
            held[key] = left
        else:
            held.pop(key, None)

    def held(self, name: str, principal: Any, peer: str | None = None) -> int:
        key = quota_key(principal, peer)
        return 0 if key is None else self._held[name].get(key, 0)
