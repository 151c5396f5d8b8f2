"""Connecting to Redis (one server, Sentinel or Cluster) through coredis, under trio.

coredis is an anyio client: its connections are tasks in a task group that the client owns for
as long as ``async with client`` lasts, so ``open_cluster`` is an async context manager too,
and the serving layer keeps it open for the life of the server. Commands from concurrent tasks
share one multiplexed connection (coredis queues them and writes them together).
"""

from __future__ import annotations

import os
import secrets
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import anyio
import coredis
import trio
from coredis.connection import TCPLocation
from coredis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    PrimaryNotFoundError,
    RedisError,
    ResponseError,
)
from coredis.exceptions import ConnectionError as RedisConnectionError

from ._errors import RedisUnavailable
from ._keys import Keys
from ._settings import ClusterSettings

#: Oldest Redis accepted: GETEX, XRANGE with exclusive ids and SET … GET need 6.2.
MIN_REDIS_VERSION = (6, 2)

#: What coredis raises when Redis cannot be reached or does not answer in time (and what its
#: connection raises once it was closed: a call made while the client shuts down).
UNREACHABLE: tuple[type[BaseException], ...] = (RedisConnectionError, OSError, PrimaryNotFoundError,
                                                anyio.ClosedResourceError, anyio.BrokenResourceError)


def describe(error: BaseException, settings: ClusterSettings) -> str:
    """One line for a person: what went wrong with Redis, where, and what to do."""
    where = settings.where
    if isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        return describe(error.exceptions[0], settings)
    if isinstance(error, (AuthenticationError, AuthorizationError)):
        return f"Redis at {where} refused the credentials ({_first_line(error)}): fix the user or password in cluster.redis_url"
    if isinstance(error, PrimaryNotFoundError):
        return f"no Sentinel at {where} names a primary for {settings.target.service!r}: check the service name and the Sentinels"
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ssl.SSLError):
            return f"TLS to Redis at {where} failed ({_first_line(cause)}): check ssl_ca_certs and the server's certificate"
        cause = cause.__cause__ or cause.__context__
    if isinstance(error, TimeoutError | trio.TooSlowError):
        return f"Redis at {where} did not answer in time: check that it runs and is reachable, or raise cluster.command_timeout"
    reason = _root_reason(error)
    return f"cannot reach Redis at {where} ({reason}): start it or fix cluster.redis_url"


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


def _root_reason(error: BaseException) -> str:
    """The deepest OS-level reason in the chain ('Connection refused'), else the error's text."""
    reason = _first_line(error)
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno:
            reason = os.strerror(cause.errno)
        elif isinstance(cause, BaseExceptionGroup) and cause.exceptions:
            cause = cause.exceptions[0]
            continue
        cause = cause.__cause__ or cause.__context__
    return reason


@contextmanager
def reaching(settings: ClusterSettings, retry_after: float | None = None) -> Iterator[None]:
    """Run one Redis call with the command deadline; unreachable → ``RedisUnavailable``."""
    try:
        with trio.fail_after(settings.command_timeout):
            yield
    except (*UNREACHABLE, trio.TooSlowError, AuthenticationError) as error:
        raise RedisUnavailable(describe(error, settings), retry_after or settings.probe_interval) from None


def build_client(settings: ClusterSettings) -> Any:
    """The coredis client for ``settings.redis_url`` (not connected yet)."""
    target = settings.target
    common: dict[str, Any] = {
        "connect_timeout": settings.command_timeout,
        "stream_timeout": settings.command_timeout,
        "username": target.username,
        "password": target.password,
        "decode_responses": False,
    }
    context = target.ssl_context()
    if context is not None:
        common["ssl_context"] = context
    if target.topology == "cluster":
        nodes = [TCPLocation(e.host, e.port) for e in target.endpoints]
        return coredis.RedisCluster(startup_nodes=nodes, **common)
    if target.topology == "sentinel":
        sentinel_kwargs: dict[str, Any] = {"connect_timeout": settings.command_timeout,
                                           "stream_timeout": settings.command_timeout,
                                           "username": target.sentinel_username,
                                           "password": target.sentinel_password}
        if context is not None:
            sentinel_kwargs["ssl_context"] = context
        sentinel = coredis.Sentinel([TCPLocation(e.host, e.port) for e in target.endpoints],
                                    sentinel_kwargs=sentinel_kwargs, **common)
        return _SentinelPrimary(sentinel, target.service or "", db=target.db)
    if target.unix_path is not None:
        return coredis.Redis(unix_socket_path=target.unix_path, db=target.db, **common)
    endpoint = target.endpoints[0]
    return coredis.Redis(host=endpoint.host, port=endpoint.port, db=target.db, **common)


