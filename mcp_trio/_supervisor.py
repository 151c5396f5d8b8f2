"""The supervisor: one per served server, started before any connection.

It owns the registry snapshot, the token-bucket limiter and the set of live connections, and
is the only task that changes them. Trio runs one task at a time, so its synchronous methods
are atomic: request tasks read ``supervisor.registry`` with no lock and no channel hop, and
admission (``enter``/``charge``/``leave``: rate limit and concurrency cap) needs no lock either.
"""

from __future__ import annotations

import itertools
import logging
import signal
import math
from collections.abc import Callable, Collection, Hashable, Iterable
from dataclasses import replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import trio

from ._handlers import HANDLERS
from ._stateless import Stateless
from ._limiter import RateLimits, RequestLimiter, TokenBucket
from ._limits import Limits
from ._metrics import Metrics
from ._quotas import Quotas, quota_key
from ._registry import Registry
from .protocol._errors import QuotaExceeded, RateLimited, ServerOverloaded
from .protocol._stateless import MODERN_METHODS

if TYPE_CHECKING:
    from ._connection import Connection
    from ._server import Server

logger = logging.getLogger("mcp_trio.supervisor")

#: The signals that ask for a graceful shutdown. On Windows a console's Ctrl+C
#: (CTRL_C_EVENT) arrives as SIGINT and Ctrl+Break (CTRL_BREAK_EVENT, what a parent sends a
#: child's process group) as SIGBREAK; SIGTERM is never delivered there (TerminateProcess
#: cannot be caught), nor are the console's close, logoff and shutdown events.
SHUTDOWN_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGBREAK") if hasattr(signal, name))

_LIST_CHANGED = {
    "tools": "notifications/tools/list_changed",
    "resources": "notifications/resources/list_changed",
    "prompts": "notifications/prompts/list_changed",
}


