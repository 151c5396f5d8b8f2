"""The shared rate limiter: the local GCRA buckets, kept in Redis for every process and host.

Same policy (``RateLimits``), same arithmetic, same answer as ``RequestLimiter.try_admit``: 0.0
admits and charges the caller's bucket (and the tool's own, when the tool has a rate), else the
seconds to wait, charging nothing. Each decision is one run of one Lua script, atomic on the
server, covering both buckets; the script reads the clock of Redis (``TIME``), so processes on
hosts whose clocks disagree still share one timeline. Values are exchanged as ``%.17g`` text,
which round-trips a double exactly, so Redis computes bit for bit what the local limiter does.

Decisions of concurrent requests are batched: ``try_admit`` queues its decision and waits; one
task (``run``) sends everything queued as one pipeline (one round trip), and while that is in
flight the next batch gathers. A burst of N concurrent requests costs a few round trips, not N.

When Redis cannot be reached (refused, lost, no answer within ``command_timeout``) the
decision follows ``ClusterSettings.on_unavailable``: ``"closed"`` raises ``RedisUnavailable``
(HTTP 503 with ``Retry-After``), ``"local"`` decides with this process's own buckets (so the
limit a caller sees is per process again until Redis is back). Redis is tried again after
``probe_interval``; meanwhile decisions are answered at once, not after a timeout each.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Hashable
from dataclasses import dataclass

import trio
from coredis.exceptions import NoScriptError, RedisError

from .._limiter import RateLimits, RequestLimiter
from ._client import UNREACHABLE, Cluster, describe
from ._errors import RedisUnavailable

logger = logging.getLogger("mcp_trio.cluster")

#: Decisions sent in one pipeline at most; the rest go in the next round trip.
DEFAULT_MAX_BATCH = 256
#: Milliseconds a bucket's key outlives the moment its bucket is full again (a full bucket and a
#: missing key mean the same, so the key may go; the slack absorbs clock steps of the caller).
KEY_SLACK_MS = 1000

#: KEYS: the buckets (caller's, then the tool's), each with three ARGV: interval, tolerance
#: (burst * interval) and cost. ARGV[1]: "now" in seconds, or "" for Redis's clock; ARGV[2]: slack.
#: Returns "0" (admitted, every bucket charged) or the wait in seconds (nothing charged).
GCRA_SCRIPT = """
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
else
  now = tonumber(ARGV[1])
end
local slack = tonumber(ARGV[2])
local tats = {}
local wait = 0
for i = 1, #KEYS do
  local base = 2 + (i - 1) * 3
  local interval = tonumber(ARGV[base + 1])
  local tolerance = tonumber(ARGV[base + 2])
  local cost = tonumber(ARGV[base + 3])
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  local w = tat - now - tolerance + interval * (cost - 1)
  if w > wait then wait = w end
  tats[i] = tat + interval * cost
end
if wait > 1e-9 then
  return string.format('%.17g', wait)
