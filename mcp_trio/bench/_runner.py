"""Runs a benchmark: in this process or in several, with the server and clients measured.

One process drives the load itself; ``processes > 1`` spawns that many workers
(``python -m mcp_trio.bench._worker``), splits the connections, rate and request budget
between them, starts them together and merges their histograms. Meanwhile this process
samples the server (``server_pids``, with descendants, plus any stdio server a worker
spawned) and the client processes: CPU over the measured window, resident memory every
``RSS_SAMPLE_S``.
"""

from __future__ import annotations

import math
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import trio

from ..client import parse_target
from ..protocol._versions import LATEST_VERSION
from . import _procstat
from ._histogram import Histogram
from ._load import (
    DEFAULT_OPEN_CONCURRENCY,
    LoadSpec,
    Recorder,
    Sessions,
    WorkerReport,
    call_once,
    merge,
    run_load,
)
from ._report import (
    BenchResult,
    Connections,
    EntryResult,
    Idle,
    Latency,
    OpenLoop,
    Settings,
    TimelinePoint,
    Usage,
)
from ._workload import Workload, single

RSS_SAMPLE_S = 0.2  # how often resident memory is sampled
PROGRESS_S = 0.5  # how often a worker reports its counts
WORKER_START_TIMEOUT = 120.0  # a worker that cannot open its sessions in this long is stuck
IDLE_SETTLE_S = 1.0  # pause between opening the sessions and reading the server's memory
IDLE_ALIVE_CHECKS = 100  # sessions pinged at the end of the hold, spread evenly
WORKER_STDERR_TAIL = 2000


class BenchConfig(msgspec.Struct, kw_only=True):
    """Everything a run needs; the CLI builds one from its flags."""

    target: str | list[str]
    connections: int = 1
    in_flight: int = 1
    rate: float | None = None
    processes: int = 1
    max_outstanding: int = 1000
    warmup: float = 2.0
    duration: float | None = 10.0
    requests: int | None = None
    timeout: float = 30.0
    interval: float = 1.0
    workload: list[dict[str, Any]] = msgspec.field(default_factory=lambda: single().to_json())
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    insecure: bool = False
    initialize: bool = True
    protocol_version: str = LATEST_VERSION
    server_pids: list[int] = msgspec.field(default_factory=list)
    idle: int | None = None  # idle mode: open this many sessions and hold them
    hold: float = 5.0
    open_concurrency: int = DEFAULT_OPEN_CONCURRENCY


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def worker_specs(config: BenchConfig) -> list[LoadSpec]:
    """One spec per client process: connections, rate and request budget split evenly
    (a process never gets zero connections)."""
    processes = max(1, min(config.processes, config.connections))
    connections = _split(config.connections, processes)
    requests = _split(config.requests, processes) if config.requests is not None else [None] * processes
    specs = []
    for i in range(processes):
        rate = None if config.rate is None else config.rate * connections[i] / config.connections
        outstanding = max(1, math.ceil(config.max_outstanding * connections[i] / config.connections))
        specs.append(
            LoadSpec(
                target=config.target,
                connections=connections[i],
                in_flight=config.in_flight,
                rate=rate,
                max_outstanding=outstanding,
                warmup=config.warmup,
                duration=config.duration,
                requests=requests[i],
                timeout=config.timeout,
                interval=config.interval,
                workload=config.workload,
                headers=config.headers,
                insecure=config.insecure,
                initialize=config.initialize,
                protocol_version=config.protocol_version,
                open_concurrency=config.open_concurrency,
            )
        )
    return specs


# --------------------------------------------------------------------------- progress


