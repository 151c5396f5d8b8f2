"""The standard comparison (``make bench``): every scenario, every server, in one run.

Usage::

    python bench/run_standard.py [--quick] [--rounds N] [--duration SECONDS] [--only SCENARIO ...]
                                 [--servers NAME ...] [--out DIR] [--strict]

Servers, each exposing the same ``echo(text)`` tool (floors echo any request):

* ``floor``   -- the limit of our own stack for that transport: ``bench/floors/pipe_echo.py``
  (trio + msgspec over pipes), ``ws_echo.py`` (raw trio-websocket), ``h1_echo.py`` (a raw
  POST echo on our HTTP/1.1 engine); ``floor_hypercorn``: ``http_echo.py`` (the same on
  hypercorn-trio, the floor of ``--http2``), HTTP rows;
* ``ours``    -- ``python -m mcp_trio serve`` (the demo app) on that transport;
  ``ours_http``: WebSocket rows on ``/ws`` of ``--transport http``;
* ``sdk``     -- the official ``mcp`` SDK's server (``bench/peers/sdk_*_server.py``);
* ``ts``      -- the official TypeScript SDK on Node 22 (``bench/peers/ts/server.mjs``);
* ``fastmcp`` -- FastMCP's server (``bench/peers/fastmcp_server.py``).

The Python peers run from ``bench/.venv``, which this script creates from
``bench/peers/requirements.txt`` when it is missing or stale (pinned versions; never a
dependency of mcp_trio). The TypeScript peer runs on the Node 22 that ``npm ci`` installs
into ``bench/peers/ts/node_modules`` from its pinned ``package-lock.json`` (the ``node``
package from the npm registry; the machine's own node is not used). HTTP peers answer with
JSON, as ours does, so every HTTP row measures the same wire format.

Scenarios (``tools/call echo``, closed loop; ``echo`` is a plain ``async def`` tool, as a
user writes one, with no opt-in of any kind): stdio sequential (1x1) and pipelined (1x8);
WebSocket 1x1, 100x8 and 1,000x2 (two client processes); Streamable HTTP sequential (1x1) and
concurrent (8 sessions x 4 in flight, two client processes); idle sessions (WebSocket and
HTTP): open N, hold them, server memory per session; stdio cold start: spawn to
``initialize`` answered, the median of ``--spawns`` fresh children per server, the servers
taking turns. Each load row is measured in ``--rounds`` rounds in which the servers take
turns, so a burst of background load on a shared machine lands on every server alike; the
rounds' histograms are merged.

A server that cannot start, or a transport not built yet, is reported as that row's error
and the run goes on. The results go to ``bench/results/<date>-<host>.json`` (every
number, with the settings and versions) and ``.md`` (the table, also printed).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import os
import platform
import select
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import trio

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
sys.path.insert(0, str(REPO))  # run from a checkout: import the working tree's mcp_trio

from mcp_trio.bench import BenchConfig, BenchResult, merge_results, run_async
from mcp_trio.bench._report import bytes_text
from mcp_trio.bench._runner import raise_fd_limit

PEERS_VENV = BENCH / ".venv"
REQUIREMENTS = BENCH / "peers" / "requirements.txt"
TS_PEER = BENCH / "peers" / "ts"
TS_LOCK = TS_PEER / "package-lock.json"
TS_STAMP = TS_PEER / "node_modules" / ".mcp-trio-lock"
RESULTS = BENCH / "results"
SCHEMA = "mcp-trio-bench-standard/1"
HOST = "127.0.0.1"
START_TIMEOUT_S = 60.0  # a server not accepting connections by then is reported as failed
STOP_TIMEOUT_S = 10.0
STDERR_TAIL = 1500


# --------------------------------------------------------------------------- servers


@dataclass(frozen=True)
class Server:
    """How to run one server on one transport. ``{port}`` in argv/url is filled in."""

    name: str
    label: str
    argv: tuple[str, ...]
    url: str | None = None  # None: a stdio server, spawned by the load generator itself
    peer: bool = False  # runs with the bench environment's interpreter
    node: bool = False  # runs on the TypeScript peer's Node
    script: Path | None = None  # must exist (a floor or peer another change may not have added yet)


def _py(server_python: str, *args: str) -> tuple[str, ...]:
    return (server_python, *args)


def servers(transport: str, peers_python: str, node: str = "node") -> list[Server]:
    py = sys.executable
    floors, peers = BENCH / "floors", BENCH / "peers"
    ours = (py, "-m", "mcp_trio", "serve")
    ts_script = TS_PEER / "server.mjs"
    if transport == "stdio":
        return [
            Server("floor", "trio+msgspec pipe echo", (py, str(floors / "pipe_echo.py")), script=floors / "pipe_echo.py"),
            Server("ours", "mcp_trio", ours),
            Server("sdk", "official SDK", (peers_python, str(peers / "sdk_stdio_server.py")), peer=True,
                   script=peers / "sdk_stdio_server.py"),
            Server("ts", "TypeScript SDK", (node, str(ts_script), "stdio"), node=True, script=ts_script),
            Server("fastmcp", "FastMCP", (peers_python, str(peers / "fastmcp_server.py"), "--transport", "stdio"),
                   peer=True, script=peers / "fastmcp_server.py"),
        ]
    net = ("--host", HOST, "--port", "{port}")
    if transport == "ws":
        return [
            Server("floor", "raw trio-websocket echo", (py, str(floors / "ws_echo.py"), "--port", "{port}"),
                   f"ws://{HOST}:{{port}}/", script=floors / "ws_echo.py"),
            Server("ours", "mcp_trio", (*ours, "--transport", "ws", *net), f"ws://{HOST}:{{port}}/"),
            Server("ours_http", "mcp_trio, /ws of the HTTP port", (*ours, "--transport", "http", *net), f"ws://{HOST}:{{port}}/ws"),
        ]
    if transport == "http":
        return [
            Server("floor", "raw h1-engine POST echo", (py, str(floors / "h1_echo.py"), "--port", "{port}"),
                   f"http://{HOST}:{{port}}/mcp", script=floors / "h1_echo.py"),
            Server("floor_hypercorn", "raw hypercorn-trio POST echo", (py, str(floors / "http_echo.py"), "--port", "{port}"),
                   f"http://{HOST}:{{port}}/mcp", script=floors / "http_echo.py"),
            Server("ours", "mcp_trio", (*ours, "--transport", "http", *net), f"http://{HOST}:{{port}}/mcp"),
            Server("sdk", "official SDK", (peers_python, str(peers / "sdk_http_server.py"), "--port", "{port}"),
                   f"http://{HOST}:{{port}}/mcp", peer=True, script=peers / "sdk_http_server.py"),
            Server("ts", "TypeScript SDK", (node, str(ts_script), "http", "--port", "{port}"), f"http://{HOST}:{{port}}/mcp",
                   node=True, script=ts_script),
            Server("fastmcp", "FastMCP", (peers_python, str(peers / "fastmcp_server.py"), "--transport", "http", *net,
                                          "--json-response"),
                   f"http://{HOST}:{{port}}/mcp", peer=True, script=peers / "fastmcp_server.py"),
        ]
    raise ValueError(transport)


class StartFailed(Exception):
    """The server could not be started; the message says why, for the table."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-STDERR_TAIL:].strip()
    except OSError:
        return ""


