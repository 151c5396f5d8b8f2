"""``mcp-trio bench TARGET``: the load generator's command line.

``add_bench_arguments(parser)`` adds its flags to a parser (the ``bench`` subcommand of
``mcp-trio``); ``run_bench(args)`` runs it and returns the exit status: 0 when every
request succeeded, 1 when the target failed or any request did, 2 for a usage error.
``python -m mcp_trio.bench`` runs the same thing on its own.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the engine is imported when a benchmark runs, not when flags are added
    from ._runner import BenchConfig

METHODS = ("tools/call", "tools/list", "resources/read", "ping")

EXAMPLES = """\
targets:
  stdio:COMMAND    spawn COMMAND (quote it: 'stdio:python -m mcp_trio serve'); one
                   server process per connection, measured by the harness itself
  ws://HOST:PORT/PATH, wss://...      WebSocket, one JSON-RPC message per frame
  http://HOST:PORT/mcp, https://...   Streamable HTTP (JSON or SSE answers)

examples:
  mcp-trio bench 'stdio:python -m mcp_trio serve' -d 8
  mcp-trio bench ws://127.0.0.1:8765/ -c 100 -d 8 --processes 2 --server-pid 1234
  mcp-trio bench http://127.0.0.1:8000/mcp --rate 2000 -c 16 --json out.json --plot out.png
  mcp-trio bench ws://127.0.0.1:8765/ --idle 5000 --server-pid 1234
