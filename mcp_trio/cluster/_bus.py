"""The cluster bus: control-plane events every process hears, on Redis pub/sub.

One channel (``Keys.bus``) carries small typed messages: tool switches, plugin reloads,
``list_changed``, a session deleted, a resource updated, an event appended to a session's log
(so the worker holding that session's GET stream reads it), a task cancelled. Each message
names the node that sent it; a node does not hear its own (it acted already).

Pub/sub delivers to whoever is subscribed at that moment and keeps nothing, so a process that
lost its subscription may have missed messages. ``run`` subscribes again by itself (backing off
up to ``MAX_RECONNECT_DELAY``) and then hands the handler a ``Resync``: the cue to reread
whatever state lives in Redis rather than trust what it last heard.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Union

import msgspec
import trio

from ._client import UNREACHABLE, Cluster, describe
from ._errors import RedisUnavailable

logger = logging.getLogger("mcp_trio.cluster")

#: Seconds before the first attempt to subscribe again after the subscription was lost.
DEFAULT_RECONNECT_DELAY = 0.1
#: Longest wait between attempts (the delay doubles after each failed one).
MAX_RECONNECT_DELAY = 5.0


class ToolsSwitched(msgspec.Struct, frozen=True, tag="tools-switched"):
    """Tools switched on or off by name and/or tag (``Supervisor.set_enabled``)."""

    enabled: bool
    tools: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()


class PluginsReloaded(msgspec.Struct, frozen=True, tag="plugins-reloaded"):
    names: tuple[str, ...] = ()


class ListChanged(msgspec.Struct, frozen=True, tag="list-changed"):
    """``notifications/<kind>/list_changed`` for every session (kinds: tools, resources, prompts)."""

    kinds: tuple[str, ...]


class SessionDeleted(msgspec.Struct, frozen=True, tag="session-deleted"):
    session_id: str


class ResourceUpdated(msgspec.Struct, frozen=True, tag="resource-updated"):
    uri: str


class SessionEvent(msgspec.Struct, frozen=True, tag="session-event"):
    """An event was appended to this session's ``EventLog`` (for the worker streaming it)."""

    session_id: str
    stream: int


class TaskCancelled(msgspec.Struct, frozen=True, tag="task-cancelled"):
    subject: str
    task_id: str


class Resync(msgspec.Struct, frozen=True, tag="resync"):
    """Never sent: handed to this node's handler after it subscribed again (messages may be lost)."""

    reason: str


BusEvent = Union[ToolsSwitched, PluginsReloaded, ListChanged, SessionDeleted, ResourceUpdated,  # noqa: UP007
                 SessionEvent, TaskCancelled, Resync]


class _Envelope(msgspec.Struct, frozen=True):
    origin: str
    event: BusEvent


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(_Envelope)

Handler = Callable[[BusEvent], Awaitable[None]]


class ClusterBus:
    """Publish control-plane events to every other process; hear theirs (``run``)."""

    def __init__(self, cluster: Cluster, *, reconnect_delay: float = DEFAULT_RECONNECT_DELAY) -> None:
        self._cluster = cluster
        self._channel = cluster.keys.bus()
        self._node = cluster.node_id
        self._max = cluster.settings.max_bus_message
        self._reconnect_delay = reconnect_delay
        #: Messages received, dropped (undecodable, too large), and resubscriptions.
        self.received = self.dropped = self.resubscribed = 0

    async def publish(self, event: BusEvent) -> int:
        """Send ``event`` to every other subscribed process; how many Redis delivered it to
        (this process's own subscription included). ``RedisUnavailable`` if it cannot."""
        if isinstance(event, Resync):
            raise TypeError("Resync is local to a node; it is never published")
        data = _encoder.encode(_Envelope(self._node, event))
        if len(data) > self._max:
            raise ValueError(f"bus message of {len(data)} bytes exceeds cluster.max_bus_message ({self._max})")
        with self._cluster.reaching():
            return int(await self._cluster.client.publish(self._channel, data))

    async def run(self, handler: Handler, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Deliver other nodes' events to ``handler`` until cancelled, subscribing again after
        a loss (then ``Resync``). Started once the first subscription is confirmed; raises
        ``RedisUnavailable`` if that first one fails. A handler's failure is logged and the
        bus goes on (one bad event must not deafen the process)."""
        delay = self._reconnect_delay
        started = False
        while True:
            try:
                async with self._cluster.client.pubsub(channels=[self._channel], retry_policy=None,
                                                       ignore_subscribe_messages=True) as subscription:
                    if not started:
                        started = True
                        task_status.started()
                    else:
                        self.resubscribed += 1
                        logger.info("cluster bus: subscribed again to %s", self._cluster.settings.where)
                        await self._deliver(handler, Resync("the bus subscription was lost; messages may be missing"))
                    delay = self._reconnect_delay
                    async for message in subscription:
                        if message["type"] == "message":
                            await self._receive(handler, message["data"])
            except* (*UNREACHABLE, TimeoutError) as group:
                reason = describe(group, self._cluster.settings)
                if not started:
                    raise RedisUnavailable(f"cluster bus: {reason}") from None
                logger.warning("cluster bus: %s; subscribing again in %.1f s", reason, delay)
            await trio.sleep(delay)
            delay = min(delay * 2, MAX_RECONNECT_DELAY)

    async def _receive(self, handler: Handler, data: bytes) -> None:
        if len(data) > self._max:
            self.dropped += 1
            return
        try:
            envelope = _decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            self.dropped += 1
            logger.debug("cluster bus: dropped an undecodable message (%s)", error)
            return
        if envelope.origin == self._node or isinstance(envelope.event, Resync):
            return
        self.received += 1
        await self._deliver(handler, envelope.event)

    @staticmethod
    async def _deliver(handler: Handler, event: BusEvent) -> None:
        try:
            await handler(event)
        except Exception as error:
            logger.error("cluster bus: handling %s failed: %s", type(event).__name__, error)
            logger.debug("cluster bus: handler traceback", exc_info=error)
