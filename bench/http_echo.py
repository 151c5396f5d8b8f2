"""Streamable HTTP echo benchmark: ``tools/call echo`` (JSON responses) against mcp_trio,
its floor, and the official SDK, in one run.

Usage::

    python bench/http_echo.py [--calls N] [--warmup N] [--conns N] [--rounds N]
                              [--only NAME ...] [--json OUT]

Targets, each a child process on its own free port, all run by this interpreter:

* ``floor`` -- ``bench/floors/http_echo.py``: a raw ASGI POST echo on hypercorn's trio
  worker (msgspec decode and encode, no MCP). The floor of our HTTP stack.
* ``ours`` -- ``serve_http`` with the built-in demo app and its ``echo`` tool.
* ``sdk`` -- ``bench/peers/sdk_http_server.py``: the official SDK's Streamable HTTP server
  (``json_response=True``, so each call is answered with one JSON body, as ours is).
* ``sdk-sse`` -- the same with ``--sse``: the SDK's default, an SSE stream per call.

The driver speaks HTTP/1.1 by hand on keep-alive connections (pre-formatted requests, a
minimal response parser: it must stay cheaper than its targets). For MCP targets each
connection first initializes a session (the floor echoes initialize like anything else).
Modes: ``sequential`` (one connection, one call in flight) and ``concurrent`` (``--conns``
connections, one call in flight on each). The calls are split into ``--rounds`` rounds in
which the targets take turns, so drift on a shared machine lands on every target alike.
Every reply is checked (status 200, our id, a ``result`` that is not ``isError``); failures
count as errors, never as speed.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import trio

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
PROTOCOL_VERSION = "2025-11-25"
STARTUP_TIMEOUT_S = 30.0
PHASE_TIMEOUT_S = 120.0
MODES = ("sequential", "concurrent")

_OURS = (
    "import sys, trio\n"
    "from mcp_trio.demo import server\n"
    "from mcp_trio.transports.http import serve_http\n"
    "trio.run(lambda: serve_http(server, port=int(sys.argv[1]), handle_signals=True))\n"
)


class TargetFailed(Exception):
    """The target could not be measured; the message says why."""


@dataclass(frozen=True)
class Target:
    name: str
    label: str
    argv: list[str]  # "{port}" is replaced by the port
    mcp: bool


def default_targets() -> list[Target]:
    py = sys.executable
    return [
        Target("floor", "hypercorn-trio ASGI echo", [py, str(BENCH / "floors" / "http_echo.py"), "--port", "{port}"], mcp=False),
        Target("ours", "mcp_trio serve_http", [py, "-c", _OURS, "{port}"], mcp=True),
        Target("sdk", "official SDK (mcp), JSON", [py, str(BENCH / "peers" / "sdk_http_server.py"), "--port", "{port}"], mcp=True),
        Target("sdk-sse", "official SDK (mcp), SSE (its default)",
               [py, str(BENCH / "peers" / "sdk_http_server.py"), "--port", "{port}", "--sse"], mcp=True),
    ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------- the wire
class Reply(msgspec.Struct):
    id: Any = msgspec.UNSET
    result: Any = msgspec.UNSET
    error: Any = msgspec.UNSET


_decode_reply = msgspec.json.Decoder(Reply).decode
_CALL = b'{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello"}}}'
_INIT = (b'{"jsonrpc":"2.0","id":%d,"method":"initialize","params":{"protocolVersion":"' + PROTOCOL_VERSION.encode()
         + b'","capabilities":{},"clientInfo":{"name":"mcp-trio-bench","version":"0.1.0"}}}')
_INITIALIZED = b'{"jsonrpc":"2.0","method":"notifications/initialized"}'


class HttpConnection:
    """One keep-alive HTTP/1.1 connection; reconnects when the server closes it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stream: trio.SocketStream | None = None
        self.buffer = bytearray()
        self.session_headers = b""
        self._head = (b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAccept: application/json, text/event-stream\r\n"
                      b"Content-Type: application/json\r\n" % port)

    async def _ensure(self) -> trio.SocketStream:
        if self.stream is None:
            self.stream = await trio.open_tcp_stream("127.0.0.1", self.port)
            self.stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.buffer.clear()
        return self.stream

    async def close(self) -> None:
        if self.stream is not None:
            await self.stream.aclose()
            self.stream = None

    async def post(self, body: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
        request = b"%b%bContent-Length: %d\r\n\r\n%b" % (self._head, self.session_headers, len(body), body)
        stream = await self._ensure()
        buffer = self.buffer
        try:
            await stream.send_all(request)
            while (end := buffer.find(b"\r\n\r\n")) < 0:
                await self._fill(stream)
        except (TargetFailed, trio.BrokenResourceError):
            if buffer:
                raise
            # The server closed this keep-alive connection while it was idle (its keep-alive
            # timeout), before reading the request: reconnect and send it again, once.
            await self.close()
            stream = await self._ensure()
            await stream.send_all(request)
            while (end := buffer.find(b"\r\n\r\n")) < 0:
                await self._fill(stream)
        lines = bytes(buffer[:end]).split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            del buffer[: end + 4]
            body_out = await self._read_chunked(stream)
        else:
            length = int(headers.get(b"content-length", b"0"))
            while len(buffer) < end + 4 + length:
                await self._fill(stream)
            body_out = bytes(buffer[end + 4 : end + 4 + length])
            del buffer[: end + 4 + length]
        if headers.get(b"content-type", b"").startswith(b"text/event-stream"):
            body_out = _sse_reply(body_out)
        if headers.get(b"connection", b"").lower() == b"close":
            await self.close()
        return status, headers, body_out

    async def _read_chunked(self, stream: trio.SocketStream) -> bytes:
        buffer = self.buffer
        parts = []
        while True:
            while (eol := buffer.find(b"\r\n")) < 0:
                await self._fill(stream)
            size = int(bytes(buffer[:eol]).split(b";")[0], 16)
            while len(buffer) < eol + 2 + size + 2:
                await self._fill(stream)
            parts.append(bytes(buffer[eol + 2 : eol + 2 + size]))
            del buffer[: eol + 2 + size + 2]
            if size == 0:
                return b"".join(parts)

    async def _fill(self, stream: trio.SocketStream) -> None:
        chunk = await stream.receive_some(65536)
        if not chunk:
            await self.close()
            raise TargetFailed("server closed the connection mid-response")
        self.buffer += chunk


def _sse_reply(body: bytes) -> bytes:
    """The last JSON-RPC response carried by an SSE body (data lines of message events)."""
    reply = b""
    for line in body.split(b"\n"):
        if line.startswith(b"data:"):
            data = line[5:].strip()
            if data and b'"method"' not in data:
                reply = data
    return reply


async def open_session(conn: HttpConnection, ids: Any, mcp: bool) -> None:
    status, headers, body = await conn.post(_INIT % next(ids))
    if status != 200:
        raise TargetFailed(f"initialize answered {status}: {body[:200]!r}")
    if mcp:
        session = headers.get(b"mcp-session-id")
        if session is None:
            raise TargetFailed("initialize answered without Mcp-Session-Id")
        conn.session_headers = b"Mcp-Session-Id: %b\r\nMCP-Protocol-Version: %b\r\n" % (session, PROTOCOL_VERSION.encode())
        status, _, _ = await conn.post(_INITIALIZED)
        if status != 202:
            raise TargetFailed(f"notifications/initialized answered {status}")


# --------------------------------------------------------------------------- measuring
def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux /proc), or None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Tally:
    latencies_ns: list[int] = field(default_factory=list)
    errors: int = 0
    elapsed_ns: int = 0
    server_cpu_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        seconds = self.elapsed_ns / 1e9
        ordered = sorted(self.latencies_ns)
        if not ordered or not seconds:
            return {"calls": 0, "errors": self.errors, "calls_per_s": None}
        return {
            "calls": len(ordered), "errors": self.errors, "seconds": round(seconds, 3),
            "calls_per_s": round(len(ordered) / seconds, 1),
            "p50_us": ordered[max(0, math.ceil(0.5 * len(ordered)) - 1)] / 1e3,
            "p99_us": ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)] / 1e3,
            # The server's own CPU per call: steadier than throughput on a shared machine.
            "server_cpu_us_per_call": round(self.server_cpu_s * 1e6 / (len(ordered) + self.errors), 1) if self.server_cpu_s else None,
        }


