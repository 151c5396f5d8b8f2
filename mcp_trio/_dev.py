"""``mcp-trio dev APP``: serve over HTTP, reload APP's own file when it changes, and point the
MCP Inspector at it.

The reload rebuilds the running server's registry; it does not restart the process. When
APP's file changes (saved by an editor: written, or replaced by a rename), ``AppReloader``
executes it again into a fresh module, in a worker thread, takes the ``Server`` it defines
(``ATTR``, or what the factory ``ATTR`` returns) and swaps that server's tools, resources,
prompts, completions, custom methods and middleware for the old ones in one registry update.
So sessions stay open (the Inspector stays connected, a Streamable HTTP session id stays
valid) and are told ``notifications/*/list_changed``; calls already running finish on the code
they started with, new calls get the new code. Plugin directories (``--plugins``) reload as
they always do, beside it.

What a reload does not change: the lifespan (it is entered once per process), the plugins a
module configures with ``use_plugins`` and the servers it mounts (their definitions stay as
they are), the server's name, the port and every other setting, and modules APP imports (only
APP's file is executed again): restart ``mcp-trio dev`` for those. A file that fails to load (a syntax error, an exception, no ``Server`` where APP says,
a tool a plugin already defines) is logged in one line and the last good version keeps
serving.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
import sys
import threading
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from ._appspec import DEFAULT_ATTR, split_app
from ._containment import describe_raised
from ._server import Server
from .offer._registry import Registry, RegistryKeys

logger = logging.getLogger("mcp_trio.dev")

#: The MCP Inspector's npm package; ``npx`` runs it (``--inspector``).
INSPECTOR_PACKAGE = "@modelcontextprotocol/inspector"
#: Milliseconds without a new file event after which a burst of changes (an editor's save) reloads.
WATCH_STEP_MS = 50
#: Milliseconds a continuous burst of changes may be grouped for at most.
WATCH_DEBOUNCE_MS = 1600
#: Seconds executing APP's file may take before the reload is abandoned.
RELOAD_TIMEOUT = 30.0


def inspector_command(url: str) -> list[str]:
    """The Inspector (UI mode) connecting to ``url`` over Streamable HTTP. ``--transport`` and
    ``--server-url`` are the Inspector launcher's own options (modelcontextprotocol/inspector,
    ``cli/src/cli.ts``: ``http`` stands for ``streamable-http``)."""
    return ["npx", INSPECTOR_PACKAGE, "--transport", "http", "--server-url", url]


def inspector_line(url: str) -> str:
    return shlex.join(inspector_command(url))


def missing_npx(path: str | None = None) -> str | None:
    """The one line saying ``--inspector`` cannot work here, or None when ``npx`` is on PATH."""
    if shutil.which("npx", path=path) is not None:
        return None
    return ("--inspector needs npx, which comes with Node.js (22 or newer), and there is none on PATH: install "
            "Node.js, or leave out --inspector and run the Inspector command mcp-trio dev prints")


def loopback_url(url: str) -> str:
    """``url`` as this machine reaches it: a server bound to every address is on loopback here."""
    for wildcard in ("//0.0.0.0:", "//[::]:", "//:::"):
        if wildcard in url:
            return url.replace(wildcard, "//127.0.0.1:", 1)
    return url


async def run_inspector(url: str) -> None:
    """Run the Inspector until it exits (or dev stops, which ends it); its output is the
    terminal's, so the address it prints (with its session token) shows."""
    command = ["npx", "-y", *inspector_command(url)[1:]]  # -y: no install prompt on a first run
    print(f"mcp-trio: starting the MCP Inspector: {shlex.join(command)}", file=sys.stderr, flush=True)
    try:
        done = await trio.run_process(command, check=False, stdin=subprocess.DEVNULL)
    except OSError as exc:
        logger.error("the MCP Inspector could not be started (%s); run it yourself: %s", exc, inspector_line(url))
        return
    if done.returncode > 0:
        logger.warning("the MCP Inspector exited with status %d; the server goes on", done.returncode)


# -- reloading APP ------------------------------------------------------------------------------
@dataclass
class Reload:
    """What one reload did: the file's new definitions went in, or why they did not."""

    ok: bool
    error: str | None = None
    tools: int = 0


