"""The cluster bus: control-plane events every process hears, on Redis pub/sub.

One channel (``Keys.bus``) carries small typed messages: tool switches, plugin reloads,
``list_changed``, a session deleted or changed, a resource updated, an event appended to a
session's log (so the worker holding that session's GET stream reads it), a client's message
relayed to the worker running the request it answers, a task cancelled or answered. Each
message names the node that sent it; a node does not hear its own (it acted already).
Control messages are at most ``max_bus_message``; a relayed client message (``SessionInput``)
at most ``max_value_size``, as a stored value.

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
    """A process reloaded plugins (``names`` changed); ``force``: every plugin, changed or not
    (``POST /admin/reload``). Every other process reloads its own plugin directories."""

    names: tuple[str, ...] = ()
    force: bool = False


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


class SessionChanged(msgspec.Struct, frozen=True, tag="session-changed"):
    """A session's log level or subscriptions changed in its ``SessionStore`` record: the
    processes serving it read it again."""

    session_id: str


class SessionInput(msgspec.Struct, frozen=True, tag="session-input"):
    """A client message that needs no answer (a response to a server-to-client request, a
    cancellation), received by one process for a session whose request may run on another."""

    session_id: str
    data: msgspec.Raw


class TaskCancelled(msgspec.Struct, frozen=True, tag="task-cancelled"):
    subject: str
    task_id: str


class TaskAnswered(msgspec.Struct, frozen=True, tag="task-answered"):
    """``tasks/update`` answers for a task that runs on another process."""

    subject: str
    task_id: str
    responses: msgspec.Raw


class Resync(msgspec.Struct, frozen=True, tag="resync"):
    """Never sent: handed to this node's handler after it subscribed again (messages may be lost)."""

    reason: str


BusEvent = Union[ToolsSwitched, PluginsReloaded, ListChanged, SessionDeleted, ResourceUpdated,  # noqa: UP007
                 SessionEvent, SessionChanged, SessionInput, TaskCancelled, TaskAnswered, Resync]


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
        #: A client's message relayed for a session (``SessionInput``: a sampling answer may
        #: carry an image) may be as large as a stored value; control messages stay small.
        self._max_input = max(self._max, cluster.settings.max_value_size + 1024)
        self._reconnect_delay = reconnect_delay
        #: Messages received, dropped (undecodable, too large), and resubscriptions.
        self.received = self.dropped = self.resubscribed = 0

    async def publish(self, event: BusEvent) -> int:
        """Send ``event`` to every other subscribed process; how many Redis delivered it to
        (this process's own subscription included). ``RedisUnavailable`` if it cannot."""
        if isinstance(event, Resync):
            raise TypeError("Resync is local to a node; it is never published")
        data = _encoder.encode(_Envelope(self._node, event))
        if isinstance(event, SessionInput):
            if len(data) > self._max_input:
                raise ValueError(f"a relayed client message of {len(data)} bytes exceeds cluster.max_value_size")
        elif len(data) > self._max:
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
        lost = ""
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
                lost = reason
            # The client's connection also closes when the process stops: nothing to say then.
            await trio.lowlevel.checkpoint_if_cancelled()
            # One WARNING when the subscription is lost; the attempts after it at DEBUG.
            (logger.warning if delay == self._reconnect_delay else logger.debug)(
                "cluster bus: %s; subscribing again in %.1f s", lost, delay)
            await trio.sleep(delay)
            delay = min(delay * 2, MAX_RECONNECT_DELAY)

    async def _receive(self, handler: Handler, data: bytes) -> None:
        if len(data) > self._max_input:
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
