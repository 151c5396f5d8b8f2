"""The shared GCRA limiter against a real redis-server: the local limiter's answers, exactly,
for every process; batched round trips; and what happens when Redis goes away mid-run."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from mcp_trio._limiter import RateLimits, RequestLimiter, ToolLimit
from mcp_trio.cluster import Cluster, ClusterSettings, RedisUnavailable, SharedLimiter, open_cluster
from tests.cluster_fixtures import RedisServer

REPO = Path(__file__).resolve().parent.parent


@asynccontextmanager
async def shared(url: str, policy: RateLimits, **settings: object) -> AsyncIterator[tuple[SharedLimiter, Cluster]]:
    async with open_cluster(ClusterSettings(redis_url=url, **settings)) as cluster:  # type: ignore[arg-type]
        limiter = SharedLimiter(cluster, policy)
        async with trio.open_nursery() as nursery:
            await nursery.start(limiter.run)
            yield limiter, cluster
            nursery.cancel_scope.cancel()


def random_policy(rng: random.Random) -> RateLimits:
    burst = rng.choice([0, 1, 3, 10])
    tools = {
        "cheap": ToolLimit(),
        # A cost above burst + 1 could never pass: RateLimits refuses it.
        "costly": ToolLimit(cost=rng.choice([min(2.0, burst + 1), 0.5, float(burst + 1)])),
        "own": ToolLimit(rate=rng.choice([0.5, 2.0, 7.0]), burst=rng.choice([0, 2])),
        "both": ToolLimit(cost=rng.choice([1.5, 2.0]) if burst else 1.0, rate=3.0, burst=1),
    }
    rate = rng.choice([None, 1.0, 3.0, 10.0, 0.7])
    return RateLimits(rate=rate, burst=burst, tools=tools)


@pytest.mark.parametrize("seed", range(6))
async def test_same_answers_as_the_local_limiter(redis_server: RedisServer, seed: int) -> None:
    """A replayed timeline (same instants, callers, tools) gets bit-for-bit the local answers."""
    rng = random.Random(seed)
    policy = random_policy(rng)
    local = RequestLimiter(policy)
    now = 1000.0 + rng.random()
    with trio.fail_after(20):
        async with shared(redis_server.url, policy, key_prefix=f"eq{seed}:") as (limiter, _):
            for _ in range(150):
                now += rng.choice([0.0, 0.0, 0.01, 0.1, 0.333, 1.0])
                key = rng.choice([("user", "ann"), ("user", "bob"), ("peer", "10.0.0.1")])
                tool = rng.choice([None, "cheap", "costly", "own", "both", "unlisted"])
                expected = local.try_admit(key, now, tool)
                assert await limiter.try_admit(key, tool, now=now) == expected, (now, key, tool)


async def test_burst_plus_one_then_the_wait_on_redis_clock(redis_server: RedisServer) -> None:
    """On Redis's own clock: ``burst + 1`` pass, then the wait is about one interval."""
    with trio.fail_after(10):
        async with shared(redis_server.url, RateLimits(rate=2.0, burst=4)) as (limiter, _):
            waits = [await limiter.try_admit(("user", "ann")) for _ in range(6)]
    assert waits[:5] == [0.0] * 5
    assert 0.4 < waits[5] <= 0.5


async def test_concurrent_decisions_share_round_trips(redis_server: RedisServer) -> None:
    """64 requests deciding at once take a couple of pipelines, not 64 round trips, and the
    bucket still admits exactly ``burst + 1`` of them."""
    with trio.fail_after(10):
        async with shared(redis_server.url, RateLimits(rate=0.001, burst=9)) as (limiter, _):
            waits: list[float] = []

            async def decide() -> None:
                waits.append(await limiter.try_admit(("user", "ann"), "echo"))

            async with trio.open_nursery() as nursery:
                for _ in range(64):
                    nursery.start_soon(decide)
    stats = limiter.statistics
    assert waits.count(0.0) == 10 and len(waits) == 64
    assert stats.decisions == 64 and stats.round_trips <= 2 and stats.largest_batch >= 32


