"""The load engine of one client process: open sessions, drive them, record what happened.

Two shapes of load:

* **closed loop** -- ``connections`` sessions, each with ``in_flight`` tasks that send a
  request, wait for its answer and send the next. Throughput is what the server sustains;
  latency is what one waiting caller sees.
* **open loop** -- requests are scheduled at a fixed arrival rate (``t0 + i / rate``) and
  handed to a pool of ``max_outstanding`` tasks spread over the sessions. Latency is taken
  from the *scheduled* send time, not the actual one: when the server (or this client)
  falls behind, the wait counts, so coordinated omission does not hide the queueing
  (as in wrk2). How late sends left is reported as the send lag.

Timing: a warm-up from the start, then the measured window of ``duration`` seconds (or
until ``requests`` measured requests were sent). A request belongs to the window when it
was sent (scheduled) inside it; it is recorded when it completes, so requests in flight at
the end are waited for (at most ``timeout``). Only successes have a latency; failures are
counted by kind and are never speed. Everything is read from ``trio.current_time()``, so
tests can run the engine on a ``MockClock``.
"""

from __future__ import annotations

import math
import ssl
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec
import trio

from ..client import (
    Client,
    ClientError,
    ConnectError,
    ConnectionLost,
    HTTPError,
    ProtocolError,
    RPCError,
    connect,
    parse_target,
)
from ..protocol._versions import LATEST_VERSION
from ._histogram import Histogram
from ._workload import Workload

#: The error kind of a request whose session is gone; a closed-loop task stops on it.
LOST = "connection_lost"
TIMEOUT = "timeout"
TIMELINE_BITS = 5  # per-interval histograms are coarse (3 %): they only feed the plot
STDERR_TAIL = 1500  # characters of a failed stdio server's stderr kept in the report
DEFAULT_OPEN_CONCURRENCY = 64  # sessions being opened at once


class LoadSpec(msgspec.Struct, kw_only=True):
    """What one client process runs. Plain data, so it can be sent to a worker process."""

    target: str | list[str]
    connections: int = 1
    in_flight: int = 1
    rate: float | None = None  # open loop: arrivals per second for this process
    max_outstanding: int = 1000  # open loop: requests in flight at most (the task pool)
    warmup: float = 2.0
    duration: float | None = 10.0
    requests: int | None = None  # count mode: measured requests this process sends
    timeout: float = 30.0
    interval: float = 1.0
    workload: list[dict[str, Any]] = msgspec.field(default_factory=list)
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    insecure: bool = False
    initialize: bool = True
    protocol_version: str = LATEST_VERSION
    open_concurrency: int = DEFAULT_OPEN_CONCURRENCY


class EntryReport(msgspec.Struct):
    ok: int
    errors: int
    latency: dict[str, Any] | None


class WorkerReport(msgspec.Struct):
    """What one process measured; reports from several processes merge (see ``merge``)."""

    ok: int = 0
    errors: dict[str, int] = msgspec.field(default_factory=dict)
    latency: dict[str, Any] | None = None
    lag: dict[str, Any] | None = None
    sent: int = 0
    entries: list[EntryReport] = msgspec.field(default_factory=list)
    timeline: list[list[Any]] = msgspec.field(default_factory=list)  # [ok, errors, sparse histogram]
    window_s: float | None = None
    connections_open: int = 0
    connect_errors: dict[str, int] = msgspec.field(default_factory=dict)
    lost: list[str] = msgspec.field(default_factory=list)  # why sessions ended early (a few)
    failure: str | None = None


class Recorder:
    """Counts and histograms of the measured window; nothing per request is kept."""

    def __init__(self, entries: int = 1, interval: float = 1.0) -> None:
        self.latency = Histogram()
        self.lag = Histogram()
        self.ok = 0
        self.failed = 0
        self.errors: dict[str, int] = {}
        self.entry_ok = [0] * entries
        self.entry_errors = [0] * entries
        self.entry_latency = [Histogram() for _ in range(entries)] if entries > 1 else None
        self.interval = interval
        self.timeline: list[list[Any]] = []
        self.start = math.inf
        self.end = math.inf
        self.last_done: float | None = None
        self.sent = 0

    def open_window(self, start: float, end: float) -> None:
        self.start, self.end = start, end

    def record(self, entry: int, sent: float, done: float, error: str | None) -> None:
        """One measured request: sent (or scheduled) at ``sent``, finished at ``done``."""
        slot = int((done - self.start) / self.interval)
        timeline = self.timeline
        while len(timeline) <= slot:
            timeline.append([0, 0, Histogram(TIMELINE_BITS)])
        point = timeline[slot]
        if error is None:
            nanos = int((done - sent) * 1e9)
            self.ok += 1
            self.latency.record(nanos)
            self.entry_ok[entry] += 1
            if self.entry_latency is not None:
                self.entry_latency[entry].record(nanos)
            point[0] += 1
            point[2].record(nanos)
        else:
            self.failed += 1
            self.errors[error] = self.errors.get(error, 0) + 1
            self.entry_errors[entry] += 1
            point[1] += 1
        if self.last_done is None or done > self.last_done:
            self.last_done = done

    def record_error(self, kind: str, times: int = 1) -> None:
        """A failure that is not one request's (a session that could not be opened)."""
        self.errors[kind] = self.errors.get(kind, 0) + times
        self.failed += times


