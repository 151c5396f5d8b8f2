"""One OS process of the shared-limiter burst test (tests/test_cluster_limiter.py).

``python -m tests.cluster_burst_worker URL PREFIX RATE BURST REQUESTS``: connects, prints
``ready``, waits for ``go`` on stdin, then makes REQUESTS concurrent decisions for one caller
and prints ``{"admitted": N, "waits": [...]}`` as one JSON line.
"""

from __future__ import annotations

import json
import sys

import trio

from mcp_trio._limiter import RateLimits
from mcp_trio.cluster import ClusterSettings, SharedLimiter, open_cluster


async def main(url: str, prefix: str, rate: float, burst: int, requests: int) -> None:
    async with open_cluster(ClusterSettings(redis_url=url, key_prefix=prefix)) as cluster:
        limiter = SharedLimiter(cluster, RateLimits(rate=rate, burst=burst))
        async with trio.open_nursery() as nursery:
            await nursery.start(limiter.run)
            print("ready", flush=True)
            await trio.to_thread.run_sync(sys.stdin.readline)
            waits: list[float] = []

            async def decide() -> None:
                waits.append(await limiter.try_admit(("user", "burst")))

            async with trio.open_nursery() as burst_nursery:
                for _ in range(requests):
                    burst_nursery.start_soon(decide)
            print(json.dumps({"admitted": waits.count(0.0), "waits": waits,
                              "round_trips": limiter.statistics.round_trips}), flush=True)
            nursery.cancel_scope.cancel()


if __name__ == "__main__":
    url, prefix, rate, burst, requests = sys.argv[1:]
    trio.run(main, url, prefix, float(rate), int(burst), int(requests))