class _SentinelPrimary:
    """Enter the Sentinels, then the primary they name (followed by coredis across fail-overs)."""

    def __init__(self, sentinel: Any, service: str, *, db: int) -> None:
        self.sentinel = sentinel
        self.service = service
        self.db = db

    @asynccontextmanager
    async def open(self) -> AsyncIterator[Any]:
        async with self.sentinel:
            primary = self.sentinel.primary_for(self.service, db=self.db)
            async with primary:
                yield primary


class Cluster:
    """A connected Redis, the settings, the key names and this process's node id.

    The building blocks (``SharedLimiter``, ``SessionStore``, ``EventLog``, ``ClusterBus``,
    ``TaskStore``, ``ClusterCounters``) each take one of these.
    """

    def __init__(self, settings: ClusterSettings, client: Any, *, node_id: str | None = None) -> None:
        self.settings = settings
        self.client = client
        self.keys = Keys(settings.key_prefix)
        #: Tells this process's bus messages from the others' (random per start).
        self.node_id = node_id or secrets.token_hex(8)

    def reaching(self, retry_after: float | None = None) -> Any:
        return reaching(self.settings, retry_after)


@asynccontextmanager
async def open_cluster(settings: ClusterSettings) -> AsyncIterator[Cluster]:
    """Connect to Redis within ``settings.connect_timeout`` and check it, or raise
    ``RedisUnavailable`` with one line (unreachable, refused credentials, failed TLS, too old).

    Exceptions raised in the body come out as trio raises a nursery's: in an exception group.
    """
    client = build_client(settings)
    entered = client.open() if isinstance(client, _SentinelPrimary) else client
    failure: str | None = None
    opened = False
    try:
        async with entered as redis:
            redis = redis if redis is not None else client
            try:
                with trio.fail_after(settings.connect_timeout):
                    await _check(redis, settings)
            except (*UNREACHABLE, trio.TooSlowError, AuthenticationError, AuthorizationError) as error:
                failure = describe(error, settings)
            except _TooOld as error:
                failure = str(error)
            else:
                opened = True
                yield Cluster(settings, redis)
    except* UNREACHABLE as group:
        # Entering the Sentinels (or a cluster's first node) can fail before the body runs;
        # what the body raised is the body's, and goes on as it is.
        if opened:
            raise
        failure = failure or describe(group, settings)
    if failure is not None:
        raise RedisUnavailable(failure, settings.probe_interval)


class _TooOld(Exception):
    pass


async def _check(redis: Any, settings: ClusterSettings) -> None:
    """One round trip proves the URL, the credentials and TLS; the version must be new enough."""
    info = await redis.info("server")
    versions = _versions(info)
    if not versions:
        raise ResponseError("INFO server named no redis_version")
    oldest = min(versions)
    if oldest < MIN_REDIS_VERSION:
        shown = ".".join(map(str, oldest))
        raise _TooOld(f"Redis at {settings.where} is version {shown}; cluster mode needs 6.2 or newer")


def _versions(info: Any) -> list[tuple[int, ...]]:
    """``redis_version`` of every node in an ``INFO server`` answer (one node, or per node)."""
    found: list[tuple[int, ...]] = []
    if not isinstance(info, dict):
        return found
    raw = info.get("redis_version") if "redis_version" in info else info.get(b"redis_version")
    if raw is not None:
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        try:
            found.append(tuple(int(p) for p in text.split(".")[:2]))
        except ValueError:
            pass
        return found
    for value in info.values():
        found.extend(_versions(value))
    return found


__all__ = ["Cluster", "RedisError", "open_cluster", "reaching"]