def _error_kind(exc: BaseException) -> str:
    if isinstance(exc, RPCError):
        return f"rpc_error {exc.code}"
    if isinstance(exc, HTTPError):
        return f"http {exc.status}"
    if isinstance(exc, ConnectionLost):
        return LOST
    if isinstance(exc, ProtocolError):
        return "protocol_error"
    if isinstance(exc, ConnectError):
        return "connect_error"
    return type(exc).__name__


async def outcome(client: Any, method: str, params: Any) -> str | None:
    """One request; None on success, else the kind of failure. A tool result with
    ``isError: true`` is a failure too: the benchmark measures calls that worked."""
    try:
        result = await client.request(method, params)
    except ClientError as exc:
        return _error_kind(exc)
    if type(result) is dict and result.get("isError") is True:
        return "tool_error"
    return None


async def call_once(client: Any, method: str, params: Any, timeout: float) -> str | None:
    """:func:`outcome` within ``timeout`` seconds (else ``"timeout"``)."""
    with trio.move_on_after(timeout):
        return await outcome(client, method, params)
    return TIMEOUT


class _State:
    def __init__(self, tickets: int | None) -> None:
        self.tickets = tickets


async def closed_loop(
    clients: Sequence[Any], in_flight: int, workload: Workload, recorder: Recorder, *, timeout: float, tickets: int | None
) -> None:
    """``in_flight`` tasks per session, each sending its next request when the last is
    answered, until the window closes (or the measured request budget is spent)."""
    state = _State(tickets)

    async def worker(client: Any) -> None:
        # One cancel scope whose deadline moves with each request: a request's timeout
        # without the cost of entering a scope per request.
        clock = trio.current_time
        while True:
            with trio.CancelScope() as scope:
                while True:
                    sent = clock()
                    if sent >= recorder.end:
                        return
                    measured = sent >= recorder.start
                    if measured and state.tickets is not None:
                        if state.tickets <= 0:
                            return
                        state.tickets -= 1
                    index, method, params = workload.next()
                    scope.deadline = sent + timeout
                    error = await outcome(client, method, params)
                    if measured:
                        recorder.sent += 1
                        recorder.record(index, sent, clock(), error)
                    if error == LOST:
                        return  # the session is gone: no point hammering it
            if measured:  # the deadline fired: that request timed out
                recorder.sent += 1
                recorder.record(index, sent, clock(), TIMEOUT)

    async with trio.open_nursery() as nursery:
        for client in clients:
            for _ in range(in_flight):
                nursery.start_soon(worker, client)


async def open_loop(
    clients: Sequence[Any],
    rate: float,
    workload: Workload,
    recorder: Recorder,
    *,
    t0: float,
    timeout: float,
    max_outstanding: int,
    tickets: int | None,
) -> None:
    """Send at ``rate`` per second from ``t0``: request ``i`` is due at ``t0 + i / rate``.
    A pool of ``max_outstanding`` tasks sends them; when all are busy the schedule waits
    for one, and the wait shows up in the latency (measured from the due time)."""
    if rate <= 0:
        raise ValueError("rate must be positive")
    period = 1.0 / rate
    send_channel, receive_channel = trio.open_memory_channel[tuple[float, bool]](0)

    async def worker(client: Any, receive: trio.MemoryReceiveChannel[tuple[float, bool]]) -> None:
        clock = trio.current_time
        async with receive:
            async for due, measured in receive:
                started = clock()
                index, method, params = workload.next()
                with trio.move_on_at(started + timeout):
                    error = await outcome(client, method, params)
                    if measured:
                        recorder.lag.record(int((started - due) * 1e9))
                        recorder.record(index, due, clock(), error)
                    continue
                if measured:
                    recorder.lag.record(int((started - due) * 1e9))
                    recorder.record(index, due, clock(), TIMEOUT)

    async with trio.open_nursery() as nursery:
        pool = max(1, max_outstanding)
        for k in range(pool):
            nursery.start_soon(worker, clients[k % len(clients)], receive_channel.clone())
        await receive_channel.aclose()
        async with send_channel:
            i = 0
            while True:
                due = t0 + i * period
                if due >= recorder.end:
                    break
                measured = due >= recorder.start
                if measured and tickets is not None:
                    if tickets <= 0:
                        break
                    tickets -= 1
                if trio.current_time() < due:
                    await trio.sleep_until(due)
                await send_channel.send((due, measured))
                if measured:
                    recorder.sent += 1
                i += 1