def _headline(log: str) -> str:
    """The line of a crash log that says what went wrong: the last error line, else the last
    line that is not a traceback frame or an exception group's border."""
    lines = [line.strip().lstrip("|").strip() for line in log.splitlines()]
    lines = [line for line in lines if line and line.strip("+-^~ ")]
    for line in reversed(lines):
        if "Error" in line or "Exception" in line or "error:" in line:
            return line
    return lines[-1] if lines else ""


class Running:
    """A network server this script started: its process, port and URL."""

    def __init__(self, server: Server, log_dir: Path) -> None:
        self.server = server
        self.port = free_port()
        self.argv = [a.replace("{port}", str(self.port)) for a in server.argv]
        self.url = (server.url or "").replace("{port}", str(self.port))
        self.log = log_dir / f"{server.name}-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        check_script(self.server)
        with self.log.open("wb") as log:
            try:
                self.process = subprocess.Popen(self.argv, cwd=REPO, stdin=subprocess.DEVNULL, stdout=log,
                                                stderr=subprocess.STDOUT, start_new_session=True)
            except OSError as exc:
                raise StartFailed(f"cannot run {shlex.join(self.argv)}: {exc}") from None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                tail = _tail(self.log)
                raise StartFailed(f"exited with code {code}" + (f": {_headline(tail)}\n{tail}" if tail else ""))
            with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), timeout=0.2):
                return
            time.sleep(0.1)
        self.stop()
        raise StartFailed(f"not accepting connections on port {self.port} after {START_TIMEOUT_S:g} s")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def check_script(server: Server) -> None:
    if server.script is not None and not server.script.exists():
        raise StartFailed(f"{server.script.relative_to(REPO)} does not exist (yet)")