"""

_UNITS = {"ms": 1e-3, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def seconds(text: str) -> float:
    """``10``, ``10s``, ``500ms``, ``2m``, ``1h`` -> seconds."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(ms|s|m|min|h)?\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 10, 10s, 500ms, 2m)")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def _json_object(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError("headers look like 'Name: value'")
    return name.strip(), value.strip()


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``bench`` flags to ``parser``."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EXAMPLES
    parser.add_argument("target", metavar="TARGET", help="stdio:COMMAND, ws(s)://... or http(s)://...")

    load = parser.add_argument_group("load")
    load.add_argument("-c", "--connections", type=_positive_int, default=1, metavar="N",
                      help="sessions (connections; stdio: server processes) (default: 1)")
    load.add_argument("-d", "--in-flight", type=_positive_int, default=1, metavar="N",
                      help="closed loop: requests in flight per session (default: 1)")
    load.add_argument("--rate", type=_positive_float, metavar="PER_S",
                      help="open loop: send this many requests per second in total, on schedule; "
                           "latency counts from the scheduled time")
    load.add_argument("--max-outstanding", type=_positive_int, default=1000, metavar="N",
                      help="open loop: requests in flight at most, over all processes (default: 1000)")
    load.add_argument("-p", "--processes", type=_positive_int, default=1, metavar="N",
                      help="client processes sharing the load (default: 1)")
    load.add_argument("--warmup", type=seconds, default=2.0, metavar="SECONDS",
                      help="unmeasured load first (default: 2s)")
    length = load.add_mutually_exclusive_group()
    length.add_argument("--duration", type=seconds, default=10.0, metavar="SECONDS",
                        help="measured window (default: 10s)")
    length.add_argument("-n", "--requests", type=_positive_int, metavar="N",
                        help="measure this many requests instead of a duration")
    load.add_argument("--timeout", type=seconds, default=30.0, metavar="SECONDS",
                      help="a request (or opening a session) taking longer fails as 'timeout' (default: 30s)")

    work = parser.add_argument_group("workload")
    work.add_argument("-m", "--method", default="tools/call", metavar="METHOD",
                      help=f"the request to send: {', '.join(METHODS)} or any method (default: tools/call)")
    work.add_argument("--tool", default="echo", help="tools/call: the tool (default: echo)")
    work.add_argument("--arguments", type=_json_object, metavar="JSON",
                      help='tools/call: its arguments (default: {"text": "hello"})')
    work.add_argument("--uri", help="resources/read: the resource")
    work.add_argument("--params", type=_json_object, metavar="JSON", help="raw params for any method")
    work.add_argument("--mix", type=Path, metavar="FILE",
                      help="a weighted mix of requests from a .json or .toml file (instead of --method)")
    work.add_argument("--no-initialize", action="store_true", help="skip the initialize handshake")

    idle = parser.add_argument_group("idle sessions")
    idle.add_argument("--idle", type=_positive_int, metavar="N",
                      help="open N sessions (ws or http), hold them, report server memory per session")
    idle.add_argument("--hold", type=seconds, default=5.0, metavar="SECONDS",
                      help="how long idle sessions are held (default: 5s)")
    idle.add_argument("--open-concurrency", type=_positive_int, default=64, metavar="N",
                      help="sessions being opened at once (default: 64)")

    measure = parser.add_argument_group("measuring and output")
    measure.add_argument("--server-pid", type=int, action="append", default=[], metavar="PID",
                         help="measure this server process (and its children): CPU and memory; repeatable")
    measure.add_argument("--interval", type=seconds, default=1.0, metavar="SECONDS",
                         help="timeline resolution (default: 1s)")
    measure.add_argument("--json", metavar="FILE", help="write the result as JSON ('-' for stdout)")
    measure.add_argument("--plot", type=Path, metavar="PNG",
                         help="draw latency and throughput over time (needs the 'bench' extra: matplotlib)")
    measure.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no summary")
    conn = parser.add_argument_group("connection")
    conn.add_argument("-H", "--header", type=_header, action="append", default=[], metavar="'NAME: VALUE'",
                      help="extra header for HTTP requests and the WebSocket handshake; repeatable")
    conn.add_argument("-k", "--insecure", action="store_true", help="do not verify TLS certificates")


def config_from(args: argparse.Namespace) -> BenchConfig:
    """The :class:`BenchConfig` the parsed flags describe; ``ValueError`` when they clash."""
    from ..client import parse_target
    from ._runner import BenchConfig
    from ._workload import from_file, single

    parse_target(args.target)
    if args.mix is not None:
        workload = from_file(args.mix)
    else:
        workload = single(args.method, tool=args.tool, arguments=args.arguments, uri=args.uri, params=args.params)
    if args.plot is not None and args.idle is not None:
        raise ValueError("--plot draws a load run; idle mode has nothing to plot")
    return BenchConfig(
        target=args.target,
        connections=args.connections,
        in_flight=args.in_flight,
        rate=args.rate,
        processes=args.processes,
        max_outstanding=args.max_outstanding,
        warmup=args.warmup,
        duration=None if args.requests is not None else args.duration,
        requests=args.requests,
        timeout=args.timeout,
        interval=args.interval,
        workload=workload.to_json(),
        headers=dict(args.header),
        insecure=args.insecure,
        initialize=not args.no_initialize,
        server_pids=list(args.server_pid),
        idle=args.idle,
        hold=args.hold,
        open_concurrency=args.open_concurrency,
    )


def preflight(config: BenchConfig) -> None:
    """One session first: raise ``WorkloadError`` when the workload cannot work against the
    target (a tool it does not have, a request it refuses), so the run does not report 0
    calls/s and leave the reason to be guessed (``_preflight``)."""
    import ssl

    import trio

    from ._preflight import check_workload
    from ._workload import Workload

    context = None
    if config.insecure:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    trio.run(lambda: check_workload(config.target, Workload.from_json(config.workload), timeout=config.timeout,
                                    headers=config.headers, ssl_context=context, initialize=config.initialize,
                                    protocol_version=config.protocol_version))


def run_bench(args: argparse.Namespace) -> int:
    """Run ``mcp-trio bench`` with parsed ``args``; returns the exit status."""
    from ..client import TargetError
    from ._report import PlotUnavailable, plot, summary, to_json
    from ._runner import progress_wanted, run
    from ._workload import WorkloadError

    try:
        config = config_from(args)
        if config.idle is None:
            preflight(config)
    except (TargetError, WorkloadError, ValueError) as exc:
        print(f"mcp-trio bench: {exc}", file=sys.stderr)
        return 2
    try:
        result = run(config, progress=not args.quiet and progress_wanted())
    except KeyboardInterrupt:
        return 130
    data = to_json(result)
    if args.json == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    elif args.json:
        Path(args.json).write_bytes(data)
    if not args.quiet:
        print(summary(result), file=sys.stderr if args.json == "-" else sys.stdout)
    if args.plot is not None:
        try:
            plot(result, args.plot)
        except PlotUnavailable as exc:
            print(f"mcp-trio bench: {exc}", file=sys.stderr)
            return 2
    return 0 if result.ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mcp-trio bench", description="Load-test an MCP server.")
    add_bench_arguments(parser)
    return run_bench(parser.parse_args(argv))
