"""stdio echo benchmark: ``tools/call echo`` against mcp_trio, its floor, and the official SDK.

Usage::

    python bench/stdio_echo.py [--calls N] [--warmup N] [--depth N] [--rounds N]
                               [--spawns N] [--only NAME ...] [--json OUT]

Every target is a child process spoken to over its stdin/stdout pipes, in one run of
this driver, so the numbers share one machine state:

* ``floor`` -- ``bench/floors/pipe_echo.py``: trio + msgspec echoing newline-delimited
  JSON with no MCP at all. It is both the throughput floor of our stack and the "bare
  trio + msgspec echo child" that our cold start is held to (<= 1.5x).
* ``ours`` -- ``python -m mcp_trio serve``, the built-in demo app and its ``echo`` tool.
* ``sdk`` -- ``bench/peers/sdk_stdio_server.py``, the official Python SDK's stdio server.
* ``ours-threads`` -- ``mcp_trio serve --stdio-io threads``: the same server with a thread per
  pipe (the path Windows takes), so ``ours-threads/ours`` is what the threads cost.

For each target: one probe spawn (shows the child's stderr if it fails to start, and
fills a private bytecode cache so cold start measures startup, not compilation), then
one session: ``initialize`` + ``notifications/initialized``, a warm-up, sequential calls
(one in flight) and pipelined calls (a sender keeps ``--depth`` requests in flight, a
receiver matches ids). The calls are split into ``--rounds`` rounds in which the targets
take turns, so drift on a shared machine lands on every target alike. Last, the median
time from spawn to ``initialize`` answered over ``--spawns`` fresh children, again taking
turns. A target that fails is dropped from the rest of the run with the reason printed;
what it measured before failing is kept; the others go on.

Every reply is validated (its id matches, it has a ``result``, and the result is not an
``isError`` tool result); failures are counted as errors and never as speed: calls/s
and percentiles cover successful calls only.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import msgspec
import trio

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"

PROTOCOL_VERSION = "2025-11-25"
DEFAULT_CALLS = 20_000  # per mode and target; the whole run stays well under 90 s on 2 cores
DEFAULT_WARMUP = 500  # per mode: lazy imports, caches and the allocator settle first
DEFAULT_DEPTH = 8  # requests in flight in the pipelined mode
DEFAULT_SPAWNS = 10  # cold starts per target; the median is reported
DEFAULT_ROUNDS = 5  # the calls are split into this many rounds, the targets taking turns
MODES = ("sequential", "pipelined")

STARTUP_TIMEOUT_S = 30.0  # a child that cannot answer initialize in this long is broken
PHASE_TIMEOUT_S = 120.0  # a phase that takes longer is stuck, not slow
EXIT_TIMEOUT_S = 5.0  # grace after closing the child's stdin, then it is killed
MAX_LINE = 2**20  # longer reply lines mean a broken peer: fail instead of buffering
CHUNK = 65536
STDERR_TAIL = 2000  # characters of a failing child's stderr shown to the user
COLD_START_NOTE = "  (target <= 1.5; floor = bare trio + msgspec child)"


class TargetFailed(Exception):
    """The target could not be measured; the message says why, for the user."""


@dataclass(frozen=True)
class Target:
    """A child process to benchmark: its short name, what it is, and how to start it."""

    name: str
    label: str
    argv: list[str]
    env: dict[str, str] | None = None  # None: inherit the driver's


def default_targets(env: dict[str, str] | None = None) -> list[Target]:
    """The targets, each run by this interpreter so they share one Python.
    They start in the repository root, so ``-m mcp_trio`` is the working tree's."""
    py = sys.executable
    floor = [py, str(BENCH / "floors" / "pipe_echo.py")]
    sdk = [py, str(BENCH / "peers" / "sdk_stdio_server.py")]
    return [
        Target("floor", "trio+msgspec pipe echo", floor, env),
        Target("ours", "mcp_trio serve", [py, "-m", "mcp_trio", "serve"], env),
        Target("sdk", "official SDK (mcp)", sdk, env),
        Target("ours-threads", "mcp_trio serve, threaded pipes", [py, "-m", "mcp_trio", "serve", "--stdio-io", "threads"], env),
    ]


