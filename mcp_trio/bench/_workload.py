"""What the load generator sends: one method, or a weighted mix read from a file.

A mix file is JSON or TOML (by its extension) holding a list of entries, each a request and
its weight (default 1)::

    # mix.toml
    [[requests]]
    tool = "echo"                      # shorthand for tools/call
    arguments = { text = "hello" }
    weight = 8

    [[requests]]
    method = "tools/list"
    weight = 1

    [[requests]]
    uri = "test://static-text"         # shorthand for resources/read
    weight = 1

The same in JSON is ``{"requests": [{"tool": "echo", "arguments": {"text": "hello"},
"weight": 8}, {"method": "tools/list"}, ...]}`` (a bare list works too). Each entry's params
are encoded once, up front, so the hot loop sends pre-encoded bytes.
"""

from __future__ import annotations

import random
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec

DEFAULT_TOOL = "echo"
DEFAULT_ARGUMENTS: dict[str, Any] = {"text": "hello"}
_TABLE_SIZE = 4096  # entries in the precomputed weighted draw, cycled through
_SEED = 1  # the same mix sequence in every run


class WorkloadError(ValueError):
    """A method, params or mix file that does not make sense (the user's mistake)."""


class Entry(msgspec.Struct, frozen=True):
    """One kind of request in the workload."""

    method: str
    params: Any = None
    weight: float = 1.0

    @property
    def label(self) -> str:
        """How reports name it: ``tools/call echo``, ``resources/read test://x``, ``ping``."""
        params = self.params if isinstance(self.params, dict) else {}
        if self.method == "tools/call" and "name" in params:
            return f"tools/call {params['name']}"
        if self.method == "resources/read" and "uri" in params:
            return f"resources/read {params['uri']}"
        return self.method


class Workload:
    """A cycle of pre-encoded requests drawn by weight; ``next()`` is an index increment."""

    def __init__(self, entries: Sequence[Entry]) -> None:
        if not entries:
            raise WorkloadError("a workload needs at least one request")
        for entry in entries:
            if not entry.weight > 0:
                raise WorkloadError(f"weight of {entry.label} must be positive")
        self.entries = list(entries)
        self.encoded = [
            msgspec.Raw(msgspec.json.encode(e.params)) if e.params is not None else None for e in self.entries
        ]
        if len(self.entries) == 1:
            self._table = [0]
        else:
            draw = random.Random(_SEED).choices(
                range(len(self.entries)), weights=[e.weight for e in self.entries], k=_TABLE_SIZE
            )
            self._table = draw
        self._position = 0

    def next(self) -> tuple[int, str, Any]:
        """(entry index, method, encoded params) of the next request."""
        table = self._table
        position = self._position
        self._position = position + 1 if position + 1 < len(table) else 0
        index = table[position]
        return index, self.entries[index].method, self.encoded[index]

    def to_json(self) -> list[dict[str, Any]]:
        return [msgspec.to_builtins(e) for e in self.entries]

    @classmethod
    def from_json(cls, data: Sequence[Mapping[str, Any]]) -> Workload:
        return cls([msgspec.convert(item, Entry) for item in data])


def single(
    method: str = "tools/call",
    *,
    tool: str = DEFAULT_TOOL,
    arguments: Mapping[str, Any] | None = None,
    uri: str | None = None,
    params: Any = None,
) -> Workload:
    """A workload of one request. ``params`` (raw JSON-RPC params) wins over the shorthands."""
    if params is None:
        if method == "tools/call":
            params = {"name": tool, "arguments": dict(DEFAULT_ARGUMENTS if arguments is None else arguments)}
        elif method == "resources/read":
            if not uri:
                raise WorkloadError("resources/read needs --uri")
            params = {"uri": uri}
        elif method in ("tools/list", "resources/list", "prompts/list"):
            params = {}
    return Workload([Entry(method, params)])


def _entry(item: Any, where: str) -> Entry:
    if not isinstance(item, Mapping):
        raise WorkloadError(f"{where}: each request must be a table/object")
    item = dict(item)
    weight = item.pop("weight", 1)
    if not isinstance(weight, int | float) or isinstance(weight, bool):
        raise WorkloadError(f"{where}: weight must be a number")
    if "tool" in item:
        tool = item.pop("tool")
        arguments = item.pop("arguments", {})
        method, params = "tools/call", {"name": tool, "arguments": arguments}
    elif "uri" in item:
        method, params = "resources/read", {"uri": item.pop("uri")}
    else:
        method = item.pop("method", None)
        params = item.pop("params", None)
        if not isinstance(method, str) or not method:
            raise WorkloadError(f"{where}: give method, tool or uri")
        if params is None and method in ("tools/list", "resources/list", "prompts/list"):
            params = {}
    if item:
        raise WorkloadError(f"{where}: unknown keys {sorted(item)}")
    return Entry(method, params, float(weight))


def from_file(path: str | Path) -> Workload:
    """Read a weighted mix from a ``.json`` or ``.toml`` file."""
    path = Path(path)
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise WorkloadError(f"cannot read {path}: {exc}") from None
    try:
        if path.suffix.lower() == ".toml":
            data: Any = tomllib.loads(text.decode())
        else:
            data = msgspec.json.decode(text)
    except (tomllib.TOMLDecodeError, msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise WorkloadError(f"{path}: {exc}") from None
    if isinstance(data, Mapping):
        data = data.get("requests")
    if not isinstance(data, list) or not data:
        raise WorkloadError(f"{path}: expected a non-empty list of requests (under 'requests')")
    return Workload([_entry(item, f"{path} request {n + 1}") for n, item in enumerate(data)])
