"""Admission: whether a request may run now, decided in one place for every request.

Every request, either era, any transport, passes ``Admission.enter`` before its middleware and
handler and ``leave`` after them (``_kernel``). It reads the request's cost key once, from the
params already decoded on the in-flight record: the method, and for ``tools/call`` the tool's
name (its cost and its own bucket). Then, in this order:

* the concurrency cap (``max_concurrent`` requests running server-wide; past it the request is
  shed with ``-32030``, not queued);
* the rate limits: the caller's token bucket (``rate``, ``burst``) and the tool's own, charged
  together or not at all (``-32029`` with ``retryAfterMs``).

A server with no policy sets ``active`` False, and the kernel pays one flag test. Trio runs
one task at a time and nothing here awaits, so the local buckets need no lock.

A shared limiter (cluster mode: one Redis round trip, awaited) plugs in as ``shared``: then
``enter`` is awaited (``admit``), the only change on the path; without one, nothing awaits.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import Any, Protocol

import trio

from .._limiter import RateLimits, RequestLimiter, TokenBucket
from .._metrics import Metrics
from ..protocol._errors import RateLimited, ServerOverloaded


class SharedLimiter(Protocol):
    """A limiter whose buckets live elsewhere (``mcp_trio.cluster.SharedLimiter``): the same
    answer as ``RequestLimiter.try_admit``, awaited (one round trip)."""

    async def try_admit(self, key: Hashable, tool: str | None = None) -> float: ...


def rate_key(peer: Any) -> Hashable:
    """Whose bucket a request draws on: its principal's, or its remote address's when the
    caller is anonymous (or unauthenticated), or its session's when the address is unknown."""
    principal = peer.principal
    if principal is None or principal.kind == "anonymous":
        return ("peer", peer.peer) if peer.peer else ("session", peer.session_id)
    return (principal.kind, principal.subject)


def cost_key(method: str, params: Any) -> str | None:
    """The tool a request is charged as (None: the method's plain cost)."""
    if method == "tools/call":
        name = getattr(params, "name", None)
        return name if isinstance(name, str) else None
    return None


class Admission:
    """The admission policy of one served server: buckets, concurrency cap, counters."""

    def __init__(self, policy: RateLimits | None, metrics: Metrics, *, bucket: TokenBucket | None = None,
                 shared: SharedLimiter | None = None) -> None:
        policy = policy or RateLimits()
        #: Per-principal and per-tool buckets; None when no rate is limited.
        self.limiter: RequestLimiter | None = (
            RequestLimiter(policy, bucket=bucket) if bucket is not None or policy.limits_rate else None
        )
        #: Requests running server-wide at most (None: no cap); past it new ones are shed.
        self.max_concurrent = policy.max_concurrent
        #: Requests inside their handler now, server-wide (counted only when there is a cap).
        self.running = 0
        #: A limiter shared with other processes (cluster mode), awaited; None: local buckets.
        self.shared = shared
        #: Whether requests must pass ``enter``/``leave`` at all: False keeps the hot path bare.
        self.active = self.limiter is not None or self.max_concurrent is not None or shared is not None
        self._metrics = metrics

    def enter(self, peer: Any, method: str, tool: str | None) -> None:
        """Admit one request (cap, then rate), or raise ``ServerOverloaded``/``RateLimited``.
        Every ``enter`` that returns is followed by one ``leave``."""
        cap = self.max_concurrent
        if cap is not None and self.running >= cap:
            self._metrics.overloaded += 1
            raise ServerOverloaded(f"server overloaded: {cap} requests already running; retry later")
        self.charge(peer, tool)
        if cap is not None:
            self.running += 1

    def share(self, shared: SharedLimiter) -> None:
        """Decide rates with ``shared`` from now on (cluster mode): the buckets are the
        cluster's, so this process keeps none of its own (the cap stays per process)."""
        self.shared = shared
        self.limiter = None
        self.active = True

    async def charge_shared(self, peer: Any) -> None:
        """``charge`` on the shared limiter (``initialize``, answered outside the kernel)."""
        if self.shared is not None:
            self._refuse_if(await self.shared.try_admit(rate_key(peer), None))

    async def admit(self, peer: Any, method: str, tool: str | None) -> None:
        """``enter``, with the shared limiter's decision awaited first (cluster mode)."""
        if self.shared is not None:
            self._refuse_if(await self.shared.try_admit(rate_key(peer), tool))
        self.enter(peer, method, tool)

    def leave(self) -> None:
        if self.max_concurrent is not None:
            self.running -= 1

    def charge(self, peer: Any, tool: str | None = None) -> None:
        """Take the request's tokens from the caller's bucket(s), or raise ``RateLimited``."""
        limiter = self.limiter
        if limiter is not None:
            self._refuse_if(limiter.try_admit(rate_key(peer), trio.current_time(), tool))

    def _refuse_if(self, wait: float) -> None:
        if wait:
            self._metrics.rate_limited += 1
            # Round up to whole milliseconds (a client retrying at that time is admitted);
            # the epsilon keeps float noise (0.1000000003 s) from adding a millisecond.
            retry_ms = max(1, math.ceil(wait * 1000 - 1e-6))
            raise RateLimited(f"rate limit exceeded; retry after {retry_ms} ms", {"retryAfterMs": retry_ms})
