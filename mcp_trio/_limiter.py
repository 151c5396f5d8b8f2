"""Token-bucket rate limiting as GCRA (the generic cell rate algorithm), sans-io.

GCRA keeps one float per key (the "theoretical arrival time") instead of a token count and a
timestamp, and needs no timer. Time comes in as an argument, so the limiter is exact on a mock
clock. ``try_acquire`` has no ``await`` inside: under trio it is atomic, so the hot path needs
no lock (DESIGN.md, "Supervisor").
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import msgspec

#: Keys remembered at most; past it, keys whose bucket is full again are forgotten first.
DEFAULT_MAX_KEYS = 100_000


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up: ``burst + 1`` calls pass at once.

    ``try_acquire(key, now)`` returns 0.0 when admitted, else how many seconds to wait.
    """

    __slots__ = ("rate", "burst", "interval", "tolerance", "max_keys", "_tat")

    def __init__(self, rate: float, burst: int = 0, *, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        if not rate > 0:  # also refuses NaN, which would admit everything
            raise ValueError("rate must be positive")
        if burst < 0:
            raise ValueError("burst must not be negative")
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.rate = rate
        self.burst = burst
        self.interval = 1.0 / rate
        self.tolerance = burst * self.interval
        self.max_keys = max_keys
        self._tat: dict[Hashable, float] = {}

    def try_acquire(self, key: Hashable, now: float, cost: float = 1.0) -> float:
        tat = self._tat.get(key, now)
        if tat < now:
            tat = now
        wait = tat - now - self.tolerance + self.interval * (cost - 1)
        # A tiny epsilon absorbs float rounding of sums of intervals (0.1 * 3 != 0.3).
        if wait > 1e-9:
            return wait
        if key not in self._tat and len(self._tat) >= self.max_keys:
            self._forget_idle(now)
        self._tat[key] = tat + self.interval * cost
        return 0.0

    def peek(self, key: Hashable, now: float, cost: float = 1.0) -> float:
        """What ``try_acquire`` would return, without taking anything (0.0: it would admit)."""
        tat = self._tat.get(key, now)
        if tat < now:
            tat = now
        wait = tat - now - self.tolerance + self.interval * (cost - 1)
        return wait if wait > 1e-9 else 0.0

    def _forget_idle(self, now: float) -> None:
        """Drop keys whose bucket has refilled; they would be admitted as new keys anyway."""
        idle = [key for key, tat in self._tat.items() if tat <= now]
        for key in idle:
            del self._tat[key]
        if len(self._tat) >= self.max_keys:
            # Everyone is mid-burst: forget the oldest half rather than grow without bound.
            # (At least one: with max_keys == 1, half rounds down to none and memory would grow.)
            for key in list(self._tat)[: max(1, self.max_keys // 2)]:
                del self._tat[key]

    def __len__(self) -> int:
        return len(self._tat)


#: Calls a principal may make at once above its steady rate, when a rate is set but no burst.
DEFAULT_BURST = 10


class ToolLimit(msgspec.Struct, frozen=True):
    """Per-tool admission: ``cost`` tokens of the caller's bucket per call (default 1), and
    optionally a bucket of the tool's own, per caller (``rate`` calls/s, ``burst``)."""

    cost: float = 1.0
    rate: float | None = None
    burst: int = 0

    def __post_init__(self) -> None:
        if not self.cost > 0:
            raise ValueError("a tool's cost must be positive")
        if self.rate is not None and not self.rate > 0:
            raise ValueError("a tool's rate must be positive")
        if self.burst < 0:
            raise ValueError("a tool's burst must not be negative")


class RateLimits(msgspec.Struct, frozen=True):
    """The admission policy: ``rate`` requests/s per principal with ``burst`` saved up (None:
    no per-principal limit), per-tool costs and limits, and ``max_concurrent`` requests
    running server-wide (None: no cap; past it requests are shed, not queued)."""

    rate: float | None = None
    burst: int = DEFAULT_BURST
    tools: Mapping[str, ToolLimit] = msgspec.field(default_factory=dict)
    max_concurrent: int | None = None
    max_keys: int = DEFAULT_MAX_KEYS

    def __post_init__(self) -> None:
        if self.rate is not None and not self.rate > 0:
            raise ValueError("rate must be positive (or None for no limit)")
        if self.burst < 0:
            raise ValueError("burst must not be negative")
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1 (or None for no cap)")
        for name, tool in self.tools.items():
            if self.rate is not None and tool.cost > self.burst + 1:
                # A call needs all its tokens at once: a bucket holding burst + 1 never has them.
                raise ValueError(f"tool {name!r}: cost {tool.cost:g} exceeds what the bucket holds (burst + 1 = {self.burst + 1})")

    @property
    def limits_rate(self) -> bool:
        return self.rate is not None or any(tool.rate is not None for tool in self.tools.values())


class RequestLimiter:
    """The per-principal bucket and the per-tool buckets of one server, sans-io.

    ``try_admit(key, now, tool)`` returns 0.0 and charges every bucket involved, or returns
    the seconds to wait and charges none (a refusal costs nothing).
    """

    __slots__ = ("_costs", "_tools", "bucket")

    def __init__(self, policy: RateLimits, *, bucket: TokenBucket | None = None) -> None:
        if bucket is None and policy.rate is not None:
            bucket = TokenBucket(policy.rate, policy.burst, max_keys=policy.max_keys)
        self.bucket = bucket
        self._costs = {name: tool.cost for name, tool in policy.tools.items() if tool.cost != 1.0}
        self._tools = {
            name: TokenBucket(tool.rate, tool.burst, max_keys=policy.max_keys)
            for name, tool in policy.tools.items() if tool.rate is not None
        }

    def try_admit(self, key: Hashable, now: float, tool: str | None = None) -> float:
        bucket = self.bucket
        cost = self._costs.get(tool, 1.0) if tool is not None else 1.0
        tool_bucket = self._tools.get(tool) if tool is not None else None
        if tool_bucket is None:
            return bucket.try_acquire(key, now, cost) if bucket is not None else 0.0
        wait = tool_bucket.peek(key, now)
        if bucket is not None:
            wait = max(wait, bucket.peek(key, now, cost))
        if wait:
            return wait
        tool_bucket.try_acquire(key, now)
        if bucket is not None:
            bucket.try_acquire(key, now, cost)
        return 0.0