# --------------------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    transport: str
    connections: int = 1
    in_flight: int = 1
    processes: int = 1
    idle: bool = False
    cold: bool = False  # stdio cold start: spawn to initialize answered, in milliseconds


SCENARIOS = [
    Scenario("stdio_seq", "stdio, sequential (1×1)", "stdio"),
    Scenario("stdio_pipelined", "stdio, pipelined (1×8)", "stdio", in_flight=8),
    Scenario("ws_1x1", "WebSocket, 1 connection × 1", "ws"),
    Scenario("ws_100x8", "WebSocket, 100 connections × 8 in flight", "ws", connections=100, in_flight=8, processes=2),
    Scenario("ws_1000x2", "WebSocket, 1,000 connections × 2 in flight", "ws", connections=1000, in_flight=2,
             processes=2),
    Scenario("http_seq", "Streamable HTTP, sequential (1×1)", "http"),
    Scenario("http_concurrent", "Streamable HTTP, 8 sessions × 4 in flight", "http", connections=8, in_flight=4,
             processes=2),
    Scenario("idle_ws", "idle WebSocket sessions", "ws", idle=True),
    Scenario("idle_http", "idle Streamable HTTP sessions", "http", idle=True),
    Scenario("cold_start", "stdio cold start (spawn → initialize answered)", "stdio", cold=True),
]


@dataclass
class Row:
    """One server in one scenario: its rounds' results, merged, or why it has none."""

    server: Server
    command: str = ""
    rounds: list[BenchResult] = field(default_factory=list)
    error: str | None = None
    cold_ms: list[float] = field(default_factory=list)  # cold-start rows: one per spawn

    def result(self) -> BenchResult | None:
        return merge_results(self.rounds) if self.rounds else None


# --------------------------------------------------------------------------- running


def bootstrap_peers() -> tuple[str | None, str | None]:
    """bench/.venv with the pinned peers; (its python, None) or (None, why not)."""
    python = PEERS_VENV / "bin" / "python"
    stamp = PEERS_VENV / ".requirements"
    wanted = REQUIREMENTS.read_text()
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return str(python), None
    print(f"[bench] preparing the peers' environment in {PEERS_VENV.relative_to(REPO)} ...", file=sys.stderr, flush=True)
    try:
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "-r", str(REQUIREMENTS)], check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        return None, f"could not prepare {PEERS_VENV.relative_to(REPO)}: {exc}"
    stamp.write_text(wanted)
    return str(python), None


def bootstrap_ts() -> tuple[str | None, str | None]:
    """bench/peers/ts/node_modules from the pinned lock file; (its node, None) or (None, why not)."""
    node = TS_PEER / "node_modules" / ".bin" / "node"
    wanted = TS_LOCK.read_text()
    if node.exists() and TS_STAMP.exists() and TS_STAMP.read_text() == wanted:
        return str(node), None
    print(f"[bench] installing the TypeScript peer (Node 22 and the SDK) into {TS_PEER.relative_to(REPO)}/node_modules ...",
          file=sys.stderr, flush=True)
    try:
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=TS_PEER, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        return None, f"could not install the TypeScript peer with npm ci in {TS_PEER.relative_to(REPO)}: {exc}"
    TS_STAMP.write_text(wanted)
    return str(node), None