async def run_calls(conn: HttpConnection, ids: Any, calls: int, tally: Tally) -> None:
    clock = time.perf_counter_ns
    for _ in range(calls):
        rid = next(ids)
        start = clock()
        status, _, body = await conn.post(_CALL % rid)
        end = clock()
        ok = False
        if status == 200:
            try:
                reply = _decode_reply(body)
            except msgspec.DecodeError:
                reply = None
            if reply is not None and reply.id == rid and reply.result is not msgspec.UNSET:
                ok = not (isinstance(reply.result, dict) and reply.result.get("isError") is True)
        if ok:
            tally.latencies_ns.append(end - start)
        else:
            tally.errors += 1


@dataclass
class Running:
    target: Target
    port: int
    process: trio.Process
    ids: Any = field(default_factory=lambda: itertools.count(1))
    conns: list[HttpConnection] = field(default_factory=list)
    tallies: dict[str, Tally] = field(default_factory=lambda: {mode: Tally() for mode in MODES})
    failure: str | None = None


async def start(target: Target, conns: int, stderr: Any) -> Running:
    port = free_port()
    argv = [arg.replace("{port}", str(port)) for arg in target.argv]
    process = await trio.lowlevel.open_process(argv, stdout=subprocess.DEVNULL, stderr=stderr, cwd=REPO)
    running = Running(target, port, process)
    with trio.move_on_after(STARTUP_TIMEOUT_S):
        while True:
            try:
                probe = await trio.open_tcp_stream("127.0.0.1", port)
            except OSError:
                if process.poll() is not None:
                    raise TargetFailed(f"exited with {process.returncode} before listening") from None
                await trio.sleep(0.05)
                continue
            await probe.aclose()
            break
    for _ in range(conns):
        conn = HttpConnection(port)
        await open_session(conn, running.ids, target.mcp)
        running.conns.append(conn)
    return running


