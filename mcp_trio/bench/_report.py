"""The benchmark's result: a JSON document (schema ``mcp-trio-bench/1``), a text summary,
and an optional PNG plot (matplotlib, from the ``bench`` extra).

Every latency is in microseconds and covers successful requests only; ``calls_per_s`` is
successful requests over the measured window. A number that was not measured is ``null``,
never zero.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from ._histogram import Histogram

SCHEMA = "mcp-trio-bench/1"
PERCENTILES = (("p50_us", 50.0), ("p90_us", 90.0), ("p99_us", 99.0), ("p99_9_us", 99.9))


class Latency(msgspec.Struct, kw_only=True):
    count: int
    min_us: float | None
    mean_us: float | None
    p50_us: float | None
    p90_us: float | None
    p99_us: float | None
    p99_9_us: float | None
    max_us: float | None

    @classmethod
    def of(cls, histogram: Histogram) -> Latency:
        def us(value: float | None) -> float | None:
            return None if value is None else round(value / 1000, 3)

        values = {name: us(histogram.percentile(q)) for name, q in PERCENTILES}
        return cls(
            count=histogram.count,
            min_us=us(histogram.min if histogram.count else None),
            mean_us=us(histogram.mean()),
            max_us=us(histogram.max if histogram.count else None),
            **values,
        )


class Usage(msgspec.Struct, kw_only=True):
    """CPU and memory of a group of processes over the measured window."""

    pids: list[int]
    cpu_seconds: float | None = None
    cpu_percent: float | None = None  # of one core: 100 = one core busy all window
    rss_peak_bytes: int | None = None  # largest resident set sampled during the run
    rss_end_bytes: int | None = None
    rss_hwm_bytes: int | None = None  # the kernel's per-process peak, summed (since start)


class OpenLoop(msgspec.Struct, kw_only=True):
    rate: float
    sent: int
    achieved_rate: float | None
    send_lag_p50_us: float | None
    send_lag_p99_us: float | None
    send_lag_max_us: float | None


class EntryResult(msgspec.Struct, kw_only=True):
    label: str
    method: str
    weight: float
    ok: int
    errors: int
    latency: Latency | None = None


class TimelinePoint(msgspec.Struct, kw_only=True):
    t_s: float  # end of the interval, seconds since the window opened
    calls_per_s: float
    errors: int
    p50_us: float | None
    p90_us: float | None
    p99_us: float | None
    max_us: float | None


class Connections(msgspec.Struct, kw_only=True):
    requested: int
    open: int
    failed: int


class Idle(msgspec.Struct, kw_only=True):
    sessions_requested: int
    sessions_open: int
    open_seconds: float
    rss_baseline_bytes: int | None
    rss_loaded_bytes: int | None
    rss_per_session_bytes: float | None
    alive_checked: int
    alive_ok: int


class Settings(msgspec.Struct, kw_only=True):
    mode: str  # "closed", "open" or "idle"
    connections: int
    in_flight: int | None
    rate: float | None
    processes: int
    warmup_s: float
    duration_s: float | None
    requests: int | None
    timeout_s: float
    max_outstanding: int | None
    workload: list[dict[str, Any]]


class BenchResult(msgspec.Struct, kw_only=True):
    schema: str = SCHEMA
    target: str
    started_at: str
    host: str
    python: str
    platform: str
    cpus: int | None
    settings: Settings
    ok: bool  # no failure and no failed request
    failure: str | None = None  # why nothing (or not everything) could be measured
    notes: list[str] = msgspec.field(default_factory=list)  # sessions lost, and why
    window_s: float | None = None
    requests_ok: int = 0
    requests_failed: int = 0
    calls_per_s: float | None = None
    latency: Latency | None = None
    errors: dict[str, int] = msgspec.field(default_factory=dict)
    connections: Connections
    server: Usage | None = None
    client: Usage | None = None
    open_loop: OpenLoop | None = None
    entries: list[EntryResult] = msgspec.field(default_factory=list)
    timeline: list[TimelinePoint] = msgspec.field(default_factory=list)
    idle: Idle | None = None
    histogram: dict[str, Any] | None = None  # sparse latency histogram in ns, for merging


def to_json(result: BenchResult) -> bytes:
    return msgspec.json.format(msgspec.json.encode(result), indent=2) + b"\n"


def from_json(data: bytes | str) -> BenchResult:
    return msgspec.json.decode(data, type=BenchResult)


# --------------------------------------------------------------------------- text


def _num(value: float | None, spec: str = ",.0f") -> str:
    return "-" if value is None else format(value, spec)


def duration_text(us: float | None) -> str:
    """Microseconds as a short human duration: 85 µs, 1.25 ms, 2.1 s."""
    if us is None:
        return "-"
    if us < 1000:
        return f"{us:.0f} µs"
    if us < 1_000_000:
        return f"{us / 1000:.2f} ms"
    return f"{us / 1_000_000:.2f} s"


def bytes_text(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) < 10 * 1024:
        return f"{value:,.0f} B"
    if abs(value) < 10 * 1024 * 1024:
        return f"{value / 1024:,.1f} KiB"
    return f"{value / 1024 / 1024:,.1f} MiB"


def _usage(usage: Usage | None, window: float | None) -> str:
    if usage is None:
        return "not measured (give --server-pid)"
    cpu = "CPU -" if usage.cpu_percent is None else f"CPU {usage.cpu_percent:.0f} % of a core"
    rss = f"RSS peak {bytes_text(usage.rss_peak_bytes)}" if usage.rss_peak_bytes is not None else "RSS -"
    return f"{cpu}, {rss}  (pids {', '.join(map(str, usage.pids[:6]))}{'...' if len(usage.pids) > 6 else ''})"


def summary(result: BenchResult) -> str:
    """A few lines for a person: the load, throughput, latency, errors, CPU and memory."""
    s = result.settings
    lines = [f"target      {result.target}"]
    if s.mode == "idle":
        lines.append(f"load        idle: {s.connections} sessions held")
    else:
        what = ", ".join(e.label + (f" ×{e.weight:g}" if len(result.entries) > 1 else "") for e in result.entries)
        length = f"{s.duration_s:g} s measured" if s.requests is None else f"{s.requests:,} requests measured"
        if s.mode == "open":
            shape = f"open loop at {s.rate:,.0f}/s over {s.connections} connection(s)"
        else:
            shape = f"closed loop: {s.connections} connection(s) × {s.in_flight} in flight"
        lines.append(f"load        {shape}, {s.processes} process(es); {what}; warm-up {s.warmup_s:g} s, {length}")
    if result.failure:
        lines.append(f"FAILED      {result.failure}")
    if s.mode != "idle":
        cps = "-" if result.calls_per_s is None else f"{result.calls_per_s:,.1f} calls/s"
        lines.append(f"requests    {result.requests_ok:,} ok, {result.requests_failed:,} failed  ->  {cps}")
        lat = result.latency
        if lat is not None and lat.count:
            lines.append(
                "latency     "
                + "  ".join(
                    f"{name} {duration_text(value)}"
                    for name, value in (("p50", lat.p50_us), ("p90", lat.p90_us), ("p99", lat.p99_us),
                                        ("p99.9", lat.p99_9_us), ("max", lat.max_us))
                )
            )
        if result.open_loop is not None:
            o = result.open_loop
            lines.append(
                f"open loop   {o.sent:,} sent, {_num(o.achieved_rate, ',.1f')}/s achieved; "
                f"send lag p50 {duration_text(o.send_lag_p50_us)}, p99 {duration_text(o.send_lag_p99_us)}"
            )
        if len(result.entries) > 1:
            for e in result.entries:
                p50 = duration_text(e.latency.p50_us) if e.latency else "-"
                p99 = duration_text(e.latency.p99_us) if e.latency else "-"
                lines.append(f"  {e.label:<30} {e.ok:>10,} ok {e.errors:>6,} failed  p50 {p50}  p99 {p99}")
    else:
        idle = result.idle
        assert idle is not None
        lines.append(
            f"sessions    {idle.sessions_open:,} of {idle.sessions_requested:,} open in {idle.open_seconds:.1f} s; "
            f"{idle.alive_ok}/{idle.alive_checked} answered a ping after the hold"
        )
        lines.append(
            f"server RSS  {bytes_text(idle.rss_baseline_bytes)} -> {bytes_text(idle.rss_loaded_bytes)}: "
            f"{bytes_text(idle.rss_per_session_bytes)} per session"
        )
    errors = ", ".join(f"{k}: {v:,}" for k, v in sorted(result.errors.items(), key=lambda kv: -kv[1])) or "none"
    lines.append(f"errors      {errors}")
    for note in result.notes[:3]:
        lines.append(f"note        {note.splitlines()[0] if note else note}")
    lines.append(f"server      {_usage(result.server, result.window_s)}")
    lines.append(f"client      {_usage(result.client, result.window_s)}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- plot


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed: ``pip install 'mcp-trio[bench]'``."""


