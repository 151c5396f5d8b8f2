"""``Server``: a registrar that can be served.

A ``Server`` has every decorator of the registrar (``offer._registrar``: ``tool``,
``resource``, ``prompt``, ``completion``, ``method``, ``middleware``) and what serving needs
on top: its identity, its plugins (``use_plugins``), and the hand-over of its registry to the
supervisor that serves it. Before serving, the server keeps that registry itself; while
serving, every change goes through the running supervisor, which publishes a new snapshot and
tells live sessions their lists changed.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from msgspec import UNSET

from ._request_state import RequestStateCodec
from .offer._mount import Mount, MountError
from .offer._registrar import Registrar
from .offer._registry import Registry, RegistryKeys
from .protocol._types import Icon, Implementation

F = TypeVar("F", bound=Callable[..., Any])


class RootsHook:
    """A function run when the client's roots change, and how to call it. (A plain class: a
    dataclass here would cost every server's start-up the compiling of its methods.)"""

    __slots__ = ("name", "fn", "is_async", "parameter")

    def __init__(self, name: str, fn: Callable[..., Any], is_async: bool, parameter: str) -> None:
        self.name = name
        self.fn = fn
        self.is_async = is_async
        self.parameter = parameter


if TYPE_CHECKING:
    from .offer._remote import Remote
    from .plugins._manager import PluginManager  # imported by use_plugins: a server without plugins never loads it


class RegistryOwner(Protocol):
    """What serves a server (``serving.Supervisor``): it owns the registry while it runs."""

    registry: Registry

    def update_registry(self, change: Callable[[Registry], Registry], kind: str | Iterable[str]) -> None: ...

    def resource_updated(self, uri: str) -> None: ...


