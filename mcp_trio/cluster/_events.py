"""A session's server-to-client events in a capped Redis stream, for ``Last-Event-ID`` replay
from any worker.

One stream per session (``Keys.events``), entries ``{s: <SSE stream number>, d: <message>}``,
trimmed to about ``events_per_session`` (``XADD MAXLEN ~``: Redis may keep a few more until it
can drop a whole node) and expiring with the session (``session_ttl``, renewed on use). The
entry id Redis assigns (``<ms>-<seq>``) is the event's id, increasing across workers, so a
client's ``Last-Event-ID`` resumes wherever its next request lands.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from ._client import Cluster

#: A Redis stream entry id, as a client may send it back in ``Last-Event-ID``.
_EVENT_ID = re.compile(r"\d{1,20}-\d{1,20}")

#: Append only while the session exists (a deleted session gets no new stream), then renew both.
_APPEND = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 's', ARGV[3], 'd', ARGV[4], 'q', ARGV[5], 'f', ARGV[6])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return id
"""


class StoredEvent(NamedTuple):
    id: str
    stream: int
    data: bytes
    #: The event's number within its SSE stream, when the writer gave one (a request stream
    #: spilled to Redis keeps its ``<stream>-<seq>`` ids); None otherwise.
    seq: int | None = None
    #: The stream's last event (a request's final reply).
    final: bool = False


class EventLog:
    """Append a session's events; read the ones after an id."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster
        self._keys = cluster.keys
        self._settings = cluster.settings
        self._ttl_ms = str(round(cluster.settings.session_ttl * 1000))
        self._append = cluster.client.register_script(_APPEND)

    async def append(self, session_id: str, stream: int, data: bytes, *, seq: int | None = None,
                     final: bool = False) -> str | None:
        """Store one event; its id, or None when the session is gone (nothing is stored).
        ``seq``: its number within its SSE stream, kept for the stream's own ids; ``final``:
        the stream's last event."""
        if len(data) > self._settings.max_value_size:
            raise ValueError(f"event of {len(data)} bytes exceeds cluster.max_value_size")
        keys = [self._keys.session(session_id), self._keys.events(session_id)]
        args = [self._ttl_ms, str(self._settings.events_per_session), str(stream), data,
                "" if seq is None else str(seq), "1" if final else ""]
        with self._cluster.reaching():
            event_id = await self._append(keys=keys, args=args)
        return None if event_id is None else event_id.decode()

    async def after(self, session_id: str, last_id: str | None = None, *, stream: int | None = None,
                    count: int | None = None) -> list[StoredEvent]:
        """Events after ``last_id`` (all kept ones when None), oldest first, of one SSE stream
        when ``stream`` is given; at most ``count`` (default: ``events_per_session``).

        Events trimmed away are not reported: as with one process, a listener that fell too
        far behind resumes at the oldest event kept. ``ValueError`` for a malformed id.
        """
        if last_id is not None and not _EVENT_ID.fullmatch(last_id):
            raise ValueError(f"malformed event id {last_id[:40]!r}")
        start = "-" if last_id is None else f"({last_id}"
        limit = count or self._settings.events_per_session
        with self._cluster.reaching():
            entries = await self._cluster.client.xrange(self._keys.events(session_id), start, "+", count=limit)
        events = []
        for entry in entries:
            fields = entry.field_values
            number = int(fields[b"s"])
            if stream is None or number == stream:
                seq = fields.get(b"q") or b""
                events.append(StoredEvent(entry.identifier.decode(), number, fields[b"d"],
                                          int(seq) if seq else None, bool(fields.get(b"f"))))
        return events
