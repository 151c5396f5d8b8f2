"""Per-call cost of the shared (Redis) rate limiter against the local one, under trio.

Usage::

    python bench/cluster_limiter.py [--rounds 5] [--decisions 2000] [--concurrency 1 16 64 256]

Starts its own ``redis-server`` on a free loopback port (Debian package ``redis-server``), then
for each concurrency level runs rounds that alternate local, shared, local, shared…: each round
makes ``--decisions`` decisions from that many concurrent tasks (callers spread over 100 keys,
rate high enough that nothing is refused, so every decision is a full charge). Reports the
median wall time and CPU time (this process: the client side) per decision, the round trips
the shared limiter took, and Redis's own time per script call (``INFO commandstats``).
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mcp_trio._limiter import RateLimits, RequestLimiter  # noqa: E402
from mcp_trio.cluster import ClusterSettings, SharedLimiter, open_cluster  # noqa: E402

POLICY = RateLimits(rate=1e9, burst=10)


def start_redis(directory: str) -> tuple[subprocess.Popen[bytes], int]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server not found: apt-get install redis-server")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                "--dir", directory], stdout=subprocess.DEVNULL)
    for _ in range(500):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return process, port
        except OSError:
            time.sleep(0.01)
    sys.exit("redis-server did not start")


async def timed(decide, decisions: int, concurrency: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(wall µs, CPU µs) per decision for ``decisions`` made by ``concurrency`` tasks."""
    per_task = decisions // concurrency

    async def worker(offset: int) -> None:
        for i in range(per_task):
            await decide(("user", str((offset + i) % 100)))

    wall, cpu = time.perf_counter(), time.process_time()
    async with trio.open_nursery() as nursery:
        for offset in range(concurrency):
            nursery.start_soon(worker, offset)
    total = per_task * concurrency
    return (time.perf_counter() - wall) / total * 1e6, (time.process_time() - cpu) / total * 1e6


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as directory:
        process, port = start_redis(directory)
        try:
            await run(args, port)
        finally:
            process.terminate()
            process.wait()


async def run(args: argparse.Namespace, port: int) -> None:
    local = RequestLimiter(POLICY)

    async def decide_local(key: object) -> float:
        await trio.lowlevel.checkpoint()  # as a request task would yield somewhere anyway
        return local.try_admit(key, trio.current_time())

    async with open_cluster(ClusterSettings(redis_url=f"redis://127.0.0.1:{port}/0", key_prefix="bench:")) as cluster:
        limiter = SharedLimiter(cluster, POLICY)
        async with trio.open_nursery() as nursery:
            await nursery.start(limiter.run)
            await timed(limiter.try_admit, 200, 1)  # warm up: script loaded, connection open
            print(f"{'concurrency':>11}  {'local µs wall/cpu':>18}  {'shared µs wall/cpu':>19}  {'decisions/round trip':>20}")
            for concurrency in args.concurrency:
                rows: dict[str, list[tuple[float, float]]] = {"local": [], "shared": []}
                trips_before, decisions_before = limiter.statistics.round_trips, limiter.statistics.decisions
                for _ in range(args.rounds):
                    rows["local"].append(await timed(decide_local, args.decisions, concurrency))
                    rows["shared"].append(await timed(limiter.try_admit, args.decisions, concurrency))
                per_trip = (limiter.statistics.decisions - decisions_before) / max(1, limiter.statistics.round_trips - trips_before)
                med = {name: (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))
                       for name, runs in rows.items()}
                print(f"{concurrency:>11}  {med['local'][0]:>8.1f} / {med['local'][1]:>7.1f}  "
                      f"{med['shared'][0]:>8.1f} / {med['shared'][1]:>8.1f}  {per_trip:>20.1f}")
            nursery.cancel_scope.cancel()
        stats = await cluster.client.info("commandstats")
        evalsha = stats.get("cmdstat_evalsha") or stats.get(b"cmdstat_evalsha")
        if evalsha:
            print(f"Redis time per script call: {evalsha['usec_per_call']} µs (server side, not in the figures above)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--decisions", type=int, default=2048)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64, 256])
    trio.run(main, parser.parse_args())