def progress_wanted(stream: Any = None) -> bool:
    """A progress bar on a terminal; none in CI (``CI`` set) or when output is redirected."""
    stream = stream or sys.stderr
    ci = os.environ.get("CI", "").strip().lower()
    if ci and ci not in ("0", "false", "no"):
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class ProgressBar:
    """One line on stderr, redrawn in place: phase, bar, counts, current rate."""

    WIDTH = 30

    def __init__(self, enabled: bool, *, warmup: float, duration: float | None, requests: int | None,
                 stream: Any = None) -> None:
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.warmup = warmup
        self.duration = duration
        self.requests = requests
        self._last: tuple[float, int] | None = None
        self._drawn = False

    def update(self, elapsed: float, done: int, failed: int) -> None:
        if not self.enabled:
            return
        if elapsed < self.warmup:
            phase, fraction = "warm-up  ", elapsed / self.warmup if self.warmup else 1.0
        else:
            phase = "measuring"
            if self.requests:
                fraction = (done + failed) / self.requests
            elif self.duration:
                fraction = (elapsed - self.warmup) / self.duration
            else:
                fraction = 0.0
        fraction = min(max(fraction, 0.0), 1.0)
        rate = 0.0
        if self._last is not None and elapsed > self._last[0]:
            rate = (done - self._last[1]) / (elapsed - self._last[0])
        self._last = (elapsed, done)
        filled = int(fraction * self.WIDTH)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        self.stream.write(f"\r{phase} [{bar}] {fraction * 100:3.0f}%  {done:>10,} ok  {failed:>7,} failed  {max(rate, 0):>10,.0f}/s ")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self.enabled and self._drawn:
            self.stream.write("\n")
            self.stream.flush()


# --------------------------------------------------------------------------- sampling


class Sampler:
    """Server and client usage over the measured window, and the server's peak memory."""

    def __init__(self, server_pids: list[int], client_pids: list[int]) -> None:
        self.server = _procstat.ProcessGroup(server_pids, include_descendants=True)
        self.client = _procstat.ProcessGroup(client_pids, include_descendants=False)
        self._marked_at: float | None = None
        self._server_cpu: float | None = None
        self._client_cpu: float | None = None
        self._window: float | None = None

    def add_server_pids(self, pids: list[int]) -> None:
        self.server.roots.extend(p for p in pids if p not in self.server.roots)

    def add_client_pids(self, pids: list[int]) -> None:
        self.client.roots.extend(p for p in pids if p not in self.client.roots)

    def mark(self) -> None:
        self.server.mark()
        self.client.mark()
        self._marked_at = time.monotonic()

    def close_window(self) -> None:
        """Take the CPU readings at the end of the window (once)."""
        if self._marked_at is None or self._window is not None:
            return
        self._window = time.monotonic() - self._marked_at
        self._server_cpu = self.server.cpu_since_mark()
        self._client_cpu = self.client.cpu_since_mark()

    def sample(self) -> None:
        self.server.sample()
        self.client.sample()

    async def run(self, t0: float, warmup: float, duration: float | None, done: trio.Event,
                  on_tick: Callable[[float], None] | None = None) -> None:
        """From ``t0``: mark at the end of the warm-up, sample memory until ``done``, close
        the window at its end (or when the load is done, in count mode)."""
        clock = trio.current_time
        start = t0 + warmup
        end = start + duration if duration is not None else math.inf
        while not done.is_set():
            now = clock()
            if self._marked_at is None and now >= start:
                self.mark()
            if now >= end:
                self.close_window()
            self.sample()
            if on_tick is not None:
                on_tick(now - t0)
            next_tick = now + RSS_SAMPLE_S
            if self._marked_at is None:
                next_tick = min(next_tick, start)
            elif self._window is None:
                next_tick = min(next_tick, end)
            with trio.move_on_at(next_tick):
                await done.wait()
        if self._marked_at is None:
            self.mark()
        self.close_window()
        self.sample()

    def usage(self, group: _procstat.ProcessGroup) -> Usage | None:
        if not group.roots:
            return None
        cpu = self._server_cpu if group is self.server else self._client_cpu
        percent = None
        if cpu is not None and self._window:
            percent = round(cpu / self._window * 100, 1)
        return Usage(
            pids=list(group.roots),
            cpu_seconds=None if cpu is None else round(cpu, 3),
            cpu_percent=percent,
            rss_peak_bytes=group.rss_peak,
            rss_end_bytes=group.rss_last,
            rss_hwm_bytes=group.rss_hwm,
        )