# --------------------------------------------------------------------------- results


class Phase(msgspec.Struct):
    """One measured mode: successful calls only, plus the errors seen beside them."""

    calls: int
    errors: int
    seconds: float
    calls_per_s: float | None
    p50_us: float | None
    p99_us: float | None


class ColdStart(msgspec.Struct):
    """Spawn -> initialize answered, in milliseconds, over fresh children."""

    median_ms: float
    min_ms: float
    max_ms: float
    samples_ms: list[float]


class TargetResult(msgspec.Struct):
    """Everything measured for one target; ``failure`` says why measuring it stopped."""

    name: str
    label: str
    argv: list[str]
    failure: str | None = None
    sequential: Phase | None = None
    pipelined: Phase | None = None
    cold_start: ColdStart | None = None


def percentile(sorted_values: Sequence[int], fraction: float) -> float:
    """Nearest-rank percentile: always a latency that was actually observed."""
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return float(sorted_values[rank - 1])


# --------------------------------------------------------------------------- the wire


class Reply(msgspec.Struct):
    """What the driver needs from any message the child writes; the rest is ignored."""

    id: Any = msgspec.UNSET
    result: Any = msgspec.UNSET
    error: Any = msgspec.UNSET


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Reply)

_CALL_PARAMS = _encoder.encode({"name": "echo", "arguments": {"text": "hello"}})
_INIT_PARAMS = _encoder.encode(
    {
        "protocolVersion": PROTOCOL_VERSION,
        "capabilities": {},
        "clientInfo": {"name": "mcp-trio-bench", "version": "0.1.0"},
    }
)
_INITIALIZED = b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n'


def request(rid: int, method: str, params: bytes) -> bytes:
    """One request line. Formatted, not encoded, so the driver's cost stays tiny."""
    return b'{"jsonrpc":"2.0","id":%d,"method":"%s","params":%s}\n' % (
        rid,
        method.encode(),
        params,
    )


def reply_ok(reply: Reply, rid: int) -> bool:
    """A success answers our id with a result that is not a failed tool call."""
    result = reply.result
    if reply.id != rid or result is msgspec.UNSET:
        return False
    return not (isinstance(result, dict) and result.get("isError") is True)


class Peer:
    """The driver's end of one child: send request lines, receive decoded replies."""

    def __init__(self, process: trio.Process) -> None:
        assert process.stdin is not None and process.stdout is not None
        self.process = process
        self._stdin = process.stdin
        self._stdout = process.stdout
        self._lines: deque[bytes] = deque()
        self._partial = b""
        self._ids = itertools.count(1)

    def next_id(self) -> int:
        """Ids are unique per child, so a stray or late reply can never match."""
        return next(self._ids)

    async def send(self, line: bytes) -> None:
        """Write whole request lines; only one task at a time sends."""
        await self._stdin.send_all(line)

    async def receive(self) -> Reply:
        """The next message that carries an id; notifications from the child are skipped."""
        while True:
            line = await self._receive_line()
            try:
                reply = _decoder.decode(line)
            except msgspec.DecodeError:
                # Not a miscounted call but a broken channel: stdout is the protocol.
                raise TargetFailed(f"child wrote a non-JSON-RPC line: {line[:200]!r}") from None
            if reply.id is not msgspec.UNSET:
                return reply

    async def _receive_line(self) -> bytes:
        while not self._lines:
            chunk = await self._stdout.receive_some(CHUNK)
            if not chunk:
                raise TargetFailed(f"child closed stdout (exit code {await self._exit_code()})")
            *lines, self._partial = (self._partial + chunk).split(b"\n")
            if len(self._partial) > MAX_LINE:
                raise TargetFailed(f"child wrote a line longer than {MAX_LINE} bytes")
            self._lines.extend(line for line in lines if line.strip())
        return self._lines.popleft()

    async def _exit_code(self) -> int | None:
        """The child's exit code if it exits soon after closing stdout, else None."""
        with trio.move_on_after(1.0):
            await self.process.wait()
        return self.process.returncode

    async def call(self, method: str, params: bytes) -> Reply:
        """One request, one reply: the handshake's shape, not a measured path."""
        rid = self.next_id()
        await self.send(request(rid, method, params))
        reply = await self.receive()
        if not reply_ok(reply, rid):
            raise TargetFailed(f"{method} got an unexpected reply: {reply!r}")
        return reply


