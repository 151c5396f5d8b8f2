"""Tasks (the ``io.modelcontextprotocol/tasks`` extension) in Redis, so ``tasks/get`` and
``tasks/cancel`` work from any worker.

A task is one hash (``Keys.task``) under its caller's hash tag: another caller's task id is
simply not found, as with one process. It lives ``task_ttl`` after its last update. A caller's
index (``Keys.task_index``, a sorted set by expiry) caps the tasks one caller keeps at once
(``max_tasks_per_subject``). The status moves only forward: once ``completed``, ``failed`` or
``cancelled`` it never changes again, so a ``tasks/cancel`` on one worker and the result
arriving on another settle in one order, atomically. The worker that runs the task is named
(``node``), so a cancel elsewhere can be sent to it over the bus (``TaskCancelled``).
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..protocol._errors import ServerOverloaded
from ._client import Cluster

TERMINAL = frozenset({"completed", "failed", "cancelled"})
STATUSES = frozenset({"working", "input_required"}) | TERMINAL

#: KEYS: task, index; ARGV: ttl ms, cap, task id, then field/value pairs. -1: over the cap,
#: 0: the id exists already, 1: created.
_CREATE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[2]) then return -1 end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[1]), ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return 1
"""
#: KEYS: task, index; ARGV: ttl ms, task id, new status, then field/value pairs. Returns the
#: status the task has afterwards (unchanged once terminal), or nil when there is no task.
_UPDATE = """
local current = redis.call('HGET', KEYS[1], 'status')
if not current then return false end
if current == 'completed' or current == 'failed' or current == 'cancelled' then return current end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'status', ARGV[3], unpack(ARGV, 4))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[1]), ARGV[2])
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[2], ARGV[1]) end
return ARGV[3]
"""


class TaskRecord(msgspec.Struct, frozen=True):
    """One task as stored: its status, who runs it, and its outcome once it has one."""

    task_id: str
    subject: str
    status: str
    node: str
    created_at: str
    updated_at: str
    #: The tool's result (JSON), once ``completed``.
    result: bytes | None = None
    #: The JSON-RPC error object (JSON), once ``failed``.
    error: bytes | None = None
    #: What the task asks the client (JSON), while ``input_required``.
    input_requests: bytes | None = None


_OPTIONAL = ("result", "error", "input_requests")


class TaskStore:
    """Create, read, update and cancel tasks in Redis, each visible to its caller only."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster
        self._keys = cluster.keys
        self._settings = cluster.settings
        self._ttl_ms = str(round(cluster.settings.task_ttl * 1000))
        self._create = cluster.client.register_script(_CREATE)
        self._update = cluster.client.register_script(_UPDATE)

    def _pair(self, subject: str, task_id: str) -> list[str]:
        return [self._keys.task(subject, task_id), self._keys.task_index(subject)]

    async def create(self, subject: str, task_id: str, *, node: str, created_at: str) -> bool:
        """Store a new ``working`` task; False if the id exists. ``ServerOverloaded`` (-32030)
        when the caller has ``max_tasks_per_subject`` tasks already."""
        fields = ["task_id", task_id, "subject", subject, "status", "working", "node", node,
                  "created_at", created_at, "updated_at", created_at]
        with self._cluster.reaching():
            created = await self._create(keys=self._pair(subject, task_id),
                                         args=[self._ttl_ms, str(self._settings.max_tasks_per_subject), task_id, *fields])
        if created == -1:
            raise ServerOverloaded(f"too many tasks ({self._settings.max_tasks_per_subject}) for this caller; try again later")
        return created == 1

    async def get(self, subject: str, task_id: str) -> TaskRecord | None:
        """The caller's task, or None (unknown, expired, or another caller's)."""
        with self._cluster.reaching():
            fields = await self._cluster.client.hgetall(self._keys.task(subject, task_id))
        if not fields:
            return None
        text = {name.decode(): value for name, value in fields.items()}
        return TaskRecord(
            **{name: text[name].decode() for name in ("task_id", "subject", "status", "node", "created_at", "updated_at")},
            **{name: text.get(name) for name in _OPTIONAL},
        )

    async def update(self, subject: str, task_id: str, status: str, *, updated_at: str, **outcome: bytes) -> str | None:
        """Move the task to ``status`` with ``outcome`` (result, error, input_requests: JSON
        bytes), unless it is terminal already; returns its status afterwards (None: no task)."""
        if status not in STATUSES:
            raise ValueError(f"unknown task status {status!r}")
        unknown = set(outcome) - set(_OPTIONAL)
        if unknown:
            raise TypeError(f"unknown task field(s): {', '.join(sorted(unknown))}")
        pairs: list[Any] = ["updated_at", updated_at]
        for name, value in outcome.items():
            if len(value) > self._settings.max_value_size:
                raise ValueError(f"task {name} of {len(value)} bytes exceeds cluster.max_value_size")
            pairs += [name, value]
        with self._cluster.reaching():
            after = await self._update(keys=self._pair(subject, task_id), args=[self._ttl_ms, task_id, status, *pairs])
        return None if after is None else after.decode()

    async def cancel(self, subject: str, task_id: str, *, updated_at: str) -> str | None:
        """Mark the task ``cancelled`` unless it settled first; its status afterwards."""
        return await self.update(subject, task_id, "cancelled", updated_at=updated_at)