class Supervisor:
    """Registry, limiter, live connections and the shutdown signal of one running server."""

    def __init__(
        self,
        server: Server,
        limits: Limits | None = None,
        *,
        limiter: TokenBucket | None = None,
        rate_limits: RateLimits | None = None,
    ) -> None:
        """``rate_limits``: the admission policy (None: admit everything, at no cost);
        ``limiter``: a ready-made per-principal bucket (instead of ``rate_limits.rate``)."""
        self.server = server
        self.limits = limits or Limits()
        policy = rate_limits or RateLimits()
        #: Per-principal and per-tool buckets; None when no rate is limited.
        self.request_limiter: RequestLimiter | None = (
            RequestLimiter(policy, bucket=limiter) if limiter is not None or policy.limits_rate else None
        )
        self.limiter = self.request_limiter.bucket if self.request_limiter is not None else None
        #: Requests running server-wide at most (None: no cap); past it new ones are shed.
        self.max_concurrent = policy.max_concurrent
        #: Requests inside their handler now, server-wide (counted only when there is a cap).
        self.running = 0
        #: Whether request tasks must call ``enter``/``leave``: False keeps the hot path bare.
        self.admission = self.request_limiter is not None or self.max_concurrent is not None
        self.registry = Registry()
        #: Per-principal quotas: sessions, tasks, listen streams, subscriptions (``_quotas``).
        self.quotas = Quotas(self.limits)
        self.connections: set[Connection] = set()
        self.metrics = Metrics(frozenset(HANDLERS) | MODERN_METHODS)
        #: The stateless revision's side (2026-07-28): result stamps, requestState keys, listen streams.
        self.stateless = Stateless(server)
        self._subscribers: dict[str, set[Connection]] = {}
        self._ids = itertools.count(1)
        self._stop = trio.Event()
        #: Set when shutdown has begun: readers stop reading, in-flight requests get the grace period.
        self.shutting_down = trio.Event()
        #: Run-time switches: tools switched off by name, and tags whose tools are switched off.
        #: Applied to every snapshot published (``ToolDef.enabled``), so they survive reloads.
        self.disabled_tools: set[str] = set()
        self.disabled_tags: set[str] = set()

    # -- lifecycle --------------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[Supervisor] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the registry until ``shutdown``; reports readiness with ``task_status.started``.

        A server with plugins (``Server.use_plugins``) has them loaded before readiness is
        reported; its plugin directories are then watched until shutdown.
        """
        # Switches are this run's: a registry kept from an earlier run starts all on again.
        self.registry = self._switched(self.server._attach(self))
        self.metrics.clock = trio.lowlevel.current_clock().current_time
        try:
            async with trio.open_nursery() as nursery:
                if self.server.plugins is not None:
                    await nursery.start(self.server.plugins.run, self)
                await nursery.start(self.stateless.tasks.run)  # tools running as tasks (2026-07-28)
                task_status.started(self)
                await self._stop.wait()
                nursery.cancel_scope.cancel()
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

    async def watch_signals(self) -> None:
        """First SIGINT/SIGTERM (or SIGBREAK): graceful shutdown. A second one: stop at once."""
        with trio.open_signal_receiver(*SHUTDOWN_SIGNALS) as signals:
            async for signum in signals:
                if self.shutting_down.is_set():
                    logger.warning("second %s: stopping now", signal.Signals(signum).name)
                    raise KeyboardInterrupt
                logger.info("%s: shutting down gracefully", signal.Signals(signum).name)
                self.shutdown()

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
        self.quotas.release("subscriptions", quota_key(connection.principal, connection.peer), len(connection.subscriptions))
        connection.subscriptions.clear()

    # -- admission (rate limits, concurrency cap) -------------------------------------------
    @staticmethod
    def rate_key(connection: Connection) -> Hashable:
        """Whose bucket a request draws on: its principal's, or its remote address's when the
        caller is anonymous (or unauthenticated), or its session's when the address is unknown."""
        principal = connection.principal
        if principal is None or principal.kind == "anonymous":
            return ("peer", connection.peer) if connection.peer else ("session", connection.session_id)
        return (principal.kind, principal.subject)

    def enter(self, connection: Connection, method: str) -> None:
        """Admit one request into its handler, or raise ``ServerOverloaded``/``RateLimited``.

        Called by the request task before the handler, and ``leave`` after it. ``tools/call``
        is charged by its handler (``charge``) once the tool's name, hence its cost, is known.
        """
        cap = self.max_concurrent
        if cap is not None and self.running >= cap:
            self.metrics.overloaded += 1
            raise ServerOverloaded(f"server overloaded: {cap} requests already running; retry later")
        if method != "tools/call":
            self.charge(connection)
        if cap is not None:
            self.running += 1

    async def admitted(self, connection: Any, handler: Any, request: Any, in_flight: Any) -> Any:
        """Run ``handler`` behind admission (``enter``/``leave``): the one place both eras'
        request paths admit a request. Without a policy it just runs the handler."""
        if not self.admission:
            return await handler(connection, request, in_flight)
        self.enter(connection, request.method)  # rate limit, concurrency cap: may refuse
        try:
            return await handler(connection, request, in_flight)
        finally:
            self.leave()

    def leave(self) -> None:
        if self.max_concurrent is not None:
            self.running -= 1

    def charge(self, connection: Connection, tool: str | None = None) -> None:
        """Take the request's tokens from the caller's bucket(s), or raise ``RateLimited``."""
        limiter = self.request_limiter
        if limiter is None:
            return
        wait = limiter.try_admit(self.rate_key(connection), trio.current_time(), tool)
        if wait:
            self.metrics.rate_limited += 1
            # Round up to whole milliseconds (a client retrying at that time is admitted);
            # the epsilon keeps float noise (0.1000000003 s) from adding a millisecond.
            retry_ms = max(1, math.ceil(wait * 1000 - 1e-6))
            raise RateLimited(f"rate limit exceeded; retry after {retry_ms} ms", {"retryAfterMs": retry_ms})

    # -- registry ---------------------------------------------------------------------------
    def update_registry(self, change: Callable[[Registry], Registry], kind: str | Collection[str]) -> None:
        """Publish ``change(registry)`` and tell live sessions which list(s) changed
        (``kind``: ``"tools"``, ``"resources"``, ``"prompts"``, or several of them)."""
        self.registry = self._switched(change(self.registry))
        self.metrics.prune_tools(self.registry.tools)
        for each in (kind,) if isinstance(kind, str) else sorted(kind):
            method = _LIST_CHANGED.get(each)
            if method is not None:
                for connection in self.connections:
                    connection.post_notification(method)
                self.stateless.list_changed(each)

    # -- run-time switches ------------------------------------------------------------------
    def _switched(self, registry: Registry) -> Registry:
        """``registry`` with each tool's ``enabled`` set from the switches."""
        names, tags = self.disabled_tools, self.disabled_tags
        changed = {}
        for name, tool in registry.tools.items():
            enabled = name not in names and not (tags and tool.tags & tags)
            if enabled != tool.enabled:
                changed[name] = replace(tool, enabled=enabled)
        if not changed:
            return registry
        return replace(registry, tools=MappingProxyType({**registry.tools, **changed}))

    def set_enabled(self, enabled: bool, *, tools: Iterable[str] = (), tags: Iterable[str] = ()) -> list[str]:
        """Switch tools on or off by name and/or by tag; returns the tools whose visibility
        changed (sessions are sent ``tools/list_changed`` when any did).

        A tool is enabled when neither its name nor any of its tags is switched off: enabling
        a tool by name does not override a tag that is off. Switches outlive the definitions
        they name (a plugin reloaded, or registered later, finds them in force).
        """
        names, tag_set = set(tools), set(tags)
        if enabled:
            self.disabled_tools -= names
            self.disabled_tags -= tag_set
        else:
            self.disabled_tools |= names
            self.disabled_tags |= tag_set
        before = {name: tool.enabled for name, tool in self.registry.tools.items()}
        registry = self._switched(self.registry)
        flipped = sorted(name for name, tool in registry.tools.items() if before[name] != tool.enabled)
        if flipped:
            self.update_registry(lambda r: replace(r, version=r.version + 1), "tools")
        return flipped

    def disabled_reason(self, name: str) -> str | None:
        """Why tool ``name`` is switched off (``"disabled"``, ``"tag 'x' disabled"``), or None."""
        if name in self.disabled_tools:
            return "disabled"
        tool = self.registry.tools.get(name)
        off = sorted(tool.tags & self.disabled_tags) if tool is not None else []
        return f"tag {off[0]!r} disabled" if off else None

    # -- resource subscriptions -------------------------------------------------------------
    def subscribe(self, connection: Connection, uri: str) -> None:
        """Add a subscription, within ``max_subscriptions_per_session`` and the caller's
        ``max_subscriptions_per_principal`` quota (``-32032``, naming which)."""
        if uri in connection.subscriptions:
            return
        cap = self.limits.max_subscriptions_per_session
        if len(connection.subscriptions) >= cap:
            raise QuotaExceeded(f"quota exceeded: this session already holds {cap} resource subscriptions "
                                f"(max_subscriptions_per_session = {cap}); unsubscribe from some first",
                                {"quota": "max_subscriptions_per_session", "limit": cap})
        self.quotas.acquire("subscriptions", connection.principal, connection.peer)
        self._subscribers.setdefault(uri, set()).add(connection)
        connection.subscriptions.add(uri)

    def unsubscribe(self, connection: Connection, uri: str) -> None:
        if uri not in connection.subscriptions:
            return
        connection.subscriptions.discard(uri)
        self.quotas.release("subscriptions", quota_key(connection.principal, connection.peer))
        subscribers = self._subscribers.get(uri)
        if subscribers is not None:
            subscribers.discard(connection)
            if not subscribers:
                del self._subscribers[uri]

    def resource_updated(self, uri: str) -> None:
        for connection in self._subscribers.get(uri, ()):
            connection.post_notification("notifications/resources/updated", {"uri": uri}, key=uri)
        self.stateless.resource_updated(uri)

    def statistics(self) -> dict[str, int]:
        return {
            "connections": len(self.connections),
            "in_flight": sum(c.in_flight for c in self.connections),
            "subscriptions": sum(len(s) for s in self._subscribers.values()),
            "registry_version": self.registry.version,
            "running": self.running,
            "tools": len(self.registry.tools),
            "tools_disabled": sum(not tool.enabled for tool in self.registry.tools.values()),
        }
