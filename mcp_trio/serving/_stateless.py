"""The stateless era (2026-07-28) around the handlers both eras share.

A request whose ``params._meta`` carries its own envelope is served from the envelope alone
(``protocol._era`` decides, ``_kernel`` answers): no ``initialize``, no session state. The
handlers are the handshake era's (``_handlers``); this module adds what only this era has and
replaces what differs:

* ``server/discover``: what is served, to a client that has not said who it is;
* ``subscriptions/listen``: the stream of list changes and resource updates (replaces the GET
  stream and ``resources/subscribe``);
* ``tools/call`` of a task-capable tool: it may go on as a task (``ctx.run_as_task``,
  ``_tasks``), and ``tasks/get``, ``tasks/update``, ``tasks/cancel``.

What is around every stateless request (the result stamp, ``requestState``, the listen streams'
bookkeeping) is the supervisor's stateless side (``_stateless_side``); how its asks are answered
is ``_replay`` and ``_asks``. Which requests come here: on HTTP, every POST without
``Mcp-Session-Id`` whose ``MCP-Protocol-Version`` is not a handshake revision or whose body has
the envelope; on stdio and WebSocket, requests with the envelope (and ``server/discover``,
``subscriptions/listen``) until the connection sends ``initialize``: the client's first
requests decide a connection's era, as the spec's probe does.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import trio
from msgspec import UNSET, Raw, UnsetType

from ..protocol._envelope import (
    SERVER_INFO_KEY,
    SUBSCRIPTION_ID_KEY,
    DiscoverResult,
    StatelessCapabilities,
    StatelessListChanged,
    StatelessResources,
)
from ..protocol._errors import InvalidParams, ServerOverloaded
from ..protocol._params import SubscriptionFilter
from ..protocol._versions import ALL_VERSIONS
from . import _handlers
from . import _stateless_side as side
from ._calls import allowed, check_uri_length, known_resource_scopes
from ._peer import Peer
from ._request import InFlight
from ._stateless_side import LIST_KINDS, Listener
from ._tasks import EXTENSION as TASKS_EXTENSION
from ._tasks import client_can_task, missing_extension, support_of

logger = logging.getLogger("mcp_trio.stateless")

_encode = msgspec.json.encode


# -- server/discover --------------------------------------------------------------------------
def capabilities(server: Any) -> StatelessCapabilities:
    """What this server offers under 2026-07-28 (list changes arrive on listen streams)."""
    return StatelessCapabilities(
        tools=StatelessListChanged(list_changed=True),
        resources=StatelessResources(subscribe=True, list_changed=True),
        prompts=StatelessListChanged(list_changed=True),
        logging={},
        completions={},
        extensions={TASKS_EXTENSION: {}},
    )


async def discover(peer: Peer, call: InFlight) -> DiscoverResult:
    server = peer.server
    return DiscoverResult(
        supported_versions=list(ALL_VERSIONS),
        capabilities=capabilities(server),
        instructions=server.instructions if server.instructions else UNSET,
    )


# -- subscriptions/listen ---------------------------------------------------------------------
def _agreed(peer: Peer, wanted: SubscriptionFilter) -> tuple[SubscriptionFilter, frozenset[str], frozenset[str]]:
    """The subset of the filter honoured: list kinds we notify, resources the caller may read."""
    kinds = set()
    agreed = SubscriptionFilter()
    for kind, (attr, _) in LIST_KINDS.items():
        if getattr(wanted, attr) is True:
            kinds.add(kind)
            setattr(agreed, attr, True)
    uris: set[str] = set()
    asked = wanted.resource_subscriptions
    if not isinstance(asked, UnsetType):
        registry = peer.supervisor.registry
        principal = peer.principal
        cap = peer.limits.max_subscriptions_per_session
        if len(asked) > cap:
            raise InvalidParams(f"a listen stream may name at most {cap} resources (max_subscriptions_per_session); "
                                f"this one names {len(asked)}", {"limit": cap})
        for uri in asked:
            check_uri_length(peer, uri)
            scopes = known_resource_scopes(registry, uri)
            # Honoured: resources that exist and that the caller may read; the rest are left
            # out of the agreed filter (the client sees which).
            if scopes is not None and (principal is None or allowed(principal, scopes)):
                uris.add(uri)
        agreed.resource_subscriptions = sorted(uris)
    return agreed, frozenset(kinds), frozenset(uris)


async def listen(peer: Peer, call: InFlight) -> Raw:
    """Acknowledge, then forward what the filter asks for until shutdown (or the client leaves).

    Every message carries ``_meta[io.modelcontextprotocol/subscriptionId]``, the listen
    request's id. Graceful end (server shutdown, the connection's input closed): the result,
    ``{"resultType": "complete", "_meta": {subscriptionId, serverInfo}}``. A client ends it by
    cancelling the request (stdio, WebSocket) or closing the response (HTTP).
    """
    params = call.decode()
    agreed, kinds, uris = _agreed(peer, params.notifications)
    sid = call.id
    tag = {SUBSCRIPTION_ID_KEY: sid}
    supervisor = peer.supervisor
    stateless = supervisor.stateless
    if len(stateless.listeners) >= side.MAX_LISTENS:
        raise ServerOverloaded(f"too many subscriptions/listen streams ({side.MAX_LISTENS}); try again later")
    if sum(other.owner is peer for other in stateless.listeners) >= side.MAX_LISTENS_PER_CONNECTION:
        raise ServerOverloaded(f"too many subscriptions/listen streams on this connection ({side.MAX_LISTENS_PER_CONNECTION})")
    quota = supervisor.quotas.acquire("listens", peer.principal, peer.peer)
    listener = Listener(kinds, uris, peer)
    peer.park(call)  # waits on the server, not on this connection's input: free the slot
    stateless.listeners.add(listener)
    try:
        await peer.notify("notifications/subscriptions/acknowledged", {"notifications": agreed, "_meta": tag})
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_cancel_after, supervisor.shutting_down.wait, nursery.cancel_scope)
            input_done = peer.input_done
            if input_done is not None:
                nursery.start_soon(_cancel_after, input_done.wait, nursery.cancel_scope)
            while True:
                await listener.wake.wait()
                for method, note in listener.take():
                    await peer.notify(method, {**(note or {}), "_meta": tag})
    finally:
        stateless.listeners.discard(listener)
        supervisor.quotas.release("listens", quota)
    body = _encode({"resultType": "complete", "_meta": {SUBSCRIPTION_ID_KEY: sid, SERVER_INFO_KEY: stateless.server_info}})
    return Raw(body)


async def _cancel_after(wait: Callable[[], Awaitable[Any]], scope: trio.CancelScope) -> None:
    await wait()
    scope.cancel()


# -- tools/call, and the tasks extension ------------------------------------------------------
async def call_tool(peer: Peer, call: InFlight) -> Any:
    """``tools/call``: a task-capable tool (``_tasks.task_support``) runs in a task of its own
    when the request's client can do tasks; a ``required`` one is refused (-32021) otherwise."""
    tool = peer.supervisor.registry.tools.get(call.decode().name)
    if tool is not None and tool.enabled:
        support = support_of(tool)
        if support != "forbidden":
            if client_can_task(call.envelope):
                return await peer.supervisor.stateless.tasks.call_tool(peer, call, lambda carrier: _handlers.call_tool(carrier, call))
            if support == "required":
                raise missing_extension()
    return await _handlers.call_tool(peer, call)


async def tasks_get(peer: Peer, call: InFlight) -> Raw:
    return await peer.supervisor.stateless.tasks.get(peer, call)


async def tasks_update(peer: Peer, call: InFlight) -> Raw:
    return await peer.supervisor.stateless.tasks.update(peer, call)


async def tasks_cancel(peer: Peer, call: InFlight) -> Raw:
    return await peer.supervisor.stateless.tasks.cancel(peer, call)


#: What the stateless era serves differently from (or in addition to) ``_handlers.HANDLERS``.
STATELESS_HANDLERS: dict[str, Callable[[Peer, InFlight], Awaitable[Any]]] = {
    "server/discover": discover,
    "subscriptions/listen": listen,
    "tools/call": call_tool,
    "tasks/get": tasks_get,
    "tasks/update": tasks_update,
    "tasks/cancel": tasks_cancel,
}
