"""Every Redis key and channel name cluster mode uses, built in one place.

Names start with the configured prefix, so several services share one Redis. The part in braces
is the Redis Cluster hash tag: keys that one script or one ``DEL`` touches together (a caller's
buckets; a session's profile and events; a caller's tasks and their index) share it, hence a
slot. Caller-supplied parts are escaped (``%``, ``{``, ``}``, ``|``), so no principal, session
or task id can end a hash tag early or collide with another's key.
"""

from __future__ import annotations

from collections.abc import Hashable

_ESCAPE = str.maketrans({"%": "%25", "{": "%7B", "}": "%7D", "|": "%7C"})


def tag(part: Hashable) -> str:
    """A hash-tag-safe text for a principal key (a string or a tuple of them), injective."""
    if isinstance(part, tuple):
        return "|".join(str(item).translate(_ESCAPE) for item in part)
    return str(part).translate(_ESCAPE)


class Keys:
    """Key names under one prefix (``ClusterSettings.key_prefix``)."""

    __slots__ = ("prefix",)

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    # rate limits: one key per caller, one per caller and tool (same hash tag)
    def bucket(self, principal: Hashable) -> str:
        return f"{self.prefix}rl:{{{tag(principal)}}}"

    def tool_bucket(self, principal: Hashable, tool: str) -> str:
        return f"{self.prefix}rl:{{{tag(principal)}}}:{tool}"

    # HTTP sessions: profile hash and event stream (same hash tag)
    def session(self, session_id: str) -> str:
        return f"{self.prefix}s:{{{tag(session_id)}}}"

    def events(self, session_id: str) -> str:
        return f"{self.prefix}s:{{{tag(session_id)}}}:ev"

    # tasks: one hash per task, one index per caller (same hash tag: the caller)
    def task(self, subject: str, task_id: str) -> str:
        return f"{self.prefix}t:{{{tag(subject)}}}:{tag(task_id)}"

    def task_index(self, subject: str) -> str:
        return f"{self.prefix}t:{{{tag(subject)}}}"

    # cluster-wide
    def counters(self) -> str:
        return f"{self.prefix}stats"

    def switches(self) -> str:
        """Hash of the tools and tags switched off (``tool:<name>``, ``tag:<tag>``)."""
        return f"{self.prefix}switches"

    def node(self, node_id: str) -> str:
        """A server process's heartbeat (expires ``node_ttl`` after its last beat)."""
        return f"{self.prefix}{{nodes}}:{tag(node_id)}"

    def nodes(self) -> str:
        """Sorted set of the server processes by their last heartbeat (ms); the same hash tag
        as the heartbeats, so one script updates both."""
        return f"{self.prefix}{{nodes}}"

    def bus(self) -> str:
        return f"{self.prefix}bus"
