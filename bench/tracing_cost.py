"""What tracing costs: ``tools/call echo`` over stdio with tracing off, on, and (optionally) on
a baseline checkout, in one run, the targets taking turns.

Usage::

    python bench/tracing_cost.py [--calls N] [--rounds N] [--baseline DIR] [--json OUT]

Targets (``python -m mcp_trio serve``, the demo app, one session each; the machinery, the
modes and the report are ``stdio_echo.py``'s):

* ``off`` -- this checkout, tracing off (the default): what every server pays for tracing
  existing, one ``is None`` test per request in the kernel;
* ``on`` -- this checkout, ``MCP_TRIO_TRACING_ENABLED=true`` with the ``none`` exporter: every
  request's span and its tool's span created, recorded and ended (the SDK's batch processor,
  spans dropped instead of sent): the instrumentation's own cost, without a network;
* ``base`` (or NAME) -- with ``--baseline [NAME=]DIR`` (repeatable): the same server from another
  checkout (``main`` before tracing existed), so ``off/base`` shows the cost of the hook when off.

The calls are split into ``--rounds`` rounds in which the targets take turns (A B A B), so a
burst of load from elsewhere on a shared machine lands on all of them; medians per mode.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import trio

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import stdio_echo  # noqa: E402  (the driver's machinery, shared)


def targets(env: dict[str, str], baselines: list[str]) -> list[stdio_echo.Target]:
    py = sys.executable
    serve = [py, "-m", "mcp_trio", "serve"]
    traced = {**env, "MCP_TRIO_TRACING_ENABLED": "true", "MCP_TRIO_TRACING_EXPORTER": "none"}
    chosen = [stdio_echo.Target("off", "tracing off", serve, env), stdio_echo.Target("on", "tracing on (spans recorded)", serve, traced)]
    for entry in baselines:
        name, _, where = entry.rpartition("=")
        code = f"import sys; sys.path.insert(0, {where!r}); from mcp_trio._cli import main; sys.exit(main(['serve']))"
        chosen.append(stdio_echo.Target(name or "base", f"baseline {where}", [py, "-c", code], env))
    return chosen


async def run(args: argparse.Namespace, env: dict[str, str]) -> dict[str, stdio_echo.TargetResult]:
    chosen = targets(env, args.baseline)
    results = {t.name: stdio_echo.TargetResult(t.name, t.label, t.argv) for t in chosen}
    for target in chosen:
        await stdio_echo.attempt(results[target.name], stdio_echo.probe, target)
    live = [t for t in chosen if not results[t.name].failure]
    await stdio_echo.measure_calls(live, results, args)
    return results


def report(results: dict[str, stdio_echo.TargetResult]) -> None:
    print(f"{'target':<6} {'mode':<11} {'calls/s':>9} {'p50 us':>8} {'p99 us':>8}  errors")
    for result in results.values():
        if result.failure:
            print(f"{result.name:<6} failed: {result.failure}")
            continue
        for mode in stdio_echo.MODES:
            phase = getattr(result, mode)
            print(f"{result.name:<6} {mode:<11} {phase.calls_per_s:>9.0f} {phase.p50_us:>8.1f} {phase.p99_us:>8.1f}  {phase.errors}")
    pairs = [("on", "off")] + [("off", name) for name in results if name not in ("on", "off")]
    for mode in stdio_echo.MODES:
        for a, b in pairs:
            ra, rb = results.get(a), results.get(b)
            if ra is None or rb is None or ra.failure or rb.failure:
                continue
            pa, pb = getattr(ra, mode), getattr(rb, mode)
            print(f"{mode:<11} {a}/{b}: throughput {pa.calls_per_s / pb.calls_per_s:.3f}, p50 latency {pa.p50_us / pb.p50_us:.3f}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=10_000, help="measured calls per mode and target (default 10000)")
    parser.add_argument("--warmup", type=int, default=stdio_echo.DEFAULT_WARMUP, help="unmeasured calls first, per mode")
    parser.add_argument("--depth", type=int, default=stdio_echo.DEFAULT_DEPTH, help="requests in flight when pipelined")
    parser.add_argument("--rounds", type=int, default=10, help="rounds the targets take turns in (default 10)")
    parser.add_argument("--baseline", action="append", default=[], metavar="[NAME=]DIR",
                        help="another checkout of mcp-trio to measure beside (its mcp_trio/ is imported; repeatable)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write every number here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tracing-cost-pycache-") as pycache:
        results = trio.run(run, args, stdio_echo.child_env(pycache))
    report(results)
    if args.json:
        import msgspec

        args.json.write_bytes(msgspec.json.encode({name: result for name, result in results.items()}))
    return 1 if any(r.failure for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