def plot(result: BenchResult, path: str | Path) -> None:
    """A PNG: latency percentiles over time, throughput over time, and the latency
    distribution by percentile (log scale, as HdrHistogram plots do)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotUnavailable("plotting needs matplotlib: pip install 'mcp-trio[bench]'") from None

    fig, (ax_lat, ax_tput, ax_dist) = plt.subplots(3, 1, figsize=(10, 11), constrained_layout=True)
    s = result.settings
    shape = (f"open loop {s.rate:,.0f}/s" if s.mode == "open"
             else f"{s.connections}×{s.in_flight} closed loop")
    cps = "-" if result.calls_per_s is None else f"{result.calls_per_s:,.0f} calls/s"
    fig.suptitle(f"{result.target}\n{shape}, {s.processes} process(es): {cps}, "
                 f"{result.requests_failed:,} failed", fontsize=10)

    points = result.timeline
    t = [p.t_s for p in points]
    for name, style in (("p50_us", "-"), ("p90_us", "--"), ("p99_us", "-."), ("max_us", ":")):
        values = [getattr(p, name) for p in points]
        pairs = [(x, v / 1000) for x, v in zip(t, values) if v is not None]
        if pairs:
            ax_lat.plot([x for x, _ in pairs], [v for _, v in pairs], style, label=name.removesuffix("_us"))
    ax_lat.set_yscale("log")
    ax_lat.set_ylabel("latency (ms)")
    ax_lat.set_xlabel("time in the measured window (s)")
    ax_lat.legend(loc="upper right")
    ax_lat.grid(True, which="both", alpha=0.3)

    ax_tput.plot(t, [p.calls_per_s for p in points], label="calls/s")
    errors = [p.errors for p in points]
    if any(errors):
        ax_tput.bar(t, errors, width=0.6 * (t[0] if t else 1), color="tab:red", alpha=0.5, label="errors")
    ax_tput.set_ylim(bottom=0)
    ax_tput.set_ylabel("calls/s")
    ax_tput.set_xlabel("time in the measured window (s)")
    ax_tput.legend(loc="upper right")
    ax_tput.grid(True, alpha=0.3)

    if result.histogram:
        histogram = Histogram.from_sparse(result.histogram)
        qs = [50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.999, 100.0]
        xs, ys = [], []
        for q in qs:
            value = histogram.percentile(q)
            if value is not None:
                xs.append(1 / (1 - q / 100) if q < 100 else 1 / (1 - 99.9999 / 100))
                ys.append(value / 1e6)
        ax_dist.plot(xs, ys, marker="o")
        ax_dist.set_xscale("log")
        ax_dist.set_xticks(xs, [f"{q:g}" for q in qs[: len(xs)]], rotation=45)
        ax_dist.set_xlabel("percentile")
        ax_dist.set_ylabel("latency (ms)")
        ax_dist.grid(True, which="both", alpha=0.3)
    fig.savefig(path, dpi=100)
    plt.close(fig)