# --------------------------------------------------------------------------- workers


def _child_env() -> dict[str, str]:
    """Workers import this very package, wherever it was imported from."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


class _Worker:
    def __init__(self, process: trio.Process, stderr: Any) -> None:
        self.process = process
        self.stderr = stderr
        self.ready = trio.Event()
        self.finished = trio.Event()
        self.pids: list[int] = []
        self.ok = 0
        self.failed = 0
        self.report: WorkerReport | None = None
        self.failure: str | None = None

    def stderr_tail(self) -> str:
        try:
            self.stderr.seek(0)
            return self.stderr.read().decode(errors="replace")[-WORKER_STDERR_TAIL:].strip()
        except (OSError, ValueError):
            return ""

    async def read(self) -> None:
        """Follow the worker's stdout: ``ready``, ``progress``, then ``result`` lines."""
        buffer = b""
        stdout = self.process.stdout
        assert stdout is not None
        try:
            while True:
                chunk = await stdout.receive_some(65536)
                if not chunk:
                    break
                *lines, buffer = (buffer + chunk).split(b"\n")
                for line in lines:
                    kind, _, payload = line.partition(b" ")
                    if kind == b"ready":
                        self.pids = msgspec.json.decode(payload, type=list[int])
                        self.ready.set()
                    elif kind == b"progress":
                        ok, failed = payload.split()
                        self.ok, self.failed = int(ok), int(failed)
                    elif kind == b"result":
                        self.report = msgspec.json.decode(payload, type=WorkerReport)
            await self.process.wait()
            if self.report is None:
                tail = self.stderr_tail()
                self.failure = f"client worker exited with code {self.process.returncode}" + (f": {tail}" if tail else "")
        finally:
            self.ready.set()
            self.finished.set()


async def _run_workers(
    specs: list[LoadSpec], sampler: Sampler, progress: ProgressBar, config: BenchConfig
) -> list[WorkerReport]:
    workers: list[_Worker] = []
    env = _child_env()
    async with trio.open_nursery() as nursery:
        try:
            for spec in specs:
                stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed when the workers are done
                process = await trio.lowlevel.open_process(
                    [sys.executable, "-m", "mcp_trio.bench._worker"],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, env=env,
                )
                worker = _Worker(process, stderr)
                workers.append(worker)
                nursery.start_soon(worker.read)
                assert process.stdin is not None
                await process.stdin.send_all(msgspec.json.encode(spec) + b"\n")
            with trio.fail_after(WORKER_START_TIMEOUT + config.timeout):
                for worker in workers:
                    await worker.ready.wait()
            sampler.add_client_pids([w.process.pid for w in workers])
            for worker in workers:
                sampler.add_server_pids(worker.pids)
            t0 = trio.current_time()
            for worker in workers:
                if worker.process.returncode is None:
                    try:
                        await worker.process.stdin.send_all(b"go\n")  # type: ignore[union-attr]
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        pass
            done = trio.Event()

            def tick(elapsed: float) -> None:
                progress.update(elapsed, sum(w.ok for w in workers), sum(w.failed for w in workers))

            async def wait_all() -> None:
                for worker in workers:
                    await worker.finished.wait()
                done.set()

            nursery.start_soon(wait_all)
            await sampler.run(t0, config.warmup, config.duration if config.requests is None else None, done, tick)
        finally:
            with trio.CancelScope(shield=True):
                for worker in workers:
                    if worker.process.returncode is None:
                        with trio.move_on_after(5):
                            await worker.process.wait()
                        if worker.process.returncode is None:
                            worker.process.kill()
                for worker in workers:
                    worker.stderr.close()
    reports = []
    for worker in workers:
        if worker.report is not None:
            reports.append(worker.report)
        else:
            reports.append(WorkerReport(failure=worker.failure or "client worker gave no result"))
    return reports


# --------------------------------------------------------------------------- results


def _machine() -> dict[str, Any]:
    return {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }


def target_text(target: str | list[str]) -> str:
    if isinstance(target, str):
        return target
    import shlex

    return "stdio:" + shlex.join(target)


