"""Plugins: tools, resources and prompts loaded from files and packages, reloaded while serving.

The contract
------------
A plugin is a Python module that defines ``plugin``, an ``mcp_trio.Plugin`` (a ``Server``
that is never served itself), and registers its tools, resources and prompts on it with the
same decorators a ``Server`` has::

    # plugins/weather.py
    from mcp_trio import Plugin

    plugin = Plugin("weather", version="1.2", tags=["weather"])

    @plugin.tool(read_only=True)
    async def forecast(city: str) -> str:
        "Forecast for a city."
        return "sunny"

A module may instead (or as well) define ``register(plugin)``: it is called with the
module's ``plugin`` (a fresh ``Plugin`` named after the module if there is none), for
registrations that depend on configuration. Tools defined as classes need neither: a
module-level ``Tool`` instance, or a ``Tool`` subclass defined in the module, is registered
on the module's plugin (``module_tools`` says exactly which). Everything a plugin registers is recorded on its
``Plugin``, so a reload replaces exactly that module's definitions and a deleted file removes
them. Names are first come, first served: a plugin that defines a tool (resource, prompt)
another plugin or the application already defines is refused, with the clash named.

Where plugins come from
-----------------------
* **A directory** (``mcp-trio serve --plugins DIR``, ``Server.use_plugins(DIR)``): each
  ``*.py`` file whose name does not start with ``_`` or ``.`` is one plugin, named after the
  file (the module is ``mcp_trio_plugins.<stem>``; plugins are single files, so relative
  imports between them are not supported). The directory is watched (``watchfiles``, inotify
  on Linux): a changed file is re-executed into a *fresh* module object, never reloaded in
  place, so calls already running finish on the code (and globals) they started with, and
  new calls get the new code.
* **Installed packages**, with ``entry_points=True`` (``--plugin-packages``): every entry
  point of the ``mcp_trio.plugins`` group names a module (its ``plugin``/``register`` is
  used), a ``Plugin``, or a ``register(plugin)`` function. Loaded once, at start.

Failures
--------
A plugin that fails to import (syntax error, import error, an exception at registration,
a clash) is logged once at ERROR with its traceback, and skipped; a plugin that had loaded
before keeps serving its last good version. The error stays visible in
``PluginManager.status()`` (``GET /admin/plugins``) until a load succeeds.

Every change is published in one step: the definitions of all plugins changed in one batch
(one burst of file events, one ``reload()``) replace the old ones in a single
``Supervisor.update_registry`` call, and sessions get ``notifications/*/list_changed`` once.
Imports run in a worker thread (a slow import stalls no session), one at a time, and are
abandoned after ``IMPORT_TIMEOUT`` seconds.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import os
import sys
import threading
import time
import traceback
import types
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from .._containment import describe_raised
from ..offer._registrar import Registrar
from ..offer._registry import Registry, RegistryKeys
from ..offer._tool_class import Tool, ToolDefinitionError
from ._plugin import Plugin, PluginError

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

logger = logging.getLogger("mcp_trio.plugins")

#: The entry-point group installed packages declare their plugins in.
ENTRY_POINT_GROUP = "mcp_trio.plugins"
#: Directory plugins are imported as ``mcp_trio_plugins.<file stem>``.
MODULE_PREFIX = "mcp_trio_plugins."
#: Seconds one plugin's import may take before it is abandoned (and reported as failed).
IMPORT_TIMEOUT = 30.0
#: Milliseconds without a new file event after which a burst of changes is reloaded.
WATCH_STEP_MS = 50
#: Milliseconds a continuous burst of changes may be grouped for at most.
WATCH_DEBOUNCE_MS = 1600
#: Milliseconds the watcher thread waits before looking again (bounds a hard stop's delay).
WATCH_THREAD_TIMEOUT_MS = 1000


@dataclass
class PluginState:
    """One plugin as the manager knows it: where it comes from, what it has registered now."""

    name: str
    kind: str  # "file" | "entry_point"
    source: str  # the file's path, or the entry point's value
    #: The last version that loaded (None: it never has).
    plugin: Plugin | None = None
    #: What that version has in the registry now.
    keys: RegistryKeys = field(default_factory=RegistryKeys)
    #: sha256 of the file's bytes at the last successful load.
    digest: bytes | None = None
    loaded_at: float | None = None
    loads: int = 0
    failures: int = 0
    #: The last load's failure (one line) and its traceback; None after a success.
    error: str | None = None
    traceback: str | None = None

    def status(self) -> dict[str, Any]:
        plugin = self.plugin
        return {
            "name": self.name,
            "kind": self.kind,
            "source": self.source,
            "loaded": plugin is not None,
            "version": plugin.version if plugin is not None else None,
            "description": plugin.description if plugin is not None else None,
            "tools": sorted(self.keys.tools),
            "resources": sorted(self.keys.resources | self.keys.templates),
            "prompts": sorted(self.keys.prompts),
            "loaded_at": self.loaded_at,
            "loads": self.loads,
            "failures": self.failures,
            "error": self.error,
            "traceback": self.traceback,
        }


@dataclass
class ReloadReport:
    """What one load or reload did, by plugin name."""

    loaded: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"loaded": self.loaded, "unchanged": self.unchanged, "removed": self.removed, "failed": self.failed}


# -- loading (in a worker thread) -----------------------------------------------------------
def module_tools(module: types.ModuleType) -> list[Tool]:
    """The ``Tool``s a plugin module defines at module level, in definition order: every
    ``Tool`` instance bound to a public name, and every ``Tool`` subclass *defined in that
    module* that has a ``run`` of its own, takes no arguments, and has no instance among
    those (``Forecast`` alone registers ``Forecast()``; ``eu = Forecast(name="forecast_eu")``
    beside it registers only ``eu``). Names starting with ``_`` are private: never registered.
    Imported classes (``from mcp_trio import Tool``, a shared base from a package) are not
    registered; a class without ``run`` is a base for others, not a tool."""
    public = [(key, value) for key, value in vars(module).items() if not key.startswith("_")]
    instances = [value for _, value in public if isinstance(value, Tool)]
    found: list[Tool] = list(dict.fromkeys(instances))  # one instance bound to two names: once
    having = {type(tool) for tool in found}
    for key, value in public:
        if (isinstance(value, type) and issubclass(value, Tool) and value.__module__ == module.__name__
                and value not in having and "run" in _own_attributes(value) and _takes_no_arguments(value)):
            try:
                found.append(value())
            except ToolDefinitionError as exc:
                raise PluginError(f"tool class {key}: {exc}") from None
    return found


def _own_attributes(cls: type) -> set[str]:
    """Attributes ``cls`` or a base below ``Tool`` defines (``Tool`` itself excluded)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass is Tool:
            break
        names |= set(vars(klass))
    return names