def ts_versions(node: str | None) -> dict[str, str | None]:
    versions: dict[str, str | None] = {"typescript_sdk": None, "node": None}
    if node is None:
        return versions
    with contextlib.suppress(OSError, ValueError, KeyError):
        package = TS_PEER / "node_modules" / "@modelcontextprotocol" / "sdk" / "package.json"
        versions["typescript_sdk"] = msgspec.json.decode(package.read_bytes())["version"]
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        versions["node"] = subprocess.run([node, "--version"], check=True, capture_output=True, text=True).stdout.strip()
    return versions


def peer_versions(python: str | None) -> dict[str, str | None]:
    versions: dict[str, str | None] = {"mcp": None, "fastmcp": None}
    if python is None:
        return versions
    code = "import importlib.metadata as m, json; print(json.dumps({p: m.version(p) for p in ('mcp', 'fastmcp')}))"
    with contextlib.suppress(OSError, subprocess.CalledProcessError, ValueError):
        out = subprocess.run([python, "-c", code], check=True, capture_output=True, text=True).stdout
        versions.update(msgspec.json.decode(out))
    return versions


def bench(config: BenchConfig) -> BenchResult:
    return trio.run(lambda: run_async(config))


def load_config(scenario: Scenario, target: Any, pids: list[int], args: argparse.Namespace) -> BenchConfig:
    return BenchConfig(
        target=target, connections=scenario.connections, in_flight=scenario.in_flight,
        processes=scenario.processes, warmup=args.warmup, duration=args.duration, timeout=args.timeout,
        server_pids=pids,
    )


