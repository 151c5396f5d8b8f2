"""The benchmark harness: a load generator for any MCP server (``mcp-trio bench``).

Point it at a server over stdio, WebSocket or Streamable HTTP and it reports throughput,
latency percentiles (from a log-linear histogram), errors by kind, and the CPU and memory of
the server and of its own client processes. ``bench/`` in the repository holds the floors,
the peer servers and the standard comparison (``bench/run_standard.py``) built on it.

Programmatic use::

    from mcp_trio.bench import BenchConfig, run
    result = run(BenchConfig(target="ws://127.0.0.1:8765/", connections=100, in_flight=8))
    print(result.calls_per_s, result.latency.p99_us)

Names are imported on first use, so ``mcp-trio``'s argument parser can load
``mcp_trio.bench.cli`` without paying for the engine at every ``mcp-trio serve``.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "Histogram": "._histogram",
    "LoadSpec": "._load",
    "Recorder": "._load",
    "WorkerReport": "._load",
    "closed_loop": "._load",
    "open_loop": "._load",
    "run_load": "._load",
    "BenchResult": "._report",
    "from_json": "._report",
    "plot": "._report",
    "summary": "._report",
    "to_json": "._report",
    "BenchConfig": "._runner",
    "merge_results": "._runner",
    "run": "._runner",
    "run_async": "._runner",
    "Entry": "._workload",
    "Workload": "._workload",
    "WorkloadError": "._workload",
    "from_file": "._workload",
    "single": "._workload",
}

__all__ = [
    "BenchConfig",
    "BenchResult",
    "Entry",
    "Histogram",
    "LoadSpec",
    "Recorder",
    "WorkerReport",
    "Workload",
    "WorkloadError",
    "closed_loop",
    "from_file",
    "from_json",
    "merge_results",
    "open_loop",
    "plot",
    "run",
    "run_async",
    "run_load",
    "single",
    "summary",
    "to_json",
]  # the keys of _WHERE


def __getattr__(name: str) -> Any:
    try:
        module = _WHERE[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