def _takes_no_arguments(cls: type) -> bool:
    try:
        parameters = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        return False
    return all(p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in parameters)


def _plugin_of(module: types.ModuleType, name: str) -> Plugin:
    """The module's ``plugin``, after ``register(plugin)`` if the module has one, with the
    module's ``Tool`` instances and classes (``module_tools``) registered on it."""
    plugin = getattr(module, "plugin", None)
    register = getattr(module, "register", None)
    if plugin is not None and not isinstance(plugin, Plugin):
        raise PluginError(f"`plugin` is a {type(plugin).__name__}, not an mcp_trio.Plugin")
    if register is not None and not callable(register):
        raise PluginError("`register` is not a function")
    tools = module_tools(module)
    if plugin is None:
        if register is None and not tools:
            raise PluginError("defines neither `plugin = Plugin(...)`, `register(plugin)` nor a Tool")
        plugin = Plugin(name)
    if register is not None:
        register(plugin)
    for tool in tools:
        plugin.add_tool(tool)
    if not plugin.name:
        plugin.name = name
    return plugin


def _exec_file(name: str, path: Path, source: bytes) -> tuple[Plugin, types.ModuleType]:
    """Execute a plugin file's ``source`` into a fresh module; never touches the old one."""
    module_name = MODULE_PREFIX + name
    module = types.ModuleType(module_name)
    module.__file__ = str(path)
    previous = sys.modules.get(module_name)
    # In sys.modules while it runs: dataclasses and msgspec resolve annotations through it.
    sys.modules[module_name] = module
    try:
        exec(compile(source, str(path), "exec"), module.__dict__)
        return _plugin_of(module, name), module
    except BaseException:
        if previous is not None:
            sys.modules[module_name] = previous
        else:
            sys.modules.pop(module_name, None)
        raise


