"""The control plane's shared state: tool switches, and which server processes are alive.

* ``SwitchStore``: the tools and tags switched off (``/admin``), in one hash
  (``Keys.switches``), so a process that starts, or that lost the bus for a while (a
  ``Resync``), reads the cluster's switches instead of trusting what it last heard. Capped at
  ``max_switches`` entries; switching on deletes the entry. It has no expiry: the switches
  are the cluster's state, kept across restarts of its processes (``key_prefix`` separates
  services).
* ``NodeRegistry``: each process beats every ``node_ttl / 3`` (a key that expires after
  ``node_ttl``, and a sorted set by last beat), so others can tell a process that stopped
  (``kill -9``, a lost host) from a slow one: the tasks a dead process was running are then
  reported failed, never left ``working`` for good.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import trio

from ._client import Cluster
from ._errors import RedisUnavailable

logger = logging.getLogger("mcp_trio.cluster")

_TOOL = "tool:"
_TAG = "tag:"

#: KEYS: the hash; ARGV: cap, then field names to set. Returns -1 (over the cap: nothing set) or 1.
_SWITCH_OFF = """
local new = 0
for i = 2, #ARGV do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 0 then new = new + 1 end
end
if new > 0 and redis.call('HLEN', KEYS[1]) + new > tonumber(ARGV[1]) then return -1 end
for i = 2, #ARGV do redis.call('HSET', KEYS[1], ARGV[i], '0') end
return 1
"""

#: KEYS: the node's key, the set of nodes; ARGV: node id, ttl ms. Beats, and forgets nodes
#: silent for ten periods (the set stays small however many processes came and went).
_BEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('SET', KEYS[1], now, 'PX', ttl)
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - 10 * ttl)
redis.call('PEXPIRE', KEYS[2], 10 * ttl)
return now
"""

#: KEYS: the set of nodes; ARGV: ttl ms. The nodes that beat within the last ttl.
_LIVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], now - tonumber(ARGV[1]), '+inf')
"""


class TooManySwitches(ValueError):
    """The cluster holds ``max_switches`` switches already."""


class SwitchStore:
    """The cluster's tool and tag switches (those switched off)."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster
        self._key = cluster.keys.switches()
        self._cap = cluster.settings.max_switches
        self._off = cluster.client.register_script(_SWITCH_OFF)

    async def set(self, enabled: bool, *, tools: Iterable[str] = (), tags: Iterable[str] = ()) -> None:
        """Switch tools and tags on (forget them) or off (``TooManySwitches`` past the cap)."""
        fields = [_TOOL + name for name in tools] + [_TAG + name for name in tags]
        if not fields:
            return
        with self._cluster.reaching():
            if enabled:
                await self._cluster.client.hdel(self._key, fields)
                return
            result = await self._off(keys=[self._key], args=[str(self._cap), *fields])
        if result == -1:
            raise TooManySwitches(f"the cluster holds {self._cap} tool and tag switches already (cluster.max_switches)")

    async def read(self) -> tuple[set[str], set[str]]:
        """(tools switched off, tags switched off), cluster-wide."""
        with self._cluster.reaching():
            fields = await self._cluster.client.hkeys(self._key)
        tools, tags = set(), set()
        for raw in fields:
            name = raw.decode() if isinstance(raw, bytes) else str(raw)
            if name.startswith(_TOOL):
                tools.add(name[len(_TOOL):])
            elif name.startswith(_TAG):
                tags.add(name[len(_TAG):])
        return tools, tags


class NodeRegistry:
    """This process's heartbeat, and who else is alive."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster
        self._keys = cluster.keys
        self._ttl_ms = str(max(1, round(cluster.settings.node_ttl * 1000)))
        self._beat = cluster.client.register_script(_BEAT)
        self._live = cluster.client.register_script(_LIVE)
        self.node_id = cluster.node_id
        self._failing = False

    async def beat(self) -> None:
        with self._cluster.reaching():
            await self._beat(keys=[self._keys.node(self.node_id), self._keys.nodes()], args=[self.node_id, self._ttl_ms])

    async def alive(self, node_id: str) -> bool:
        """Whether ``node_id`` beat within ``node_ttl`` (this process always is)."""
        if node_id == self.node_id:
            return True
        with self._cluster.reaching():
            return bool(await self._cluster.client.exists([self._keys.node(node_id)]))

    async def live(self) -> list[str]:
        """The processes that beat within ``node_ttl``, this one included."""
        with self._cluster.reaching():
            found = await self._live(keys=[self._keys.nodes()], args=[self._ttl_ms])
        return sorted(raw.decode() if isinstance(raw, bytes) else str(raw) for raw in found)

    async def leave(self) -> None:
        """Stop counting as alive at once (a graceful shutdown)."""
        with self._cluster.reaching():
            await self._cluster.client.delete([self._keys.node(self.node_id)])
            await self._cluster.client.zrem(self._keys.nodes(), [self.node_id])

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Beat every ``node_ttl / 3`` until cancelled (the first beat before ``started``).
        A process that stops gracefully calls ``leave`` first; one that is killed counts as
        stopped ``node_ttl`` after its last beat."""
        await self.beat()
        task_status.started()
        interval = self._cluster.settings.node_ttl / 3
        while True:
            await trio.sleep(interval)
            try:
                await self.beat()
            except RedisUnavailable as error:
                if not self._failing:
                    logger.warning("cluster heartbeat: %s; other processes may count this one as stopped", error)
                self._failing = True
            else:
                if self._failing:
                    logger.info("cluster heartbeat: beating again")
                self._failing = False
