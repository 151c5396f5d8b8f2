"""msgspec's validation messages in plain words, with the value that was received.

msgspec says ``Expected `int` <= 65535 - at `$.server.port```: exact, but written for the
programmer of the schema. The people who read our errors are an operator fixing a config file
and a model fixing its tool arguments; both need the setting or argument, the rule in words
and what they sent: ``server.port must be at most 65535 (got 70000)``. ``explain`` turns one
``msgspec.ValidationError`` into a ``Problem`` carrying both the sentence and its parts (for
``_meta`` of a tool result), looking the received value up in the data that was checked and
the allowed values up in the JSON Schema of the type. ``unknown_keys`` finds *every* key the
schema does not know, with a did-you-mean, where msgspec stops at the first.

Only on the error path: nothing here runs for valid input.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import msgspec

#: Longest rendering of a received value in a message; longer ones are cut with "...".
MAX_SHOWN = 80

class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Any = _Missing()

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_AT = re.compile(r"(?P<body>.*?)(?: - at `\$(?P<path>[^`]*)`)?", re.S)
_TOKENS = re.compile(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]")
_TYPE_WORDS = {
    "int": "an integer", "float": "a number", "str": "a string", "bool": "true or false", "null": "null",
    "array": "a list", "object": "an object", "bytes": "base64 text", "datetime": "an RFC 3339 date-time",
    "date": "an RFC 3339 date", "time": "an RFC 3339 time", "uuid": "a UUID", "decimal": "a decimal number",
}
_COMPARISONS = {">=": ("minimum", "at least"), "<=": ("maximum", "at most"),
                ">": ("exclusiveMinimum", "greater than"), "<": ("exclusiveMaximum", "less than")}
_JSON_TYPES = {"int": "integer", "float": "number", "str": "string", "bool": "boolean"}
_LENGTHS = {("str", ">="): ("minLength", "must be at least {} long", "character"),
            ("str", "<="): ("maxLength", "must be at most {} long", "character"),
            ("array", ">="): ("minItems", "must have at least {}", "item"),
            ("array", "<="): ("maxItems", "must have at most {}", "item"),
            ("object", ">="): ("minProperties", "must have at least {}", "entry"),
            ("object", "<="): ("maxProperties", "must have at most {}", "entry")}


class Problem(msgspec.Struct, frozen=True):
    """One thing wrong with the input: where, the rule broken, and what was received.

    ``path`` (from ``parts``) is the dotted place (``server.port``, ``tags[0]``; ``""`` for the whole input);
    ``rule`` says it in words (``must be at most 65535``); ``constraint`` and ``limit`` are the
    JSON Schema keyword and its value (``maximum``, 65535; ``type``, ``integer``;
    ``required``; ``additionalProperties`` for an unknown key); ``received`` is the value
    sent, when it could be found.
    """

    #: Where: names, list indexes, None for a dict key msgspec does not name.
    parts: tuple[str | int | None, ...]
    rule: str
    constraint: str | None = None
    limit: Any = None
    received: Any = _MISSING

    @property
    def path(self) -> str:
        return join_path(self.parts)

    @property
    def has_received(self) -> bool:
        return self.received is not _MISSING

    def text(self, name: str | None = None) -> str:
        """``server.port must be at most 65535 (got 70000)``; ``name`` replaces the path."""
        subject = name if name is not None else (self.path or "the input")
        got = f" (got {show(self.received)})" if self.has_received else ""
        space = "" if self.rule.startswith(":") else " "
        return f"{subject}{space}{self.rule}{got}"

    def detail(self) -> dict[str, Any]:
        """The parts as JSON data (for a tool result's ``_meta``)."""
        out: dict[str, Any] = {"path": self.path, "message": self.text()}
        if self.constraint is not None:
            out["constraint"] = self.constraint
        if self.limit is not None:
            out["limit"] = self.limit
        if self.has_received:
            out["received"] = self.received
        return out


def show(value: Any) -> str:
    """A received value as JSON text (so ``"5"`` is visibly a string), cut to ``MAX_SHOWN``."""
    try:
        text = msgspec.json.encode(value).decode()
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."


def split_path(text: str) -> list[str | int | None]:
    """``.server.port`` -> ["server", "port"]; ``.tags[0]`` -> ["tags", 0]; ``[...]``
    (a dict key msgspec does not name) -> None."""
    parts: list[str | int | None] = []
    for name, index in _TOKENS.findall(text):
        if name:
            parts.append(name)
        else:
            parts.append(None if index == "..." else int(index))
    return parts


def join_path(parts: Sequence[str | int | None]) -> str:
    """``("rows", 3, "id")`` -> ``rows[3].id``; a key that is not an identifier is quoted
    (``tags["a b"]``), so a path with a space or a dot in a key still reads as one place."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part is None:
            out += "[...]"
        elif _IDENTIFIER.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{msgspec.json.encode(part).decode()}]"
    return out


def _lookup(data: Any, parts: list[str | int | None]) -> Any:
    node = data
    for part in parts:
        if part is None:
            return _MISSING
        if isinstance(part, int):
            if not isinstance(node, list) or not -len(node) <= part < len(node):
                return _MISSING
            node = node[part]
        else:
            if not isinstance(node, Mapping) or part not in node:
                return _MISSING
            node = node[part]
    return node


def _resolve(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    while isinstance(ref, str) and ref.startswith("#/$defs/"):
        schema = root.get("$defs", {}).get(ref.rsplit("/", 1)[1], {})
        ref = schema.get("$ref")
    return schema


def _alternatives(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    schema = _resolve(schema, root)
    options = schema.get("anyOf") or schema.get("oneOf")
    if options:
        for option in options:
            yield from _alternatives(option, root)
    else:
        yield schema


def schema_at(schema: Mapping[str, Any] | None, parts: list[str | int | None]) -> Mapping[str, Any] | None:
    """The sub-schema that validates the value at ``parts`` (the first that fits)."""
    if schema is None:
        return None
    root = schema
    nodes = [schema]
    for part in parts:
        found = []
        for node in nodes:
            for option in _alternatives(node, root):
                if isinstance(part, str) and part in option.get("properties", {}):
                    found.append(option["properties"][part])
                elif isinstance(part, int) and isinstance(option.get("items"), Mapping):
                    found.append(option["items"])
                elif isinstance(option.get("additionalProperties"), Mapping) and not isinstance(part, int):
                    found.append(option["additionalProperties"])
        if not found:
            return None
        nodes = found
    return _resolve(nodes[0], root)


def _property_names(schema: Mapping[str, Any] | None) -> list[str]:
    if schema is None:
        return []
    names: list[str] = []
    for option in _alternatives(schema, schema):
        names.extend(option.get("properties", {}))
    return names


def _enum_at(schema: Mapping[str, Any] | None, parts: list[str | int | None]) -> list[Any] | None:
    node = schema_at(schema, parts)
    if node is None or schema is None:
        return None
    for option in _alternatives(node, schema):
        if "enum" in option:
            return list(option["enum"])
        if "const" in option:
            return [option["const"]]
    return None


def _type_words(types: str) -> str:
    words = [_TYPE_WORDS.get(t.strip(), t.strip()) for t in types.split("|")]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _number(text: str) -> int | float | str:
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if value.is_integer() and "e" not in text.lower() else value


def suggest(name: str, known: list[str], cutoff: float = 0.75) -> str:
    """`` (did you mean x?)`` when a known name is close to ``name``, else ``""``. (Not too
    eager: ``extra`` is not a misspelt ``text``.)"""
    import difflib  # only errors pay for it

    close = difflib.get_close_matches(name, known, n=1, cutoff=cutoff)
    return f" (did you mean {close[0]}?)" if close else ""


def explain(error: msgspec.ValidationError | str, data: Any = _MISSING, schema: Mapping[str, Any] | None = None) -> Problem:
    """The ``Problem`` that ``error`` (raised checking ``data`` against ``schema``) reports."""
    match = _AT.fullmatch(str(error))
    assert match is not None  # the pattern matches any text
    body, at = match.group("body"), match.group("path") or ""
    parts = split_path(at)
    received = _lookup(data, parts) if data is not _MISSING else _MISSING
    path = join_path(parts)

    if found := re.fullmatch(r"Object missing required field `(.+)`", body):
        return Problem((*parts, found.group(1)), "is required", "required", found.group(1))
    if found := re.fullmatch(r"Object contains unknown field `(.+)`", body):
        name = found.group(1)
        hint = suggest(name, _property_names(schema_at(schema, parts)))
        return Problem((*parts, name), f"is unknown{hint}", "additionalProperties", False)
    if found := re.fullmatch(r"Expected `([^`]+)`, got `([^`]+)`", body):
        expected = " | ".join(_JSON_TYPES.get(t.strip(), t.strip()) for t in found.group(1).split("|"))
        return Problem(tuple(parts), f"must be {_type_words(found.group(1))}", "type", expected, received)
    if found := re.fullmatch(r"Expected `(str|array|object)` of length (>=|<=) (\d+)", body):
        keyword, words, unit = _LENGTHS[(found.group(1), found.group(2))]
        limit = int(found.group(3))
        plural = unit if limit == 1 else ("entries" if unit == "entry" else unit + "s")
        return Problem(tuple(parts), words.format(f"{limit} {plural}"), keyword, limit, received)
    if found := re.fullmatch(r"Expected `[^`]+` (>=|<=|>|<) (\S+)", body):
        keyword, words = _COMPARISONS[found.group(1)]
        limit = _number(found.group(2))
        return Problem(tuple(parts), f"must be {words} {limit}", keyword, limit, received)
    if found := re.fullmatch(r"Expected `[^`]+` that's a multiple of (\S+)", body):
        limit = _number(found.group(1))
        return Problem(tuple(parts), f"must be a multiple of {limit}", "multipleOf", limit, received)
    if found := re.fullmatch(r"Expected `str` matching regex '(.*)'", body, re.S):
        node = schema_at(schema, parts)  # msgspec shows the pattern's repr; the schema has it as written
        pattern = node.get("pattern") if node is not None and "pattern" in node else found.group(1)
        return Problem(tuple(parts), f"must match the pattern {pattern}", "pattern", pattern, received)
    if body.startswith("Invalid enum value"):
        allowed = _enum_at(schema, parts)
        if allowed:
            return Problem(tuple(parts), "must be one of " + ", ".join(show(v) for v in allowed), "enum", allowed, received)
        return Problem(tuple(parts), "is not one of the allowed values", "enum", None, received)
    if body == "Number out of range":
        return Problem(tuple(parts), "is out of range", None, None, received)
    if body.startswith("Expected `object`, got") and not parts:
        return Problem((), "must be an object", "type", "object", received)
    # A message of our own (a __post_init__ check) or one msgspec may add later: kept as it is.
    return Problem(tuple(parts), f": {body}" if path else body, None, None, _MISSING)


def unknown_keys(data: Any, schema: Mapping[str, Any], parts: list[str | int | None] | None = None) -> list[Problem]:
    """Every key of ``data`` that ``schema`` does not allow, each with a did-you-mean."""
    parts = parts or []
    node = schema_at(schema, parts) if parts else _resolve(schema, schema)
    problems: list[Problem] = []
    if node is None:
        return problems
    options = list(_alternatives(node, schema))
    if isinstance(data, Mapping):
        objects = [o for o in options if o.get("type") == "object" or "properties" in o]
        if not objects:
            return problems
        known = [name for o in objects for name in o.get("properties", {})]
        closed = all(o.get("additionalProperties") is False for o in objects)
        for key, value in data.items():
            if key in known:
                problems.extend(unknown_keys(value, schema, [*parts, key]))
            elif closed:
                problems.append(Problem((*parts, key), f"is unknown{suggest(key, known)}",
                                        "additionalProperties", False))
            elif any(isinstance(o.get("additionalProperties"), Mapping) for o in objects):
                problems.extend(unknown_keys(value, schema, [*parts, key]))
    elif isinstance(data, list) and any(isinstance(o.get("items"), Mapping) for o in options):
        for index, item in enumerate(data):
            problems.extend(unknown_keys(item, schema, [*parts, index]))
    return problems
