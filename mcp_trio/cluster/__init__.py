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
    from ._client import Cluster, open_cluster
    from ._limiter import SharedLimiter

#: Names that need the Redis client, and the module each lives in (imported on first use).
_LAZY = {
    "Cluster": "_client",
    "open_cluster": "_client",
    "SharedLimiter": "_limiter",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "Cluster",
    "ClusterSettings",
    "RedisUnavailable",
    "SettingError",
    "SharedLimiter",
    "open_cluster",
    "parse_redis_url",
]