def _settings(config: BenchConfig, processes: int) -> Settings:
    idle = config.idle is not None
    return Settings(
        mode="idle" if idle else ("open" if config.rate is not None else "closed"),
        connections=config.idle if idle else config.connections,  # type: ignore[arg-type]
        in_flight=None if idle or config.rate is not None else config.in_flight,
        rate=config.rate,
        processes=processes,
        warmup_s=0.0 if idle else config.warmup,
        duration_s=config.hold if idle else (config.duration if config.requests is None else None),
        requests=None if idle else config.requests,
        timeout_s=config.timeout,
        max_outstanding=config.max_outstanding if config.rate is not None and not idle else None,
        workload=config.workload,
    )


def build_result(config: BenchConfig, reports: list[WorkerReport], sampler: Sampler, machine: dict[str, Any]) -> BenchResult:
    merged, latency, lag, entry_histograms, timeline = merge(reports)
    workload = Workload.from_json(config.workload)
    window = merged.window_s
    failed = sum(merged.errors.values())
    calls_per_s = None
    if window:
        calls_per_s = round(merged.ok / window, 2)
    elif merged.failure is None and merged.ok == 0:
        calls_per_s = 0.0
    entries = []
    for i, entry in enumerate(workload.entries):
        counts = merged.entries[i] if i < len(merged.entries) else None
        histogram = entry_histograms[i] if i < len(entry_histograms) else None
        entries.append(EntryResult(
            label=entry.label, method=entry.method, weight=entry.weight,
            ok=counts.ok if counts else 0, errors=counts.errors if counts else 0,
            latency=Latency.of(histogram) if histogram is not None and histogram.count else None,
        ))
    points = []
    for slot, (ok, errors, histogram) in enumerate(timeline):
        end = (slot + 1) * config.interval
        if window and slot * config.interval >= window:
            break  # the drain after the window: its few requests are counted, not plotted
        span = min(end, window) - slot * config.interval if window else config.interval
        points.append(TimelinePoint(
            t_s=round(end, 3), calls_per_s=round(ok / span, 2) if span > 0 else 0.0, errors=errors,
            p50_us=_us(histogram.percentile(50)), p90_us=_us(histogram.percentile(90)),
            p99_us=_us(histogram.percentile(99)), max_us=_us(histogram.max if histogram.count else None),
        ))
    open_loop = None
    if config.rate is not None:
        open_loop = OpenLoop(
            rate=config.rate, sent=merged.sent,
            achieved_rate=round(merged.sent / window, 2) if window else None,
            send_lag_p50_us=_us(lag.percentile(50)) if lag else None,
            send_lag_p99_us=_us(lag.percentile(99)) if lag else None,
            send_lag_max_us=_us(lag.max) if lag else None,
        )
    connect_failed = sum(merged.connect_errors.values())
    return BenchResult(
        target=target_text(config.target),
        settings=_settings(config, len(reports)),
        ok=merged.failure is None and failed == 0,
        failure=merged.failure,
        notes=merged.lost,
        window_s=window,
        requests_ok=merged.ok,
        requests_failed=failed - connect_failed,
        calls_per_s=calls_per_s,
        latency=Latency.of(latency) if latency.count else None,
        errors=merged.errors,
        connections=Connections(requested=config.connections, open=merged.connections_open, failed=connect_failed),
        server=sampler.usage(sampler.server),
        client=sampler.usage(sampler.client),
        open_loop=open_loop,
        entries=entries,
        timeline=points,
        histogram=latency.to_sparse() if latency.count else None,
        **machine,
    )


def _us(nanos: float | None) -> float | None:
    return None if nanos is None else round(nanos / 1000, 3)


# --------------------------------------------------------------------------- entry points


