"""How an ``APP`` names a server: ``MODULE:ATTR`` or ``path/to/file.py:ATTR``, on every OS.

A Windows path has a colon of its own (``C:\\work\\weather.py:server``), so the split is at the
last colon, and only when what follows it is a Python name; a path is told from a module by a
separator of either kind (``/`` or ``\\``) or a ``.py`` ending, whatever the OS running us.
Pure string work: nothing is imported and no file is read here.
"""

from __future__ import annotations

from typing import NamedTuple

#: The attribute an APP without ``:ATTR`` names.
DEFAULT_ATTR = "server"


class AppSpec(NamedTuple):
    target: str  # a dotted module name, or a file path
    attr: str  # "" when the spec names none (then DEFAULT_ATTR is meant)
    is_path: bool


def split_app(spec: str) -> AppSpec:
    """``"weather:server"``, ``"pkg.mod"``, ``"C:\\x\\app.py:make"``, ``"./app.py"`` → parts."""
    head, colon, tail = spec.rpartition(":")
    if colon and (tail.isidentifier() or not tail):
        target, attr = head, tail
    else:
        target, attr = spec, ""
    is_path = target.endswith(".py") or "/" in target or "\\" in target
    return AppSpec(target, attr, is_path)
