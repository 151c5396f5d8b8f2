"""Testing your server: a client connected to a ``Server`` in memory, and pytest fixtures.

::

    from mcp_trio.testing import connect

    async def test_forecast():
        async with connect(server) as client:           # no socket, no subprocess
            result = await client.call_tool("forecast", {"city": "Paris"})
            assert result.structured_content["summary"] == ["sunny"] * 3
            assert client.logs == []                    # what the tool logged, recorded

``connect(server)`` serves ``server`` on a supervisor of its own (its lifespan entered and left
around the block) and opens a session over a pair of trio memory channels: the server side is
the very ``Connection`` stdio, WebSocket and HTTP sessions run, the client side is
``mcp_trio.client``'s ``Client`` (a ``TestClient``, which also records the notifications it
gets), so a test calls the typed methods a script would. Both eras (``era="handshake"`` or
``"stateless"``); sampling, elicitation and roots answered by the callbacks given; progress
and logs recorded. Nothing waits on real time: no thread, no socket, no sleep, so tests run
under ``trio.testing.MockClock(autojump_threshold=0)``. The pytest plugin
(``pytest_plugins = ["mcp_trio.testing.pytest_plugin"]``) gives the fixtures ``mcp_client``
and ``mcp_connect``. The README's "Testing your server" has examples.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import trio

from .._limiter import RateLimits
from .._limits import Limits
from .._server import Server
from ..client import Client, open_client
from ..client._client import (
    ElicitationCallback,
    ProgressCallback,
    Era,
    ListChangedHandler,
    LogCallback,
    NotificationHandler,
    RequestHandler,
    ResourceUpdatedHandler,
    RootsCallback,
    SamplingCallback,
)
from ..client._types import CallToolResult, LoggingMessageParams
from ..protocol._types import ProgressParams
from ._memory import CHANNEL_BUFFER, MemoryTransport, ServerChannel, channel_pair, running_supervisor, session

__all__ = [
    "CHANNEL_BUFFER",
    "MemoryTransport",
    "Notification",
    "ServerChannel",
    "TestClient",
    "channel_pair",
    "connect",
]


class Notification(msgspec.Struct, frozen=True):
    """One notification the server sent: its method and its params as sent (JSON data)."""

    method: str
    params: Any = None


class TestClient(Client):
    """``mcp_trio.client.Client`` that records every notification the server sends it.

    ``notifications`` holds them all, in order; ``logs`` and ``progress`` are the log messages
    (``notifications/message``) and the progress notifications among them, typed. A handler
    given as ``on_notification`` still gets each one, after it is recorded. ``call_tool``
    always sends a ``progressToken`` (a plain client sends one only with ``progress=``), so a
    tool's progress is recorded; send ``tools/call`` with ``request()`` to test a call without.
    """

    __test__ = False  # a class named Test*: not one for pytest to collect

    def __init__(self, transport: Any, nursery: trio.Nursery, *, on_notification: NotificationHandler | None = None,
                 **options: Any) -> None:
        #: Every notification received, in order.
        self.notifications: list[Notification] = []
        self._user_handler = on_notification
        super().__init__(transport, nursery, on_notification=self._record, **options)

    async def call_tool(self, name: str, arguments: Mapping[str, Any] | msgspec.Raw | None = None, *,
                        progress: ProgressCallback | None = None, **options: Any) -> CallToolResult:
        """``Client.call_tool``, always asking for progress (a ``progressToken``), so that
        ``progress`` records what the tool reports even with no ``progress=`` callback."""
        return await super().call_tool(name, arguments, progress=progress or _ignore_progress, **options)

    def _record(self, method: str, params: Any) -> None:
        self.notifications.append(Notification(method, params))
        if self._user_handler is not None:
            self._invoke(self._user_handler, (method, params))

    @property
    def logs(self) -> list[LoggingMessageParams]:
        """The log messages received (``notifications/message``), in order."""
        return [msgspec.convert(n.params, LoggingMessageParams) for n in self.notifications
                if n.method == "notifications/message"]

    @property
    def progress(self) -> list[ProgressParams]:
        """The progress notifications received, in order (every call's: each carries its
        ``progress_token``; a call's own go to its ``progress=`` callback as well)."""
        return [msgspec.convert(n.params, ProgressParams) for n in self.notifications
                if n.method == "notifications/progress"]

    def methods(self) -> list[str]:
        """The method of each notification received, in order."""
        return [n.method for n in self.notifications]

    def clear(self) -> None:
        """Forget what was recorded so far."""
        self.notifications.clear()


def _ignore_progress(progress: float, total: float | None, message: str | None) -> None:
    """The progress callback of a call given none: recorded by ``TestClient`` all the same."""


@asynccontextmanager
async def connect(
    server: Server,
    *,
    era: Era = "handshake",
    protocol_version: str | None = None,
    limits: Limits | None = None,
    rate_limits: RateLimits | None = None,
    principal: Any = None,
    peer: str | None = None,
    sampling: SamplingCallback | None = None,
    elicitation: ElicitationCallback | None = None,
    roots: RootsCallback | None = None,
    on_log: LogCallback | None = None,
    on_list_changed: ListChangedHandler | None = None,
    on_resource_updated: ResourceUpdatedHandler | None = None,
    on_notification: NotificationHandler | None = None,
    on_request: RequestHandler | None = None,
    listen: bool | None = None,
    log_level: str | None = None,
    capabilities: Mapping[str, Any] | None = None,
    client_info: Mapping[str, Any] | None = None,
    request_timeout: float | None = None,
) -> AsyncIterator[TestClient]:
    """A ``TestClient`` in session with ``server``, in memory, for the block.

    ``era``: ``"handshake"`` (``initialize``, the default), ``"stateless"`` (2026-07-28) or
    ``"auto"`` (the probe a client would run). ``protocol_version``: the revision to ask for
    (``"2025-03-26"``, ...; default the newest of the era). ``limits``, ``rate_limits``: the
    server's (when this call starts serving it). ``principal``: who the session
    authenticated as (an ``mcp_trio.auth.Principal``, for tests of scopes; None: a trusted
    channel, as stdio). ``peer``: the caller's address, which keys anonymous rate limits.
    The callbacks and handlers are ``mcp_trio.client.connect``'s; ``listen`` (default: when
    ``on_list_changed`` or ``on_resource_updated`` is given) holds the 2026-07-28 listen
    stream. ``request_timeout`` is None (no limit) by default: a test bounds itself
    (``trio.fail_after``), and a timeout of the client's own would fire at once under an
    autojumping ``MockClock`` while a sync tool runs in its thread.

    When ``server`` is already being served (an HTTP server in the same test), the session
    joins that supervisor; otherwise one is started for the block, the server's lifespan
    entered, and both are stopped at the end. Leaving the block closes the session as a
    stdio host does (EOF; requests still running get the grace period).
    """
    if listen is None:
        listen = on_list_changed is not None or on_resource_updated is not None
    try:
        async with running_supervisor(server, limits, rate_limits) as supervisor:
            async with session(supervisor, principal=principal, peer=peer) as (transport, _connection):
                async with open_client(
                    transport, client_class=TestClient, era=era, protocol_version=protocol_version, sampling=sampling,
                    elicitation=elicitation, roots=roots, on_log=on_log, on_list_changed=on_list_changed,
                    on_resource_updated=on_resource_updated, on_notification=on_notification, on_request=on_request,
                    listen=listen, log_level=log_level, capabilities=capabilities, client_info=client_info,
                    request_timeout=request_timeout, handshake_timeout=None,
                ) as client:
                    yield client
    except BaseExceptionGroup as group:
        # The block's own exception (a failed assert) comes out of the nurseries above wrapped
        # once per nursery: hand it back as itself, as a plain ``async with`` would.
        alone = _alone(group)
        if alone is None:
            raise
        raise alone from None


def _alone(group: BaseExceptionGroup[Any]) -> BaseException | None:
    """The one exception ``group`` holds, however deeply nested; None when it holds several."""
    inner: BaseException = group
    while isinstance(inner, BaseExceptionGroup):
        if len(inner.exceptions) != 1:
            return None
        inner = inner.exceptions[0]
    return inner
