"""The admin surface of the HTTP transport: ``/admin``, JSON over HTTP, for operators.

Served by the same ASGI app as ``/mcp`` (``transports/http.py`` hands it every path under
``/admin``). ``mcp-trio admin ...`` is its command-line client.

::

    GET  /admin                         the routes below (a browser asking for text/html gets
                                        the operator page instead: ``admin_page``)
    GET  /admin/overview                what the operator page shows: sessions, requests, tools,
                                        tags, plugins, settings (secrets hidden)
    GET  /admin/tools                   every registered tool: metadata, switch state, statistics
    GET  /admin/tools/{name}            one tool
    POST /admin/tools/{name}/enable     switch a tool on / off (off: unlisted, calls refused)
    POST /admin/tools/{name}/disable
    POST /admin/tags/{tag}/enable       switch every tool with this tag on / off
    POST /admin/tags/{tag}/disable
    GET  /admin/plugins                 plugin directories and each plugin's state and last error
    POST /admin/reload                  reload every directory plugin now
    GET  /admin/stats                   server counts and per-tool statistics (cluster mode:
                                        and "cluster", the figures summed over every process)

Who may use it:

* With an ``Authenticator`` (the server checks credentials), a caller with the ``admin``
  scope: no credential (or an anonymous caller) is 401 with ``WWW-Authenticate``, a
  credential without ``admin`` is 403 (``error="insufficient_scope"``).
* With none, only clients connecting from a loopback address (127.0.0.0/8, ::1), and 403
  for anyone else. A reverse proxy on the same host makes every client look local unless it
  is listed in ``trusted_proxies`` (then the client it names is the one checked); a server
  behind one is better given an authenticator. The Host/Origin checks of every route apply too,
  and the HTTP app puts ``admin_page`` in front: an action sent by a browser must come from
  the operator page itself (same origin, ``X-Mcp-Trio-Admin``), never from another page.

Switching tools on or off and reloading plugins answer once the change is published: every
live session has been sent ``notifications/tools/list_changed``. In cluster mode they act on
every process (the switch is recorded in Redis and announced on the bus; a reload makes every
process reload its plugin directories): any process's ``/admin`` acts on the whole cluster.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import msgspec

from .._metrics import ToolStats
from ..auth import Authenticator, AuthError, Principal, insufficient_scope
from ..protocol._errors import ServerOverloaded
from ._gate import auth_refusal, is_loopback_address

if TYPE_CHECKING:
    from ..offer._registry import ToolDef
    from ..serving._supervisor import Supervisor

ADMIN_PATH = "/admin"
#: The scope an authenticated caller needs.
ADMIN_SCOPE = "admin"

_ROUTES = [
    "GET /admin (Accept: text/html): the operator page",
    "GET /admin/overview",
    "GET /admin/tools",
    "GET /admin/tools/{name}",
    "POST /admin/tools/{name}/enable",
    "POST /admin/tools/{name}/disable",
    "POST /admin/tags/{tag}/enable",
    "POST /admin/tags/{tag}/disable",
    "GET /admin/plugins",
    "POST /admin/reload",
    "GET /admin/stats",
]

_encode = msgspec.json.Encoder().encode
Headers = list[tuple[bytes, bytes]]


class _Answer(Exception):
    """An error answer: HTTP status, message, extra headers."""

    def __init__(self, status: int, message: str, headers: Headers | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or []


class AdminApi:
    """The ``/admin`` routes of one served server (its supervisor)."""

    def __init__(self, supervisor: Supervisor, authenticator: Authenticator | None) -> None:
        self.supervisor = supervisor
        self.authenticator = authenticator
        #: Builds ``GET /admin/overview`` (set by the operator page, ``admin_page``); None: 404.
        self.overview: Callable[[], dict[str, Any]] | None = None

    async def __call__(self, method: str, path: str, headers: Iterable[tuple[bytes, bytes]], peer: str | None) -> tuple[int, bytes, Headers]:
        """Answer one request: (status, JSON body, extra headers)."""
        try:
            await self.authorize(headers, peer)
            status, body = await self._route(method, path)
            return status, _encode(body), []
        except _Answer as answer:
            return answer.status, _encode({"error": answer.message}), answer.headers

    # -- who may ----------------------------------------------------------------------------
    async def authorize(self, headers: Iterable[tuple[bytes, bytes]], peer: str | None) -> Principal | None:
        authenticator = self.authenticator
        if authenticator is None:
            if not is_loopback_address(peer):
                raise _Answer(403, "forbidden: the admin surface is served only to loopback clients "
                                   "when the server has no authenticator")
            return None
        try:
            principal = await authenticator.authenticate(headers)
        except AuthError as exc:
            refusal = auth_refusal(authenticator, exc)
            raise _Answer(refusal.status, refusal.message, refusal.headers) from None
        if principal.kind == "anonymous":
            raise _Answer(401, "unauthorized: the admin surface needs a credential with the admin scope",
                          [(b"www-authenticate", authenticator.challenge().encode("latin-1"))])
        if not principal.has_scope(ADMIN_SCOPE):
            challenge = authenticator.challenge(insufficient_scope(frozenset({ADMIN_SCOPE})))
            raise _Answer(403, "forbidden: the admin surface needs the admin scope",
                          [(b"www-authenticate", challenge.encode("latin-1"))])
        return principal

    # -- routes -----------------------------------------------------------------------------
    async def _route(self, method: str, path: str) -> tuple[int, Any]:
        rest = path[len(ADMIN_PATH):].strip("/")
        if rest == "overview" and self.overview is not None:
            _allow(method, "GET", "HEAD")
            return 200, self.overview()
        if rest in ("", "tools", "plugins", "stats"):
            _allow(method, "GET", "HEAD")
            if rest == "":
                return 200, {"routes": _ROUTES}
            if rest == "tools":
                return 200, {"tools": [self.tool_view(tool) for _, tool in sorted(self.supervisor.registry.tools.items())]}
            if rest == "plugins":
                return 200, self.plugins_view()
            view = self.stats_view()
            if self.supervisor.cluster is not None:
                view["cluster"] = await self.cluster_view()
            return 200, view
        if rest == "reload":
            _allow(method, "POST")
            plugins = self.supervisor.server.plugins
            if plugins is None:
                raise _Answer(409, "this server has no plugins configured (mcp-trio serve --plugins DIR)")
            report = await self.supervisor.reload_plugins()
            return 200, {**report.to_dict(), **plugins.status()}
        kind, _, tail = rest.partition("/")
        if kind == "tools" and tail:
            name, _, action = tail.rpartition("/")
            if action in ("enable", "disable") and name:
                _allow(method, "POST")
                return 200, await self.switch_tool(name, action == "enable")
            _allow(method, "GET", "HEAD")
            tool = self.supervisor.registry.tools.get(tail)
            if tool is None:
                raise _Answer(404, f"unknown tool: {tail!r}")
            return 200, self.tool_view(tool)
        if kind == "tags" and tail:
            tag, _, action = tail.rpartition("/")
            if action in ("enable", "disable") and tag:
                _allow(method, "POST")
                return 200, await self.switch_tag(tag, action == "enable")
        raise _Answer(404, f"not found: {path}")

    # -- views and actions ------------------------------------------------------------------
    def tool_view(self, tool: ToolDef) -> dict[str, Any]:
        supervisor = self.supervisor
        wire = tool.wire
        annotations = wire.annotations
        plugins = supervisor.server.plugins
        stats = supervisor.metrics.tools.get(tool.name) or ToolStats()

        def hint(name: str) -> bool | None:
            value = getattr(annotations, name, None) if annotations is not msgspec.UNSET else None
            return None if value is msgspec.UNSET else value

        return {
            "name": tool.name,
            "title": None if wire.title is msgspec.UNSET else wire.title,
            "description": None if wire.description is msgspec.UNSET else wire.description,
            "enabled": tool.enabled,
            "disabled_by": supervisor.disabled_reason(tool.name),
            "tags": sorted(tool.tags),
            "category": tool.category,
            "version": tool.version,
            "deprecated": tool.deprecated is not None,
            "deprecation_message": tool.deprecated,
            "read_only": hint("read_only_hint"),
            "destructive": hint("destructive_hint"),
            "timeout": tool.timeout,
            "scopes": sorted(tool.scopes),
            "examples": list(tool.examples),
            "plugin": plugins.owner_of_tool(tool.name) if plugins is not None else None,
            "stats": stats.snapshot(),
        }

    async def switch_tool(self, name: str, enabled: bool) -> dict[str, Any]:
        supervisor = self.supervisor
        if name not in supervisor.registry.tools:
            raise _Answer(404, f"unknown tool: {name!r}")
        changed = await self._switch(enabled, tools=[name])
        tool = supervisor.registry.tools[name]
        return {"tool": name, "enabled": tool.enabled, "disabled_by": supervisor.disabled_reason(name), "changed": changed}

    async def switch_tag(self, tag: str, enabled: bool) -> dict[str, Any]:
        supervisor = self.supervisor
        changed = await self._switch(enabled, tags=[tag])
        tools = sorted(name for name, tool in supervisor.registry.tools.items() if tag in tool.tags)
        return {"tag": tag, "enabled": enabled, "tools": tools, "changed": changed,
                "disabled_tags": sorted(supervisor.disabled_tags)}

    async def _switch(self, enabled: bool, *, tools: list[str] = [], tags: list[str] = []) -> list[str]:  # noqa: B006
        """Switch here, and in cluster mode for every process (recorded in Redis first: when
        it cannot be reached, nothing changes anywhere and the answer is 503)."""
        try:
            return await self.supervisor.switch(enabled, tools=tools, tags=tags)
        except ValueError as exc:  # the cluster holds its maximum of switches
            raise _Answer(409, str(exc)) from None
        except ServerOverloaded as exc:  # Redis unreachable (cluster mode)
            raise _Answer(503, str(exc), [(b"retry-after", b"1")]) from None

    def plugins_view(self) -> dict[str, Any]:
        plugins = self.supervisor.server.plugins
        if plugins is None:
            return {"directories": [], "entry_points": False, "watching": False, "plugins": []}
        return plugins.status()

    def stats_view(self) -> dict[str, Any]:
        supervisor = self.supervisor
        tools = supervisor.metrics.tools
        return {
            "server": {**supervisor.statistics(), "disabled_tools": sorted(supervisor.disabled_tools),
                       "disabled_tags": sorted(supervisor.disabled_tags)},
            "tools": {name: (tools.get(name) or ToolStats()).snapshot() for name in sorted(supervisor.registry.tools)},
        }


    async def cluster_view(self) -> dict[str, Any]:
        """Cluster mode: the figures summed over every process (``server`` and ``tools`` in
        ``/admin/stats`` are this process's), the live processes, and this one's id."""
        node = self.supervisor.cluster
        try:
            figures: dict[str, Any] = await node.figures()
        except ServerOverloaded as exc:  # Redis unreachable: this process's figures still answer
            return {"node": node.node_id, "error": str(exc)}
        return figures


def _allow(method: str, *allowed: str) -> None:
    if method not in allowed:
        raise _Answer(405, f"method not allowed: use {' or '.join(allowed)}", [(b"allow", ", ".join(allowed).encode())])