def raise_fd_limit() -> None:
    """Many sessions need many descriptors: lift the soft limit to the hard one."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):
        pass


async def run_async(config: BenchConfig, *, progress: bool = False) -> BenchResult:
    """Run one benchmark as configured and return its result (never raises for a target
    that fails: that is reported in the result)."""
    parse_target(config.target)  # a bad target is the caller's mistake: raise now
    machine = _machine()
    if config.idle is not None:
        return await run_idle(config, machine)
    specs = worker_specs(config)
    sampler = Sampler(list(config.server_pids), [os.getpid()] if len(specs) == 1 else [])
    bar = ProgressBar(progress, warmup=config.warmup, duration=config.duration if config.requests is None else None,
                      requests=config.requests)
    try:
        if len(specs) == 1:
            reports = [await _run_here(specs[0], sampler, bar, config)]
        else:
            reports = await _run_workers(specs, sampler, bar, config)
    finally:
        bar.close()
    return build_result(config, reports, sampler, machine)


async def _run_here(spec: LoadSpec, sampler: Sampler, bar: ProgressBar, config: BenchConfig) -> WorkerReport:
    recorder = Recorder(len(spec.workload), spec.interval)
    done = trio.Event()
    async with trio.open_nursery() as nursery:

        async def gate(pids: list[int]) -> float:
            sampler.add_server_pids(pids)
            t0 = trio.current_time()
            nursery.start_soon(
                sampler.run, t0, config.warmup, config.duration if config.requests is None else None, done,
                lambda elapsed: bar.update(elapsed, recorder.ok, recorder.failed),
            )
            return t0

        try:
            report = await run_load(spec, gate=gate, recorder=recorder)
        finally:
            done.set()
    return report


def run(config: BenchConfig, *, progress: bool = False) -> BenchResult:
    """Synchronous wrapper of :func:`run_async`."""
    raise_fd_limit()
    return trio.run(lambda: run_async(config, progress=progress))


# --------------------------------------------------------------------------- idle mode


async def run_idle(config: BenchConfig, machine: dict[str, Any]) -> BenchResult:
    """Open ``config.idle`` sessions, hold them ``config.hold`` seconds, and report the
    server's resident memory per session (after one warm session has come and gone, so
    lazy imports and first-connection caches are in the baseline)."""
    assert config.idle is not None
    kind, _ = parse_target(config.target)
    sampler = Sampler(list(config.server_pids), [os.getpid()])
    spec = worker_specs(BenchConfig(**{**msgspec.structs.asdict(config), "processes": 1, "connections": 1}))[0]
    failure = None
    if kind == "stdio":
        failure = "idle mode needs a network target (ws:// or http://): a stdio server has one session"
    elif not config.server_pids:
        failure = "idle mode measures the server's memory: give --server-pid"
    open_seconds = 0.0
    baseline = loaded = None
    opened = 0
    alive_checked = alive_ok = 0
    errors: dict[str, int] = {}
    notes: list[str] = []
    if failure is None:
        async with trio.open_nursery() as nursery:
            warm = Sessions(spec, nursery)
            await warm.open(1)
            if warm.clients:
                await call_once(warm.clients[0], "ping", None, config.timeout)
            warm.close()
            await trio.sleep(0.5)
            baseline = sampler.server.rss()
            sessions = Sessions(spec, nursery)
            begin = trio.current_time()
            await sessions.open(config.idle)
            open_seconds = trio.current_time() - begin
            opened = len(sessions.clients)
            errors = dict(sessions.errors)
            notes = list(sessions.messages)
            await trio.sleep(IDLE_SETTLE_S)
            end = trio.current_time() + config.hold
            while trio.current_time() < end:
                sampler.sample()
                await trio.sleep(min(RSS_SAMPLE_S, max(0.0, end - trio.current_time())))
            loaded = sampler.server.rss()
            sampler.sample()
            if sessions.clients:
                step = max(1, len(sessions.clients) // IDLE_ALIVE_CHECKS)
                sample = sessions.clients[::step][:IDLE_ALIVE_CHECKS]
                alive_checked = len(sample)
                results: list[str | None] = []

                async def check(client: Any) -> None:
                    results.append(await call_once(client, "ping", None, config.timeout))

                async with trio.open_nursery() as checks:
                    for client in sample:
                        checks.start_soon(check, client)
                alive_ok = sum(1 for r in results if r is None)
                for r in results:
                    if r is not None:
                        errors[f"ping: {r}"] = errors.get(f"ping: {r}", 0) + 1
            notes += sessions.lost
            sessions.close()
        if not opened:
            failure = "no session could be opened" + (": " + "; ".join(notes[:2]) if notes else "")
    per_session = None
    if baseline is not None and loaded is not None and opened:
        per_session = round((loaded - baseline) / opened, 1)
    failed = sum(errors.values())
    return BenchResult(
        target=target_text(config.target),
        settings=_settings(config, 1),
        ok=failure is None and failed == 0 and opened == config.idle,
        failure=failure,
        notes=notes,
        window_s=config.hold,
        errors=errors,
        requests_failed=failed,
        connections=Connections(requested=config.idle, open=opened, failed=config.idle - opened),
        server=sampler.usage(sampler.server),
        client=sampler.usage(sampler.client),
        idle=Idle(
            sessions_requested=config.idle, sessions_open=opened, open_seconds=round(open_seconds, 3),
            rss_baseline_bytes=baseline, rss_loaded_bytes=loaded, rss_per_session_bytes=per_session,
            alive_checked=alive_checked, alive_ok=alive_ok,
        ),
        **machine,
    )


def merge_results(results: list[BenchResult]) -> BenchResult:
    """Combine rounds of the same benchmark (as ``bench/run_standard.py`` runs them): counts
    and histograms add, windows add, usage takes the sums and the peaks."""
    if len(results) == 1:
        return results[0]
    first = results[0]
    histogram = Histogram()
    for r in results:
        if r.histogram:
            histogram.merge(Histogram.from_sparse(r.histogram))
    window = sum(r.window_s or 0.0 for r in results) or None
    ok = sum(r.requests_ok for r in results)
    errors: dict[str, int] = {}
    for r in results:
        for k, v in r.errors.items():
            errors[k] = errors.get(k, 0) + v
    failures = [r.failure for r in results if r.failure]
    server = _merge_usage([r.server for r in results])
    client = _merge_usage([r.client for r in results])
    return msgspec.structs.replace(
        first,
        ok=all(r.ok for r in results),
        failure=failures[0] if failures and len(failures) == len(results) else None,
        notes=[n for r in results for n in r.notes][:5] + ([f"{len(failures)} of {len(results)} rounds failed: {failures[0]}"]
                                                           if failures and len(failures) < len(results) else []),
        window_s=window,
        requests_ok=ok,
        requests_failed=sum(r.requests_failed for r in results),
        calls_per_s=round(ok / window, 2) if window else first.calls_per_s,
        latency=Latency.of(histogram) if histogram.count else None,
        errors=errors,
        server=server,
        client=client,
        histogram=histogram.to_sparse() if histogram.count else None,
        timeline=_joined_timelines(results),
    )


def _joined_timelines(results: list[BenchResult]) -> list[TimelinePoint]:
    """The rounds' timelines one after the other, each shifted by the windows before it."""
    points: list[TimelinePoint] = []
    offset = 0.0
    for r in results:
        points += [msgspec.structs.replace(p, t_s=round(p.t_s + offset, 3)) for p in r.timeline]
        offset += r.window_s or 0.0
    return points


def _merge_usage(usages: list[Usage | None]) -> Usage | None:
    present = [u for u in usages if u is not None]
    if not present:
        return None
    cpu = [u.cpu_seconds for u in present if u.cpu_seconds is not None]
    percent = [u.cpu_percent for u in present if u.cpu_percent is not None]
    peaks = [u.rss_peak_bytes for u in present if u.rss_peak_bytes is not None]
    return Usage(
        pids=sorted({p for u in present for p in u.pids}),
        cpu_seconds=round(sum(cpu), 3) if cpu else None,
        cpu_percent=round(sum(percent) / len(percent), 1) if percent else None,
        rss_peak_bytes=max(peaks) if peaks else None,
        rss_end_bytes=present[-1].rss_end_bytes,
        rss_hwm_bytes=max((u.rss_hwm_bytes for u in present if u.rss_hwm_bytes is not None), default=None),
    )
