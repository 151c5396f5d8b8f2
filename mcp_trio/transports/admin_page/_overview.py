"""``GET /admin/overview``: everything the operator page shows, in one JSON answer.

One answer per refresh (the page asks every few seconds): live sessions by transport and
era, request counts by method and outcome, refusals, every tool with its switch and its
cumulative statistics, tags, plugins, and the settings. Counters are cumulative and stamped
with the server's monotonic clock (``time``): the page turns two answers into rates and mean
latencies itself, so the server keeps no history and no timer for it.

Bounded: sessions are counted in full, but at most ``MAX_SESSIONS_LISTED`` are listed one by
one; tools, tags and plugins are the server's own definitions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import trio

from ._settings import ServedSettings, settings_view

if TYPE_CHECKING:
    from ...serving._connection import Connection
    from ..admin import AdminApi
    from .._http_session import HttpSession

#: Sessions listed one by one in an overview (all are counted).
MAX_SESSIONS_LISTED = 100
#: Era labels: a session that made the handshake, and one that did not (2026-07-28 requests
#: need none; a client that has not sent ``initialize`` yet looks the same).
HANDSHAKE = "handshake"
NO_HANDSHAKE = "2026-07-28 / not initialized"
STREAMABLE_HTTP = "Streamable HTTP"
WEBSOCKET = "WebSocket"


class Overview:
    """Builds the overview of one served HTTP app (its admin API, its sessions, its settings)."""

    def __init__(self, api: AdminApi, sessions: Mapping[str, HttpSession], settings: ServedSettings,
                 wall_clock: Callable[[], float] = time.time) -> None:
        """``sessions``: the app's live Streamable HTTP sessions (the dict itself, read live);
        every other connection of the supervisor is one of the app's WebSockets."""
        self.api = api
        self.sessions = sessions
        self.settings = settings
        self._wall_clock = wall_clock
        self.started_at = wall_clock()

    def __call__(self) -> dict[str, Any]:
        api = self.api
        supervisor = api.supervisor
        server = supervisor.server
        tools = [_compact(api.tool_view(tool)) for _, tool in sorted(supervisor.registry.tools.items())]
        return {
            "time": trio.current_time(),
            "server": {
                "name": server.name,
                "version": server.version,
                "started_at": round(self.started_at, 3),
                "uptime_seconds": round(self._wall_clock() - self.started_at, 3),
                "shutting_down": supervisor.shutting_down.is_set(),
                "registry_version": supervisor.registry.version,
            },
            "sessions": self.sessions_view(),
            "requests": {**self.requests_view(), "tool_errors": sum(t["stats"]["errors"] for t in tools)},
            "tools": tools,
            "tags": _tags(tools, supervisor.disabled_tags),
            "plugins": api.plugins_view(),
            "settings": settings_view(self.settings, server),
        }

    # -- sessions -----------------------------------------------------------------------------
    def sessions_view(self) -> dict[str, Any]:
        supervisor = self.api.supervisor
        over_http = {id(s.connection) for s in self.sessions.values() if s.connection is not None}
        counts: dict[tuple[str, str, str], int] = {}
        listed: list[dict[str, Any]] = []
        for connection in sorted(supervisor.connections, key=_session_order):
            transport = STREAMABLE_HTTP if id(connection) in over_http else WEBSOCKET
            client = connection.state.client
            era, version = (HANDSHAKE, client.protocol_version) if client is not None else (NO_HANDSHAKE, "")
            key = (transport, era, version)
            counts[key] = counts.get(key, 0) + 1
            if len(listed) < MAX_SESSIONS_LISTED:
                listed.append(_session(connection, transport, era, version))
        listeners = supervisor.stateless.listeners
        # A stateless HTTP listen stream is held by an exchange, not by a connection.
        connections = {id(c) for c in supervisor.connections}
        listen_http = sum(1 for listener in listeners if id(listener.owner) not in connections)
        return {
            "total": len(supervisor.connections),
            "by_transport": [{"transport": t, "era": e, "version": v, "count": n} for (t, e, v), n in sorted(counts.items())],
            "listed": listed,
            "listed_max": MAX_SESSIONS_LISTED,
            "listen_streams": {"total": len(listeners), "stateless_http": listen_http},
            "in_flight": sum(c.in_flight for c in supervisor.connections),
        }

    # -- requests -----------------------------------------------------------------------------
    def requests_view(self) -> dict[str, Any]:
        metrics = self.api.supervisor.metrics
        by_method: dict[str, dict[str, int]] = {}
        for (method, outcome), count in metrics.requests.items():
            by_method.setdefault(method, {"ok": 0, "error": 0, "cancelled": 0, "shutdown": 0})[outcome] = count
        return {
            "total": sum(metrics.requests.values()),
            # JSON-RPC error replies (a tool's own failure is an isError result: ``tool_errors``).
            "errors": sum(n for (_, outcome), n in metrics.requests.items() if outcome == "error"),
            "by_method": [{"method": m, **outcomes} for m, outcomes in sorted(by_method.items())],
            "rate_limited": metrics.rate_limited,
            "overloaded": metrics.overloaded,
            "connections_opened": metrics.connections_opened,
            "connections_refused": metrics.connections_refused,
        }


def _session_order(connection: Connection) -> tuple[int, str]:
    sid = connection.session_id
    return (int(sid[1:]), sid) if sid[:1] == "s" and sid[1:].isdigit() else (0, sid)


def _session(connection: Connection, transport: str, era: str, version: str) -> dict[str, Any]:
    """One session's row: never its ``Mcp-Session-Id`` (a capability), only the server's own id."""
    client = connection.state.client
    principal = connection.principal
    return {
        "id": connection.session_id,
        "transport": transport,
        "era": era,
        "version": version,
        "client": f"{client.info.name} {client.info.version}" if client is not None else None,
        "principal": None if principal is None else f"{principal.subject} ({principal.kind})",
        "peer": connection.peer,
        "in_flight": connection.in_flight,
        "subscriptions": len(connection.subscriptions),
    }


def _compact(view: dict[str, Any]) -> dict[str, Any]:
    """A tool's row without what the page does not draw (its examples and latency histogram
    are in ``GET /admin/tools/{name}``): half the bytes of each refresh."""
    view.pop("examples", None)
    view["stats"].pop("latency_histogram", None)
    return view


def _tags(tools: list[dict[str, Any]], disabled: set[str]) -> list[dict[str, Any]]:
    """Every tag that a tool has or that is switched off, with its tools and its switch."""
    members: dict[str, list[str]] = {tag: [] for tag in disabled}
    for tool in tools:
        for tag in tool["tags"]:
            members.setdefault(tag, []).append(tool["name"])
    return [{"tag": tag, "enabled": tag not in disabled, "tools": names} for tag, names in sorted(members.items())]