@asynccontextmanager
async def spawned(
    target: Target, stderr: int | BinaryIO = subprocess.DEVNULL
) -> AsyncIterator[Peer]:
    """Run the target for the block, then close its stdin (EOF is the stdio shutdown
    signal), give it EXIT_TIMEOUT_S to exit, and kill it if it does not."""
    try:
        process = await trio.lowlevel.open_process(
            target.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            cwd=REPO,
            env=target.env,
        )
    except OSError as exc:
        raise TargetFailed(f"could not start {target.argv!r}: {exc}") from None
    try:
        yield Peer(process)
    finally:
        with trio.CancelScope(shield=True):
            await process.stdin.aclose()  # type: ignore[union-attr]
            with trio.move_on_after(EXIT_TIMEOUT_S):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
            await process.stdout.aclose()  # type: ignore[union-attr]


async def handshake(peer: Peer) -> None:
    """initialize, then notifications/initialized: the session is ready for tools/call."""
    with trio.fail_after(STARTUP_TIMEOUT_S):
        await peer.call("initialize", _INIT_PARAMS)
    await peer.send(_INITIALIZED)


# --------------------------------------------------------------------------- measuring


@dataclass
class Tally:
    """Raw observations of one mode for one target, accumulated over rounds."""

    latencies_ns: list[int] = field(default_factory=list)
    errors: int = 0
    elapsed_ns: int = 0

    def summary(self) -> Phase:
        """Speed counts successful calls only; with no success there is no speed."""
        seconds = self.elapsed_ns / 1e9
        if not self.latencies_ns:
            return Phase(0, self.errors, seconds, None, None, None)
        ordered = sorted(self.latencies_ns)
        return Phase(
            calls=len(ordered),
            errors=self.errors,
            seconds=seconds,
            calls_per_s=len(ordered) / seconds,
            p50_us=percentile(ordered, 0.50) / 1e3,
            p99_us=percentile(ordered, 0.99) / 1e3,
        )


async def run_sequential(peer: Peer, calls: int, tally: Tally) -> None:
    """One call in flight: the latency a host sees when it waits for each answer."""
    clock = time.perf_counter_ns
    begin = clock()
    for _ in range(calls):
        rid = peer.next_id()
        line = request(rid, "tools/call", _CALL_PARAMS)
        start = clock()
        await peer.send(line)
        reply = await peer.receive()
        end = clock()
        if reply_ok(reply, rid):
            tally.latencies_ns.append(end - start)
        else:
            tally.errors += 1
    tally.elapsed_ns += clock() - begin