async def stop(running: Running) -> None:
    for conn in running.conns:
        await conn.close()
    with trio.CancelScope(shield=True):
        running.process.terminate()
        with trio.move_on_after(5):
            await running.process.wait()
        if running.process.returncode is None:
            running.process.kill()
            await running.process.wait()


async def measure(running: Running, mode: str, calls: int) -> None:
    tally = running.tallies[mode]
    cpu_before = cpu_seconds(running.process.pid)
    begin = time.perf_counter_ns()
    with trio.fail_after(PHASE_TIMEOUT_S):
        if mode == "sequential":
            await run_calls(running.conns[0], running.ids, calls, tally)
        else:
            per_conn = max(1, calls // len(running.conns))
            async with trio.open_nursery() as nursery:
                for conn in running.conns:
                    nursery.start_soon(run_calls, conn, running.ids, per_conn, tally)
    tally.elapsed_ns += time.perf_counter_ns() - begin
    cpu_after = cpu_seconds(running.process.pid)
    if cpu_before is not None and cpu_after is not None:
        tally.server_cpu_s += cpu_after - cpu_before


async def main(args: argparse.Namespace) -> dict[str, Any]:
    targets = [t for t in default_targets() if not args.only or t.name in args.only]
    runs: list[Running] = []
    failures: dict[str, str] = {}
    try:
        for target in targets:
            try:
                runs.append(await start(target, args.conns, subprocess.DEVNULL))
            except (TargetFailed, OSError) as exc:
                failures[target.name] = f"start: {exc}"
                print(f"[{target.name}] dropped: {exc}", file=sys.stderr)
        for mode in MODES:
            for running in runs:  # warm-up: imports, caches, the allocator
                if running.failure is None:
                    warm = Tally()
                    await run_calls(running.conns[0], running.ids, args.warmup, warm)
            for _ in range(args.rounds):
                for running in runs:
                    if running.failure is not None:
                        continue
                    try:
                        await measure(running, mode, args.calls // args.rounds)
                    except* (TargetFailed, OSError, trio.TooSlowError) as group:
                        running.failure = f"{mode}: {group.exceptions[0]!r}"
                        print(f"[{running.target.name}] dropped: {running.failure}", file=sys.stderr)
    finally:
        for running in runs:
            await stop(running)
    results: dict[str, Any] = {"python": sys.version.split()[0], "cpus": os.cpu_count(), "calls": args.calls,
                               "conns": args.conns, "targets": {}}
    for running in runs:
        results["targets"][running.target.name] = {
            "label": running.target.label, "failure": running.failure,
            **{mode: running.tallies[mode].summary() for mode in MODES}}
    for name, failure in failures.items():
        results["targets"][name] = {"failure": failure}
    return results


def report(results: dict[str, Any]) -> None:
    targets = results["targets"]
    print(f"Streamable HTTP tools/call echo, JSON responses; {results['calls']} calls per mode; "
          f"concurrent = {results['conns']} connections x 1 in flight; python {results['python']}, {results['cpus']} CPUs")
    print(f"{'target':<8} {'mode':<11} {'calls/s':>9} {'p50 us':>8} {'p99 us':>8} {'errors':>6} {'srv cpu us/call':>15}")
    for name, data in targets.items():
        if "sequential" not in data:
            print(f"{name:<8} failed: {data['failure']}")
            continue
        for mode in MODES:
            phase = data[mode]
            rate = phase.get("calls_per_s")
            print(f"{name:<8} {mode:<11} {rate if rate else '-':>9} {phase.get('p50_us', '-'):>8} {phase.get('p99_us', '-'):>8} "
                  f"{phase['errors']:>6} {phase.get('server_cpu_us_per_call') or '-':>15}")
    for mode in MODES:
        def rate(name: str) -> float | None:
            return (targets.get(name) or {}).get(mode, {}).get("calls_per_s")
        ours, floor, sdk, sdk_sse = rate("ours"), rate("floor"), rate("sdk"), rate("sdk-sse")
        parts = []
        if ours and floor:
            parts.append(f"ours/floor = {ours / floor:.2f} (target >= 0.7)")
        if ours and sdk:
            parts.append(f"ours/sdk = {ours / sdk:.2f} (target >= 3)")
        if ours and sdk_sse:
            parts.append(f"ours/sdk-sse = {ours / sdk_sse:.2f}")
        if parts:
            print(f"{mode}: " + ", ".join(parts))
        def cpu(name: str) -> float | None:
            return (targets.get(name) or {}).get(mode, {}).get("server_cpu_us_per_call")
        ours_cpu = cpu("ours")
        cpu_parts = [f"{name}/ours = {cpu(name) / ours_cpu:.2f}" for name in ("floor", "sdk", "sdk-sse") if cpu(name) and ours_cpu]
        if cpu_parts:
            print(f"{mode} server CPU per call: " + ", ".join(cpu_parts))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Streamable HTTP echo benchmark")
    parser.add_argument("--calls", type=int, default=10_000, help="calls per mode and target (default: 10000)")
    parser.add_argument("--warmup", type=int, default=500, help="warm-up calls per mode (default: 500)")
    parser.add_argument("--conns", type=int, default=8, help="connections in the concurrent mode (default: 8)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds the targets take turns in (default: 5)")
    parser.add_argument("--only", nargs="*", choices=["floor", "ours", "sdk", "sdk-sse"], help="measure only these targets")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    outcome = trio.run(main, arguments)
    report(outcome)
    if arguments.json is not None:
        arguments.json.write_bytes(msgspec.json.format(msgspec.json.encode(outcome)))
