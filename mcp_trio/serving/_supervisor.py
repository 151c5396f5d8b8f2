"""The supervisor: one per served server, started before any connection.

It owns the registry snapshot, admission (``_admission``: token buckets, concurrency cap),
the stateless side (``_stateless_side``) and the set of live sessions, and is the only task
that changes them. Trio runs one task at a time, so its synchronous methods are atomic:
request tasks read ``supervisor.registry`` with no lock and no channel hop.
"""

from __future__ import annotations

import itertools
import logging
import signal
from collections.abc import Callable, Collection, Hashable, Iterable
from contextlib import AbstractAsyncContextManager, nullcontext
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

import trio
from msgspec.structs import replace

from .._limiter import RateLimits, RequestLimiter, TokenBucket
from .._limits import Limits
from .._metrics import Metrics
from .._quotas import Quotas, quota_key
from ..offer._on_asyncio import asyncio_functions
from ..offer._registry import Registry
from ..protocol._envelope import STATELESS_METHODS
from ..protocol._errors import QuotaExceeded
from ..protocol._params import PARAMS
from ._admission import Admission, SharedLimiter
from ._admission import rate_key as _rate_key
from ._stateless_side import StatelessSide
from ._tool_threads import ToolThreads

if TYPE_CHECKING:
    from .._asyncio_runtime import AsyncioRuntime
    from .._server import Server
    from ..cluster import ClusterSettings


