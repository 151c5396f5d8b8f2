"""The cluster rows' report (bench/cluster_rows.py): per-call costs and the workers verdict are
computed from the rows, not written in."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def _module() -> Any:
    sys.path.insert(0, str(REPO))
    from bench import cluster_rows

    return cluster_rows


def _row(server: str, cps: float, p50: float, cpu: float, redis: float | None = None) -> dict[str, Any]:
    rows = _module()
    return {"server": server, "label": server, "ok": True, "error": None, "calls_per_s": cps, "p50_us": p50, "p99_us": p50 * 3,
            "server_cpu_percent": cpu, "client_cpu_percent": 50.0, "server_cpu_us_per_call": rows._per_call_us(cpu, cps),
            "redis_cpu_percent": redis, "redis_cpu_us_per_call": rows._per_call_us(redis, cps), "requests_failed": 0,
            "errors": {}, "vs_one": None}


def test_the_report_says_what_the_shared_limiter_costs_and_whether_two_workers_win() -> None:
    rows = _module()
    assert rows._per_call_us(50.0, 1000.0) == 500.0  # half a core over 1000 calls/s: 500 µs each
    section = {"rounds": 2, "duration_s": 5.0, "warmup_s": 1.5, "scenarios": [{
        "name": "cluster_concurrent", "title": "concurrent", "rows": [
            _row("one", 2000, 1000, 100), _row("one_rl", 1900, 1050, 100),
            _row("one_redis", 1600, 1300, 100, redis=8), _row("workers2", 1800, 1200, 180, redis=9),
            _row("haproxy2", 1500, 1500, 190, redis=8)],
        "shared_limiter_cost": {"latency_p50_us": 250.0, "server_cpu_us_per_call": 98.7, "redis_cpu_us_per_call": 50.0},
    }]}
    text = rows.markdown(section)
    assert "| concurrent | one_redis | 1,600 | 1,300 | 3,900 | 100% | 625 | 50.0 | 50% | –× |" in text
    assert "the shared limiter adds 250 µs to p50 and 99 µs of server CPU per call" in text
    assert "Two workers beat one on this machine: 1,800 against 1,600 calls/s (1.12×" in text