class AppReloader:
    """Watches APP's file and swaps its definitions into the running ``server`` on change.

    ``server`` is the ``Server`` being served (the one ``spec`` named when it was loaded);
    ``spec`` is APP (``module:attr`` or ``path.py:attr``) as given, ``app_dir`` as for
    ``mcp-trio serve``. ``reloads`` counts reloads done; ``wait_for_reload(n)`` waits until
    there have been more than ``n`` attempts (tests use it instead of sleeping).
    """

    def __init__(self, server: Server, spec: str, app_dir: str | None = None) -> None:
        target, attr, is_path = split_app(spec)
        self.server = server
        self.attr = attr or DEFAULT_ATTR
        if is_path:
            self.path = Path(target).resolve()
            self.module_name = self.path.stem
        else:
            module = sys.modules.get(target)
            file = getattr(module, "__file__", None)
            if file is None:
                raise ValueError(f"cannot reload {target!r}: it is not loaded from a file")
            self.path = Path(file).resolve()
            self.module_name = target
        #: Reload attempts so far, and the last one's outcome.
        self.attempts = 0
        self.reloads = 0
        self.last: Reload | None = None
        self._attempted = trio.lowlevel.ParkingLot()

    async def wait_for_reload(self, after: int) -> Reload:
        """Until a reload attempt later than the ``after``-th has finished; its outcome."""
        while self.attempts <= after:
            await self._attempted.park()
        assert self.last is not None
        return self.last

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Watch APP's folder for changes to its file until cancelled."""
        from watchfiles import awatch

        target = str(self.path)

        def wanted(_change: Any, path: str) -> bool:
            return os.path.abspath(path) == target

        stop = threading.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_set_when_cancelled, stop)
            watcher = awatch(self.path.parent, stop_event=stop, watch_filter=wanted, recursive=False,
                             step=WATCH_STEP_MS, debounce=WATCH_DEBOUNCE_MS)
            task_status.started()
            logger.info("watching %s: a change reloads it", self.path)
            try:
                async for _ in watcher:
                    if self.path.exists():  # a save by rename has a moment without the file
                        await self.reload()
            except Exception:  # boundary: losing the watcher must not stop the server
                logger.exception("watching %s failed; it is no longer reloaded on change", self.path)
            nursery.cancel_scope.cancel()

    async def reload(self) -> Reload:
        """Execute APP's file again and swap its definitions in (see the module's docstring)."""
        try:
            with trio.fail_after(RELOAD_TIMEOUT):
                fresh = await trio.to_thread.run_sync(self._load_fresh, abandon_on_cancel=True)
            outcome = self._swap_in(fresh)
        except trio.TooSlowError:
            outcome = Reload(False, f"executing it took longer than {RELOAD_TIMEOUT:g} s")
        except _ReloadError as exc:
            outcome = Reload(False, str(exc))
        self.attempts += 1
        self.last = outcome
        if outcome.ok:
            self.reloads += 1
            print(f"mcp-trio: reloaded {self.path.name}: {outcome.tools} tool(s)", file=sys.stderr, flush=True)
        else:
            print(f"mcp-trio: {self.path.name} not reloaded, the last good version goes on serving: {outcome.error}",
                  file=sys.stderr, flush=True)
        self._attempted.unpark_all()
        return outcome

    def _load_fresh(self) -> Server:
        """In a worker thread: APP's file executed into a fresh module, and its ``Server``."""
        try:
            source = self.path.read_bytes()
            module = types.ModuleType(self.module_name)
            module.__file__ = str(self.path)
            previous = sys.modules.get(self.module_name)
            sys.modules[self.module_name] = module  # annotations resolve through it while it runs
            try:
                exec(compile(source, str(self.path), "exec"), module.__dict__)
            except BaseException:
                if previous is not None:
                    sys.modules[self.module_name] = previous
                raise
        except SyntaxError as exc:
            raise _ReloadError(f"{exc.msg} (line {exc.lineno})") from None
        except Exception as exc:  # the module's own code failed: reported in one line
            raise _ReloadError(f"it raised {type(exc).__name__}: {exc}") from None
        except BaseException as exc:  # noqa: BLE001 - sys.exit() in APP must not stop dev
            raise _ReloadError(f"it raised {describe_raised(exc)}") from None
        value = getattr(module, self.attr, None)
        if callable(value) and not isinstance(value, Server):
            try:
                value = value()
            except Exception as exc:
                raise _ReloadError(f"{self.attr}() raised {type(exc).__name__}: {exc}") from None
        if not isinstance(value, Server) or type(value).__name__ == "Plugin":
            raise _ReloadError(f"it defines no Server named {self.attr!r} any more")
        return value

    def _swap_in(self, fresh: Server) -> Reload:
        """One registry update: the app's own old definitions out, ``fresh``'s own in (what
        plugins and mounted servers put in the registry is theirs, and stays)."""
        server = self.server
        elsewhere = _owned_elsewhere(server)
        new = fresh._registry.swap(_owned_elsewhere(fresh), Registry())
        clashes = new.keys().clashes(elsewhere)
        if clashes:
            raise _ReloadError(f"a plugin or a mounted server already defines {', '.join(clashes)}")
        old = server.registry.keys().minus(elsewhere)
        kinds = set(old.kinds() | new.keys().kinds()) or {"tools"}
        server._update(lambda current: current.swap(old, new), kinds)
        for name in ("version", "instructions", "title", "icons", "coerce_arguments", "roots_changed_hooks"):
            setattr(server, name, getattr(fresh, name))
        return Reload(True, tools=len(new.tools))


def _owned_elsewhere(server: Server) -> RegistryKeys:
    """What ``server``'s plugins and mounted servers have put in its registry."""
    keys = RegistryKeys()
    if server.plugins is not None:
        for state in server.plugins.plugins.values():
            keys = keys.union(state.keys)
    for mount in getattr(server, "mounts", ()):
        keys = keys.union(mount.keys)
    return keys


class _ReloadError(Exception):
    """APP's file did not give a new server; the message is one line."""


async def _set_when_cancelled(event: threading.Event) -> None:
    try:
        await trio.sleep_forever()
    finally:
        event.set()