async def run_pipelined(peer: Peer, calls: int, depth: int, tally: Tally) -> None:
    """``depth`` calls in flight: throughput when the host does not wait. Latency here
    includes time queued behind the other in-flight calls, which is the point."""
    started: dict[int, int] = {}
    window = trio.Semaphore(depth)
    clock = time.perf_counter_ns

    async def sender() -> None:
        # Every slot free at this moment is refilled with one write: the driver then
        # spends one syscall per burst, not per call, and stays cheaper than its targets.
        remaining = calls
        while remaining:
            await window.acquire()
            burst = 1 + min(window.value, remaining - 1)
            for _ in range(burst - 1):
                window.acquire_nowait()
            rids = [peer.next_id() for _ in range(burst)]
            lines = b"".join([request(rid, "tools/call", _CALL_PARAMS) for rid in rids])
            now = clock()
            for rid in rids:
                started[rid] = now
            await peer.send(lines)
            remaining -= burst

    async def receiver() -> None:
        for _ in range(calls):
            reply = await peer.receive()
            end = clock()
            start = started.pop(reply.id, None) if isinstance(reply.id, int) else None
            if start is not None and reply_ok(reply, reply.id):
                tally.latencies_ns.append(end - start)
            else:
                tally.errors += 1
            # An unmatched reply still frees a slot: it answers *something*, and holding
            # the slot would stall the sender until the phase times out.
            window.release()

    begin = clock()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender)
        nursery.start_soon(receiver)
    tally.elapsed_ns += clock() - begin


async def run_mode(peer: Peer, mode: str, calls: int, depth: int, tally: Tally) -> None:
    """One slice of one mode, under a deadline: a stuck child fails, it does not hang us."""
    with trio.fail_after(PHASE_TIMEOUT_S):
        if mode == "sequential":
            await run_sequential(peer, calls, tally)
        else:
            await run_pipelined(peer, calls, depth, tally)


async def attempt(result: TargetResult, step: Callable[..., Awaitable[None]], *args: Any) -> bool:
    """Run one step for one target. A failure is recorded as why the target was dropped
    and the run goes on with the other targets; True means the step succeeded.
    ``except*`` because the pipelined mode's nursery wraps its tasks' errors in a group."""
    failure = None
    try:
        await step(*args)
    except* TargetFailed as group:
        failure = str(_first_leaf(group))
    except* trio.TooSlowError:
        failure = "timed out (stuck child?)"
    if failure is None:
        return True
    result.failure = f"{step.__name__}: {failure}"
    print(f"[{result.name}] dropped: {result.failure}", file=sys.stderr, flush=True)
    return False


def _first_leaf(group: BaseExceptionGroup[Exception]) -> BaseException:
    first: BaseException = group
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    return first


