"""Cluster-wide counters for statistics, summed across every process.

The hot path only adds to a local dict (``add``: no await, no round trip); ``run`` sends the
sums to one Redis hash (``Keys.counters``) every ``flush_interval`` in one script call, so a
counter costs Redis one ``HINCRBY`` per name per interval per process, not one per request.
The hash lives ``stats_ttl`` after its last update and holds at most ``max_counters`` names;
a new name past the cap is dropped (and counted under ``_dropped``). When Redis is away the
sums are kept and sent with the next flush.
"""

from __future__ import annotations

import logging

import trio

from ._client import Cluster
from ._errors import RedisUnavailable

logger = logging.getLogger("mcp_trio.cluster")

#: Seconds between two flushes of this process's sums.
DEFAULT_FLUSH_INTERVAL = 1.0
#: The field counting names dropped at the cap.
DROPPED = "_dropped"

#: KEYS: the hash; ARGV: ttl ms, cap, then name/delta pairs. Returns how many names were dropped.
_FLUSH = """
local dropped = 0
local size = redis.call('HLEN', KEYS[1])
for i = 3, #ARGV, 2 do
  local exists = redis.call('HEXISTS', KEYS[1], ARGV[i]) == 1
  if exists or size < tonumber(ARGV[2]) then
    redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
    if not exists then size = size + 1 end
  else
    dropped = dropped + 1
  end
end
if dropped > 0 then redis.call('HINCRBY', KEYS[1], '_dropped', dropped) end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return dropped
"""


class ClusterCounters:
    """Add locally, flush periodically, read the cluster's totals."""

    def __init__(self, cluster: Cluster, *, flush_interval: float = DEFAULT_FLUSH_INTERVAL) -> None:
        self._cluster = cluster
        self._key = cluster.keys.counters()
        self._settings = cluster.settings
        self._interval = flush_interval
        self._pending: dict[str, int] = {}
        self._flush = cluster.client.register_script(_FLUSH)
        self._failing = False

    def add(self, name: str, amount: int = 1) -> None:
        """Count ``amount`` under ``name`` (sent with the next flush). Never awaits."""
        pending = self._pending
        if name in pending:
            pending[name] += amount
        elif len(pending) < self._settings.max_counters:
            pending[name] = amount
        else:
            pending[DROPPED] = pending.get(DROPPED, 0) + 1

    async def flush(self) -> int:
        """Send the sums now; how many names Redis dropped at the cap. Kept on failure."""
        pending, self._pending = self._pending, {}
        if not pending:
            return 0
        args: list[str | int] = [str(round(self._settings.stats_ttl * 1000)), str(self._settings.max_counters)]
        for name, amount in pending.items():
            args += [name, amount]
        try:
            with self._cluster.reaching():
                return int(await self._flush(keys=[self._key], args=args))
        except BaseException:
            for name, amount in pending.items():  # put back what was not sent
                self.add(name, amount)
            raise

    async def totals(self) -> dict[str, int]:
        """Every counter of the cluster (all processes' flushed sums)."""
        with self._cluster.reaching():
            fields = await self._cluster.client.hgetall(self._key)
        return {name.decode(): int(value) for name, value in fields.items()}

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Flush every ``flush_interval`` until cancelled (then once more, shielded briefly)."""
        task_status.started()
        try:
            while True:
                await trio.sleep(self._interval)
                await self._flush_logged()
        finally:
            with trio.move_on_after(self._settings.command_timeout) as scope:
                scope.shield = True
                await self._flush_logged()

    async def _flush_logged(self) -> None:
        try:
            await self.flush()
        except RedisUnavailable as error:
            if not self._failing:
                logger.warning("cluster counters: %s; keeping the sums until it answers", error)
            self._failing = True
        else:
            if self._failing:
                logger.info("cluster counters: flushing again")
            self._failing = False
