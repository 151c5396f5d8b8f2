"""Editing another program's JSON settings file without breaking it.

Hosts keep much more than servers in their files (``~/.claude.json`` is Claude Code's whole
state), so an edit must change the one value it means and nothing else:

* a file that is not valid JSON, or not an object at the top, is refused and left alone;
* the file is rewritten only when its content changes, so a second identical edit writes
  nothing (same bytes, same mtime);
* what is rewritten keeps its indentation, key order, line endings and non-ASCII text, and
  replaces the file atomically (a temporary file beside it, then ``os.replace``), keeping its
  permission bits; a symlinked file is written through the link. A new file is created
  readable by its owner only (it may hold tokens).
"""

from __future__ import annotations

import copy
import difflib
import json
import os
import re
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_INDENT = re.compile(r'^([ \t]+)["}\]]', re.MULTILINE)


class ConfigFileError(Exception):
    """The file cannot be edited safely; the message names it, the cause and the next step."""


@dataclass(frozen=True)
class Edit:
    """The file's text before (None: no file yet) and after one change."""

    path: Path
    before: str | None
    after: str

    @property
    def changed(self) -> bool:
        return self.before != self.after

    def diff(self) -> str:
        """A unified diff of the change ("" when there is none)."""
        before = [] if self.before is None else self.before.splitlines(keepends=True)
        lines = difflib.unified_diff(before, self.after.splitlines(keepends=True),
                                     fromfile="/dev/null" if self.before is None else str(self.path), tofile=str(self.path))
        return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def plan_edit(path: Path, change: Callable[[dict[str, Any]], None], *, dialect_hint: str = "") -> Edit:
    """Read ``path`` (absent or empty: ``{}``), apply ``change`` to a copy, render the result.

    ``dialect_hint`` is added to the error for a file that does not parse (VS Code's files may
    hold comments, which this editor would lose, so they are refused too).
    """
    try:
        with path.open(encoding="utf-8-sig", newline="") as file:  # line endings as they are
            before: str | None = file.read()
    except FileNotFoundError:
        before = None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigFileError(f"cannot read {path}: {_reason(exc)}") from None
    data: Any = {}
    if before is not None and before.strip():
        try:
            data = json.loads(before)
        except json.JSONDecodeError as exc:
            raise ConfigFileError(f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}){dialect_hint}: "
                                  "fix it, or move it away; nothing was written") from None
        if not isinstance(data, dict):
            raise ConfigFileError(f"{path} holds a JSON {type(data).__name__}, not an object: fix it, or move it away; "
                                  "nothing was written")
    changed = copy.deepcopy(data)
    change(changed)
    if before is not None and changed == data:
        return Edit(path, before, before)
    return Edit(path, before, _render(changed, before))


def _render(data: dict[str, Any], like: str | None) -> str:
    """JSON text in the style of ``like`` (indentation, line endings), else two spaces."""
    indent: str | int = 2
    newline = "\n"
    if like:
        found = _INDENT.search(like)
        if found is not None:
            indent = found.group(1)
        if "\r\n" in like:
            newline = "\r\n"
    text = json.dumps(data, indent=indent, ensure_ascii=False) + "\n"
    return text.replace("\n", newline) if newline != "\n" else text


def write(edit: Edit) -> None:
    """Replace the file with ``edit.after``, atomically; nothing at all when nothing changed."""
    if not edit.changed:
        return
    target = edit.path.resolve() if edit.path.is_symlink() else edit.path
    target.parent.mkdir(parents=True, exist_ok=True)
    mode = stat.S_IMODE(target.stat().st_mode) if edit.before is not None else 0o600
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as file:
            file.write(edit.after)
        os.chmod(temporary, mode)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _reason(exc: Exception) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
