"""The supervisor: one per served server, started before any connection.

It owns the registry snapshot, the token-bucket limiter and the set of live connections, and
is the only task that changes them. Trio runs one task at a time, so its synchronous methods
are atomic: request tasks read ``supervisor.registry`` with no lock and no channel hop.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from ._handlers import HANDLERS
from ._limiter import TokenBucket
from ._limits import Limits
from ._metrics import Metrics
from ._registry import Registry

if TYPE_CHECKING:
    from ._connection import Connection
    from ._server import Server

logger = logging.getLogger("mcp_trio.supervisor")

_LIST_CHANGED = {
    "tools": "notifications/tools/list_changed",
    "resources": "notifications/resources/list_changed",
    "prompts": "notifications/prompts/list_changed",
}


class Supervisor:
    """Registry, limiter, live connections and the shutdown signal of one running server."""

    def __init__(self, server: Server, limits: Limits | None = None, *, limiter: TokenBucket | None = None) -> None:
        self.server = server
        self.limits = limits or Limits()
        self.limiter = limiter
        self.registry = Registry()
        self.connections: set[Connection] = set()
        self.metrics = Metrics(frozenset(HANDLERS))
        self._subscribers: dict[str, set[Connection]] = {}
        self._ids = itertools.count(1)
        self._stop = trio.Event()
        #: Set when shutdown has begun: readers stop reading, in-flight requests get the grace period.
        self.shutting_down = trio.Event()

    # -- lifecycle --------------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[Supervisor] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the registry until ``shutdown``; reports readiness with ``task_status.started``."""
        self.registry = self.server._attach(self)
        try:
            task_status.started(self)
            await self._stop.wait()
        finally:
            self.server._detach(self)

    def shutdown(self) -> None:
        """Begin graceful shutdown: every connection stops reading and drains."""
        if self.shutting_down.is_set():
            return
        logger.info("shutting down: %d connection(s) draining", len(self.connections))
        self.shutting_down.set()
        for connection in list(self.connections):
            connection.stop_reading()

    def close(self) -> None:
        """Release ``run`` (after connections have finished)."""
        self._stop.set()

    def next_session_id(self) -> str:
        return f"s{next(self._ids)}"

    # -- connections ------------------------------------------------------------------------
    def attach(self, connection: Connection) -> None:
        self.connections.add(connection)
        self.metrics.connections_opened += 1
        if self.shutting_down.is_set():
            connection.stop_reading()

    def detach(self, connection: Connection) -> None:
        self.connections.discard(connection)
        for uri in connection.subscriptions:
            subscribers = self._subscribers.get(uri)
            if subscribers is not None:
                subscribers.discard(connection)
                if not subscribers:
                    del self._subscribers[uri]

    # -- registry ---------------------------------------------------------------------------
    def update_registry(self, change: Callable[[Registry], Registry], kind: str) -> None:
        """Publish ``change(registry)`` and tell live sessions which list changed."""
        self.registry = change(self.registry)
        method = _LIST_CHANGED.get(kind)
        if method is not None:
            for connection in self.connections:
                connection.post_notification(method)

    # -- resource subscriptions -------------------------------------------------------------
    def subscribe(self, connection: Connection, uri: str) -> None:
        self._subscribers.setdefault(uri, set()).add(connection)
        connection.subscriptions.add(uri)

    def unsubscribe(self, connection: Connection, uri: str) -> None:
        connection.subscriptions.discard(uri)
        subscribers = self._subscribers.get(uri)
        if subscribers is not None:
            subscribers.discard(connection)
            if not subscribers:
                del self._subscribers[uri]

    def resource_updated(self, uri: str) -> None:
        for connection in self._subscribers.get(uri, ()):
            connection.post_notification("notifications/resources/updated", {"uri": uri}, key=uri)

    def statistics(self) -> dict[str, int]:
        return {
            "connections": len(self.connections),
            "in_flight": sum(c.in_flight for c in self.connections),
            "subscriptions": sum(len(s) for s in self._subscribers.values()),
            "registry_version": self.registry.version,
        }
