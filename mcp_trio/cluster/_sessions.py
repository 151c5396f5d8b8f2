"""Handshake-era HTTP sessions in Redis, so any worker serves a session another one created.

A session is one hash (``Keys.session``): the client's profile (revision, capabilities, info)
as JSON, who opened it (the principal's subject: every later request must be the same caller),
its log level, and one field per resource subscription. It lives ``session_ttl`` after its last
use: every read and write renews it (and its event stream's, ``EventLog``), atomically with the
access. Writes to a session that is gone do nothing and say so: a ``DELETE`` on one worker is
never undone by a late write on another.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..protocol._session import ClientProfile
from ._client import Cluster

#: Fields every session hash has; subscriptions are the others ("sub:<uri>").
_BASE_FIELDS = (b"profile", b"owner", b"level", b"delivered")
_SUB = "sub:"

_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'profile', ARGV[2], 'owner', ARGV[3], 'level', '', 'delivered', '')
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""
#: Read and renew (the profile and the event stream) in one step; nil when gone.
_TOUCH_GET = """
if redis.call('PEXPIRE', KEYS[1], ARGV[1]) == 0 then return false end
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return redis.call('HGETALL', KEYS[1])
"""
#: ARGV: ttl ms, field, value ('' with ARGV[4] = 'del' deletes), field cap (or '').
#: Returns -1: no such session; -2: over the cap; else 1 (0 for a delete of a missing field).
_SET_FIELD = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local result = 1
if ARGV[4] == 'del' then
  result = redis.call('HDEL', KEYS[1], ARGV[2])
else
  if ARGV[4] ~= '' and redis.call('HEXISTS', KEYS[1], ARGV[2]) == 0
     and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[4]) then
    return -2
  end
  redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return result
"""


class SessionGone(LookupError):
    """The session expired or was deleted (by any worker)."""


class TooManySubscriptions(ValueError):
    """The session holds ``max_subscriptions`` already."""


class SessionRecord(msgspec.Struct, frozen=True):
    """What a worker needs to serve a session it did not create."""

    profile: ClientProfile
    #: The subject of the principal that opened the session ("" when anonymous).
    owner: str
    #: Minimum level of ``notifications/message``; None until ``logging/setLevel``.
    log_level: str | None
    subscriptions: frozenset[str]
    #: The last GET-stream event written to a listener (``EventLog`` id), None before any: a
    #: new GET without ``Last-Event-ID`` starts after it, on whichever process.
    delivered: str | None = None


_profile_encoder = msgspec.json.Encoder()
_profile_decoder = msgspec.json.Decoder(ClientProfile)


class SessionStore:
    """Session profiles in Redis, with expiry renewed on every use."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster
        self._keys = cluster.keys
        self._settings = cluster.settings
        self._ttl_ms = str(round(cluster.settings.session_ttl * 1000))
        client = cluster.client
        self._create = client.register_script(_CREATE)
        self._touch_get = client.register_script(_TOUCH_GET)
        self._set_field = client.register_script(_SET_FIELD)

    def _pair(self, session_id: str) -> list[str]:
        return [self._keys.session(session_id), self._keys.events(session_id)]

    async def create(self, session_id: str, profile: ClientProfile, *, owner: str = "") -> bool:
        """Store a new session (after ``initialize``); False if the id is taken already."""
        data = _profile_encoder.encode(profile)
        if len(data) > self._settings.max_value_size:
            raise ValueError(f"session profile of {len(data)} bytes exceeds cluster.max_value_size")
        with self._cluster.reaching():
            created = await self._create(keys=[self._keys.session(session_id)], args=[self._ttl_ms, data, owner])
        return created == 1

    async def get(self, session_id: str) -> SessionRecord | None:
        """The session, renewed for ``session_ttl``; None when it expired or was deleted."""
        with self._cluster.reaching():
            flat = await self._touch_get(keys=self._pair(session_id), args=[self._ttl_ms])
        if flat is None:
            return None
        fields = _as_dict(flat)
        level = fields.get(b"level") or b""
        delivered = fields.get(b"delivered") or b""
        return SessionRecord(
            profile=_profile_decoder.decode(fields[b"profile"]),
            owner=(fields.get(b"owner") or b"").decode(),
            log_level=level.decode() or None,
            subscriptions=frozenset(name[len(_SUB):].decode() for name in fields if name.startswith(_SUB.encode())),
            delivered=delivered.decode() or None,
        )

    async def set_log_level(self, session_id: str, level: str) -> None:
        await self._field(session_id, "level", level, "")

    async def mark_delivered(self, session_id: str, event_id: str) -> None:
        """Record the last GET-stream event a listener was written (``SessionGone`` if gone)."""
        await self._field(session_id, "delivered", event_id, "")

    async def subscribe(self, session_id: str, uri: str) -> None:
        """Add a resource subscription (``TooManySubscriptions`` past ``max_subscriptions``)."""
        if len(uri) > self._settings.max_value_size:
            raise ValueError("resource URI exceeds cluster.max_value_size")
        cap = str(self._settings.max_subscriptions + len(_BASE_FIELDS))
        await self._field(session_id, _SUB + uri, "1", cap)

    async def unsubscribe(self, session_id: str, uri: str) -> None:
        await self._field(session_id, _SUB + uri, "", "del")

    async def _field(self, session_id: str, name: str, value: str, mode: str) -> None:
        with self._cluster.reaching():
            result = await self._set_field(keys=self._pair(session_id), args=[self._ttl_ms, name, value, mode])
        if result == -1:
            raise SessionGone(session_id)
        if result == -2:
            raise TooManySubscriptions(f"a session may hold at most {self._settings.max_subscriptions} subscriptions")

    async def delete(self, session_id: str) -> bool:
        """End the session everywhere (its profile and its events); False if it was gone."""
        with self._cluster.reaching():
            removed = await self._cluster.client.delete(self._pair(session_id))
        return removed > 0


def _as_dict(flat: Any) -> dict[bytes, bytes]:
    """HGETALL's answer from a script: a flat list (RESP2 scripts) or a map (RESP3)."""
    if isinstance(flat, dict):
        return flat
    return {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}