end
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], string.format('%.17g', tats[i]), 'PX', math.ceil((tats[i] - now) * 1000) + slack)
end
return '0'
"""
GCRA_SHA = hashlib.sha1(GCRA_SCRIPT.encode()).hexdigest()


def _exact(value: float) -> str:
    return "%.17g" % value


@dataclass(slots=True)
class LimiterStatistics:
    """What the shared limiter did: decisions, the round trips they took, the failures."""

    decisions: int = 0
    #: Pipelines sent to Redis (a batch of concurrent decisions is one).
    round_trips: int = 0
    largest_batch: int = 0
    #: Decisions answered by the failure policy because Redis was unreachable.
    unavailable: int = 0
    #: Of those, decided by this process's own buckets (``on_unavailable = "local"``).
    local: int = 0


class _Decision:
    __slots__ = ("keys", "args", "key", "tool", "now", "done", "wait", "error")

    def __init__(self, keys: list[str], args: list[str], key: Hashable, tool: str | None, now: float | None) -> None:
        self.keys = keys
        self.args = args
        self.key = key
        self.tool = tool
        self.now = now
        self.done = trio.Event()
        self.wait = 0.0
        self.error: RedisUnavailable | None = None


class SharedLimiter:
    """``RequestLimiter`` semantics on Redis, for every process that shares the key prefix.

    Start ``run`` in a nursery (it sends the batches) before calling ``try_admit``.
    """

    def __init__(self, cluster: Cluster, policy: RateLimits, *, max_batch: int = DEFAULT_MAX_BATCH) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._cluster = cluster
        self._keys = cluster.keys
        self._settings = cluster.settings
        self._max_batch = max_batch
        self._principal = self._spec(policy.rate, policy.burst) if policy.rate is not None else None
        #: tool name -> (cost, the tool bucket's (interval, tolerance) or None)
        self._tools = {
            name: (tool.cost, self._spec(tool.rate, tool.burst) if tool.rate is not None else None)
            for name, tool in policy.tools.items()
        }
        self._fallback = RequestLimiter(policy) if self._settings.on_unavailable == "local" else None
        self._pending: list[_Decision] = []
        self._wake = trio.Event()
        self._running = False
        self._down_until = -math.inf
        self._down_reason: str | None = None
        self.statistics = LimiterStatistics()

    @staticmethod
    def _spec(rate: float, burst: int) -> tuple[str, str]:
        interval = 1.0 / rate
        return _exact(interval), _exact(burst * interval)

    # -- the decision ------------------------------------------------------------------------
    async def try_admit(self, key: Hashable, tool: str | None = None, *, now: float | None = None) -> float:
        """0.0: admitted and charged; else the seconds to wait (nothing charged).

        ``key`` is the caller (a string or a tuple, as ``Supervisor.rate_key`` gives);
        ``now`` (seconds) replaces Redis's clock, for tests that replay a timeline.
        Raises ``RedisUnavailable`` when Redis is unreachable and the policy is "closed".
        """
        cost = 1.0
        tool_spec = None
        if tool is not None:
            entry = self._tools.get(tool)
            if entry is not None:
                cost, tool_spec = entry
        principal = self._principal
        if principal is None and tool_spec is None:
            return 0.0
        keys: list[str] = []
        args = ["" if now is None else _exact(now), str(KEY_SLACK_MS)]
        if principal is not None:
            keys.append(self._keys.bucket(key))
            args += [principal[0], principal[1], _exact(cost)]
        if tool_spec is not None:
            keys.append(self._keys.tool_bucket(key, tool))  # type: ignore[arg-type]
            args += [tool_spec[0], tool_spec[1], "1"]
        decision = _Decision(keys, args, key, tool, now)
        self.statistics.decisions += 1
        if trio.current_time() < self._down_until:
            self._by_policy(decision)
        else:
            if not self._running:
                raise RuntimeError("SharedLimiter.run is not running: start it in a nursery first")
            self._pending.append(decision)
            self._wake.set()
            await decision.done.wait()
        if decision.error is not None:
            raise decision.error
        return decision.wait

    def _by_policy(self, decision: _Decision, reason: str | None = None) -> None:
        """Answer a decision without Redis: the local buckets, or ``RedisUnavailable``."""
        self.statistics.unavailable += 1
        if self._fallback is not None:
            self.statistics.local += 1
            now = trio.current_time() if decision.now is None else decision.now
            decision.wait = self._fallback.try_admit(decision.key, now, decision.tool)
        else:
            decision.error = RedisUnavailable(
                f"shared rate limits unavailable: {reason or self._down_reason}", self._settings.probe_interval)
        decision.done.set()

    # -- the batcher -------------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Send queued decisions to Redis, a pipeline per batch, until cancelled."""
        if self._running:
            raise RuntimeError("SharedLimiter.run is already running")
        self._running = True
        task_status.started()
        try:
            while True:
                await self._wake.wait()
                self._wake = trio.Event()
                while self._pending:
                    batch = self._pending[: self._max_batch]
                    del self._pending[: self._max_batch]
                    await self._send(batch)
        finally:
            self._running = False
            stopped = RedisUnavailable("shared rate limits unavailable: the limiter stopped", self._settings.probe_interval)
            for decision in self._pending:
                decision.error = stopped
                decision.done.set()
            self._pending.clear()

    async def _send(self, batch: list[_Decision]) -> None:
        stats = self.statistics
        stats.largest_batch = max(stats.largest_batch, len(batch))
        try:
            try:
                with trio.fail_after(self._settings.command_timeout):
                    results = await self._pipeline(batch)
                    missing = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
                    if missing:  # a restarted (or flushed) Redis forgot the script: load it once
                        await self._cluster.client.script_load(GCRA_SCRIPT)
                        again = await self._pipeline([batch[i] for i in missing])
                        for i, result in zip(missing, again):
                            results[i] = result
            except (*UNREACHABLE, trio.TooSlowError, RedisError) as error:
                self._mark_down(error)
                for decision in batch:
                    self._by_policy(decision)
                return
            if self._down_reason is not None:
                logger.info("shared rate limits: Redis at %s answers again", self._settings.where)
                self._down_reason = None
            failed: BaseException | None = None
            for decision, result in zip(batch, results):
                if isinstance(result, BaseException):
                    failed = result
                    self._by_policy(decision, f"Redis at {self._settings.where} refused it ({result})")
                else:
                    decision.wait = float(result)
                    decision.done.set()
            if failed is not None:
                logger.warning("shared rate limits: Redis refused a decision (%s)", failed)
        finally:
            # Cancelled mid-flight: no request may wait for an answer that will not come.
            for decision in batch:
                if not decision.done.is_set():
                    decision.error = RedisUnavailable("shared rate limits unavailable: the limiter stopped",
                                                      self._settings.probe_interval)
                    decision.done.set()

    async def _pipeline(self, batch: list[_Decision]) -> list[object]:
        self.statistics.round_trips += 1
        client = self._cluster.client
        async with client.pipeline(transaction=False, raise_on_error=False) as pipe:
            for decision in batch:
                pipe.evalsha(GCRA_SHA, decision.keys, decision.args)
        return list(pipe.results or ())

    def _mark_down(self, error: BaseException) -> None:
        reason = describe(error, self._settings)
        if self._down_reason is None:
            policy = ("deciding with this process's own buckets" if self._fallback is not None
                      else "refusing requests with 503")
            logger.warning("shared rate limits: %s; %s until it answers (cluster.on_unavailable = %s)",
                           reason, policy, self._settings.on_unavailable)
        self._down_reason = reason
        self._down_until = trio.current_time() + self._settings.probe_interval