def _load_entry_point(entry_point: EntryPoint) -> Plugin:
    target = entry_point.load()
    if isinstance(target, Plugin):
        plugin = target
    elif isinstance(target, types.ModuleType):
        plugin = _plugin_of(target, entry_point.name)
    elif callable(target):
        plugin = Plugin(entry_point.name)
        target(plugin)
    else:
        raise PluginError(f"entry point {entry_point.value!r} is a {type(target).__name__}: "
                          "expected a module, a Plugin or a register(plugin) function")
    if not plugin.name:
        plugin.name = entry_point.name
    return plugin


def is_plugin_file(path: str | os.PathLike[str]) -> bool:
    """Whether a directory entry is a plugin: ``*.py``, not starting with ``_`` or ``.``."""
    name = os.path.basename(path)
    return name.endswith(".py") and not name.startswith(("_", "."))


class PluginManager:
    """Loads a server's plugins, reloads them on change, and remembers what each registered.

    Made by ``Server.use_plugins``; the supervisor runs it (``run``) for as long as the
    server is served. ``server``: the registrar the plugins' definitions are swapped into. ``reload()`` may also be called directly (the admin surface does).
    """

    def __init__(
        self,
        server: Registrar,
        directories: Iterable[str | os.PathLike[str]] = (),
        *,
        entry_points: bool = False,
        watch: bool = True,
    ) -> None:
        self.server = server
        self.directories = tuple(Path(d).resolve() for d in directories)
        for directory in self.directories:
            if not directory.is_dir():
                raise FileNotFoundError(f"plugin directory not found: {directory}")
        self.entry_points = entry_points
        self.watch = watch
        #: Every plugin seen, by name (file stem or entry-point name), failed ones included.
        self.plugins: dict[str, PluginState] = {}
        self._lock = trio.Lock()
        #: True while the directories are being watched.
        self.watching = False
        #: Told of every reload that changed something (``announce(names, force)``): cluster
        #: mode makes every other process reload too. None: nobody to tell.
        self.announce: Callable[[list[str], bool], Awaitable[None]] | None = None

    # -- serving ----------------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Load every plugin, report readiness, then watch the directories (the supervisor's task).
        Changes go through the server, which knows its supervisor."""
        self._lock = trio.Lock()  # a fresh one per run: a server may be served again later
        if self.entry_points:
            await self.load_entry_points()
        await self.reload(force=True, announce=False)  # a process starting makes no one else reload
        task_status.started()
        if self.watch and self.directories:
            await self._watch()

    async def _watch(self) -> None:
        from watchfiles import awatch

        def wanted(_change: Any, path: str) -> bool:
            return is_plugin_file(path)

        stop = threading.Event()
        try:
            async with trio.open_nursery() as nursery:
                # Set the watcher thread's stop event on the way out, however that happens: it
                # then returns within WATCH_STEP_MS instead of its full timeout.
                nursery.start_soon(_set_when_cancelled, stop)
                self.watching = True
                async for changes in awatch(*self.directories, stop_event=stop, watch_filter=wanted, recursive=False,
                                            step=WATCH_STEP_MS, debounce=WATCH_DEBOUNCE_MS,
                                            rust_timeout=WATCH_THREAD_TIMEOUT_MS):
                    paths = {Path(path) for _, path in changes}
                    logger.debug("plugin files changed: %s", sorted(map(str, paths)))
                    await self.reload(paths)
                nursery.cancel_scope.cancel()
        except Exception:  # boundary: losing the watcher must not take the server down
            logger.exception("watching plugin directories failed; plugins are no longer reloaded on change")
        finally:
            self.watching = False

    # -- loading ----------------------------------------------------------------------------
    async def load_entry_points(self) -> ReloadReport:
        """Load the plugins installed packages declare (group ``mcp_trio.plugins``)."""
        import importlib.metadata  # ~10 ms of imports: only for servers that ask for it

        report = ReloadReport()
        async with self._lock:
            loaded: dict[str, tuple[Plugin, bytes | None]] = {}
            for entry_point in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
                name = entry_point.name
                state = self.plugins.get(name)
                if state is not None and state.kind != "entry_point":
                    self._name_taken(name, entry_point.value, state, report)
                    continue
                if state is None:
                    state = self.plugins[name] = PluginState(name, "entry_point", entry_point.value)
                try:
                    plugin = await _in_thread(_load_entry_point, entry_point)
                except Exception as exc:  # boundary: a broken plugin is reported and skipped
                    self._failed(state, report, exc)
                    continue
                loaded[name] = (plugin, None)
            self._publish(loaded, set(), report)
        return report

    def _scan(self) -> dict[str, Path]:
        """The plugin files in the directories now, by name (the first directory wins a tie)."""
        found: dict[str, Path] = {}
        for directory in self.directories:
            try:
                entries = sorted(directory.iterdir())
            except OSError as exc:
                logger.error("cannot list plugin directory %s: %s", directory, exc)
                continue
            for path in entries:
                if is_plugin_file(path) and path.is_file():
                    found.setdefault(path.stem, path)
        return found

    async def reload(self, paths: Iterable[Path] | None = None, *, force: bool = False,
                     announce: bool = True) -> ReloadReport:
        """Bring the directory plugins up to date with their files and publish the result once.

        ``paths``: the files that changed (None: every file in the directories). A file
        that is there is (re)loaded when its bytes changed, or always with ``force``; a
        plugin whose file is gone is removed. ``announce``: tell ``self.announce`` (False for
        a reload another process announced already).
        """
        report = await self._reload(paths, force)
        if announce and self.announce is not None and (force or report.loaded or report.removed):
            await self.announce([*report.loaded, *report.removed], force)
        return report

    async def _reload(self, paths: Iterable[Path] | None, force: bool) -> ReloadReport:
        report = ReloadReport()
        async with self._lock:
            files = self._scan()
            if paths is None:
                names = set(files) | {n for n, s in self.plugins.items() if s.kind == "file"}
            else:
                names = {Path(p).stem for p in paths if is_plugin_file(p)}
            loaded: dict[str, tuple[Plugin, bytes | None]] = {}
            removed: set[str] = set()
            for name in sorted(names):
                state = self.plugins.get(name)
                path = files.get(name)
                if state is not None and state.kind != "file":
                    if path is not None:
                        self._name_taken(name, str(path), state, report)
                    continue
                if path is None:
                    if state is not None:
                        removed.add(name)
                    continue
                try:
                    source = path.read_bytes()
                except OSError as exc:  # deleted or unreadable between the scan and now
                    if state is None:
                        state = self.plugins[name] = PluginState(name, "file", str(path))
                    self._failed(state, report, exc)
                    continue
                digest = hashlib.sha256(source).digest()
                if state is None:
                    state = self.plugins[name] = PluginState(name, "file", str(path))
                state.source = str(path)
                if not force and state.digest == digest and state.error is None:
                    report.unchanged.append(name)
                    continue
                try:
                    plugin, _module = await _in_thread(_exec_file, name, path, source)
                except Exception as exc:  # boundary: a broken plugin is reported and skipped
                    self._failed(state, report, exc)
                    continue
                loaded[name] = (plugin, digest)
            self._publish(loaded, removed, report)
        return report

    def _failed(self, state: PluginState, report: ReloadReport, exc: BaseException) -> None:
        state.failures += 1
        state.error = f"{type(exc).__name__}: {exc}"
        state.traceback = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        report.failed[state.name] = state.error
        keeping = "keeping its last good version" if state.plugin is not None else "skipped"
        logger.error("plugin %r (%s) failed to load; %s", state.name, state.source, keeping, exc_info=exc)

    @staticmethod
    def _name_taken(name: str, source: str, holder: PluginState, report: ReloadReport) -> None:
        message = f"plugin name {name!r} is already used by {holder.source}"
        report.failed[name] = f"PluginError: {message}"
        logger.error("plugin %r (%s) skipped: %s", name, source, message)

    def _publish(self, loaded: dict[str, tuple[Plugin, bytes | None]], removed: set[str], report: ReloadReport) -> None:
        """Check the new versions for clashes, then swap them all in with one registry update."""
        registry = self.server.registry
        owned = RegistryKeys()
        for state in self.plugins.values():
            owned = owned.union(state.keys)
        # What the application itself defines: whatever no plugin owns.
        taken = registry.keys().minus(owned)
        for name, state in self.plugins.items():
            if name not in loaded and name not in removed:
                taken = taken.union(state.keys)
        accepted: dict[str, tuple[Plugin, bytes | None, RegistryKeys]] = {}
        for name, (plugin, digest) in sorted(loaded.items()):
            keys = plugin._registry.keys()
            clashes = keys.clashes(taken)
            if clashes:
                self._failed(self.plugins[name], report, PluginError(f"already defined elsewhere: {', '.join(clashes)}"))
                taken = taken.union(self.plugins[name].keys)  # its last good version stays
                continue
            taken = taken.union(keys)
            accepted[name] = (plugin, digest, keys)
        if not accepted and not removed:
            return
        remove = RegistryKeys()
        add = Registry()
        kinds: set[str] = set()
        for name in removed:
            remove = remove.union(self.plugins[name].keys)
            kinds |= self.plugins[name].keys.kinds()
        for name, (plugin, _, keys) in accepted.items():
            remove = remove.union(self.plugins[name].keys)
            kinds |= self.plugins[name].keys.kinds() | keys.kinds()
            add = add.swap(RegistryKeys(), plugin._registry)
        self.server._update(lambda current: current.swap(remove, add), kinds)
        now = time.time()
        for name, (plugin, digest, keys) in accepted.items():
            state = self.plugins[name]
            plugin.host = self.server
            state.plugin, state.keys, state.digest, state.loaded_at = plugin, keys, digest, now
            state.loads += 1
            state.error = state.traceback = None
            report.loaded.append(name)
            logger.info("plugin %r loaded from %s: %d tool(s), %d resource(s), %d prompt(s)", name, state.source,
                        len(keys.tools), len(keys.resources) + len(keys.templates), len(keys.prompts))
        for name in sorted(removed):
            state = self.plugins.pop(name)
            if state.kind == "file":
                sys.modules.pop(MODULE_PREFIX + name, None)
            report.removed.append(name)
            logger.info("plugin %r removed (%s is gone)", name, state.source)

    # -- what the admin surface shows -------------------------------------------------------
    def owner_of_tool(self, name: str) -> str | None:
        """The plugin that defines tool ``name`` (None: the application, or nobody)."""
        for state in self.plugins.values():
            if name in state.keys.tools:
                return state.name
        return None

    def status(self) -> dict[str, Any]:
        return {
            "directories": [str(d) for d in self.directories],
            "entry_points": self.entry_points,
            "watching": self.watching,
            "plugins": [state.status() for _, state in sorted(self.plugins.items())],
        }


async def _in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """Run a plugin's import in a worker thread, abandoned after ``IMPORT_TIMEOUT`` seconds.

    The plugin's exception is raised with the traceback it had in the thread, not through
    trio's thread machinery, so the log shows the plugin's frames only.
    """

    def captured() -> tuple[Any, BaseException | None]:
        try:
            return fn(*args), None
        except Exception as exc:  # handed back to the trio side, raised there as is
            return None, exc
        except BaseException as exc:  # noqa: BLE001 - sys.exit() at import must not stop the server
            error = PluginError(f"the plugin raised {describe_raised(exc)} while loading (sys.exit() "
                                "or the like); it was not loaded")
            error.__cause__ = exc
            return None, error

    with trio.move_on_after(IMPORT_TIMEOUT):
        value, error = await trio.to_thread.run_sync(captured, abandon_on_cancel=True)
        if error is not None:
            raise error.with_traceback(error.__traceback__)
        return value
    raise PluginError(f"import did not finish within {IMPORT_TIMEOUT:g} s; abandoned")


async def _set_when_cancelled(event: threading.Event) -> None:
    try:
        await trio.sleep_forever()
    finally:
        event.set()
