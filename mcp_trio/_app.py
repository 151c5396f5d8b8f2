"""Finding the ``Server`` that ``mcp-trio serve APP`` names.

``APP`` is ``module:attr`` or ``path/to/file.py:attr`` (``attr`` defaults to ``server``).
Modules are looked up in the current directory first, as ``python -m`` and uvicorn do
(``--app-dir`` names another folder): the console script, unlike ``python -m``, does not put
the working directory on ``sys.path`` itself, so ``mcp-trio serve weather:server`` run next to
``weather.py`` would not find it.

``attr`` must be a ``Server``, or a function of no arguments that returns one. Nothing else is
called: a tool function or a class named by mistake is reported as what it is, with the
``Server`` objects the module does hold, instead of being called and failing somewhere deep.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any


class AppLoadError(Exception):
    """``APP`` does not name a ``Server``; the message says what it found and what to do."""


def load_app(spec: str, app_dir: str | None = None) -> Any:
    """Import ``spec``'s module and return its ``Server`` (see the module's docstring)."""
    from .plugins._plugin import Plugin
    from ._server import Server

    from ._appspec import DEFAULT_ATTR, split_app

    target, attr, is_path = split_app(spec)  # C:\dir\app.py:server is a path on any OS
    attr = attr or DEFAULT_ATTR
    module = _import(target, app_dir, is_path)
    if not hasattr(module, attr):
        from ._explain import suggest

        hint = suggest(attr, [name for name in vars(module) if not name.startswith("_")], cutoff=0.6)
        raise AppLoadError(f"{target} has no attribute {attr!r}{hint}{_servers_in(module, Server)}")
    app = getattr(module, attr)
    expected = "APP must name an mcp_trio.Server, or a function with no arguments that returns one"
    if isinstance(app, Plugin):
        raise AppLoadError(f"{spec} is a Plugin: serve it from a server with --plugins DIR (or Server.use_plugins)")
    if isinstance(app, Server):
        return app
    if inspect.isclass(app):
        raise AppLoadError(f"{spec} is a class ({app.__name__}), not a Server: {expected}{_servers_in(module, Server)}")
    if callable(app):
        owner = _tool_owner(module, app, Server)
        if owner is not None:
            raise AppLoadError(f"{spec} is a tool function, not a Server: serve its Server, {target}:{owner}")
        if inspect.iscoroutinefunction(app):
            raise AppLoadError(f"{spec} is an async function: {expected} (a plain def){_servers_in(module, Server)}")
        required = _required_parameters(app)
        if required:
            raise AppLoadError(f"{spec} is a function that takes arguments ({', '.join(required)}): "
                               f"{expected}{_servers_in(module, Server)}")
        app = app()
        if isinstance(app, Server) and not isinstance(app, Plugin):
            return app
        raise AppLoadError(f"{spec}() returned {_a(app)}, not an mcp_trio.Server: {expected}")
    raise AppLoadError(f"{spec} is {_a(app)}, not an mcp_trio.Server: {expected}{_servers_in(module, Server)}")


def _import(target: str, app_dir: str | None, is_path: bool) -> ModuleType:
    folder = os.path.abspath(app_dir or os.getcwd())
    if app_dir is not None and not os.path.isdir(folder):
        raise AppLoadError(f"--app-dir {app_dir}: no such directory")
    if is_path:
        path = Path(target).resolve()
        if not path.is_file():
            raise AppLoadError(f"cannot import {target!r}: no such file")
        module_spec = importlib.util.spec_from_file_location(path.stem, path)
        if module_spec is None or module_spec.loader is None:
            raise AppLoadError(f"cannot import {target!r}: not a Python file")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[path.stem] = module
        try:
            _run(target, lambda: module_spec.loader.exec_module(module))  # type: ignore[union-attr]
        except ModuleNotFoundError as exc:
            raise _missing_dependency(target, exc) from exc
        return module
    if folder not in sys.path:
        sys.path.insert(0, folder)
    try:
        return _run(target, lambda: importlib.import_module(target))
    except ModuleNotFoundError as exc:
        if exc.name is not None and (target == exc.name or target.startswith(exc.name + ".")):
            where = f"--app-dir {app_dir}" if app_dir is not None else f"the current directory ({folder})"
            raise AppLoadError(f"cannot import {target!r}: no module {exc.name!r} in {where} or the installed "
                               f"packages: run from the folder that holds it, pass --app-dir DIR, or give a path "
                               f"(path/to/{target.replace('.', '/')}.py:server)") from exc
        raise _missing_dependency(target, exc) from exc


def _missing_dependency(target: str, exc: ModuleNotFoundError) -> AppLoadError:
    return AppLoadError(f"cannot import {target!r}: it imports {exc.name!r}, which is not installed in this Python "
                        f"({sys.executable} -m pip install ...)")


def _run(target: str, load: Any) -> Any:
    try:
        return load()
    except ModuleNotFoundError:
        raise
    except SyntaxError as exc:
        raise AppLoadError(f"cannot import {target!r}: {exc.msg} ({exc.filename}, line {exc.lineno})") from exc
    except Exception as exc:  # the module's own code failed while importing: report it, one line
        raise AppLoadError(f"cannot import {target!r}: it raised {type(exc).__name__}: {exc} "
                           "(--log-level debug shows the traceback)") from exc


def _required_parameters(fn: Any) -> list[str]:
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p.name for p in parameters
            if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def _tool_owner(module: ModuleType, fn: Any, server_type: type) -> str | None:
    """The name of the module's ``Server`` that has ``fn`` as a tool, if any."""
    for name, value in vars(module).items():
        if isinstance(value, server_type) and any(getattr(tool.fn, "__wrapped__", tool.fn) is fn for tool in value.registry.tools.values()):
            return name
    return None


def _servers_in(module: ModuleType, server_type: type) -> str:
    names = [name for name, value in vars(module).items() if isinstance(value, server_type)]
    return f" ({module.__name__} defines the Server{'s' if len(names) > 1 else ''} {', '.join(names)})" if names else ""


def _a(value: Any) -> str:
    name = type(value).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"