class Session(Protocol):
    """What the supervisor needs of a live session (``_connection.Connection``)."""

    principal: Any
    peer: str | None

    @property
    def subscriptions(self) -> set[str]: ...

    @property
    def in_flight(self) -> int: ...

    def stop_reading(self) -> None: ...

    def post_notification(self, method: str, params: Any = None, *, key: str = "") -> None: ...


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
        shared_limiter: SharedLimiter | None = None,
        cluster: ClusterSettings | None = None,
    ) -> None:
        """``rate_limits``: the admission policy (None: admit everything, at no cost);
        ``limiter``: a ready-made per-principal bucket (instead of ``rate_limits.rate``);
        ``shared_limiter``: buckets shared with other processes (cluster mode);
        ``cluster``: take part in a cluster on Redis (``_cluster.ClusterNode``, made in ``run``)."""
        if not hasattr(server, "_attach"):
            raise TypeError(f"{type(server).__name__} {server.name!r} is not served on its own: load it into a Server "
                            "(Server.use_plugins)")
        self.server = server
        self.limits = limits or Limits()
        self.metrics = Metrics(frozenset(method for method in PARAMS if method != "initialize") | STATELESS_METHODS)
        #: Whether a request may run now: buckets, concurrency cap (``_admission``).
        self.admission = Admission(rate_limits, self.metrics, bucket=limiter, shared=shared_limiter)
        #: The admission policy (the cluster's shared limiter is built from it).
        self.rate_limits = rate_limits
        self.cluster_settings = cluster
        #: This process's part in a cluster (``_cluster.ClusterNode``) while running; None: alone.
        self.cluster: Any = None
        self.registry = Registry()
        #: Per-principal quotas: sessions, tasks, listen streams, subscriptions (``_quotas``).
        self.quotas = Quotas(self.limits)
        #: OpenTelemetry tracing (``mcp_trio._tracing.Tracing``), the server's; None: off.
        self.tracing = server.tracing
        #: Sync tools' worker threads: the abandoned ones counted and capped (``_tool_threads``).
        self.threads = ToolThreads(self.limits, self.metrics)
        self.connections: set[Session] = set()
        #: The stateless revision's side (2026-07-28): result stamps, requestState keys, listen streams.
        self.stateless = StatelessSide(server)
        self._subscribers: dict[str, set[Session]] = {}
        self._ids = itertools.count(1)
        self._stop = trio.Event()
        #: Set when shutdown has begun: readers stop reading, in-flight requests get the grace period.
        self.shutting_down = trio.Event()
        #: Run-time switches: tools switched off by name, and tags whose tools are switched off.
        #: Applied to every snapshot published (``ToolDef.enabled``), so they survive reloads.
        self.disabled_tools: set[str] = set()
        self.disabled_tags: set[str] = set()
        #: What the server's lifespan yielded (``ctx.lifespan``), while ``run`` runs.
        self.lifespan: Any = None
        #: The asyncio loop (on a thread) of ``runtime="asyncio"`` functions, made when a
        #: published registry first holds one, started at their first call, closed at shutdown.
        self.asyncio: AsyncioRuntime | None = None
        #: The remote servers mounted (``Server.mount(Remote(...))``), one ``_gateway.Upstream``
        #: each, held while this supervisor runs.
        self.upstreams: list[Any] = []

    # -- lifecycle --------------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[Supervisor] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the registry until ``shutdown``; reports readiness with ``task_status.started``.

        A server with plugins (``Server.use_plugins``) has them loaded before readiness is
        reported; its plugin directories are then watched until shutdown.
        """
        # Switches are this run's: a registry kept from an earlier run starts all on again.
        self.registry = self._published(self.server._attach(self))
        self.metrics.clock = trio.lowlevel.current_clock().current_time
        try:
            # The lifespan (``_lifespan``) around everything: entered before readiness, left
            # after ``close`` (every session has ended), in this one task.
            async with self._lifespan() as self.lifespan:
                async with trio.open_nursery() as nursery:
                    if self.cluster_settings is not None:
                        # First: the cluster's switches apply to the first snapshot, plugins included.
                        from ._cluster import ClusterNode

                        self.cluster = await nursery.start(ClusterNode(self, self.cluster_settings).run)
                    if self.server.plugins is not None:
                        plugins = self.server.plugins
                        if self.cluster is not None:
                            from ._cluster import announced

                            plugins.announce = self.cluster.plugins_reloaded
                            with announced():  # its reloads are announced as such, not as list changes
                                await nursery.start(plugins.run)
                        else:
                            await nursery.start(plugins.run)
                    for mounted in self.server._mounted_servers():  # their plugins change them, and so us
                        if mounted.plugins is not None and mounted._supervisor is None:
                            await nursery.start(mounted.plugins.run)
                    await self._start_upstreams(nursery)
                    await nursery.start(self.stateless.tasks.run)  # tools running as tasks (2026-07-28)
                    task_status.started(self)
                    await self._stop.wait()
                    if self.cluster is not None:
                        await self.cluster.stop()
                    nursery.cancel_scope.cancel()
        finally:
            self.cluster = None
            if self.server.plugins is not None:
                self.server.plugins.announce = None
            self.server._detach(self)
            if self.asyncio is not None:
                with trio.CancelScope(shield=True):  # bounded by its close_timeout
                    await self.asyncio.aclose()

    async def _start_upstreams(self, nursery: trio.Nursery) -> None:
        """Open every remote mount's session at once; each reports ready after its first
        attempt (listed, or found down), bounded by its connect timeout."""
        if not any(mount.remote for owner in (self.server, *self.server._mounted_servers()) for mount in owner.mounts):
            return  # no remote mount: the client is not even imported
        from ._gateway import upstreams_of

        self.upstreams = upstreams_of(self.server)
        async with trio.open_nursery() as starting:
            for upstream in self.upstreams:
                starting.start_soon(nursery.start, upstream.run)

    def _lifespan(self) -> AbstractAsyncContextManager[Any]:
        """The server's lifespan around serving (``_lifespan``, imported only when it has one)."""
        if self.server.lifespan_factory is None:
            return nullcontext()
        from ._lifespan import running_lifespan

        return running_lifespan(self.server, self.limits.lifespan_timeout)

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
    def attach(self, connection: Session) -> None:
        self.connections.add(connection)
        self.metrics.connections_opened += 1
        if self.shutting_down.is_set():
            connection.stop_reading()

    def detach(self, connection: Session) -> None:
        self.connections.discard(connection)
        for uri in connection.subscriptions:
            subscribers = self._subscribers.get(uri)
            if subscribers is not None:
                subscribers.discard(connection)
                if not subscribers:
                    del self._subscribers[uri]
        self.quotas.release("subscriptions", quota_key(connection.principal, connection.peer), len(connection.subscriptions))
        connection.subscriptions.clear()

    # -- admission (``_admission``) ----------------------------------------------------------
    @property
    def request_limiter(self) -> RequestLimiter | None:
        return self.admission.limiter

    @property
    def limiter(self) -> TokenBucket | None:
        return self.admission.limiter.bucket if self.admission.limiter is not None else None

    @property
    def running(self) -> int:
        """Requests inside their handler now, server-wide (counted only when there is a cap)."""
        return self.admission.running

    @staticmethod
    def rate_key(connection: Any) -> Hashable:
        return _rate_key(connection)

    def charge(self, connection: Any, tool: str | None = None) -> None:
        """Take a request's tokens from the caller's bucket(s), or raise ``RateLimited``."""
        self.admission.charge(connection, tool)

    # -- registry ---------------------------------------------------------------------------
    def update_registry(self, change: Callable[[Registry], Registry], kind: str | Collection[str]) -> None:
        """Publish ``change(registry)`` and tell live sessions which list(s) changed
        (``kind``: ``"tools"``, ``"resources"``, ``"prompts"``, or several of them)."""
        self.registry = self._published(change(self.registry))
        self.metrics.prune_tools(self.registry.tools)
        kinds = (kind,) if isinstance(kind, str) else sorted(kind)
        self.notify_list_changed(kinds)
        if self.cluster is not None:
            self.cluster.list_changed(kinds)

    def notify_list_changed(self, kinds: Iterable[str]) -> None:
        """Tell this process's live sessions and listen streams which lists changed."""
        for each in kinds:
            method = _LIST_CHANGED.get(each)
            if method is not None:
                for connection in self.connections:
                    connection.post_notification(method)
                self.stateless.list_changed(each)

    def _published(self, registry: Registry) -> Registry:
        """What this supervisor publishes of ``registry``: its switches applied, and its
        ``runtime="asyncio"`` functions bound to this server's asyncio runtime."""
        registry = self._switched(registry)
        found = asyncio_functions(registry)
        if found:
            if self.asyncio is None:
                from .._asyncio_runtime import AsyncioRuntime

                self.asyncio = AsyncioRuntime()
            for fn in found:
                if fn.runtime is not self.asyncio:
                    fn.bind(self.asyncio)
        return registry

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

    async def switch(self, enabled: bool, *, tools: Collection[str] = (), tags: Collection[str] = ()) -> list[str]:
        """``set_enabled``, for the whole cluster in cluster mode: recorded in Redis and
        announced first (``RedisUnavailable``: nothing changed anywhere), then applied here."""
        if self.cluster is None:
            return self.set_enabled(enabled, tools=tools, tags=tags)
        from ._cluster import announced

        await self.cluster.switch(enabled, tools, tags)
        with announced():
            return self.set_enabled(enabled, tools=tools, tags=tags)

    async def reload_plugins(self) -> Any:
        """Reload every directory plugin now (``POST /admin/reload``): in cluster mode every
        other process reloads its plugins too. The plugin manager's ``ReloadReport``."""
        plugins = self.server.plugins
        if plugins is None:
            raise LookupError("this server has no plugins configured")
        if self.cluster is None:
            return await plugins.reload(force=True)
        from ._cluster import announced

        with announced():  # announced as a reload, not as a list change
            return await plugins.reload(force=True)

    def apply_switches(self, tools: Collection[str], tags: Collection[str]) -> list[str]:
        """Make the switches exactly ``tools`` and ``tags`` off (the cluster's, read from Redis)."""
        if set(tools) == self.disabled_tools and set(tags) == self.disabled_tags:
            return []
        before = {name: tool.enabled for name, tool in self.registry.tools.items()}
        self.disabled_tools, self.disabled_tags = set(tools), set(tags)
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
    def subscribe(self, connection: Session, uri: str) -> None:
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

    def unsubscribe(self, connection: Session, uri: str) -> None:
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
        self.notify_resource_updated(uri)
        if self.cluster is not None:
            self.cluster.resource_updated(uri)

    def notify_resource_updated(self, uri: str) -> None:
        """Tell this process's sessions and listen streams subscribed to ``uri``."""
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