class Server(Registrar):
    """An MCP server: a name, a version, and what it offers.

    >>> server = Server("weather", version="1.0")
    >>> @server.tool
    ... async def forecast(city: str) -> str:
    ...     "Forecast for a city."
    ...     return "sunny"
    """

    def __init__(self, name: str, version: str = "0.0.0", *, instructions: str | None = None, title: str | None = None,
                 coerce_arguments: bool = False, icons: Iterable[Icon | Mapping[str, Any]] | None = None) -> None:
        super().__init__(name, version)
        self.instructions = instructions
        self.title = title
        #: The server's icons (``serverInfo.icons``, revision 2025-11-25), checked as a tool's are.
        self.icons = _icons(icons, f"server {name!r}")
        self._supervisor: RegistryOwner | None = None
        #: Where plugins come from (``use_plugins``); None: no plugins.
        self.plugins: PluginManager | None = None
        #: Seals ``requestState`` for 2026-07-28 input-required rounds: a random key of this
        #: process unless replaced (``mcp-trio serve`` sets it from ``[request_state]``).
        #: Servers that share clients must share the key; see ``mcp_trio._request_state``.
        self.request_state = RequestStateCodec()
        #: Seconds 2026-07-28 clients may cache list results and ``server/discover`` (``ttlMs``).
        self.cache_ttl = 0.0
        #: Tool arguments that fail strict validation get a second, lenient try (``"5"`` for
        #: an integer, ``"true"`` for a boolean), for tools that do not say otherwise
        #: (``@server.tool(coerce_arguments=...)``). Off by default: the schema is the contract.
        self.coerce_arguments = coerce_arguments
        #: The lifespan (``@server.lifespan``) as a function of the server returning an async
        #: context manager; None when the server has none.
        self.lifespan_factory: Callable[[Server], AbstractAsyncContextManager[Any]] | None = None
        #: What runs when a client says its roots changed (``@server.on_roots_changed``), in order.
        self.roots_changed_hooks: tuple[RootsHook, ...] = ()
        #: OpenTelemetry tracing (``mcp_trio.Tracing``, ``pip install 'mcp-trio[otel]'``): a
        #: span per request and its children. None (the default): off, nothing imported.
        self.tracing: Any = None
        #: Servers mounted in this one (``mount``), and the hosts this one is mounted in.
        self.mounts: list[Mount] = []
        self._hosts: list[tuple[Server, Mount]] = []

    # -- identity ---------------------------------------------------------------------------
    @property
    def info(self) -> Implementation:
        return Implementation(name=self.name, version=self.version, title=self.title if self.title else UNSET,
                              icons=self.icons)

    @property
    def registry(self) -> Registry:
        """The current snapshot: the supervisor's while serving, else the server's own."""
        return self._supervisor.registry if self._supervisor is not None else self._registry

    def _update(self, change: Callable[[Registry], Registry], kind: str | Iterable[str]) -> None:
        if self._hosts:  # mounted somewhere: a name that would clash there is refused before any change
            after = change(self.registry)
            for host, mount in self._hosts:
                mount.check(host.registry, mount.prefixed(after))
        if self._supervisor is not None:
            self._supervisor.update_registry(change, kind)
        else:
            self._registry = change(self._registry)
        for host, mount in self._hosts:
            host._remount(mount, kind)

    def _attach(self, supervisor: RegistryOwner) -> Registry:
        """Hand the registry to a starting supervisor; from now on it owns changes."""
        if self._supervisor is not None:
            raise RuntimeError(f"server {self.name!r} is already being served")
        self._supervisor = supervisor
        return self._registry

    def _detach(self, supervisor: RegistryOwner) -> None:
        if self._supervisor is supervisor:
            self._registry = supervisor.registry
            self._supervisor = None

    def notify_resource_updated(self, uri: str) -> None:
        """Tell every session subscribed to ``uri`` that it changed (no-op when not serving);
        where this server is mounted, the host's sessions subscribed to its mounted URI too."""
        if self._supervisor is not None:
            self._supervisor.resource_updated(uri)
        for host, mount in self._hosts:
            host.notify_resource_updated(mount.uri(uri))

    # -- mounting ---------------------------------------------------------------------------
    def mount(self, other: Server | Remote, prefix: str | None = None, *, separator: str = "_", scopes: str | Iterable[str] = (),
              tags: str | Iterable[str] = ()) -> Mount:
        """Offer ``other``'s tools, resources, templates, prompts and completions here, under
        ``prefix``: tools and prompts as ``{prefix}_{name}``, resources and templates as
        ``{prefix}+{URI}`` (``mcp_trio.offer._mount`` says why). Its definitions are copied
        into this server's registry, so a call costs what a local one does; its later changes
        (``other.add_tool``, its plugins) reach this server's sessions as ``list_changed``; its
        scopes apply, and so does its middleware, around calls of its definitions. ``scopes``
        and ``tags`` are added to every mounted definition. A name this server already has,
        or one over 128 characters, is refused now (``MountError``), naming it.

        ``other`` may be a ``Remote`` (``mcp_trio.Remote("https://host/mcp")``): a remote MCP
        server whose definitions the gateway (``serving._gateway``) lists and forwards to
        while this server is served (mount it before serving; docs/gateway.md).
        """
        from .offer._remote import Remote  # here: a server that mounts nothing remote never loads it

        if isinstance(other, Remote):
            if self._supervisor is not None:
                raise RuntimeError(f"server {self.name!r} is being served: mount remote servers before serving it")
            if any(m.remote and m.prefix == prefix for m in self.mounts):
                raise MountError(f"a remote server is already mounted under prefix {prefix!r}")
            mount = Mount(other, prefix, separator=separator, scopes=scopes, tags=tags, remote=True)
            self.mounts.append(mount)
            return mount
        if not isinstance(other, Server):
            raise TypeError(f"mount takes a Server or a Remote, not {type(other).__name__} (a Plugin is loaded with "
                            "use_plugins)")
        if other is self or self in other._mounted_servers():
            raise MountError(f"server {other.name!r} cannot be mounted in {self.name!r}: it mounts it already (a circle)")
        mount = Mount(other, prefix, separator=separator, scopes=scopes, tags=tags)
        mounted = mount.prefixed(other.registry)
        mount.check(self.registry, mounted)
        self._update(lambda registry: registry.swap(RegistryKeys(), mounted), mounted.keys().kinds())
        mount.keys = mounted.keys()
        self.mounts.append(mount)
        other._hosts.append((self, mount))
        return mount

    def _remount(self, mount: Mount, kind: str | Iterable[str]) -> None:
        """``mount``'s source changed: put its definitions in again, as one change."""
        mounted = mount.prefixed(mount.source.registry)
        old = mount.keys
        self._update(lambda registry: registry.swap(old, mounted), kind)
        mount.keys = mounted.keys()

    def _mounted_servers(self) -> list[Server]:
        """Every local server mounted here, at any depth."""
        found: list[Server] = []
        for mount in self.mounts:
            if isinstance(mount.source, Server):
                found += [mount.source, *mount.source._mounted_servers()]
        return found

    # -- lifespan ---------------------------------------------------------------------------
    def lifespan(self, fn: F) -> F:
        """Run ``fn`` once per process around serving; what it yields is ``ctx.lifespan``.

        ``fn`` is an async generator function that yields once (or a function returning an
        async context manager), taking the server or nothing::

            @server.lifespan
            async def lifespan(server: Server) -> AsyncIterator[AppState]:
                pool = await open_pool()
                try:
                    yield AppState(pool)          # tools read it as ctx.lifespan
                finally:
                    await pool.close()

        It is entered before the first request is read and left after the last session has
        ended (``serving._lifespan`` says how: bounded by ``Limits.lifespan_timeout``, left
        shielded from the shutdown's cancellation). A failure at start stops the server
        before it serves. One per server; each ``--workers`` process runs its own.
        """
        if self.lifespan_factory is not None:
            raise RuntimeError(f"server {self.name!r} already has a lifespan")
        self.lifespan_factory = _lifespan_factory(fn)
        return fn

    # -- client notifications -----------------------------------------------------------------
    def on_roots_changed(self, fn: F) -> F:
        """Call ``fn(ctx)`` when a client says its roots changed
        (``notifications/roots/list_changed``, handshake era)::

            @server.on_roots_changed
            async def remember_roots(ctx: Context) -> None:
                ctx.session_state["roots"] = [root.uri for root in await ctx.list_roots()]

        ``ctx`` is a ``Context`` of the notification (no request id, no progress): it asks the
        client again with ``ctx.list_roots()``, logs, reads ``ctx.lifespan`` and
        ``ctx.session_state``. ``fn`` may be async or plain (then it runs in a worker thread).
        Runs of one session never overlap (changes that arrive meanwhile make one more run);
        a failure is logged and the session goes on. See ``serving._roots``.
        """
        try:
            parameters = [p for p in inspect.signature(fn).parameters.values()
                          if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        except (TypeError, ValueError):
            parameters = []
        if len(parameters) != 1:
            raise TypeError(f"on_roots_changed hook {getattr(fn, '__qualname__', fn)!r} must take one parameter, the Context")
        is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))
        hook = RootsHook(getattr(fn, "__qualname__", repr(fn)), fn, is_async, parameters[0].name)
        self.roots_changed_hooks = (*self.roots_changed_hooks, hook)
        return fn

    # -- plugins ----------------------------------------------------------------------------
    def use_plugins(
        self,
        *directories: str | os.PathLike[str],
        entry_points: bool = False,
        watch: bool = True,
    ) -> PluginManager:
        """Serve tools, resources and prompts from plugins as well (see ``mcp_trio.Plugin``).

        ``directories``: folders of plugin files (``*.py``; names starting with ``_`` or ``.``
        are skipped), loaded when serving starts and, with ``watch``, reloaded when they
        change. ``entry_points``: also load the plugins that installed packages declare in the
        ``mcp_trio.plugins`` entry-point group (once, at start). Call it before serving.
        """
        if self.plugins is not None:
            raise RuntimeError(f"server {self.name!r} already has plugins configured")
        from .plugins._manager import PluginManager

        self.plugins = PluginManager(self, directories, entry_points=entry_points, watch=watch)
        return self.plugins


