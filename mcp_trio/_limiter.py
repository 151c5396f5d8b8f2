"""Token-bucket rate limiting as GCRA (the generic cell rate algorithm), sans-io.

GCRA keeps one float per key (the "theoretical arrival time") instead of a token count and a
timestamp, and needs no timer. Time comes in as an argument, so the limiter is exact on a mock
clock. ``try_acquire`` has no ``await`` inside: under trio it is atomic, so the hot path needs
no lock (DESIGN.md, "Supervisor").
"""

from __future__ import annotations

from collections.abc import Hashable

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
