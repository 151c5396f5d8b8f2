"""Counters and a latency histogram for one server process, rendered as Prometheus text.

Recording is a dict increment and a bisect per request (well under a microsecond); nothing
is logged. Label values are bounded: a method we do not serve is counted as ``other``, so a
client sending random method names cannot grow the metric set; per-tool series exist only
for registered tools (``ToolStats``, pruned when a tool is removed).
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Container, Mapping
from typing import Any

#: Upper bounds (seconds) of the request latency histogram's buckets.
LATENCY_BUCKETS: tuple[float, ...] = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
OUTCOMES = ("ok", "error", "cancelled", "shutdown")


def _label(value: str) -> str:
    """A Prometheus label value: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class ToolStats:
    """What happened to one tool's calls. ``calls`` counts calls begun; each finished call
    adds its latency and, unless it succeeded, one of ``errors``, ``timeouts``, ``cancellations``.

    The request task updates the fields directly (a few increments): see
    ``_handlers.run_tool``. Latencies are measured with ``Metrics.clock`` (the run's trio
    clock, so a ``MockClock`` drives them in tests); ``last_used`` is a Unix time.
    """

    __slots__ = ("abandoned", "buckets", "calls", "cancellations", "errors", "finished", "last_used", "latency_sum", "refused",
                 "timeouts")

    def __init__(self) -> None:
        self.calls = 0
        self.errors = 0
        self.timeouts = 0
        self.cancellations = 0
        self.finished = 0
        self.latency_sum = 0.0
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self.last_used: float | None = None
        #: Threads of this (sync) tool given up on a timeout or cancellation and still running.
        self.abandoned = 0
        #: Calls refused because too many of its threads (or the server's) were abandoned.
        self.refused = 0

    def finish(self, seconds: float) -> None:
        self.buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum += seconds
        self.finished += 1

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready figures (``latency_histogram``: cumulative counts by upper bound)."""
        cumulative = 0
        histogram = {}
        for bound, count in zip(LATENCY_BUCKETS, self.buckets):
            cumulative += count
            histogram[f"{bound:g}"] = cumulative
        histogram["+Inf"] = self.finished
        return {
            "calls": self.calls,
            "errors": self.errors,
            "timeouts": self.timeouts,
            "cancellations": self.cancellations,
            "running": self.calls - self.finished,
            "latency_seconds_sum": round(self.latency_sum, 6),
            "latency_seconds_mean": round(self.latency_sum / self.finished, 6) if self.finished else None,
            "latency_histogram": histogram,
            "last_used": None if self.last_used is None else round(self.last_used, 3),
            "abandoned_threads": self.abandoned,
            "refused": self.refused,
        }


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
        #: Threads of sync tools given up (timeout, cancellation) and still running; and ever.
        self.abandoned_threads = 0
        self.abandoned_threads_total = 0
        #: Per-tool figures, by tool name: only registered tools have an entry (the supervisor
        #: prunes removed ones), so a client cannot grow the label set.
        self.tools: dict[str, ToolStats] = {}
        #: What tool latencies are measured with: the run's trio clock once serving (the
        #: supervisor sets it; a bound method, cheaper than ``trio.current_time()``, and a
        #: ``MockClock`` in tests), so a tool's latency is in the same time as its timeout.
        self.clock: Callable[[], float] = time.perf_counter

    def tool(self, name: str) -> ToolStats:
        """The figures of tool ``name`` (a registered tool), made on its first call."""
        stats = self.tools.get(name)
        if stats is None:
            stats = self.tools[name] = ToolStats()
        return stats

    def prune_tools(self, registered: Container[str]) -> None:
        """Forget the figures of tools no longer registered (their label series end)."""
        for name in [name for name in self.tools if name not in registered]:
            del self.tools[name]

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
        in-flight requests, which the caller reads off the live objects. Per-tool series
        (``mcp_tool_*``, labelled ``tool``) follow, for tools called at least once.
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
            ("mcp_abandoned_threads_total", "Threads of sync tools given up on a timeout or cancellation.",
             self.abandoned_threads_total),
        ):
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter", f"{name} {value}"]
        lines += ["# HELP mcp_abandoned_threads Threads of sync tools given up and still running.",
                  "# TYPE mcp_abandoned_threads gauge", f"mcp_abandoned_threads {self.abandoned_threads}"]
        if self.tools:
            lines += self._render_tools()
        return "\n".join(lines) + "\n"

    def _render_tools(self) -> list[str]:
        tools = sorted((_label(name), stats) for name, stats in self.tools.items())
        lines: list[str] = []
        for name, help_text, attr in (
            ("mcp_tool_calls_total", "Tool calls begun, by tool.", "calls"),
            ("mcp_tool_errors_total", "Tool calls that ended in an error (isError or a protocol error).", "errors"),
            ("mcp_tool_timeouts_total", "Tool calls cancelled by the tool's own timeout.", "timeouts"),
            ("mcp_tool_cancellations_total", "Tool calls cancelled by the client or by shutdown.", "cancellations"),
            ("mcp_tool_refused_total", "Tool calls refused because too many of their threads were abandoned.", "refused"),
        ):
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
            lines += [f'{name}{{tool="{label}"}} {getattr(stats, attr)}' for label, stats in tools]
        lines += ["# HELP mcp_tool_call_duration_seconds Time a tool call took, by tool.",
                  "# TYPE mcp_tool_call_duration_seconds histogram"]
        for label, stats in tools:
            cumulative = 0
            for bound, count in zip(LATENCY_BUCKETS, stats.buckets):
                cumulative += count
                lines.append(f'mcp_tool_call_duration_seconds_bucket{{tool="{label}",le="{bound:g}"}} {cumulative}')
            lines.append(f'mcp_tool_call_duration_seconds_bucket{{tool="{label}",le="+Inf"}} {stats.finished}')
            lines.append(f'mcp_tool_call_duration_seconds_sum{{tool="{label}"}} {stats.latency_sum:.6f}')
            lines.append(f'mcp_tool_call_duration_seconds_count{{tool="{label}"}} {stats.finished}')
        lines += ["# HELP mcp_tool_abandoned_threads Threads of a sync tool given up and still running, by tool.",
                  "# TYPE mcp_tool_abandoned_threads gauge"]
        lines += [f'mcp_tool_abandoned_threads{{tool="{label}"}} {stats.abandoned}' for label, stats in tools]
        lines += ["# HELP mcp_tool_last_used_timestamp_seconds When a tool was last called (Unix time).",
                  "# TYPE mcp_tool_last_used_timestamp_seconds gauge"]
        lines += [f'mcp_tool_last_used_timestamp_seconds{{tool="{label}"}} {stats.last_used:.3f}'
                  for label, stats in tools if stats.last_used is not None]
        return lines