def _icons(icons: Iterable[Icon | Mapping[str, Any]] | None, owner: str) -> Any:
    """``icons`` checked (``offer._icons``, imported only when a server has some)."""
    if icons is None:
        return UNSET
    from .offer._icons import icons_of

    return icons_of(icons, owner)


def _lifespan_factory(fn: Callable[..., Any]) -> Callable[[Any], AbstractAsyncContextManager[Any]]:
    """``fn`` as a function of the server returning an async context manager (checked now, at
    decoration, so a wrong shape is an error where it is written, not at start)."""
    if not callable(fn):
        raise TypeError(f"@server.lifespan needs a function, not {type(fn).__name__}")
    if inspect.iscoroutinefunction(fn):
        raise TypeError(f"lifespan {getattr(fn, '__qualname__', fn)!r} is an async function: make it an async "
                        "generator that yields once (or decorate it with contextlib.asynccontextmanager)")
    takes_server = _takes_one_argument(fn)
    made = asynccontextmanager(fn) if inspect.isasyncgenfunction(fn) else fn

    def factory(server: Any) -> AbstractAsyncContextManager[Any]:
        manager = made(server) if takes_server else made()
        if not hasattr(manager, "__aenter__") or not hasattr(manager, "__aexit__"):
            raise TypeError(f"lifespan {getattr(fn, '__qualname__', fn)!r} returned {type(manager).__name__}, "
                            "not an async context manager")
        return manager  # type: ignore[no-any-return]

    return factory


def _takes_one_argument(fn: Callable[..., Any]) -> bool:
    try:
        parameters = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return True
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    if len(required) > 1 or any(p.kind is p.KEYWORD_ONLY and p.default is p.empty for p in parameters):
        raise TypeError(f"lifespan {getattr(fn, '__qualname__', fn)!r} takes the server or nothing")
    return bool(positional) or any(p.kind is p.VAR_POSITIONAL for p in parameters)
