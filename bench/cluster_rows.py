"""Cluster rows of the standard comparison: one process, ``--workers 2`` on Redis, two processes
behind HAProxy, in one run with the single-process rows they are measured against.

Usage::

    python bench/cluster_rows.py [--rounds N] [--duration SECONDS] [--warmup SECONDS] [--quick]

``make bench`` (``bench/run_standard.py``) runs it as its "cluster" section. Every server serves
the demo app over Streamable HTTP (``echo``, JSON answers), on loopback:

* ``one``: one process, no rate limit, no Redis (the single-process row);
* ``one_rl``: one process, local rate limits (a rate nothing reaches: every call is decided
  and charged, none refused);
* ``one_redis``: one process, the same limits decided in Redis (``--redis``): against
  ``one_rl`` this is the per-call cost of the shared limiter;
* ``workers2``: ``--workers 2 --redis``: two processes on one port, sessions served by either;
* ``haproxy2``: two processes on two ports behind HAProxy (round-robin per request, no
  stickiness), ``--redis``.

Scenarios: sequential (1 session × 1: latency) and concurrent (8 sessions × 4 in flight, two
client processes: throughput). Rows take turns within each round, so background load lands
on all alike. Server CPU counts every process of a row (workers, HAProxy); Redis's CPU is
reported apart. On a 2-core machine the client processes compete with the servers for the
cores: whether two workers beat one is what the concurrent row says, here.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import trio

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mcp_trio.bench import BenchConfig, BenchResult, merge_results, run_async  # noqa: E402
from mcp_trio.bench._procstat import cpu_seconds  # noqa: E402

HOST = "127.0.0.1"
START_TIMEOUT_S = 30.0
#: Rate limits every call is decided by and none reaches: the limiter's cost, never a refusal.
LIMITS = ("--rate-limit", "1000000", "--burst", "1000000")


@dataclass(frozen=True)
class Config:
    name: str
    label: str
    args: tuple[str, ...] = ()
    redis: bool = False
    workers: int = 1
    hosts: int = 1


CONFIGS = [
    Config("one", "one process"),
    Config("one_rl", "one process, local rate limits", LIMITS),
    Config("one_redis", "one process, rate limits in Redis", LIMITS, redis=True),
    Config("workers2", "--workers 2, Redis", LIMITS, redis=True, workers=2),
    Config("haproxy2", "2 processes behind HAProxy, Redis", LIMITS, redis=True, hosts=2),
]


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    connections: int
    in_flight: int
    processes: int


SCENARIOS = [
    Scenario("cluster_seq", "Streamable HTTP, sequential (1×1)", 1, 1, 1),
    Scenario("cluster_concurrent", "Streamable HTTP, 8 sessions × 4 in flight", 8, 4, 2),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _binary(name: str) -> str | None:
    return shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)


def _wait_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with code {process.returncode}: {log.read_text(errors='replace')[-600:]}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"not accepting connections on port {port} after {START_TIMEOUT_S:g} s")


class Deployed:
    """The processes of one configuration: its servers (and HAProxy), and the URL to load."""

    def __init__(self, config: Config, redis_url: str | None, directory: Path) -> None:
        self.config = config
        self.processes: list[subprocess.Popen[bytes]] = []
        self.directory = directory
        self.url = ""
        self.redis_url = redis_url

    def _spawn(self, argv: list[str], name: str) -> tuple[subprocess.Popen[bytes], Path]:
        log = self.directory / f"{self.config.name}-{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(argv, cwd=REPO, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        self.processes.append(process)
        return process, log

    def start(self) -> None:
        config = self.config
        ports = []
        for index in range(config.hosts):
            port = free_port()
            argv = [sys.executable, "-m", "mcp_trio", "serve", "--transport", "http", "--host", HOST, "--port", str(port),
                    *config.args]
            if config.redis:
                if self.redis_url is None:
                    raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
                argv += ["--redis", self.redis_url]
            if config.workers > 1:
                argv += ["--workers", str(config.workers)]
            process, log = self._spawn(argv, f"server{index}")
            _wait_port(port, process, log)
            if config.workers > 1:  # each worker prints its banner once it serves
                deadline = time.monotonic() + START_TIMEOUT_S
                while log.read_text(errors="replace").count("mcp-trio: serving") < config.workers:
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise RuntimeError(f"workers did not start: {log.read_text(errors='replace')[-600:]}")
                    time.sleep(0.05)
            ports.append(port)
        if config.hosts == 1:
            self.url = f"http://{HOST}:{ports[0]}/mcp"
            return
        haproxy = _binary("haproxy")
        if haproxy is None:
            raise RuntimeError("haproxy is not installed (apt-get install haproxy)")
        front = free_port()
        servers = "\n".join(f"    server s{i} {HOST}:{port}" for i, port in enumerate(ports))
        cfg = self.directory / f"{config.name}-haproxy.cfg"
        cfg.write_text(f"""global
    maxconn 4096
defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout tunnel 1h
    timeout http-keep-alive 10s
    option http-server-close
frontend mcp
    bind {HOST}:{front}
    default_backend servers
backend servers
    balance roundrobin
{servers}
""")
        process, log = self._spawn([haproxy, "-db", "-f", str(cfg)], "haproxy")
        _wait_port(front, process, log)
        self.url = f"http://{HOST}:{front}/mcp"

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self.processes]

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@dataclass
class Row:
    config: Config
    error: str | None = None
    rounds: list[BenchResult] = field(default_factory=list)
    redis_cpu_s: float = 0.0
    window_s: float = 0.0

    def result(self) -> BenchResult | None:
        return merge_results(self.rounds) if self.rounds else None


def start_redis(directory: Path) -> tuple[subprocess.Popen[bytes] | None, str | None]:
    binary = _binary("redis-server")
    if binary is None:
        return None, None
    port = free_port()
    log = directory / "redis.log"
    with log.open("wb") as out:
        process = subprocess.Popen([binary, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no",
                                    "--dir", str(directory)], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    _wait_port(port, process, log)
    return process, f"redis://{HOST}:{port}/0"


def run(rounds: int = 2, duration: float = 5.0, warmup: float = 1.5, timeout: float = 30.0,
        say: Any = print) -> dict[str, Any]:
    """Measure every configuration in every scenario; the section of the report (JSON-ready)."""
    with tempfile.TemporaryDirectory(prefix="mcp-trio-cluster-bench-") as tmp:
        directory = Path(tmp)
        redis, redis_url = start_redis(directory)
        deployed: dict[str, Deployed] = {}
        table = {s.name: {c.name: Row(c) for c in CONFIGS} for s in SCENARIOS}
        try:
            for config in CONFIGS:
                instance = Deployed(config, redis_url, directory)
                say(f"cluster: starting {config.name} ({config.label})")
                try:
                    instance.start()
                    deployed[config.name] = instance
                except RuntimeError as exc:
                    instance.stop()
                    for scenario in SCENARIOS:
                        table[scenario.name][config.name].error = f"could not start: {exc}"
            for round_no in range(rounds):
                for scenario in SCENARIOS:
                    for config in CONFIGS:
                        row = table[scenario.name][config.name]
                        instance = deployed.get(config.name)
                        if instance is None or row.error is not None:
                            continue
                        bench = BenchConfig(target=instance.url, connections=scenario.connections,
                                            in_flight=scenario.in_flight, processes=scenario.processes, warmup=warmup,
                                            duration=duration, timeout=timeout, server_pids=instance.pids)
                        before = cpu_seconds(redis.pid) if redis is not None and config.redis else None
                        started = time.monotonic()
                        result = trio.run(lambda: run_async(bench))  # noqa: B023
                        if before is not None:
                            after = cpu_seconds(redis.pid)  # type: ignore[union-attr]
                            row.redis_cpu_s += (after or before) - before
                            row.window_s += time.monotonic() - started
                        row.rounds.append(result)
                        cps = "-" if result.calls_per_s is None else f"{result.calls_per_s:,.0f} calls/s"
                        say(f"{scenario.name} round {round_no + 1}/{rounds} {config.name}: {cps}, "
                            f"{result.requests_failed} failed")
        finally:
            for instance in deployed.values():
                instance.stop()
            if redis is not None:
                redis.terminate()
                redis.wait(10)
    return summarise(table, rounds, duration, warmup)


def _per_call_us(cpu_percent: float | None, calls_per_s: float | None) -> float | None:
    """Server CPU per call, µs (``cpu_percent`` is % of one core)."""
    if cpu_percent is None or not calls_per_s:
        return None
    return cpu_percent / 100 / calls_per_s * 1e6


def summarise(table: dict[str, dict[str, Row]], rounds: int, duration: float, warmup: float) -> dict[str, Any]:
    scenarios = []
    for scenario in SCENARIOS:
        rows = []
        results = {name: row.result() for name, row in table[scenario.name].items()}
        base = results.get("one")
        for name, row in table[scenario.name].items():
            result = results[name]
            ok = row.error is None and result is not None and result.failure is None
            calls = result.calls_per_s if ok and result else None
            server_cpu = result.server.cpu_percent if ok and result and result.server else None
            redis_cpu = (row.redis_cpu_s / row.window_s * 100) if row.window_s else None
            rows.append({
                "server": name, "label": row.config.label, "ok": ok and result is not None and result.requests_failed == 0,
                "error": row.error or (result.failure if result else None),
                "calls_per_s": calls,
                "p50_us": result.latency.p50_us if ok and result and result.latency else None,
                "p99_us": result.latency.p99_us if ok and result and result.latency else None,
                "server_cpu_percent": server_cpu,
                "client_cpu_percent": result.client.cpu_percent if ok and result and result.client else None,
                "server_cpu_us_per_call": _per_call_us(server_cpu, calls),
                "redis_cpu_percent": redis_cpu,
                "redis_cpu_us_per_call": _per_call_us(redis_cpu, calls),
                "requests_failed": result.requests_failed if result else None,
                "errors": dict(result.errors) if result else {},
                "vs_one": round(calls / base.calls_per_s, 3) if calls and base is not None and base.calls_per_s else None,
            })
        by_name = {row["server"]: row for row in rows}
        local, shared = by_name["one_rl"], by_name["one_redis"]
        limiter = None
        if local["calls_per_s"] and shared["calls_per_s"]:
            limiter = {
                "latency_p50_us": (shared["p50_us"] or 0) - (local["p50_us"] or 0),
                "server_cpu_us_per_call": (shared["server_cpu_us_per_call"] or 0) - (local["server_cpu_us_per_call"] or 0),
                "redis_cpu_us_per_call": shared["redis_cpu_us_per_call"],
            }
        scenarios.append({"name": scenario.name, "title": scenario.title, "connections": scenario.connections,
                          "in_flight": scenario.in_flight, "processes": scenario.processes, "rows": rows,
                          "shared_limiter_cost": limiter})
    return {"rounds": rounds, "duration_s": duration, "warmup_s": warmup, "scenarios": scenarios}


def _f(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def markdown(section: dict[str, Any]) -> str:
    lines = [
        "## Cluster rows",
        "",
        (f"The demo app's `echo` over Streamable HTTP, {section['rounds']} round(s) × {section['duration_s']:g} s per "
         "row, rows taking turns. `one`: one process; `one_rl`: local rate limits; `one_redis`: the same limits decided "
         "in Redis; `workers2`: `--workers 2 --redis`; `haproxy2`: two processes behind HAProxy, `--redis`. Server "
         "CPU counts every process of a row (HAProxy included), as % of one core; Redis's own CPU apart. × one: "
         "calls/s over the single-process row of the same run."),
        "",
        "| scenario | server | calls/s | p50 µs | p99 µs | server CPU | CPU µs/call | Redis CPU µs/call | client CPU | × one |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    notes = []
    for scenario in section["scenarios"]:
        for row in scenario["rows"]:
            if row["error"] or row["requests_failed"]:
                notes.append(f"- **{scenario['name']} / {row['server']}**: "
                             f"{(row['error'] or '').splitlines()[0] if row['error'] else row['errors']}")
            lines.append(
                f"| {scenario['title']} | {row['server']} | {_f(row['calls_per_s'], ',.0f')} | {_f(row['p50_us'], ',.0f')} | "
                f"{_f(row['p99_us'], ',.0f')} | {_f(row['server_cpu_percent'], '.0f')}% | "
                f"{_f(row['server_cpu_us_per_call'], ',.0f')} | {_f(row['redis_cpu_us_per_call'], ',.1f')} | "
                f"{_f(row['client_cpu_percent'], '.0f')}% | {_f(row['vs_one'], '.2f')}× |")
    lines.append("")
    for scenario in section["scenarios"]:
        cost = scenario["shared_limiter_cost"]
        if cost:
            lines.append(f"- {scenario['title']}: the shared limiter adds {cost['latency_p50_us']:,.0f} µs to p50 and "
                         f"{cost['server_cpu_us_per_call']:,.0f} µs of server CPU per call (`one_redis` − `one_rl`), "
                         f"plus {_f(cost['redis_cpu_us_per_call'], ',.1f')} µs in Redis.")
    concurrent = next((s for s in section["scenarios"] if s["name"] == "cluster_concurrent"), None)
    if concurrent:
        rows = {row["server"]: row for row in concurrent["rows"]}
        two, one = rows["workers2"]["calls_per_s"], rows["one_redis"]["calls_per_s"]
        if two and one:
            verdict = "beat" if two > one else "do not beat"
            lines.append(f"- Two workers {verdict} one on this machine: {two:,.0f} against {one:,.0f} calls/s "
                         f"({two / one:.2f}×, both with Redis; the client processes share the cores).")
    if notes:
        lines += ["", "Errors:", "", *notes]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.5)
    parser.add_argument("--quick", action="store_true", help="one round of 1 s")
    parser.add_argument("--json", type=Path, default=None, help="also write the section as JSON here")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.duration, args.warmup = 1, 1.0, 0.5
    section = run(args.rounds, args.duration, args.warmup, say=lambda text: print(f"[bench] {text}", file=sys.stderr,
                                                                                    flush=True))
    if args.json is not None:
        args.json.write_bytes(msgspec.json.format(msgspec.json.encode(section), indent=2) + b"\n")
    print(markdown(section))
    return 0


if __name__ == "__main__":
    sys.exit(main())