async def test_keys_expire_when_the_bucket_is_full_again(redis_server: RedisServer) -> None:
    with trio.fail_after(10):
        async with shared(redis_server.url, RateLimits(rate=10.0, burst=4, tools={"t": ToolLimit(rate=5.0)}),
                          key_prefix="ttl:") as (limiter, _):
            assert await limiter.try_admit(("user", "ann"), "t") == 0.0
    ttl_ms = int(redis_server.cli("PTTL", "ttl:rl:{user|ann}"))
    tool_ttl_ms = int(redis_server.cli("PTTL", "ttl:rl:{user|ann}:t"))
    # One token taken: full again after one interval (100 ms, 200 ms), plus the slack (1 s).
    assert 900 < ttl_ms <= 1100 and 1000 < tool_ttl_ms <= 1200


async def test_burst_over_four_processes_admits_exactly_the_bucket(redis_server: RedisServer) -> None:
    """N + k requests from 4 OS processes at once for one caller: exactly N admitted."""
    burst, processes, each = 49, 4, 20  # bucket of 50; 80 requests
    command = [sys.executable, "-m", "tests.cluster_burst_worker", redis_server.url, "burst:", "0.001", str(burst), str(each)]
    workers = [subprocess.Popen(command, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
               for _ in range(processes)]
    try:
        for worker in workers:
            assert worker.stdout is not None and worker.stdout.readline().strip() == "ready"
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        reports = []
        for worker in workers:
            assert worker.stdout is not None
            reports.append(json.loads(worker.stdout.readline()))
            assert worker.wait(30) == 0
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    assert sum(report["admitted"] for report in reports) == burst + 1
    refused = [wait for report in reports for wait in report["waits"] if wait]
    assert len(refused) == processes * each - (burst + 1) and all(wait > 0 for wait in refused)


async def test_redis_stopped_mid_run_fails_closed_then_recovers(redis_server: RedisServer) -> None:
    policy = RateLimits(rate=100.0, burst=100)
    with trio.fail_after(20):
        async with shared(redis_server.url, policy, probe_interval=0.3, command_timeout=1.0) as (limiter, _):
            assert await limiter.try_admit(("user", "ann")) == 0.0
            redis_server.stop()
            started = time.monotonic()
            with pytest.raises(RedisUnavailable) as caught:
                await limiter.try_admit(("user", "ann"))
            assert time.monotonic() - started < 1.0
            message = str(caught.value)
            assert message.startswith(f"shared rate limits unavailable: cannot reach Redis at {limiter._settings.where}")
            assert caught.value.code == -32030 and caught.value.data == {"retryAfterMs": 300}
            # Within the probe interval, refusals come at once, with no round trip.
            trips = limiter.statistics.round_trips
            with pytest.raises(RedisUnavailable):
                await limiter.try_admit(("user", "bob"))
            assert limiter.statistics.round_trips == trips
            # Redis is back (empty, its script cache too): decisions go to it again.
            redis_server.start()
            await trio.sleep(0.35)
            assert await limiter.try_admit(("user", "ann")) == 0.0
            assert redis_server.cli("EXISTS", f"{limiter._settings.key_prefix}rl:{{user|ann}}") == "1"
    assert limiter.statistics.unavailable == 2


async def test_redis_stopped_mid_run_with_local_fallback(redis_server: RedisServer) -> None:
    """``on_unavailable = "local"``: this process's own buckets decide, with their semantics."""
    with trio.fail_after(20):
        async with shared(redis_server.url, RateLimits(rate=0.001, burst=2), on_unavailable="local") as (limiter, _):
            assert await limiter.try_admit(("user", "ann")) == 0.0
            redis_server.stop()
            waits = [await limiter.try_admit(("user", "ann")) for _ in range(4)]
    # The local bucket starts full: burst + 1 = 3 admitted, then a wait of about one interval.
    assert waits[:3] == [0.0, 0.0, 0.0] and waits[3] > 900
    assert limiter.statistics.local == 4


async def test_unlimited_requests_never_reach_redis(redis_server: RedisServer) -> None:
    """No per-caller rate and a tool without its own: admitted without a round trip."""
    with trio.fail_after(10):
        async with shared(redis_server.url, RateLimits(tools={"t": ToolLimit(cost=2.0)})) as (limiter, _):
            assert await limiter.try_admit(("user", "ann"), "t") == 0.0
            assert await limiter.try_admit(("user", "ann")) == 0.0
    assert limiter.statistics.round_trips == 0


async def test_a_decision_needs_the_batcher(redis_server: RedisServer) -> None:
    with trio.fail_after(10):
        async with open_cluster(ClusterSettings(redis_url=redis_server.url)) as cluster:
            limiter = SharedLimiter(cluster, RateLimits(rate=1.0))
            with pytest.raises(RuntimeError, match="start it in a nursery"):
                await limiter.try_admit("k")


async def test_through_a_redis_cluster(start_redis) -> None:  # type: ignore[no-untyped-def]
    """Redis Cluster (one real node holding every slot): the script's two keys share a hash
    slot, the batch goes as a cluster pipeline, and a flushed script cache is reloaded."""
    from tests.test_cluster_connect import one_node_cluster

    node = await one_node_cluster(start_redis)
    policy = RateLimits(rate=0.001, burst=2, tools={"t": ToolLimit(rate=0.001, burst=1)})
    with trio.fail_after(20):
        async with shared(f"redis+cluster://127.0.0.1:{node.port}", policy) as (limiter, _):
            waits = [await limiter.try_admit(("user", "a{b}c"), "t") for _ in range(3)]
            node.cli("SCRIPT", "FLUSH")
            assert await limiter.try_admit(("user", "ann")) == 0.0
    assert waits[:2] == [0.0, 0.0] and waits[2] > 900
    assert node.cli("EXISTS", "mcp-trio:rl:{user|a%7Bb%7Dc}:t") == "1"


async def test_a_frozen_redis_fails_closed_after_the_command_timeout(redis_server: RedisServer) -> None:
    """Redis stops answering (SIGSTOP) mid-run: the batch gives up at ``command_timeout``, the
    request is refused; once Redis answers again, so do decisions (on a fresh connection)."""
    import signal

    assert redis_server.process is not None
    with trio.fail_after(20):
        async with shared(redis_server.url, RateLimits(rate=100.0, burst=10), command_timeout=0.3,
                          probe_interval=0.2) as (limiter, _):
            assert await limiter.try_admit("ann") == 0.0
            redis_server.process.send_signal(signal.SIGSTOP)
            try:
                started = time.monotonic()
                with pytest.raises(RedisUnavailable, match="did not answer in time"):
                    await limiter.try_admit("ann")
                # After command_timeout (0.3 s), not before; the upper bound only says it did not
                # wait for Redis (a loaded 2-core machine took 1.08 s once)
                assert 0.25 < time.monotonic() - started < 5.0
            finally:
                redis_server.process.send_signal(signal.SIGCONT)
            await trio.sleep(0.25)
            assert await limiter.try_admit("ann") == 0.0
            assert await limiter.try_admit("bob") == 0.0


async def test_admission_takes_a_shared_limiter_as_it_is(redis_server: RedisServer) -> None:
    """Cluster mode's seam: the kernel's admission awaits a shared limiter (one round trip per
    decision) when one is given, with no other change on the request path."""
    from mcp_trio import Server
    from tests.helpers import serve_in_memory

    app = Server("shared")

    @app.tool
    async def echo(text: str) -> str:
        return text

    policy = RateLimits(rate=1, burst=2)
    with trio.fail_after(20):
        async with shared(redis_server.url, policy, key_prefix="adm:") as (limiter, _):
            async with serve_in_memory(app, shared_limiter=limiter) as (client, supervisor, connection):
                connection.peer = "10.0.0.9"  # an anonymous caller's bucket is its address's
                await client.initialize()
                codes = []
                for _ in range(3):
                    reply = await client.request("tools/call", {"name": "echo", "arguments": {"text": "x"}})
                    codes.append(reply["error"]["code"] if "error" in reply else 0)
                # burst 2: three pass, initialize included (charged like any request, as with
                # local buckets); the third call waits (decided in Redis)
                assert codes == [0, 0, -32029]
                assert supervisor.admission.active and supervisor.admission.limiter is None
                supervisor.shutdown()