def say(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


def short(result: BenchResult) -> str:
    if result.idle is not None:
        return f"{result.idle.sessions_open} sessions, {bytes_text(result.idle.rss_per_session_bytes)}/session"
    cps = "-" if result.calls_per_s is None else f"{result.calls_per_s:,.0f} calls/s"
    p50 = "-" if result.latency is None else f"p50 {result.latency.p50_us:,.0f} µs"
    text = f"{cps}, {p50}, {result.requests_failed} failed"
    return f"{text} ({result.failure})" if result.failure else text


def run_load_scenarios(transport: str, scenarios: list[Scenario], table: dict[str, dict[str, Row]],
                       server_list: list[Server], args: argparse.Namespace, log_dir: Path) -> None:
    if not scenarios:
        return
    running: dict[str, Running] = {}
    try:
        for server in server_list:
            for scenario in scenarios:
                table[scenario.name][server.name] = Row(server)
            if server.url is None:
                try:
                    check_script(server)
                except StartFailed as exc:
                    for scenario in scenarios:
                        table[scenario.name][server.name].error = str(exc)
                continue
            instance = Running(server, log_dir)
            say(f"{transport}: starting {server.name}: {shlex.join(instance.argv)}")
            try:
                instance.start()
                running[server.name] = instance
            except StartFailed as exc:
                say(f"{transport}: {server.name} failed to start: {str(exc).splitlines()[0]}")
                for scenario in scenarios:
                    table[scenario.name][server.name].error = f"could not start: {exc}"
        for round_no in range(args.rounds):
            for scenario in scenarios:
                for server in server_list:
                    row = table[scenario.name][server.name]
                    if row.error is not None:
                        continue
                    if server.url is None:
                        target: Any = list(server.argv)
                        pids: list[int] = []
                    else:
                        instance = running[server.name]
                        if instance.process is not None and instance.process.poll() is not None:
                            row.error = f"the server exited with code {instance.process.returncode}: {_tail(instance.log)}"
                            continue
                        target, pids = instance.url, [instance.pid]
                    config = load_config(scenario, target, pids, args)
                    row.command = f"mcp-trio bench {shlex.quote(_target_text(target))} -c {scenario.connections} " \
                                  f"-d {scenario.in_flight} -p {scenario.processes}"
                    result = bench(config)
                    row.rounds.append(result)
                    say(f"{scenario.name} round {round_no + 1}/{args.rounds} {server.name}: {short(result)}")
    finally:
        for instance in running.values():
            instance.stop()


INITIALIZE = msgspec.json.encode({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
    "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "mcp-trio-bench", "version": "1"}}}) + b"\n"


def cold_start_once(argv: list[str], timeout: float, env: dict[str, str] | None = None) -> float:
    """Milliseconds from spawning ``argv`` to its answer to ``initialize`` (its first line)."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               env=env)
    assert process.stdin is not None and process.stdout is not None
    try:
        process.stdin.write(INITIALIZE)
        process.stdin.flush()
        answer = b""
        deadline = started + timeout
        while not answer.endswith(b"\n"):
            left = deadline - time.perf_counter()
            if left <= 0 or not select.select([process.stdout], [], [], left)[0]:
                raise StartFailed(f"no answer to initialize within {timeout:g} s")
            chunk = os.read(process.stdout.fileno(), 65536)
            if not chunk:
                raise StartFailed(f"exited with code {process.wait()} before answering initialize")
            answer += chunk
        elapsed = (time.perf_counter() - started) * 1000
        if b'"result"' not in answer.split(b"\n", 1)[0]:
            raise StartFailed(f"initialize was refused: {answer[:200]!r}")
        return elapsed
    finally:
        with contextlib.suppress(OSError):
            process.stdin.close()
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_cold_scenario(scenario: Scenario, table: dict[str, dict[str, Row]], server_list: list[Server],
                      args: argparse.Namespace) -> None:
    """``--spawns`` cold starts per stdio server, the servers taking turns (one spawn each
    first, not counted: it fills the caches a host's second start finds warm too)."""
    rows = table[scenario.name]
    # Every Python child compiles into one private bytecode cache, filled by the uncounted
    # first spawn, whatever the caller's environment says (PYTHONDONTWRITEBYTECODE would make
    # every start of a source checkout compile it again, and the floor, one small file over
    # installed packages, would not pay that).
    pycache = tempfile.mkdtemp(prefix="bench-cold-pycache-")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = pycache
    try:
        _cold_spawns(scenario, rows, server_list, args, env)
    finally:
        shutil.rmtree(pycache, ignore_errors=True)


def _cold_spawns(scenario: Scenario, rows: dict[str, Row], server_list: list[Server], args: argparse.Namespace,
                 env: dict[str, str]) -> None:
    for server in server_list:
        row = rows[server.name] = Row(server, command=shlex.join(server.argv))
        try:
            check_script(server)
        except StartFailed as exc:
            row.error = str(exc)
    for spawn in range(args.spawns + 1):
        for server in server_list:
            row = rows[server.name]
            if row.error is not None:
                continue
            try:
                elapsed = cold_start_once(list(server.argv), args.timeout, env)
            except (StartFailed, OSError) as exc:
                row.error = f"cold start failed: {exc}"
                continue
            if spawn:
                row.cold_ms.append(elapsed)
    for server in server_list:
        row = rows[server.name]
        if row.cold_ms:
            say(f"{scenario.name} {server.name}: median {statistics.median(row.cold_ms):.1f} ms of {len(row.cold_ms)}")


def _target_text(target: Any) -> str:
    return target if isinstance(target, str) else "stdio:" + shlex.join(target)


def run_idle_scenario(scenario: Scenario, table: dict[str, dict[str, Row]], server_list: list[Server],
                      args: argparse.Namespace, log_dir: Path) -> None:
    sessions = args.idle_ws if scenario.transport == "ws" else args.idle_http
    for server in server_list:
        row = table[scenario.name][server.name] = Row(server)
        instance = Running(server, log_dir)
        say(f"{scenario.name}: starting {server.name}")
        try:
            instance.start()
        except StartFailed as exc:
            row.error = f"could not start: {exc}"
            continue
        try:
            config = BenchConfig(target=instance.url, idle=sessions, hold=args.hold, timeout=args.timeout,
                                 server_pids=[instance.pid])
            row.command = f"mcp-trio bench {instance.url} --idle {sessions} --hold {args.hold:g}"
            result = bench(config)
            row.rounds.append(result)
            say(f"{scenario.name} {server.name}: {short(result)}")
        finally:
            instance.stop()


# --------------------------------------------------------------------------- reporting


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def _value(result: BenchResult | None, idle: bool) -> float | None:
    if result is None or result.failure is not None:
        return None
    if idle:
        return result.idle.rss_per_session_bytes if result.idle else None
    return result.calls_per_s


def _cold(row: Row | None) -> float | None:
    return statistics.median(row.cold_ms) if row is not None and row.cold_ms and row.error is None else None


def summarise(scenario: Scenario, rows: dict[str, Row]) -> list[dict[str, Any]]:
    if scenario.cold:
        return summarise_cold(rows)
    results = {name: row.result() for name, row in rows.items()}
    floor = _value(results.get("floor"), scenario.idle)
    sdk = _value(results.get("sdk"), scenario.idle)
    ts = _value(results.get("ts"), scenario.idle)
    out = []
    for name, row in rows.items():
        result = results[name]
        value = _value(result, scenario.idle)
        entry: dict[str, Any] = {
            "server": name,
            "label": row.server.label,
            "command": row.command or shlex.join(row.server.argv),
            "ok": row.error is None and result is not None and result.ok,
            "error": row.error or (result.failure if result else None),
            "errors": dict(result.errors) if result else {},
            "vs_floor": _ratio(value, floor) if name != "floor" else None,
            "vs_sdk": _ratio(value, sdk) if name != "sdk" else None,
            "vs_ts": _ratio(value, ts) if name != "ts" else None,
        }
        if scenario.idle:
            entry["sessions"] = result.idle.sessions_open if result and result.idle else None
            entry["rss_per_session_bytes"] = value
        else:
            entry.update(
                calls_per_s=value,
                p50_us=result.latency.p50_us if result and result.latency else None,
                p99_us=result.latency.p99_us if result and result.latency else None,
                rss_bytes=result.server.rss_peak_bytes if result and result.server else None,
                server_cpu_percent=result.server.cpu_percent if result and result.server else None,
                client_cpu_percent=result.client.cpu_percent if result and result.client else None,
                requests_failed=result.requests_failed if result else None,
            )
        # The whole result but its sparse histogram (bulky, and the percentiles are above).
        entry["result"] = msgspec.to_builtins(msgspec.structs.replace(result, histogram=None)) if result else None
        out.append(entry)
    return out


def summarise_cold(rows: dict[str, Row]) -> list[dict[str, Any]]:
    """Cold-start rows: the median spawn-to-initialize time (lower is better), and the
    ratios to the floor's and the official SDKs' in the same run."""
    floor, sdk, ts = (_cold(rows.get(name)) for name in ("floor", "sdk", "ts"))
    out = []
    for name, row in rows.items():
        value = _cold(row)
        out.append({
            "server": name, "label": row.server.label, "command": row.command, "ok": value is not None,
            "error": row.error, "errors": {}, "median_ms": value, "spawns": len(row.cold_ms),
            "min_ms": min(row.cold_ms) if row.cold_ms else None, "max_ms": max(row.cold_ms) if row.cold_ms else None,
            "vs_floor": _ratio(value, floor) if name != "floor" else None,
            "vs_sdk": _ratio(value, sdk) if name != "sdk" else None,
            "vs_ts": _ratio(value, ts) if name != "ts" else None,
        })
    return out


def _f(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _x(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


def markdown(document: dict[str, Any]) -> str:
    m = document["machine"]
    v = document["versions"]
    s = document["settings"]
    lines = [
        f"# Benchmark: {document['started_at'][:10]} on {m['host']}",
        "",
        (f"{m['cpus']} CPUs, Python {m['python']}, {m['platform']}; mcp_trio {v['mcp_trio']}, "
        f"official SDK mcp {v['mcp'] or '–'}, TypeScript SDK {v.get('typescript_sdk') or '–'} on Node "
        f"{v.get('node') or '–'}, fastmcp {v['fastmcp'] or '–'}. "
        f"`tools/call echo`, closed loop; {s['rounds']} round(s) × {s['duration_s']:g} s per row "
        f"after {s['warmup_s']:g} s warm-up, servers taking turns. Ratios are calls/s over the floor's and "
        "the official SDKs' (Python, TypeScript) in the same run (for idle rows: memory per session, lower is better). "
        "CPU is % of one core over the measured window."),
        "",
        "| scenario | server | calls/s | p50 µs | p99 µs | server CPU | client CPU | server RSS | × floor | × SDK | × TS |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    problems = []
    idle_rows = []
    cold_rows = []
    for scenario in document["scenarios"]:
        for row in scenario["rows"]:
            if row["error"] or (row.get("requests_failed") or 0) or (row["errors"] and not row["ok"]):
                what = row["error"] or ", ".join(f"{k}: {n}" for k, n in row["errors"].items())
                problems.append(f"- **{scenario['name']} / {row['server']}**: {what.splitlines()[0] if what else 'failed'}")
            if scenario.get("cold"):
                cold_rows.append(row)
                continue
            if scenario["idle"]:
                idle_rows.append((scenario, row))
                continue
            cps = "error" if row["calls_per_s"] is None and row["error"] else _f(row["calls_per_s"], ",.0f")
            lines.append(
                f"| {scenario['title']} | {row['server']} | {cps} | {_f(row['p50_us'], ',.0f')} | "
                f"{_f(row['p99_us'], ',.0f')} | {_f(row['server_cpu_percent'], '.0f')}% | "
                f"{_f(row['client_cpu_percent'], '.0f')}% | "
                f"{bytes_text(row['rss_bytes']) if row['rss_bytes'] is not None else '–'} | "
                f"{_x(row['vs_floor'])} | {_x(row['vs_sdk'])} | {_x(row.get('vs_ts'))} |"
            )
    if idle_rows:
        lines += ["", "| idle sessions | server | sessions | server RSS per session | × floor | × SDK | × TS |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
        for scenario, row in idle_rows:
            per = "error" if row["error"] else bytes_text(row["rss_per_session_bytes"])
            lines.append(f"| {scenario['title']} | {row['server']} | {_f(row['sessions'], ',d')} | {per} | "
                         f"{_x(row['vs_floor'])} | {_x(row['vs_sdk'])} | {_x(row.get('vs_ts'))} |")
    if cold_rows:
        lines += ["", f"| stdio cold start (spawn → initialize answered; median of {s.get('spawns', '–')}) | "
                      "server | median ms | min ms | × floor | × SDK | × TS |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
        for row in cold_rows:
            median = "error" if row["error"] else _f(row["median_ms"], ".1f")
            lines.append(f"| cold start | {row['server']} | {median} | {_f(row['min_ms'], '.1f')} | "
                         f"{_x(row['vs_floor'])} | {_x(row['vs_sdk'])} | {_x(row.get('vs_ts'))} |")
    if problems:
        lines += ["", "Errors (a row with errors has no speed; see the JSON for details):", "", *problems]
    lines += ["", f"Reproduce: `make bench` (or `python bench/run_standard.py`); full numbers in `{document['json']}`."]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    names = [s.name for s in SCENARIOS] + ["cluster"]  # cluster: bench/cluster_rows.py's section
    parser.add_argument("--only", nargs="+", choices=names, metavar="SCENARIO", help=f"run only these ({', '.join(names)})")
    server_names = ["floor", "floor_hypercorn", "ours", "ours_http", "sdk", "ts", "fastmcp"]
    parser.add_argument("--servers", nargs="+", choices=server_names, metavar="NAME",
                        help=f"run only these servers ({', '.join(server_names)})")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per row, servers taking turns (default: 2)")
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per round (default: 5)")
    parser.add_argument("--warmup", type=float, default=1.5, help="warm-up seconds per round (default: 1.5)")
    parser.add_argument("--timeout", type=float, default=30.0, help="per request or session opening (default: 30)")
    parser.add_argument("--idle-ws", type=int, default=2000, metavar="N", help="idle WebSocket sessions (default: 2000)")
    parser.add_argument("--idle-http", type=int, default=500, metavar="N", help="idle HTTP sessions (default: 500)")
    parser.add_argument("--hold", type=float, default=3.0, help="seconds idle sessions are held (default: 3)")
    parser.add_argument("--spawns", type=int, default=10, help="cold starts per stdio server (default: 10)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 round of 1 s, few idle sessions")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results go (default: bench/results)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when any row has errors")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.duration, args.warmup, args.hold = 1, 1.0, 0.5, 1.0
        args.idle_ws, args.idle_http, args.spawns = 200, 50, 3
    if args.rounds < 1 or args.duration <= 0 or args.spawns < 1:
        parser.error("--rounds, --duration and --spawns must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_fd_limit()
    begin = time.monotonic()
    started_at = datetime.now(UTC)
    peers_python, peers_error = bootstrap_peers()
    if peers_error:
        say(peers_error)
    wanted_ts = not args.servers or "ts" in args.servers
    node, ts_error = bootstrap_ts() if wanted_ts else (None, "not asked for")
    if ts_error and wanted_ts:
        say(ts_error)
    chosen = [s for s in SCENARIOS if not args.only or s.name in args.only]
    table: dict[str, dict[str, Row]] = {s.name: {} for s in chosen}
    with tempfile.TemporaryDirectory(prefix="mcp-trio-bench-") as tmp:
        log_dir = Path(tmp)
        for transport in ("stdio", "ws", "http"):
            every = [s for s in servers(transport, peers_python or "python", node or "node")
                     if not args.servers or s.name in args.servers]
            runnable = [s for s in every if not (s.peer and peers_error) and not (s.node and ts_error)]
            load = [s for s in chosen if s.transport == transport and not s.idle and not s.cold]
            run_load_scenarios(transport, load, table, runnable, args, log_dir)
            for scenario in (s for s in chosen if s.transport == transport and s.idle):
                run_idle_scenario(scenario, table, [s for s in runnable if s.url is not None], args, log_dir)
            for scenario in (s for s in chosen if s.transport == transport and s.cold):
                run_cold_scenario(scenario, table, runnable, args)
            for scenario in (s for s in chosen if s.transport == transport):
                for server in every:
                    if server not in runnable and (server.url is not None or not scenario.idle):
                        table[scenario.name][server.name] = Row(server, error=ts_error if server.node else peers_error)
    cluster = None
    if not args.only or "cluster" in args.only:  # the cluster rows: a section of their own
        from bench import cluster_rows

        cluster = cluster_rows.run(args.rounds, args.duration, args.warmup, args.timeout, say=say)
    host = socket.gethostname()
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"{started_at:%Y-%m-%d}-{host}"
    json_path, md_path = args.out / f"{stem}.json", args.out / f"{stem}.md"
    versions = {"mcp_trio": _version("mcp-trio"), **peer_versions(peers_python), **ts_versions(node)}
    document = {
        "schema": SCHEMA,
        "started_at": started_at.isoformat(timespec="seconds"),
        "seconds": round(time.monotonic() - begin, 1),
        "machine": {"host": host, "cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "versions": versions,
        "settings": {"rounds": args.rounds, "duration_s": args.duration, "warmup_s": args.warmup,
                     "idle_ws": args.idle_ws, "idle_http": args.idle_http, "hold_s": args.hold, "spawns": args.spawns},
        "json": str(json_path.relative_to(REPO) if json_path.is_relative_to(REPO) else json_path),
        "scenarios": [
            {"name": s.name, "title": s.title, "transport": s.transport, "connections": s.connections,
             "in_flight": s.in_flight, "processes": s.processes, "idle": s.idle, "cold": s.cold,
             "rows": summarise(s, table[s.name])}
            for s in chosen
        ],
    }
    if cluster is not None:
        document["cluster"] = cluster
    json_path.write_bytes(msgspec.json.format(msgspec.json.encode(document), indent=2) + b"\n")
    text = markdown(document)
    if cluster is not None:
        from bench import cluster_rows

        text += "\n" + cluster_rows.markdown(cluster)
    md_path.write_text(text)
    print(text)
    say(f"wrote {json_path} and {md_path} in {document['seconds']:.0f} s")
    failed = any(not row["ok"] for s in [*document["scenarios"], *(cluster or {}).get("scenarios", [])] for row in s["rows"])
    return 1 if args.strict and failed else 0


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    sys.exit(main())
