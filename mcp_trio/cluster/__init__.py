"""Cluster mode: the state several server processes and hosts share, on Redis.

A leaf: it imports ``protocol/``, the sans-io limiter, the standard library and its Redis
client (coredis), never the serving core or a transport; the serving layer calls it. The
settings (``ClusterSettings``) import no Redis client, so a configuration is checked without
one; everything that talks to Redis is loaded on first use of its name, so a server without
``[cluster] redis_url`` never imports coredis. See docs/cluster.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._errors import RedisUnavailable
from ._settings import ClusterSettings, SettingError, parse_redis_url

if TYPE_CHECKING:
    from ._bus import BusEvent, ClusterBus
    from ._client import Cluster, open_cluster
    from ._counters import ClusterCounters
    from ._events import EventLog
    from ._limiter import SharedLimiter
    from ._sessions import SessionStore
    from ._tasks import TaskStore
    from ._bus import (ListChanged, PluginsReloaded, ResourceUpdated, Resync, SessionChanged, SessionDeleted,
                       SessionEvent, SessionInput, TaskAnswered, TaskCancelled, ToolsSwitched)
    from ._control import NodeRegistry, SwitchStore, TooManySwitches
    from ._events import StoredEvent
    from ._limiter import LimiterStatistics
    from ._sessions import SessionGone, SessionRecord, TooManySubscriptions
    from ._tasks import TaskRecord

#: Names that need the Redis client, and the module each lives in (imported on first use).
_LAZY = {
    "Cluster": "_client",
    "open_cluster": "_client",
    "SharedLimiter": "_limiter",
    "SessionStore": "_sessions",
    "EventLog": "_events",
    "ClusterBus": "_bus",
    "BusEvent": "_bus",
    "TaskStore": "_tasks",
    "ClusterCounters": "_counters",
    "ToolsSwitched": "_bus",
    "PluginsReloaded": "_bus",
    "ListChanged": "_bus",
    "SessionDeleted": "_bus",
    "ResourceUpdated": "_bus",
    "SessionEvent": "_bus",
    "TaskCancelled": "_bus",
    "TaskAnswered": "_bus",
    "SessionChanged": "_bus",
    "SessionInput": "_bus",
    "Resync": "_bus",
    "SwitchStore": "_control",
    "NodeRegistry": "_control",
    "TooManySwitches": "_control",
    "SessionRecord": "_sessions",
    "SessionGone": "_sessions",
    "TooManySubscriptions": "_sessions",
    "StoredEvent": "_events",
    "TaskRecord": "_tasks",
    "LimiterStatistics": "_limiter",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "BusEvent",
    "Cluster",
    "ClusterBus",
    "ClusterCounters",
    "ClusterSettings",
    "EventLog",
    "LimiterStatistics",
    "ListChanged",
    "NodeRegistry",
    "PluginsReloaded",
    "RedisUnavailable",
    "ResourceUpdated",
    "Resync",
    "SessionChanged",
    "SessionDeleted",
    "SessionEvent",
    "SessionGone",
    "SessionInput",
    "SessionRecord",
    "SessionStore",
    "SettingError",
    "SharedLimiter",
    "StoredEvent",
    "SwitchStore",
    "TaskAnswered",
    "TaskCancelled",
    "TaskRecord",
    "TaskStore",
    "TooManySubscriptions",
    "TooManySwitches",
    "ToolsSwitched",
    "open_cluster",
    "parse_redis_url",
]
