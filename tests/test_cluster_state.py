"""Cluster mode's building blocks against a real redis-server: session profiles with expiry,
capped event streams with replay, the bus under trio (through a Redis restart), tasks across
workers, cluster-wide counters. Two ``Cluster`` objects stand for two workers."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from mcp_trio.cluster import (
    Cluster,
    ClusterBus,
    ClusterCounters,
    ClusterSettings,
    EventLog,
    ListChanged,
    RedisUnavailable,
    Resync,
    SessionDeleted,
    SessionEvent,
    SessionGone,
    SessionStore,
    TaskStore,
    TooManySubscriptions,
    ToolsSwitched,
    open_cluster,
)
from mcp_trio.protocol._errors import ServerOverloaded
from mcp_trio.protocol._session import ClientProfile
from mcp_trio.protocol._types import Implementation
from tests.cluster_fixtures import RedisServer

PROFILE = ClientProfile("2025-11-25", {"sampling": {}, "roots": {"listChanged": True}}, Implementation(name="c", version="1"))


@asynccontextmanager
async def worker(url: str, **settings: object) -> AsyncIterator[Cluster]:
    async with open_cluster(ClusterSettings(redis_url=url, key_prefix="st:", **settings)) as cluster:  # type: ignore[arg-type]
        yield cluster


# -- sessions -------------------------------------------------------------------------------------


async def test_a_session_made_on_one_worker_is_served_by_another(redis_server: RedisServer) -> None:
    with trio.fail_after(10):
        async with worker(redis_server.url) as one, worker(redis_server.url) as two:
            assert await SessionStore(one).create("sid-1", PROFILE, owner="user:ann")
            assert not await SessionStore(one).create("sid-1", PROFILE), "an id is never reused"
            other = SessionStore(two)
            await other.set_log_level("sid-1", "warning")
            await other.subscribe("sid-1", "file:///a")
            await other.subscribe("sid-1", "file:///b")
            await other.unsubscribe("sid-1", "file:///a")
            record = await SessionStore(one).get("sid-1")
            assert record is not None
            assert (record.profile, record.owner, record.log_level, record.subscriptions) == (
                PROFILE, "user:ann", "warning", frozenset({"file:///b"}))
            assert await SessionStore(two).get("unknown") is None


async def test_sessions_expire_unless_used_and_delete_ends_them_everywhere(redis_server: RedisServer) -> None:
    with trio.fail_after(10):
        async with worker(redis_server.url, session_ttl=0.4) as one, worker(redis_server.url, session_ttl=0.4) as two:
            sessions, events = SessionStore(one), EventLog(one)
            await sessions.create("busy", PROFILE)
            await sessions.create("idle", PROFILE)
            await events.append("busy", 0, b"{}")
            for _ in range(4):  # 0.6 s in all: used every 0.15 s, "busy" stays
                await trio.sleep(0.15)
                assert await sessions.get("busy") is not None
            assert await sessions.get("idle") is None
            assert 0 < int(redis_server.cli("PTTL", "st:s:{busy}:ev")) <= 400, "the events expire with the session"
            assert await SessionStore(two).delete("busy")
            assert await sessions.get("busy") is None and redis_server.cli("EXISTS", "st:s:{busy}:ev") == "0"
            # A late write on another worker does not bring a deleted session back.
            with pytest.raises(SessionGone):
                await sessions.subscribe("busy", "file:///x")
            assert await events.append("busy", 0, b"{}") is None
            assert redis_server.cli("EXISTS", "st:s:{busy}") == "0"


async def test_subscriptions_per_session_are_capped(redis_server: RedisServer) -> None:
    with trio.fail_after(10):
        async with worker(redis_server.url, max_subscriptions=3) as one:
            sessions = SessionStore(one)
            await sessions.create("s", PROFILE)
            for uri in ("a", "b", "c", "c"):  # a repeat is no new subscription
                await sessions.subscribe("s", uri)
            with pytest.raises(TooManySubscriptions, match="at most 3"):
                await sessions.subscribe("s", "d")
            await sessions.unsubscribe("s", "a")
            await sessions.subscribe("s", "d")
            record = await sessions.get("s")
    assert record is not None and record.subscriptions == {"b", "c", "d"}


# -- events -----------------------------------------------------------------------------------------


async def test_events_replay_after_an_id_from_any_worker_and_are_capped(redis_server: RedisServer) -> None:
    with trio.fail_after(10):
        async with worker(redis_server.url, events_per_session=5) as one, worker(redis_server.url) as two:
            await SessionStore(one).create("s", PROFILE)
            log_one, log_two = EventLog(one), EventLog(two)
            ids = []
            for i in range(3):
                ids.append(await log_one.append("s", 0, b'{"n":%d}' % i))
                ids.append(await log_two.append("s", 7, b'{"m":%d}' % i))
            assert ids == sorted(ids, key=lambda x: tuple(map(int, x.split("-")))), "ids increase across workers"
            after = await log_two.after("s", ids[1])
            assert [event.id for event in after] == ids[2:]
            assert [event.data for event in await log_one.after("s", ids[0], stream=0)] == [b'{"n":1}', b'{"n":2}']
            for i in range(300):
                await log_one.append("s", 0, b"x")
            kept = await log_one.after("s", count=1000)
            # MAXLEN ~ trims whole nodes: a few more than the cap may stay, never unbounded.
            assert 5 <= len(kept) <= 120 and int(redis_server.cli("XLEN", "st:s:{s}:ev")) == len(kept)
            with pytest.raises(ValueError, match="malformed event id"):
                await log_one.after("s", "1-0\r\nFLUSHALL")


# -- the bus ------------------------------------------------------------------------------------------


async def test_the_bus_reaches_other_workers_and_resubscribes_after_redis_restarts(redis_server: RedisServer) -> None:
    heard: list[object] = []
    arrived = trio.Event()

    async def handler(event: object) -> None:
        heard.append(event)
        if isinstance(event, ListChanged):
            raise RuntimeError("a handler's failure must not stop the bus")
        arrived.set()

    with trio.fail_after(20):
        async with worker(redis_server.url) as one, worker(redis_server.url) as two, trio.open_nursery() as nursery:
            bus_one, bus_two = ClusterBus(one), ClusterBus(two, reconnect_delay=0.05)
            await nursery.start(bus_one.run, handler)
            await nursery.start(bus_two.run, handler)
            assert await bus_one.publish(ListChanged(("tools",))) == 2  # both subscribed
            assert await bus_one.publish(ToolsSwitched(enabled=False, tags=("beta",))) == 2
            await arrived.wait()
            assert heard == [ListChanged(("tools",)), ToolsSwitched(enabled=False, tags=("beta",))], "only the other node hears it"
            assert bus_two.received == 2 and bus_one.received == 0

            redis_server.restart()
            while not any(isinstance(event, Resync) for event in heard):
                await trio.sleep(0.02)
            while await one.client.pubsub_numsub(one.keys.bus()) != {one.keys.bus().encode(): 2}:
                await trio.sleep(0.02)  # bus_one subscribes again too (it is its own listener)
            arrived = trio.Event()
            await bus_two.publish(SessionDeleted("sid-9"))
            await arrived.wait()
            assert heard[-1] == SessionDeleted("sid-9") and bus_one.resubscribed == 1
            nursery.cancel_scope.cancel()


async def test_bus_messages_are_bounded(redis_server: RedisServer) -> None:
    with trio.fail_after(10):
        async with worker(redis_server.url, max_bus_message=200) as one:
            bus = ClusterBus(one)
            with pytest.raises(ValueError, match="exceeds cluster.max_bus_message"):
                await bus.publish(SessionEvent("x" * 300, 0))
            with pytest.raises(TypeError):
                await bus.publish(Resync("no"))


async def test_the_bus_fails_to_start_without_redis(redis_server: RedisServer) -> None:
    with trio.fail_after(10):
        async with worker(redis_server.url) as one:
            redis_server.stop()
            with pytest.raises(RedisUnavailable, match="cluster bus: cannot reach Redis"):
                await ClusterBus(one).run(lambda event: trio.sleep(0))


# -- tasks ------------------------------------------------------------------------------------------


async def test_tasks_are_read_and_cancelled_from_any_worker_and_settle_once(redis_server: RedisServer) -> None:
    with trio.fail_after(10):
        async with worker(redis_server.url) as runner, worker(redis_server.url) as other:
            mine, theirs = TaskStore(runner), TaskStore(other)
            assert await mine.create("user:ann", "t1", node=runner.node_id, created_at="T0")
            assert not await mine.create("user:ann", "t1", node=runner.node_id, created_at="T0")
            task = await theirs.get("user:ann", "t1")
            assert task is not None and (task.status, task.node, task.result) == ("working", runner.node_id, None)
            assert await theirs.get("user:bob", "t1") is None, "another caller's task is unknown"
            assert await mine.update("user:ann", "t1", "input_required", updated_at="T1", input_requests=b'{"q":{}}') == "input_required"
            assert await theirs.cancel("user:ann", "t1", updated_at="T2") == "cancelled"
            # The result arriving after the cancel does not overwrite it.
            assert await mine.update("user:ann", "t1", "completed", updated_at="T3", result=b'{"content":[]}') == "cancelled"
            task = await mine.get("user:ann", "t1")
            assert task is not None and (task.status, task.updated_at, task.result) == ("cancelled", "T2", None)
            assert await theirs.cancel("user:ann", "nope", updated_at="T4") is None
            ttl_ms = int(redis_server.cli("PTTL", "st:t:{user:ann}:t1"))
            assert 590_000 < ttl_ms <= 600_000


async def test_tasks_per_caller_are_capped_and_expire(redis_server: RedisServer) -> None:
    with trio.fail_after(10):
        async with worker(redis_server.url, max_tasks_per_subject=2, task_ttl=0.3) as one:
            tasks = TaskStore(one)
            assert await tasks.create("ann", "a", node="n", created_at="T")
            assert await tasks.create("ann", "b", node="n", created_at="T")
            with pytest.raises(ServerOverloaded, match=r"too many tasks \(2\)"):
                await tasks.create("ann", "c", node="n", created_at="T")
            assert await tasks.create("bob", "c", node="n", created_at="T"), "the cap is per caller"
            await trio.sleep(0.35)
            assert await tasks.get("ann", "a") is None
            assert await tasks.create("ann", "c", node="n", created_at="T"), "expired tasks leave the index"


# -- counters -----------------------------------------------------------------------------------------


async def test_counters_sum_across_workers_and_are_capped(redis_server: RedisServer) -> None:
    with trio.fail_after(10):
        async with worker(redis_server.url, max_counters=3) as one, worker(redis_server.url, max_counters=3) as two:
            first, second = ClusterCounters(one), ClusterCounters(two)
            for _ in range(5):
                first.add("calls")
            first.add("tool:echo", 2)
            second.add("calls", 10)
            second.add("tool:slow")
            second.add("tool:extra")  # a fourth name: past the cap
            assert await first.flush() == 0
            assert await second.flush() == 1
            assert await first.totals() == {"calls": 15, "tool:echo": 2, "tool:slow": 1, "_dropped": 1}
            assert 0 < int(redis_server.cli("PTTL", "st:stats")) <= 7 * 24 * 3600 * 1000


async def test_counters_keep_their_sums_while_redis_is_away(redis_server: RedisServer) -> None:
    with trio.fail_after(15):
        async with worker(redis_server.url) as one:
            counters = ClusterCounters(one)
            counters.add("calls", 3)
            redis_server.stop()
            started = time.monotonic()
            with pytest.raises(RedisUnavailable):
                await counters.flush()
            assert time.monotonic() - started < 1.5
            counters.add("calls", 1)
            redis_server.start()
            await counters.flush()
            assert await counters.totals() == {"calls": 4}


async def test_counters_flush_by_themselves(redis_server: RedisServer) -> None:
    with trio.fail_after(10):
        async with worker(redis_server.url) as one, trio.open_nursery() as nursery:
            counters = ClusterCounters(one, flush_interval=0.05)
            await nursery.start(counters.run)
            counters.add("calls", 2)
            while await counters.totals() != {"calls": 2}:
                await trio.sleep(0.02)
            counters.add("calls")
            nursery.cancel_scope.cancel()
        assert redis_server.cli("HGET", "st:stats", "calls") == "3", "the last sums are sent at shutdown"


async def test_stores_through_a_redis_cluster(start_redis) -> None:  # type: ignore[no-untyped-def]
    """Each store's multi-key scripts and DEL keep to one hash slot on a real Redis Cluster."""
    from tests.test_cluster_connect import one_node_cluster

    node = await one_node_cluster(start_redis)
    with trio.fail_after(20):
        async with worker(f"redis+cluster://127.0.0.1:{node.port}") as one:
            sessions, events, tasks = SessionStore(one), EventLog(one), TaskStore(one)
            await sessions.create("s", PROFILE)
            await sessions.subscribe("s", "file:///a")
            first = await events.append("s", 0, b"{}")
            await events.append("s", 0, b"[]")
            assert [e.data for e in await events.after("s", first)] == [b"[]"]
            assert await tasks.create("ann", "t", node=one.node_id, created_at="T")
            assert await tasks.cancel("ann", "t", updated_at="T2") == "cancelled"
            counters = ClusterCounters(one)
            counters.add("calls")
            await counters.flush()
            assert await counters.totals() == {"calls": 1}
            assert await sessions.delete("s") and await sessions.get("s") is None