def split(total: int, parts: int) -> list[int]:
    """``total`` calls as ``parts`` near-equal rounds."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


async def measure_calls(
    targets: list[Target], results: dict[str, TargetResult], args: argparse.Namespace
) -> None:
    """Warm sessions for all targets at once, measured in interleaved rounds: a burst of
    background load on a shared machine then lands on every target, not on one ratio."""
    tallies = {t.name: {mode: Tally() for mode in MODES} for t in targets}
    async with AsyncExitStack() as stack:
        peers: dict[str, Peer] = {}
        for target in targets:
            peer = await stack.enter_async_context(spawned(target))
            if await attempt(results[target.name], handshake, peer):
                peers[target.name] = peer

        async def each_target(mode: str, calls: int, *, warmup: bool = False) -> None:
            for name, peer in list(peers.items()):
                tally = Tally() if warmup else tallies[name][mode]
                if not await attempt(results[name], run_mode, peer, mode, calls, args.depth, tally):
                    del peers[name]

        for mode in MODES:
            await each_target(mode, args.warmup, warmup=True)
        for calls in split(args.calls, args.rounds):
            for mode in MODES:
                await each_target(mode, calls)
    for name in peers:
        results[name].sequential = tallies[name]["sequential"].summary()
        results[name].pipelined = tallies[name]["pipelined"].summary()


async def cold_start_once(target: Target, samples_ms: list[float]) -> None:
    """Milliseconds from asking the OS for a process to holding its initialize answer."""
    begin = time.perf_counter_ns()
    async with spawned(target) as peer:
        with trio.fail_after(STARTUP_TIMEOUT_S):
            await peer.call("initialize", _INIT_PARAMS)
        answered = time.perf_counter_ns()
    samples_ms.append((answered - begin) / 1e6)


async def measure_cold_starts(
    targets: list[Target], results: dict[str, TargetResult], spawns: int
) -> None:
    """Fresh children, the targets taking turns; the median resists the odd slow fork."""
    samples: dict[str, list[float]] = {t.name: [] for t in targets}
    for _ in range(spawns):
        for target in targets:
            result = results[target.name]
            if not result.failure:
                await attempt(result, cold_start_once, target, samples[target.name])
    for target in targets:
        taken = samples[target.name]
        if not results[target.name].failure:
            results[target.name].cold_start = ColdStart(
                statistics.median(taken), min(taken), max(taken), taken
            )


async def probe(target: Target) -> None:
    """Start the target once with stderr captured, so a failure can say why.

    It also fills the children's bytecode cache, so the timed spawns measure startup,
    not compilation. The measured runs discard stderr: a pipe nobody reads could block.
    """
    with tempfile.TemporaryFile() as stderr:
        try:
            async with spawned(target, stderr=stderr) as peer:
                await handshake(peer)
                await peer.call("tools/call", _CALL_PARAMS)
        except (TargetFailed, trio.TooSlowError) as exc:
            stderr.seek(0)
            tail = stderr.read().decode(errors="replace")[-STDERR_TAIL:].strip()
            why = str(exc) or "no answer within the startup timeout"
            raise TargetFailed(f"{why}\n{tail}" if tail else why) from None


# --------------------------------------------------------------------------- reporting


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """a/b, or None when either side was not measured: a missing number is not a zero."""
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def _cps(result: TargetResult | None, mode: str) -> float | None:
    phase = getattr(result, mode, None) if result else None
    return phase.calls_per_s if phase else None


def _cold(result: TargetResult | None) -> float | None:
    return result.cold_start.median_ms if result and result.cold_start else None


def compute_ratios(results: dict[str, TargetResult]) -> dict[str, float | None]:
    """Throughput ratios are a/b in calls/s (higher is better for a); cold start ratios
    are a/b in ms (lower is better for a). sdk/floor is kept for context when ours is absent."""
    ratios: dict[str, float | None] = {}
    for a, b in (("ours", "floor"), ("ours", "sdk"), ("sdk", "floor"), ("ours-threads", "ours")):
        ra, rb = results.get(a), results.get(b)
        ratios[f"{a}/{b} seq calls/s"] = ratio(_cps(ra, "sequential"), _cps(rb, "sequential"))
        ratios[f"{a}/{b} pipelined calls/s"] = ratio(_cps(ra, "pipelined"), _cps(rb, "pipelined"))
        ratios[f"{a}/{b} cold start"] = ratio(_cold(ra), _cold(rb))
    return ratios


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _row(result: TargetResult, mode: str) -> str:
    """calls/s, p50, p99 of one mode, or dashes where a failed target has no numbers."""
    phase: Phase | None = getattr(result, mode)
    width = 11 if mode == "sequential" else 14
    if phase is None:
        return f"{'-':>{width}} {'-':>8} {'-':>8}"
    return (f"{_fmt(phase.calls_per_s, f'{width},.0f')} {_fmt(phase.p50_us, '8.1f')} "
            f"{_fmt(phase.p99_us, '8.1f')}")


def _error_count(result: TargetResult) -> int | None:
    phases = [p for p in (result.sequential, result.pipelined) if p is not None]
    return sum(p.errors for p in phases) if phases else None


def print_report(
    results: dict[str, TargetResult], ratios: dict[str, float | None], depth: int
) -> None:
    """One row per target, then the ratios the issue asks for."""
    header = (
        f"{'target':<8} {'seq calls/s':>11} {'p50 us':>8} {'p99 us':>8} "
        f"{f'pipe{depth} calls/s':>14} {'p50 us':>8} {'p99 us':>8} {'errors':>7} {'cold ms':>8}"
    )
    print(header)
    print("-" * len(header))
    for result in results.values():
        print(f"{result.name:<8} {_row(result, 'sequential')} {_row(result, 'pipelined')} "
              f"{_fmt(_error_count(result), 'd'):>7} {_fmt(_cold(result), '.1f'):>8}")
    for result in results.values():
        if result.failure:
            print(f"\n{result.name} failed: {result.failure}")
    print()
    for name, value in ratios.items():
        note = COLD_START_NOTE if name == "ours/floor cold start" else ""
        print(f"{name:<28} {_fmt(value, '.2f')}{note}")


def write_json(
    path: Path,
    args: argparse.Namespace,
    results: dict[str, TargetResult],
    ratios: dict[str, float | None],
) -> None:
    """Every number, with the settings and machine that produced it, for later comparison."""
    document = {
        "benchmark": "stdio_echo",
        "python": sys.version,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "calls": args.calls,
        "warmup": args.warmup,
        "depth": args.depth,
        "spawns": args.spawns,
        "rounds": args.rounds,
        "protocol_version": PROTOCOL_VERSION,
        "targets": results,
        "ratios": ratios,
    }
    path.write_bytes(msgspec.json.format(msgspec.json.encode(document)) + b"\n")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=DEFAULT_CALLS,
                        help=f"measured calls per mode and target (default {DEFAULT_CALLS})")
    parser.add_argument("--warmup", type=int, default=DEFAULT_WARMUP,
                        help=f"unmeasured calls before each mode (default {DEFAULT_WARMUP})")
    parser.add_argument("--depth", type=int, default=DEFAULT_DEPTH,
                        help=f"requests in flight when pipelined (default {DEFAULT_DEPTH})")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS,
                        help=f"rounds the targets take turns in (default {DEFAULT_ROUNDS})")
    parser.add_argument("--spawns", type=int, default=DEFAULT_SPAWNS,
                        help=f"cold starts per target (default {DEFAULT_SPAWNS})")
    names = [t.name for t in default_targets()]
    parser.add_argument("--only", nargs="+", choices=names, metavar="NAME",
                        help=f"measure only these targets ({', '.join(names)})")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write every number here")
    args = parser.parse_args(argv)
    for name in ("calls", "depth", "spawns", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.warmup < 0:
        parser.error("--warmup must not be negative")
    if args.rounds > args.calls:
        parser.error("--rounds must not exceed --calls")
    return args


async def run(args: argparse.Namespace, env: dict[str, str]) -> dict[str, TargetResult]:
    """Probe every target, then measure the ones that started, all in this one run."""
    targets = [t for t in default_targets(env) if not args.only or t.name in args.only]
    results = {t.name: TargetResult(t.name, t.label, t.argv) for t in targets}
    for target in targets:
        print(f"[{target.name}] {' '.join(target.argv)}", file=sys.stderr, flush=True)
        await attempt(results[target.name], probe, target)
    live = [t for t in targets if not results[t.name].failure]
    await measure_calls(live, results, args)
    live = [t for t in live if not results[t.name].failure]
    await measure_cold_starts(live, results, args.spawns)
    return results


def child_env(pycache: str) -> dict[str, str]:
    """The children's environment: a private bytecode cache, written even when the caller
    sets PYTHONDONTWRITEBYTECODE, so every target starts from compiled code the same way
    an installed package does, and nothing is written into the source tree."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = pycache
    return env


def main(argv: Sequence[str] | None = None) -> int:
    """Exit 1 when a target failed or answered wrongly, so CI notices; the report is
    printed either way."""
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="stdio-echo-pycache-") as pycache:
        results = trio.run(run, args, child_env(pycache))
    ratios = compute_ratios(results)
    print_report(results, ratios, args.depth)
    if args.json:
        write_json(args.json, args, results, ratios)
    wrong = any(r.failure or _error_count(r) for r in results.values())
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