def _ssl_context(spec: LoadSpec) -> ssl.SSLContext | None:
    if not spec.insecure:
        return None
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class Sessions:
    """Opens sessions, each held by its own task until ``close()``; counts the failures."""

    def __init__(self, spec: LoadSpec, nursery: trio.Nursery) -> None:
        self.spec = spec
        self.nursery = nursery
        self.clients: list[Client] = []
        self.errors: dict[str, int] = {}
        self.messages: list[str] = []  # the first few failure messages, for the report
        self.lost: list[str] = []
        self._stop = trio.Event()
        self._kind, _ = parse_target(spec.target)
        self._limiter = trio.CapacityLimiter(max(1, spec.open_concurrency))
        self._stderr_files: list[Any] = []
        # HTTP: connections per session enough for every request the load keeps in flight on it.
        per_session = spec.in_flight if spec.rate is None else -(-spec.max_outstanding // max(1, spec.connections))
        self._pool = max(1, per_session)

    def _note(self, kind: str, message: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1
        if len(self.messages) < 5 and message not in self.messages:
            self.messages.append(message)

    async def open(self, count: int) -> None:
        """Open ``count`` sessions (``open_concurrency`` at a time) and return when each is
        either ready or has failed."""
        done = trio.Event()
        remaining = count

        def finished() -> None:
            nonlocal remaining
            remaining -= 1
            if remaining == 0:
                done.set()

        for _ in range(count):
            self.nursery.start_soon(self._hold, finished)
        if count:
            await done.wait()

    async def _hold(self, finished: Callable[[], None]) -> None:
        """Open one session (within ``timeout``), then hold it until ``close()``."""
        spec = self.spec
        stderr = None
        if self._kind == "stdio":
            stderr = tempfile.TemporaryFile()  # noqa: SIM115 - outlives this call; closed in cleanup()
            self._stderr_files.append(stderr)
        ready = False
        await self._limiter.acquire()
        opening = trio.CancelScope(deadline=trio.current_time() + spec.timeout)
        try:
            with opening:
                # No session by connect() (the handshake below is the bench's, under its own
                # timeout) and no per-request timeout: the load loops own their deadlines.
                async with connect(spec.target, era=None, headers=spec.headers, ssl_context=_ssl_context(spec), stderr=stderr,
                                   request_timeout=None, max_connections=self._pool) as client:
                    if spec.initialize:
                        await client.initialize(protocol_version=spec.protocol_version)
                    opening.deadline = math.inf
                    self._limiter.release()
                    ready = True
                    self.clients.append(client)
                    finished()
                    try:
                        await self._stop.wait()
                    finally:
                        if client.lost is not None:
                            self._lost(client.lost, stderr)
            if opening.cancelled_caught and not ready:
                self._note(f"connect: {TIMEOUT}", f"opening a session took longer than {spec.timeout:g} s")
        except ClientError as exc:
            self._note(f"connect: {_error_kind(exc)}", self._with_stderr(str(exc), stderr))
        finally:
            if not ready:
                self._limiter.release()
                finished()

    def _with_stderr(self, message: str, stderr: Any) -> str:
        if stderr is None:
            return message
        try:
            stderr.seek(0)
            tail = stderr.read().decode(errors="replace")[-STDERR_TAIL:].strip()
        except (OSError, ValueError):
            tail = ""
        return f"{message}\n{tail}" if tail else message

    def _lost(self, reason: str, stderr: Any) -> None:
        if len(self.lost) < 5:
            self.lost.append(self._with_stderr(reason, stderr))

    def close(self) -> None:
        self._stop.set()

    def cleanup(self) -> None:
        for f in self._stderr_files:
            f.close()


async def run_load(
    spec: LoadSpec,
    *,
    gate: Callable[[list[int]], Awaitable[float]] | None = None,
    recorder: Recorder | None = None,
) -> WorkerReport:
    """Open the sessions, wait at the gate, then drive the load and report.

    ``gate(pids)`` is told the pids of spawned servers and returns the start time (a
    ``trio.current_time()`` value) once every process is ready; without one the load starts
    at once. ``recorder`` lets the caller watch progress.
    """
    workload = Workload.from_json(spec.workload)
    recorder = recorder or Recorder(len(workload.entries), spec.interval)
    report = WorkerReport()
    async with trio.open_nursery() as nursery:
        sessions = Sessions(spec, nursery)
        try:
            await sessions.open(spec.connections)
            pids = [c.pid for c in sessions.clients if c.pid is not None]
            t0 = await gate(pids) if gate is not None else trio.current_time()
            report.connections_open = len(sessions.clients)
            report.connect_errors = dict(sessions.errors)
            for kind, count in sessions.errors.items():
                recorder.record_error(kind, count)
            if not sessions.clients:
                report.failure = "no session could be opened: " + "; ".join(sessions.messages)
            else:
                start = t0 + spec.warmup
                end = start + spec.duration if spec.duration is not None and spec.requests is None else math.inf
                recorder.open_window(start, end)
                if spec.rate is not None:
                    await open_loop(
                        sessions.clients, spec.rate, workload, recorder, t0=t0, timeout=spec.timeout,
                        max_outstanding=spec.max_outstanding, tickets=spec.requests,
                    )
                else:
                    await closed_loop(
                        sessions.clients, spec.in_flight, workload, recorder, timeout=spec.timeout, tickets=spec.requests
                    )
                if end != math.inf:
                    report.window_s = spec.duration
                elif recorder.last_done is not None:
                    report.window_s = max(recorder.last_done - start, 1e-9)
        finally:
            sessions.close()
    sessions.cleanup()
    report.lost = sessions.lost
    if sessions.messages and report.failure is None:
        report.lost = sessions.messages[:3] + report.lost
    return fill_report(report, recorder)


def fill_report(report: WorkerReport, recorder: Recorder) -> WorkerReport:
    report.ok = recorder.ok
    report.errors = dict(recorder.errors)
    report.latency = recorder.latency.to_sparse()
    report.lag = recorder.lag.to_sparse() if recorder.lag.count else None
    report.sent = recorder.sent
    report.entries = [
        EntryReport(
            recorder.entry_ok[i],
            recorder.entry_errors[i],
            recorder.entry_latency[i].to_sparse() if recorder.entry_latency is not None else None,
        )
        for i in range(len(recorder.entry_ok))
    ]
    report.timeline = [[ok, errors, h.to_sparse()] for ok, errors, h in recorder.timeline]
    return report


def merge(reports: Sequence[WorkerReport]) -> tuple[WorkerReport, Histogram, Histogram | None, list[Histogram | None], list[list[Any]]]:
    """Combine the reports of several processes: counts add, histograms merge, the window
    is the longest one. Returns the merged report and its histograms, decoded."""
    merged = WorkerReport()
    latency = Histogram()
    lag: Histogram | None = None
    entries: list[Histogram | None] = []
    timeline: list[list[Any]] = []
    failures = []
    for report in reports:
        merged.ok += report.ok
        merged.sent += report.sent
        merged.connections_open += report.connections_open
        for kind, count in report.errors.items():
            merged.errors[kind] = merged.errors.get(kind, 0) + count
        for kind, count in report.connect_errors.items():
            merged.connect_errors[kind] = merged.connect_errors.get(kind, 0) + count
        if report.latency:
            latency.merge(Histogram.from_sparse(report.latency))
        if report.lag:
            lag = lag or Histogram()
            lag.merge(Histogram.from_sparse(report.lag))
        for i, entry in enumerate(report.entries):
            if i >= len(merged.entries):
                merged.entries.append(EntryReport(0, 0, None))
                entries.append(None)
            merged.entries[i].ok += entry.ok
            merged.entries[i].errors += entry.errors
            if entry.latency:
                entries[i] = entries[i] or Histogram()
                entries[i].merge(Histogram.from_sparse(entry.latency))  # type: ignore[union-attr]
        for slot, (ok, errors, sparse) in enumerate(report.timeline):
            while len(timeline) <= slot:
                timeline.append([0, 0, Histogram(TIMELINE_BITS)])
            timeline[slot][0] += ok
            timeline[slot][1] += errors
            timeline[slot][2].merge(Histogram.from_sparse(sparse))
        if report.window_s is not None:
            merged.window_s = max(merged.window_s or 0.0, report.window_s)
        merged.lost += [m for m in report.lost if m not in merged.lost][: max(0, 5 - len(merged.lost))]
        if report.failure:
            failures.append(report.failure)
    if failures and len(failures) == len(reports):
        merged.failure = failures[0]
    elif failures:
        merged.lost = failures[:2] + merged.lost
    return merged, latency, lag, entries, timeline
