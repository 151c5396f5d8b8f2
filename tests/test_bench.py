"""The benchmark harness itself: histogram accuracy, the open- and closed-loop schedulers on
a virtual clock, failures reported as errors (never as speed), the JSON schema, several
client processes, workload files and idle mode."""

from __future__ import annotations

import io
import math
import os
import random
import shlex
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
import trio.testing
from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket

from mcp_trio.bench import (
    BenchConfig,
    BenchResult,
    Histogram,
    Recorder,
    Workload,
    WorkloadError,
    closed_loop,
    from_file,
    from_json,
    merge_results,
    open_loop,
    run_async,
    single,
    to_json,
)
from mcp_trio.bench._report import PlotUnavailable, plot
from mcp_trio.bench._runner import ProgressBar, progress_wanted, worker_specs
from mcp_trio.bench.cli import main as bench_main
from mcp_trio.bench.cli import seconds
from mcp_trio.client import ConnectionLost, RPCError

SERVE = [sys.executable, "-m", "mcp_trio", "serve"]


def exact_percentile(values: list[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


# --------------------------------------------------------------------------- histogram


def test_histogram_percentiles_match_a_known_distribution() -> None:
    rng = random.Random(7)
    # Log-normal latencies around 200 µs with a long tail, in nanoseconds.
    values = [int(rng.lognormvariate(math.log(200_000), 0.8)) for _ in range(100_000)]
    histogram = Histogram()
    for v in values:
        histogram.record(v)
    assert histogram.count == len(values)
    assert histogram.min == min(values) and histogram.max == max(values)
    assert histogram.mean() == pytest.approx(sum(values) / len(values))
    for q in (1, 10, 50, 90, 99, 99.9, 99.99):
        exact = exact_percentile(values, q)
        # A bucket is at most 1/128 of its values wide; the midpoint is within half of that.
        assert abs(histogram.percentile(q) - exact) <= exact / 256 + 1, q
    assert histogram.percentile(100) == max(values)
    assert histogram.percentile(0) == min(values)


def test_histogram_is_exact_for_small_values_and_bounded_in_memory() -> None:
    histogram = Histogram()
    for v in range(1, 201):
        histogram.record(v)
    assert [histogram.percentile(q) for q in (50, 90, 99)] == [100, 180, 198]
    big = Histogram()
    for v in (1, 10**3, 10**6, 10**9, 60 * 10**9):  # 1 ns .. one minute
        big.record(v, times=1000)
    assert len(big.counts) < 5000  # buckets grow with the largest value, not with the count
    assert big.percentile(50) == pytest.approx(10**6, rel=1 / 256)
    assert Histogram().percentile(50) is None


def test_histogram_bucket_bounds_tile_the_line() -> None:
    histogram = Histogram(bits=4)
    previous_high = -1
    for index in range(200):
        low, high = histogram.bounds(index)
        assert low == previous_high + 1 and high >= low
        assert histogram.index(low) == index == histogram.index(high)
        previous_high = high


def test_histograms_merge_as_if_recorded_together() -> None:
    rng = random.Random(3)
    a_values = [rng.randrange(1, 10**7) for _ in range(5000)]
    b_values = [rng.randrange(10**5, 10**8) for _ in range(5000)]
    a, b, both = Histogram(), Histogram(), Histogram()
    for v in a_values:
        a.record(v)
        both.record(v)
    for v in b_values:
        b.record(v)
        both.record(v)
    a.merge(Histogram.from_sparse(msgspec.json.decode(msgspec.json.encode(b.to_sparse()))))
    assert a.counts == both.counts[: len(a.counts)] and sum(a.counts) == sum(both.counts)
    assert (a.count, a.total, a.min, a.max) == (both.count, both.total, both.min, both.max)
    assert a.percentile(99) == both.percentile(99)


# --------------------------------------------------------------------------- schedulers


class FakeClient:
    """Answers after ``service`` seconds (virtual time under the MockClock)."""

    def __init__(self, service: float, result: Any = None, error: Exception | None = None) -> None:
        self.service = service
        self.result = {"content": []} if result is None else result
        self.error = error
        self.calls = 0
        self.in_flight = 0
        self.peak = 0

    async def request(self, method: str, params: Any) -> Any:
        self.calls += 1
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await trio.sleep(self.service)
        finally:
            self.in_flight -= 1
        if self.error is not None:
            raise self.error
        return self.result


def window(recorder: Recorder, warmup: float, duration: float) -> float:
    t0 = trio.current_time()
    recorder.open_window(t0 + warmup, t0 + warmup + duration)
    return t0


async def test_open_loop_keeps_its_rate(autojump_clock: trio.testing.MockClock) -> None:
    client = FakeClient(0.001)
    recorder = Recorder()
    t0 = window(recorder, 1.0, 10.0)
    await open_loop([client], 1000.0, single(), recorder, t0=t0, timeout=5, max_outstanding=100, tickets=None)
    assert recorder.sent == 10_000  # exactly rate × window: the schedule, not the server, sets the pace
    assert recorder.ok == 10_000 and recorder.failed == 0
    assert client.calls == 11_000  # the warm-up's thousand too
    assert recorder.latency.percentile(50) == pytest.approx(1e6, rel=0.01)  # 1 ms service time, no queueing
    assert recorder.latency.max == pytest.approx(1e6, rel=0.01)
    assert recorder.lag.max == 0  # every request left on time
    per_second = [point[0] for point in recorder.timeline]
    assert sum(per_second) == 10_000 and all(abs(n - 1000) <= 1 for n in per_second[:10])


async def test_open_loop_counts_queueing_from_the_scheduled_time(autojump_clock: trio.testing.MockClock) -> None:
    # The server needs 10 ms per request and only 5 run at once: 500/s of capacity,
    # offered 1000/s. A closed loop would report 10 ms; the open loop must show the backlog.
    client = FakeClient(0.010)
    recorder = Recorder()
    t0 = window(recorder, 0.0, 4.0)
    await open_loop([client], 1000.0, single(), recorder, t0=t0, timeout=60, max_outstanding=5, tickets=None)
    assert client.peak == 5
    assert recorder.ok == 4000
    assert recorder.latency.percentile(50) > 1e9  # > 1 s: half the requests waited in the backlog
    assert recorder.latency.max == pytest.approx(4e9, rel=0.02)  # the last one waited ~4 s
    assert recorder.lag.percentile(99) > 1e9  # and the send lag says why


async def test_open_loop_request_budget(autojump_clock: trio.testing.MockClock) -> None:
    client = FakeClient(0.001)
    recorder = Recorder()
    recorder.open_window(trio.current_time() + 0.5, math.inf)
    await open_loop([client], 200.0, single(), recorder, t0=trio.current_time(), timeout=5, max_outstanding=10,
                    tickets=300)
    assert recorder.sent == recorder.ok == 300
    assert client.calls == 100 + 300


async def test_closed_loop_keeps_in_flight_per_connection(autojump_clock: trio.testing.MockClock) -> None:
    clients = [FakeClient(0.002), FakeClient(0.002)]
    recorder = Recorder()
    window(recorder, 0.5, 5.0)
    await closed_loop(clients, 4, single(), recorder, timeout=5, tickets=None)
    assert [c.peak for c in clients] == [4, 4]
    assert recorder.ok == pytest.approx(2 * 4 * 5.0 / 0.002, abs=8)  # 8 in flight, 2 ms each
    assert recorder.latency.percentile(99) == pytest.approx(2e6, rel=0.01)


async def test_closed_loop_times_out_and_moves_on(autojump_clock: trio.testing.MockClock) -> None:
    client = FakeClient(10.0)  # never answers within the 1 s timeout
    recorder = Recorder()
    window(recorder, 0.0, 3.5)
    await closed_loop([client], 1, single(), recorder, timeout=1.0, tickets=None)
    assert recorder.errors == {"timeout": 4}  # sent at 0, 1, 2 and 3 s
    assert recorder.ok == 0 and recorder.latency.count == 0


# --------------------------------------------------------------------------- errors are not speed


@pytest.mark.parametrize(
    ("client", "kind"),
    [
        (FakeClient(0.001, result={"content": [], "isError": True}), "tool_error"),
        (FakeClient(0.001, error=RPCError(-32602, "bad")), "rpc_error -32602"),
        (FakeClient(0.001, error=ConnectionLost("gone")), "connection_lost"),
    ],
)
async def test_failures_are_counted_by_kind_not_as_speed(autojump_clock: trio.testing.MockClock, client: FakeClient,
                                                         kind: str) -> None:
    recorder = Recorder()
    window(recorder, 0.0, 1.0)
    await closed_loop([client], 2, single(), recorder, timeout=5, tickets=None)
    assert recorder.ok == 0 and recorder.latency.count == 0
    assert set(recorder.errors) == {kind}
    if kind == "connection_lost":
        assert recorder.errors[kind] == 2  # each task stops on a dead session
    else:
        assert recorder.errors[kind] == 2000  # 2 in flight, 1 ms each, for 1 s


@pytest.mark.slow
async def test_a_server_whose_tool_fails_has_no_speed() -> None:
    config = BenchConfig(target=SERVE, workload=single(tool="test_error_handling", arguments={}).to_json(),
                         warmup=0.1, duration=0.5)
    with trio.fail_after(20):
        result = await run_async(config)
    assert not result.ok
    assert result.requests_ok == 0 and result.requests_failed > 0
    assert set(result.errors) == {"tool_error"}
    assert result.calls_per_s == 0.0 and result.latency is None
    assert result.server is not None and result.server.pids  # the spawned server was measured


@pytest.mark.slow
async def test_a_server_that_does_not_start_is_a_failure() -> None:
    config = BenchConfig(target=[sys.executable, "-c", "import sys; print('boom', file=sys.stderr); sys.exit(3)"],
                         warmup=0.1, duration=0.3)
    with trio.fail_after(20):
        result = await run_async(config)
    assert not result.ok
    assert result.failure is not None and "exit code 3" in result.failure and "boom" in result.failure
    assert result.calls_per_s is None and result.requests_ok == 0
    assert result.connections.open == 0 and result.connections.failed == 1


# --------------------------------------------------------------------------- the real thing, and its JSON


@pytest.mark.slow
def test_cli_json_output_schema(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    target = "stdio:" + shlex.join(SERVE)
    status = bench_main([target, "-d", "4", "--warmup", "0.2", "--duration", "0.6", "--interval", "0.2",
                         "--json", str(out), "-q"])
    assert status == 0
    document = msgspec.json.decode(out.read_bytes())
    result = from_json(out.read_bytes())  # typed decode: every field of the schema, with its type
    assert document["schema"] == result.schema == "mcp-trio-bench/1"
    for key in ("target", "started_at", "host", "settings", "ok", "window_s", "requests_ok", "requests_failed",
                "calls_per_s", "latency", "errors", "connections", "server", "client", "timeline", "histogram"):
        assert key in document, key
    assert result.ok and result.failure is None and result.errors == {}
    assert result.settings.mode == "closed" and result.settings.in_flight == 4
    assert result.requests_ok > 100 and result.calls_per_s == pytest.approx(result.requests_ok / 0.6, rel=0.01)
    lat = result.latency
    assert lat is not None and lat.count == result.requests_ok
    assert 0 < lat.min_us <= lat.p50_us <= lat.p90_us <= lat.p99_us <= lat.p99_9_us <= lat.max_us
    assert result.server is not None and result.server.cpu_seconds is not None and result.server.rss_peak_bytes
    assert result.client is not None and result.client.pids == [os.getpid()]
    assert 2 <= len(result.timeline) <= 4 and sum(p.calls_per_s * 0.2 for p in result.timeline) == pytest.approx(
        result.requests_ok, rel=0.02)
    assert from_json(to_json(result)) == result


@pytest.mark.slow
async def test_several_client_processes_merge() -> None:
    config = BenchConfig(target=SERVE, connections=2, in_flight=2, processes=2, warmup=0.2, duration=0.5)
    with trio.fail_after(30):
        result = await run_async(config)
    assert result.ok, result.failure
    assert result.settings.processes == 2
    assert result.connections.open == 2
    assert result.client is not None and len(result.client.pids) == 2 and os.getpid() not in result.client.pids
    assert result.server is not None and len(result.server.pids) == 2  # one stdio server per connection
    assert result.latency is not None and result.latency.count == result.requests_ok > 0


def test_worker_specs_split_the_load() -> None:
    config = BenchConfig(target="ws://x/", connections=5, processes=2, rate=1000.0, requests=11, max_outstanding=10)
    specs = worker_specs(config)
    assert [s.connections for s in specs] == [3, 2]
    assert [s.rate for s in specs] == [600.0, 400.0]
    assert [s.requests for s in specs] == [6, 5]
    assert len(worker_specs(msgspec.structs.replace(config, processes=9))) == 5  # never a process without a session


def test_merge_results_adds_rounds() -> None:
    def fake(ok: int, window: float, values: list[int]) -> BenchResult:
        histogram = Histogram()
        for v in values:
            histogram.record(v)
        document = {
            "target": "x", "started_at": "t", "host": "h", "python": "3", "platform": "p", "cpus": 2,
            "settings": {"mode": "closed", "connections": 1, "in_flight": 1, "rate": None, "processes": 1,
                         "warmup_s": 0, "duration_s": window, "requests": None, "timeout_s": 1,
                         "max_outstanding": None, "workload": []},
            "ok": True, "window_s": window, "requests_ok": ok, "calls_per_s": ok / window,
            "connections": {"requested": 1, "open": 1, "failed": 0}, "histogram": histogram.to_sparse(),
        }
        return msgspec.convert(document, BenchResult)

    merged = merge_results([fake(100, 1.0, [1000] * 100), fake(300, 2.0, [3000] * 300)])
    assert merged.requests_ok == 400 and merged.window_s == 3.0
    assert merged.calls_per_s == pytest.approx(400 / 3, abs=0.01)
    assert merged.latency is not None and merged.latency.count == 400
    assert merged.latency.p50_us == pytest.approx(3.0, rel=1 / 256)


# --------------------------------------------------------------------------- idle mode


async def _echo(request: WebSocketRequest) -> None:
    ws = await request.accept()
    try:
        while True:
            message = msgspec.json.decode(await ws.get_message())
            if "id" in message:
                await ws.send_message(msgspec.json.encode(
                    {"jsonrpc": "2.0", "id": message["id"], "result": message.get("params", {})}).decode())
    except ConnectionClosed:
        pass


@pytest.mark.slow
async def test_idle_sessions_are_held_and_measured() -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(serve_websocket, _echo, "127.0.0.1", 0, None)
            config = BenchConfig(target=f"ws://127.0.0.1:{server.port}/", idle=30, hold=0.2,
                                 server_pids=[os.getpid()])  # the server runs in this very process
            result = await run_async(config)
            nursery.cancel_scope.cancel()
    assert result.ok, (result.failure, result.errors)
    idle = result.idle
    assert idle is not None
    assert idle.sessions_open == idle.sessions_requested == 30
    assert idle.alive_checked == idle.alive_ok == 30
    assert idle.rss_baseline_bytes and idle.rss_loaded_bytes and idle.rss_per_session_bytes is not None
    assert result.settings.mode == "idle"


async def test_idle_mode_refuses_stdio_and_needs_a_pid() -> None:
    result = await run_async(BenchConfig(target=SERVE, idle=3))
    assert not result.ok and "network target" in (result.failure or "")
    result = await run_async(BenchConfig(target="ws://127.0.0.1:9/", idle=3))
    assert not result.ok and "--server-pid" in (result.failure or "")


# --------------------------------------------------------------------------- workload, CLI, output


def test_workload_mix_files(tmp_path: Path) -> None:
    toml = tmp_path / "mix.toml"
    toml.write_text(
        '[[requests]]\ntool = "echo"\narguments = { text = "hi" }\nweight = 3\n\n'
        '[[requests]]\nmethod = "ping"\n\n'
        '[[requests]]\nuri = "test://static-text"\n'
    )
    workload = from_file(toml)
    assert [e.label for e in workload.entries] == ["tools/call echo", "ping", "resources/read test://static-text"]
    drawn = [workload.next()[0] for _ in range(4096)]
    shares = [drawn.count(i) / len(drawn) for i in range(3)]
    assert shares == pytest.approx([0.6, 0.2, 0.2], abs=0.03)
    assert msgspec.json.decode(workload.next()[2] if drawn[0] == 0 else workload.encoded[0]) == {
        "name": "echo", "arguments": {"text": "hi"}}

    as_json = tmp_path / "mix.json"
    as_json.write_bytes(msgspec.json.encode([{"method": "tools/list"}, {"tool": "echo", "weight": 2}]))
    assert [e.method for e in from_file(as_json).entries] == ["tools/list", "tools/call"]
    assert Workload.from_json(from_file(as_json).to_json()).entries == from_file(as_json).entries

    for bad in ('{"requests": []}', '[{"weight": 1}]', '[{"method": "ping", "colour": "red"}]',
                '[{"method": "ping", "weight": 0}]', "not json"):
        path = tmp_path / "bad.json"
        path.write_text(bad)
        with pytest.raises(WorkloadError):
            from_file(path)
    with pytest.raises(WorkloadError):
        single("resources/read")


def test_cli_rejects_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_main(["ftp://nowhere/"]) == 2
    assert "unknown target" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench_main(["stdio:x", "--duration", "soon"])
    assert [seconds(t) for t in ("10", "10s", "500ms", "2m", "1.5")] == [10, 10, 0.5, 120, 1.5]


def test_progress_bar_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("CI", raising=False)
    assert progress_wanted(Tty()) and not progress_wanted(io.StringIO())
    monkeypatch.setenv("CI", "true")
    assert not progress_wanted(Tty())
    out = Tty()
    bar = ProgressBar(True, warmup=1.0, duration=4.0, requests=None, stream=out)
    bar.update(0.5, 0, 0)
    bar.update(3.0, 1000, 2)
    bar.close()
    assert "warm-up" in out.getvalue() and " 50%" in out.getvalue() and "1,000 ok" in out.getvalue()
    quiet = io.StringIO()
    ProgressBar(False, warmup=1.0, duration=4.0, requests=None, stream=quiet).update(3.0, 1, 0)
    assert quiet.getvalue() == ""


def test_plot_or_a_clear_message(tmp_path: Path) -> None:
    histogram = Histogram()
    for v in range(1000, 100_000, 100):
        histogram.record(v)
    result = msgspec.convert({
        "target": "x", "started_at": "t", "host": "h", "python": "3", "platform": "p", "cpus": 2,
        "settings": {"mode": "closed", "connections": 1, "in_flight": 1, "rate": None, "processes": 1,
                     "warmup_s": 0, "duration_s": 2, "requests": None, "timeout_s": 1, "max_outstanding": None,
                     "workload": []},
        "ok": True, "window_s": 2, "requests_ok": 990, "calls_per_s": 495,
        "connections": {"requested": 1, "open": 1, "failed": 0}, "histogram": histogram.to_sparse(),
        "timeline": [{"t_s": 1, "calls_per_s": 500, "errors": 0, "p50_us": 50, "p90_us": 90, "p99_us": 99,
                      "max_us": 100},
                     {"t_s": 2, "calls_per_s": 490, "errors": 1, "p50_us": 51, "p90_us": 91, "p99_us": 99,
                      "max_us": 100}],
    }, BenchResult)
    path = tmp_path / "plot.png"
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        with pytest.raises(PlotUnavailable, match="pip install"):
            plot(result, path)
    else:
        plot(result, path)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- the standard comparison


def _standard_module() -> Any:
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "bench" / "run_standard.py"
    spec = importlib.util.spec_from_file_location("run_standard", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["run_standard"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_standard_report_has_ratios_and_names_failures() -> None:
    rs = _standard_module()
    crash = "Traceback (most recent call last):\n  File \"x.py\", line 1\n    |   TypeError: bad keyword\n    +------+\n"
    assert rs._headline(crash) == "TypeError: bad keyword"
    assert rs._headline("usage: x [-h]\nx: error: argument --transport: invalid choice: 'ws'") == (
        "x: error: argument --transport: invalid choice: 'ws'")

    def row(server: str, cps: float | None, error: str | None = None) -> dict[str, Any]:
        return {"server": server, "label": server, "command": "c", "ok": error is None, "error": error, "errors": {},
                "calls_per_s": cps, "p50_us": 100.0, "p99_us": 300.0, "rss_bytes": 30 * 2**20,
                "server_cpu_percent": 90.0, "client_cpu_percent": 40.0, "requests_failed": 0,
                "vs_floor": None if cps is None or server == "floor" else cps / 1000,
                "vs_sdk": None if cps is None or server == "sdk" else cps / 250}

    document = {
        "started_at": "2026-01-02T03:04:05+00:00", "json": "bench/results/x.json",
        "machine": {"host": "h", "cpus": 2, "python": "3.11", "platform": "Linux"},
        "versions": {"mcp_trio": "0.1", "mcp": "2.3", "fastmcp": "4.2"},
        "settings": {"rounds": 2, "duration_s": 5.0, "warmup_s": 1.5},
        "scenarios": [{"name": "stdio_seq", "title": "stdio, sequential (1×1)", "idle": False, "rows": [
            row("floor", 1000.0), row("ours", 500.0), row("sdk", 250.0),
            row("fastmcp", None, "could not start: exited with code 2: boom\nmore")]}],
    }
    text = rs.markdown(document)
    assert "| stdio, sequential (1×1) | ours | 500 | 100 | 300 | 90% | 40% | 30.0 MiB | 0.50× | 2.00× |" in text
    assert "| stdio, sequential (1×1) | fastmcp | error |" in text
    assert "- **stdio_seq / fastmcp**: could not start: exited with code 2: boom" in text
    assert "more" not in text


# --------------------------------------------------------------------------- before the run (issue 10)

WEATHER = '''
from mcp_trio import Server

server = Server("weather")


@server.tool
async def forecast(city: str) -> str:
    return "sunny"


@server.tool
async def alerts(region: str) -> list[str]:
    return []
'''


@pytest.mark.slow
@pytest.mark.parametrize("flags, says", [
    ([], "no tool 'echo' on this server (it has: alerts, forecast): pass --tool and --arguments"),
    (["--tool", "forecast", "--arguments", '{"town": "Oslo"}'],
     "tools/call forecast fails on this server: invalid arguments for tool 'forecast': town is unknown; city is "
     "required: pass --tool and --arguments that work"),
    (["-m", "resources/read", "--uri", "weather://nowhere"], "resources/read weather://nowhere fails on this server: -32002"),
])
def test_a_workload_the_server_cannot_serve_stops_before_the_run(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], says: str) -> None:
    """It used to run the whole window and report 0 calls/s, every request failed -32602."""
    (tmp_path / "weather.py").write_text(WEATHER)
    target = "stdio:" + shlex.join([*SERVE, f"{tmp_path / 'weather.py'}:server"])
    status = bench_main([target, "--warmup", "0.1", "--duration", "0.3", "-q", *flags])
    assert status == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"mcp-trio bench: {says}"), err
    ok = bench_main([target, "--warmup", "0.1", "--duration", "0.3", "-q", "--tool", "forecast", "--arguments",
                     '{"city": "Oslo"}'])
    assert ok == 0
