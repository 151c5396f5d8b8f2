"""Cluster mode in the serving layer: this process's part in one service of many processes.

The supervisor makes a ``ClusterNode`` when it is given cluster settings (``[cluster]
redis_url``), and only then is ``mcp_trio.cluster`` (and its Redis client) imported. ``run``
connects to Redis within ``connect_timeout`` (or the start stops with ``RedisUnavailable``, one
line), then, for the life of the server:

* **admission**: the caller's and the tools' buckets are the shared limiter's
  (``Admission.shared``): one script per decision, batched, exact across processes;
* **control plane**: tool switches are kept in Redis (``SwitchStore``) and announced on the
  bus; plugin reloads and ``list_changed`` reach every process; a process that starts, or
  that lost the bus for a while (``Resync``), rereads the switches and its plugins;
* **sessions**: bus events about handshake-era HTTP sessions (deleted, changed, an event for
  its GET stream, a client message for a request running here) are handed to the HTTP
  transport (``SessionHooks``); the stores it uses are this node's (``sessions``, ``events``);
* **tasks**: the tasks extension's tasks are mirrored in Redis (``ClusterTasks``), so
  ``tasks/get``, ``tasks/update`` and ``tasks/cancel`` work from any process, and a task whose
  process stopped is reported failed;
* **statistics**: this process's counters are added to the cluster's every second
  (``ClusterCounters``), for ``/admin/stats`` and ``/metrics``;
* a heartbeat (``NodeRegistry``), so the others can tell this process has stopped.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import msgspec
import trio

from ..cluster import (
    ClusterBus,
    ClusterCounters,
    ClusterSettings,
    EventLog,
    ListChanged,
    NodeRegistry,
    PluginsReloaded,
    RedisUnavailable,
    ResourceUpdated,
    Resync,
    SessionChanged,
    SessionDeleted,
    SessionEvent,
    SessionGone,
    SessionInput,
    SessionStore,
    SharedLimiter,
    SwitchStore,
    TaskAnswered,
    TaskCancelled,
    TaskStore,
    ToolsSwitched,
    TooManySubscriptions,
    open_cluster,
)
from ..cluster._tasks import TERMINAL
from ..protocol._errors import InvalidParams, InvalidRequest, QuotaExceeded

logger = logging.getLogger("mcp_trio.cluster")

#: Seconds between two additions of this process's counters to the cluster's.
STATS_INTERVAL = 1.0
#: Announcements (``list_changed``, ``resources/updated``) waiting to be published at most;
#: repeats of a waiting one are coalesced, and past it new ones are dropped (logged once).
MAX_OUTBOX = 10_000

#: Set while a change is applied that its own bus event announces (a switch, a reload, an
#: event from another process): the registry change it causes is not announced again.
_announced: contextvars.ContextVar[bool] = contextvars.ContextVar("mcp_trio_cluster_announced", default=False)


@contextmanager
def announced() -> Iterator[None]:
    """Registry changes made inside are announced by their own bus event (no ``ListChanged``)."""
    token = _announced.set(True)
    try:
        yield
    finally:
        _announced.reset(token)


class SessionHooks(Protocol):
    """What the HTTP transport hears about its handshake-era sessions from other processes."""

    def session_deleted(self, session_id: str) -> None: ...

    def session_changed(self, session_id: str) -> None: ...

    def session_event(self, session_id: str, stream: int) -> None: ...

    def session_input(self, session_id: str, data: bytes) -> None: ...

    def resync(self) -> None: ...


class ClusterNode:
    """This process in the cluster: the Redis stores, the bus, the heartbeat, the counters."""

    def __init__(self, supervisor: Any, settings: ClusterSettings) -> None:
        self.supervisor = supervisor
        self.settings = settings
        #: This process's id in the cluster (set once connected).
        self.node_id = ""
        self.limiter: SharedLimiter | None = None
        self.sessions: SessionStore = None  # type: ignore[assignment]
        self.events: EventLog = None  # type: ignore[assignment]
        self.bus: ClusterBus = None  # type: ignore[assignment]
        self.switches: SwitchStore = None  # type: ignore[assignment]
        self.nodes: NodeRegistry = None  # type: ignore[assignment]
        self.counters: ClusterCounters = None  # type: ignore[assignment]
        self.tasks: ClusterTasks = None  # type: ignore[assignment]
        #: The HTTP transport's sessions (set by it); None: no HTTP sessions here.
        self.session_hooks: SessionHooks | None = None
        self._nursery: trio.Nursery | None = None
        self._sent: dict[str, int] = {}
        #: Announcements waiting for the publisher, coalesced by (kind, key).
        self._outbox: dict[tuple[str, str], Any] = {}
        self._outbox_wake = trio.Event()
        self._outbox_full = False

    # -- lifecycle --------------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[ClusterNode] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, take part until cancelled; ``started`` once the switches are read and the
        bus is listening (``RedisUnavailable`` before that: the server does not start)."""
        async with open_cluster(self.settings) as cluster:
            self.node_id = cluster.node_id
            self.sessions = SessionStore(cluster)
            self.events = EventLog(cluster)
            self.bus = ClusterBus(cluster)
            self.switches = SwitchStore(cluster)
            self.nodes = NodeRegistry(cluster)
            self.counters = ClusterCounters(cluster)
            self.tasks = ClusterTasks(self, TaskStore(cluster))
            #: For the HTTP transport: its handshake-era sessions in Redis.
            self.http_sessions = ClusterSessions(self)
            supervisor = self.supervisor
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                policy = supervisor.rate_limits
                if policy is not None and policy.limits_rate:
                    self.limiter = SharedLimiter(cluster, policy)
                    await nursery.start(self.limiter.run)
                    supervisor.admission.share(self.limiter)
                await nursery.start(self.bus.run, self._on_event)
                await nursery.start(self.nodes.run)
                await self._read_switches()
                nursery.start_soon(self._add_counters)
                nursery.start_soon(self._publisher)
                supervisor.stateless.tasks.shared = self.tasks
                logger.info("cluster node %s joined %s (key prefix %r)", self.node_id, self.settings.where,
                            self.settings.key_prefix)
                task_status.started(self)
                try:
                    await trio.sleep_forever()
                finally:
                    supervisor.stateless.tasks.shared = None
                    self._nursery = None

    async def stop(self) -> None:
        """Leave the cluster in good order (a graceful shutdown, before ``run`` is cancelled):
        this process's last counts are added and it stops counting as alive at once."""
        with trio.move_on_after(self.settings.command_timeout):
            await self._add_once()
            try:
                await self.nodes.leave()
            except RedisUnavailable as error:
                logger.debug("cluster: leaving: %s", error)

    def spawn(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` in the node's nursery (a publication that must not hold up the
        synchronous code that asks for it); dropped when the node has stopped."""
        if self._nursery is not None:
            self._nursery.start_soon(fn, *args)

    # -- the control plane ------------------------------------------------------------------
    async def switch(self, enabled: bool, tools: Collection[str], tags: Collection[str]) -> None:
        """Record a switch for the cluster and announce it (the caller applies it here)."""
        await self.switches.set(enabled, tools=tools, tags=tags)
        await self._publish(ToolsSwitched(enabled, tuple(tools), tuple(tags)))

    async def _read_switches(self) -> None:
        tools, tags = await self.switches.read()
        with announced():
            self.supervisor.apply_switches(tools, tags)

    async def plugins_reloaded(self, names: Collection[str], force: bool) -> None:
        """The plugin manager's announcement: this process reloaded plugins."""
        await self._publish(PluginsReloaded(tuple(sorted(names)), force))

    def list_changed(self, kinds: Collection[str]) -> None:
        """A registry change here that no other bus event announces (an app's ``add_tool``)."""
        if not _announced.get():
            for kind in kinds:
                self._post(("list", kind), ListChanged((kind,)))

    def resource_updated(self, uri: str) -> None:
        self._post(("resource", uri), ResourceUpdated(uri))

    def _post(self, key: tuple[str, str], event: Any) -> None:
        """Queue an announcement for the publisher without waiting (the callers are sync)."""
        outbox = self._outbox
        if key not in outbox:
            if len(outbox) >= MAX_OUTBOX:
                if not self._outbox_full:
                    logger.warning("cluster bus: %d announcements wait already; dropping new ones until they are sent",
                                   MAX_OUTBOX)
                self._outbox_full = True
                return
            outbox[key] = event
        self._outbox_wake.set()

    async def _publisher(self) -> None:
        """Publish queued announcements in order, one at a time (a burst of resource updates
        costs one message per URI still waiting, not one per update)."""
        while True:
            await self._outbox_wake.wait()
            self._outbox_wake = trio.Event()
            while self._outbox:
                key = next(iter(self._outbox))
                await self._publish(self._outbox.pop(key))
            self._outbox_full = False

    async def _publish(self, event: Any) -> None:
        """Publish, logging (not raising) when Redis is away: the change stands here, and the
        others read the shared state again when the bus is back (``Resync``)."""
        try:
            await self.bus.publish(event)
        except RedisUnavailable as error:
            logger.warning("cluster bus: could not announce %s: %s", type(event).__name__, error)

    async def publish(self, event: Any) -> None:
        """Publish ``event`` (``RedisUnavailable`` when Redis cannot be reached)."""
        await self.bus.publish(event)

    async def _on_event(self, event: Any) -> None:
        """Another process's event (or ``Resync``), applied here without announcing it again."""
        supervisor = self.supervisor
        hooks = self.session_hooks
        with announced():
            if isinstance(event, SessionEvent):
                if hooks is not None:
                    hooks.session_event(event.session_id, event.stream)
            elif isinstance(event, SessionInput):
                if hooks is not None:
                    hooks.session_input(event.session_id, bytes(event.data))
            elif isinstance(event, SessionChanged):
                if hooks is not None:
                    hooks.session_changed(event.session_id)
            elif isinstance(event, SessionDeleted):
                if hooks is not None:
                    hooks.session_deleted(event.session_id)
            elif isinstance(event, ToolsSwitched):
                await self._read_switches()  # the hash is the truth; the event says "look"
            elif isinstance(event, PluginsReloaded):
                plugins = supervisor.server.plugins
                if plugins is not None:
                    await plugins.reload(force=event.force, announce=False)
            elif isinstance(event, ListChanged):
                supervisor.notify_list_changed(event.kinds)
            elif isinstance(event, ResourceUpdated):
                supervisor.notify_resource_updated(event.uri)
            elif isinstance(event, TaskCancelled):
                supervisor.stateless.tasks.cancel_here(event.subject, event.task_id)
            elif isinstance(event, TaskAnswered):
                supervisor.stateless.tasks.answer_here(event.subject, event.task_id, event.responses)
            elif isinstance(event, Resync):
                await self._resync()

    async def _resync(self) -> None:
        """Messages may have been missed: read the shared state again."""
        await self._read_switches()
        if self.session_hooks is not None:
            self.session_hooks.resync()
        plugins = self.supervisor.server.plugins
        if plugins is not None:
            await plugins.reload(announce=False)  # files changed meanwhile are loaded

    # -- statistics -------------------------------------------------------------------------
    async def _add_counters(self) -> None:
        """Add what this process counted since the last time to the cluster's counters."""
        while True:
            await trio.sleep(STATS_INTERVAL)
            await self._add_once()

    async def _add_once(self) -> None:
        counters = self.counters
        for name, value in _counts(self.supervisor.metrics).items():
            delta = value - self._sent.get(name, 0)
            if delta:
                counters.add(name, delta)
                self._sent[name] = value
        try:
            await counters.flush()
        except RedisUnavailable as error:  # the sums are kept for the next flush
            logger.debug("cluster counters: %s", error)

    async def totals(self) -> dict[str, int]:
        """The cluster's counters (every process's flushed sums)."""
        return await self.counters.totals()

    async def figures(self) -> dict[str, Any]:
        """The cluster's figures for ``/admin/stats``: the live processes, requests by method
        and outcome, tools by name, and the other counters (``RedisUnavailable`` if away)."""
        nodes, totals = await self.nodes.live(), await self.totals()
        requests, tools, plain = _split(totals)
        by_method: dict[str, dict[str, int]] = {}
        for (method, outcome), value in sorted(requests.items()):
            by_method.setdefault(method, {})[outcome] = value
        return {"node": self.node_id, "nodes": nodes, "requests": by_method, "tools": dict(sorted(tools.items())), **plain}

    async def metrics_text(self) -> str:
        """Prometheus text for ``/metrics``: the cluster's figures (``mcp_cluster_*``, summed
        over every process, up to a second old) and this process's shared limiter."""
        lines: list[str] = []
        limiter = self.limiter
        if limiter is not None:
            stats = limiter.statistics
            for name, help_text, value in (
                ("mcp_shared_limiter_decisions_total", "Rate-limit decisions this process asked Redis for.", stats.decisions),
                ("mcp_shared_limiter_round_trips_total", "Round trips (pipelines) those decisions took.", stats.round_trips),
                ("mcp_shared_limiter_unavailable_total", "Decisions made by the failure policy: Redis was unreachable.",
                 stats.unavailable),
            ):
                lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter", f"{name} {value}"]
        try:
            nodes, totals = await self.nodes.live(), await self.totals()
        except RedisUnavailable as error:
            lines.append(f"# cluster figures unavailable: {_label(str(error))}")
            return "\n".join(lines) + "\n"
        lines += ["# HELP mcp_cluster_nodes Server processes of the cluster alive now.", "# TYPE mcp_cluster_nodes gauge",
                  f"mcp_cluster_nodes {len(nodes)}"]
        requests, tools, plain = _split(totals)
        lines += ["# HELP mcp_cluster_requests_total Requests answered by every process, by method and outcome.",
                  "# TYPE mcp_cluster_requests_total counter"]
        lines += [f'mcp_cluster_requests_total{{method="{_label(method)}",outcome="{_label(outcome)}"}} {value}'
                  for (method, outcome), value in sorted(requests.items())]
        for name, help_text in (
            ("rate_limited", "Requests refused by the rate limiter, every process."),
            ("overloaded", "Requests shed by a concurrency cap, every process."),
            ("connections_opened", "Connections (or HTTP sessions, replicas included) opened, every process."),
            ("connections_refused", "Connections refused by a limit, every process."),
        ):
            metric = f"mcp_cluster_{name}_total"
            lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} counter", f"{metric} {plain.get(name, 0)}"]
        for attr, help_text in (("calls", "Tool calls begun"), ("errors", "Tool calls that ended in an error"),
                                ("timeouts", "Tool calls cancelled by their timeout"),
                                ("cancellations", "Tool calls cancelled by the client or by shutdown")):
            metric = f"mcp_cluster_tool_{attr}_total"
            lines += [f"# HELP {metric} {help_text}, by tool, every process.", f"# TYPE {metric} counter"]
            lines += [f'{metric}{{tool="{_label(tool)}"}} {fields.get(attr, 0)}' for tool, fields in sorted(tools.items())]
        return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _split(totals: dict[str, int]) -> tuple[dict[tuple[str, str], int], dict[str, dict[str, int]], dict[str, int]]:
    """The cluster's counters by kind: requests by (method, outcome), tools by name, the rest."""
    requests: dict[tuple[str, str], int] = {}
    tools: dict[str, dict[str, int]] = {}
    plain: dict[str, int] = {}
    for name, value in totals.items():
        kind, _, rest = name.partition("|")
        if kind == "requests":
            method, _, outcome = rest.rpartition("|")
            requests[(method, outcome)] = value
        elif kind == "tool":
            tool, _, attr = rest.rpartition("|")
            tools.setdefault(tool, {})[attr] = value
        else:
            plain[name] = value
    return requests, tools, plain


def _counts(metrics: Any) -> dict[str, int]:
    """This process's counters by their cluster-wide names (monotonic: only ever grow)."""
    counts = {f"requests|{method}|{outcome}": n for (method, outcome), n in metrics.requests.items()}
    counts["rate_limited"] = metrics.rate_limited
    counts["overloaded"] = metrics.overloaded
    counts["connections_opened"] = metrics.connections_opened
    counts["connections_refused"] = metrics.connections_refused
    for name, stats in metrics.tools.items():
        for attr in ("calls", "errors", "timeouts", "cancellations"):
            counts[f"tool|{name}|{attr}"] = getattr(stats, attr)
    return counts


class ClusterSessions:
    """Handshake-era HTTP sessions in Redis, for the HTTP transport (its ``SharedSessions``):
    the ``SessionStore`` and ``EventLog`` calls it needs, each announcing on the bus what
    other processes must hear."""

    def __init__(self, node: ClusterNode) -> None:
        self._node = node
        settings = node.settings
        #: Seconds an idle session lives in Redis; seconds to wait before Redis is tried again.
        self.session_ttl = settings.session_ttl
        self.probe_interval = settings.probe_interval

    def listen(self, hooks: SessionHooks | None) -> None:
        """Hand bus events about sessions to ``hooks`` (None: stop)."""
        self._node.session_hooks = hooks

    async def create(self, session_id: str, profile: Any, owner: str) -> bool:
        return await self._node.sessions.create(session_id, profile, owner=owner)

    async def get(self, session_id: str) -> Any:
        """The session's record, renewed; None when it ended (expired, deleted anywhere)."""
        return await self._node.sessions.get(session_id)

    async def delete(self, session_id: str) -> None:
        await self._node.sessions.delete(session_id)
        await self._node.publish(SessionDeleted(session_id))

    async def set_log_level(self, session_id: str, level: str) -> None:
        try:
            await self._node.sessions.set_log_level(session_id, level)
        except SessionGone:
            raise InvalidRequest("session not found: it ended on another process") from None
        await self._node._publish(SessionChanged(session_id))

    async def subscribe(self, session_id: str, uri: str, on: bool) -> None:
        store = self._node.sessions
        try:
            await (store.subscribe(session_id, uri) if on else store.unsubscribe(session_id, uri))
        except TooManySubscriptions as exc:
            raise QuotaExceeded(f"quota exceeded: {exc} (cluster.max_subscriptions)",
                                {"quota": "cluster.max_subscriptions", "limit": self._node.settings.max_subscriptions}) from None
        except SessionGone:
            raise InvalidRequest("session not found: it ended on another process") from None
        await self._node._publish(SessionChanged(session_id))

    async def mark_delivered(self, session_id: str, event_id: str) -> None:
        await self._node.sessions.mark_delivered(session_id, event_id)

    async def append(self, session_id: str, stream: int, data: bytes, *, seq: int | None = None,
                     final: bool = False) -> str | None:
        """Store a GET-stream (or spilled request-stream) event; the process streaming it
        hears of it. None: the session is gone."""
        event_id = await self._node.events.append(session_id, stream, data, seq=seq, final=final)
        if event_id is not None:
            await self._node._publish(SessionEvent(session_id, stream))
        return event_id

    async def after(self, session_id: str, last_id: str | None, stream: int | None = None) -> list[Any]:
        return await self._node.events.after(session_id, last_id, stream=stream)

    async def send_input(self, session_id: str, data: bytes) -> None:
        """A client message (a response, a cancellation) for every process serving the session."""
        await self._node.publish(SessionInput(session_id, msgspec.Raw(data)))


class ClusterTasks:
    """The tasks extension's tasks in Redis (``_tasks.Tasks.shared``): created before the caller
    learns the id, updated as they move, read and cancelled from any process."""

    def __init__(self, node: ClusterNode, store: TaskStore) -> None:
        self._node = node
        self._store = store
        self.ttl_ms = round(node.settings.task_ttl * 1000)

    @property
    def node_id(self) -> str:
        return self._node.node_id

    async def created(self, task: Any) -> None:
        """Store a task that escalated here (``ServerOverloaded`` past the caller's cap)."""
        await self._store.create(task.subject, task.task_id, node=self.node_id, created_at=task.created_at)

    async def moved(self, task: Any) -> None:
        """Store the task's status and what goes with it (its outcome, what it asks)."""
        outcome: dict[str, bytes] = {}
        if task.result is not None:
            outcome["result"] = bytes(task.result)
        if task.error is not None:
            outcome["error"] = msgspec.json.encode(task.error)
        if task.status == "input_required" and task.asked:
            outcome["input_requests"] = msgspec.json.encode({key: asked.request for key, asked in task.asked.items()})
        try:
            await self._store.update(task.subject, task.task_id, task.status, updated_at=task.updated_at, **outcome)
        except (RedisUnavailable, ValueError) as error:
            logger.warning("task %s: its %s status could not be stored: %s", task.task_id, task.status, error)

    async def get(self, subject: str, task_id: str, now: str) -> dict[str, Any] | None:
        """A task that runs (or ran) on another process, as ``tasks/get`` shows it; None when
        unknown. A task still ``working`` on a process that stopped is failed now."""
        record = await self._store.get(subject, task_id)
        if record is None:
            return None
        if record.status not in TERMINAL and not await self._node.nodes.alive(record.node):
            error = {"code": -32603, "message": "the server process running this task stopped before it finished"}
            status = await self._store.update(subject, task_id, "failed", updated_at=now, error=msgspec.json.encode(error))
            record = await self._store.get(subject, task_id) if status is not None else None
            if record is None:
                return None
        body: dict[str, Any] = {"taskId": record.task_id, "status": record.status, "createdAt": record.created_at,
                                "lastUpdatedAt": record.updated_at}
        if record.status == "input_required" and record.input_requests:
            body["inputRequests"] = msgspec.Raw(record.input_requests)
        if record.result is not None and record.status == "completed":
            body["result"] = msgspec.Raw(record.result)
        if record.error is not None and record.status == "failed":
            body["error"] = msgspec.Raw(record.error)
        return body

    async def cancel(self, subject: str, task_id: str, now: str) -> bool:
        """Cancel a task of another process (the one running it hears it); False: unknown."""
        record = await self._store.get(subject, task_id)
        if record is None:
            return False
        status = await self._store.cancel(subject, task_id, updated_at=now)
        if status == "cancelled" and record.status not in TERMINAL:
            await self._node.publish(TaskCancelled(subject, task_id))
        return True

    async def answer(self, subject: str, task_id: str, responses: bytes) -> bool:
        """Hand ``tasks/update`` answers to the process running the task; False: unknown."""
        record = await self._store.get(subject, task_id)
        if record is None:
            return False
        if record.status not in TERMINAL:
            try:
                await self._node.publish(TaskAnswered(subject, task_id, msgspec.Raw(responses)))
            except ValueError as error:  # larger than the bus carries
                raise InvalidParams(f"tasks/update: {error}") from None
        return True
