"""Counters and a latency histogram for one server process, rendered as Prometheus text.

Recording is a dict increment and a bisect per request (well under a microsecond); nothing
is logged. Label values are bounded: a method we do not serve is counted as ``other``, so a
client sending random method names cannot grow the metric set.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping

#: Upper bounds (seconds) of the request latency histogram's buckets.
LATENCY_BUCKETS: tuple[float, ...] = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
OUTCOMES = ("ok", "error", "cancelled", "shutdown")


class Metrics:
    """What happened to requests: counts by method and outcome, and how long they took."""

    def __init__(self, methods: frozenset[str]) -> None:
        self._methods = methods
        self.requests: dict[tuple[str, str], int] = {}
        self._buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self._latency_sum = 0.0
        self._latency_count = 0
        self.rate_limited = 0
        self.overloaded = 0
        self.connections_opened = 0
        self.connections_refused = 0

    def observe(self, method: str, outcome: str, seconds: float) -> None:
        if method not in self._methods:
            method = "other"
        key = (method, outcome)
        self.requests[key] = self.requests.get(key, 0) + 1
        self._buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self._latency_sum += seconds
        self._latency_count += 1

    def render(self, gauges: Mapping[str, tuple[str, float]]) -> str:
        """Prometheus text exposition format (version 0.0.4).

        ``gauges`` maps a metric name to (help text, current value): connections, sessions,
        in-flight requests, which the caller reads off the live objects.
        """
        lines: list[str] = []
        for name, (help_text, value) in gauges.items():
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {value:g}"]
        lines += ["# HELP mcp_requests_total Requests answered, by method and outcome.", "# TYPE mcp_requests_total counter"]
        for (method, outcome), count in sorted(self.requests.items()):
            lines.append(f'mcp_requests_total{{method="{method}",outcome="{outcome}"}} {count}')
        lines += ["# HELP mcp_request_duration_seconds Time from a request's arrival to its answer.",
                  "# TYPE mcp_request_duration_seconds histogram"]
        cumulative = 0
        for bound, count in zip(LATENCY_BUCKETS, self._buckets):
            cumulative += count
            lines.append(f'mcp_request_duration_seconds_bucket{{le="{bound:g}"}} {cumulative}')
        lines.append(f'mcp_request_duration_seconds_bucket{{le="+Inf"}} {self._latency_count}')
        lines.append(f"mcp_request_duration_seconds_sum {self._latency_sum:.6f}")
        lines.append(f"mcp_request_duration_seconds_count {self._latency_count}")
        for name, help_text, value in (
            ("mcp_rate_limited_total", "Requests refused by the rate limiter.", self.rate_limited),
            ("mcp_overloaded_total", "Requests shed by the server-wide concurrency cap.", self.overloaded),
            ("mcp_connections_opened_total", "Connections (or HTTP sessions) opened.", self.connections_opened),
            ("mcp_connections_refused_total", "Connections refused by a limit.", self.connections_refused),
        ):
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter", f"{name} {value}"]
        return "\n".join(lines) + "\n"
