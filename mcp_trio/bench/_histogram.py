"""A log-linear latency histogram in the manner of HdrHistogram: bounded memory, any count.

Values are non-negative integers (the harness records nanoseconds). Below ``2**bits`` each
value has its own bucket; above, every power of two is split into ``2**(bits-1)`` equal
buckets, so a bucket is never wider than ``2**-(bits-1)`` of the values in it (0.8 % with
the default ``bits=8``). Reported percentiles are a bucket's midpoint, clamped to the exact
minimum and maximum seen, hence within half that width of the true nearest-rank value.

Recording is an index computation and a list increment; histograms merge by adding counts,
which is how processes and rounds are combined. Memory is one int per bucket up to the
largest value seen: about 4,000 buckets for latencies up to a minute, whatever the count.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

DEFAULT_BITS = 8
#: Values above this are clamped (about 13 days in nanoseconds): a bound on the bucket list.
MAX_VALUE = 2**50


class Histogram:
    """Counts of integer values in log-linear buckets; exact count, sum, min and max."""

    __slots__ = ("_half", "_sub", "bits", "count", "counts", "max", "min", "total")

    def __init__(self, bits: int = DEFAULT_BITS) -> None:
        if not 2 <= bits <= 16:
            raise ValueError("bits must be between 2 and 16")
        self.bits = bits
        self._sub = 1 << bits
        self._half = 1 << (bits - 1)
        self.counts: list[int] = []
        self.count = 0
        self.total = 0
        self.min = 0
        self.max = 0

    def index(self, value: int) -> int:
        """The bucket holding ``value``."""
        if value < self._sub:
            return value
        shift = value.bit_length() - self.bits
        return self._sub + (shift - 1) * self._half + ((value >> shift) - self._half)

    def bounds(self, index: int) -> tuple[int, int]:
        """The smallest and largest value that land in bucket ``index``."""
        if index < self._sub:
            return index, index
        offset = index - self._sub
        shift = offset // self._half + 1
        mantissa = self._half + offset % self._half
        return mantissa << shift, ((mantissa + 1) << shift) - 1

    def record(self, value: int, times: int = 1) -> None:
        """Count ``value`` (clamped to [0, MAX_VALUE]) ``times`` times."""
        if value < 0:
            value = 0
        elif value > MAX_VALUE:
            value = MAX_VALUE
        if value < self._sub:
            i = value
        else:
            shift = value.bit_length() - self.bits
            i = self._sub + (shift - 1) * self._half + ((value >> shift) - self._half)
        counts = self.counts
        if i >= len(counts):
            counts.extend([0] * (i + 1 - len(counts)))
        counts[i] += times
        if self.count == 0 or value < self.min:
            self.min = value
        self.max = max(self.max, value)
        self.count += times
        self.total += value * times

    def merge(self, other: Histogram) -> None:
        """Add ``other``'s counts to this one (same ``bits``)."""
        if other.bits != self.bits:
            raise ValueError("cannot merge histograms of different resolution")
        if not other.count:
            return
        if len(other.counts) > len(self.counts):
            self.counts.extend([0] * (len(other.counts) - len(self.counts)))
        for i, c in enumerate(other.counts):
            if c:
                self.counts[i] += c
        self.min = other.min if not self.count else min(self.min, other.min)
        self.max = max(self.max, other.max)
        self.count += other.count
        self.total += other.total

    def percentile(self, q: float) -> int | None:
        """The value at percentile ``q`` (0-100), nearest rank; None when empty.
        ``q=100`` is the exact maximum and ``q=0`` the exact minimum."""
        if not self.count:
            return None
        if q <= 0:
            return self.min
        if q >= 100:
            return self.max
        rank = max(1, math.ceil(q / 100 * self.count))
        seen = 0
        for i, c in enumerate(self.counts):
            seen += c
            if seen >= rank:
                low, high = self.bounds(i)
                return min(max((low + high) // 2, self.min), self.max)
        return self.max  # pragma: no cover - the counts add up to count

    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    # -- a compact, mergeable form for JSON and for worker processes

    def to_sparse(self) -> dict[str, object]:
        return {
            "bits": self.bits,
            "count": self.count,
            "total": self.total,
            "min": self.min,
            "max": self.max,
            "buckets": [[i, c] for i, c in enumerate(self.counts) if c],
        }

    @classmethod
    def from_sparse(cls, data: dict[str, object]) -> Histogram:
        histogram = cls(int(data["bits"]))  # type: ignore[call-overload]
        buckets: Iterable[list[int]] = data["buckets"]  # type: ignore[assignment]
        for i, c in buckets:
            if i >= len(histogram.counts):
                histogram.counts.extend([0] * (i + 1 - len(histogram.counts)))
            histogram.counts[i] += c
        histogram.count = int(data["count"])  # type: ignore[call-overload]
        histogram.total = int(data["total"])  # type: ignore[call-overload]
        histogram.min = int(data["min"])  # type: ignore[call-overload]
        histogram.max = int(data["max"])  # type: ignore[call-overload]
        return histogram
