"""Validating tool arguments against a JSON Schema given as data (schema-defined tools, ``Tool``
classes with an ``input_schema``, tools generated from OpenAPI or an upstream server).

``SchemaValidator`` compiles the schema once (jsonschema-rs, draft 2020-12 unless the schema's
``$schema`` says otherwise) and checks each call's ``arguments``, decoded or as raw JSON bytes.
Each failure names the place (``address.zip``, ``rows[3].id``), the
rule in words, the JSON Schema keyword and its limit, and the value received, so a SEP-1303
``isError`` result can tell the model exactly what to fix:
``address.zip must match pattern '^[0-9]{5}$' (got "12")``. A failure is an ``_explain.Problem``
and a failed call ``_schema.InvalidArguments``, the very types of the signature-derived tools'
errors (one class for one fact): the tool-call path answers both alike, with a SEP-1303
``isError`` result naming each path.

Why jsonschema-rs (bench/jsonschema_validators.py, figures in the commit that chose it): the
only candidate right on every test of the JSON Schema Test Suite's draft 2020-12 files for the
keywords tools use, and the fastest (sub-microsecond on small objects). ``format`` stays an
annotation (2020-12's default); ``$ref`` to anything outside the schema is refused when the
schema is compiled (no network fetch, ever); regular expressions run with a backtracking limit.
The library is imported only when a schema-defined tool is registered.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
from msgspec import UNSET, Raw, UnsetType

from .._explain import Problem, show
from ..protocol._errors import InvalidParams
from ._schema import InvalidArguments

#: Errors reported for one call at most; the rest are counted, not described.
DEFAULT_MAX_ERRORS = 10
#: Backtracking steps one ``pattern`` may take on one value before the value is refused
#: (patterns with look-around or back-references use a backtracking engine; a hostile value
#: must not make one call cost seconds).
DEFAULT_REGEX_BACKTRACK_LIMIT = 100_000
MISSING: Any = object()  # "no value received" (a required property, say)
_EMPTY_OBJECT = b"{}"
_NULL = b"null"


class SchemaError(ValueError):
    """The schema itself cannot be used (not valid JSON Schema, a bad regular expression, a
    ``$ref`` outside the schema): raised when the tool is registered, never per call."""


def _problem(parts: tuple[str | int, ...], rule: str, constraint: str | None = None, limit: Any = None,
             received: Any = MISSING) -> Problem:
    """One failure as the signature-derived tools say theirs (``_explain.Problem``)."""
    if received is MISSING:
        return Problem(parts, rule, constraint, limit)
    return Problem(parts, rule, constraint, limit, received)


def _quoted(value: Any) -> str:
    return f"'{value}'" if isinstance(value, str) else show(value)


def _one_of(values: Sequence[Any]) -> str:
    shown = [show(v) for v in values]
    if not shown:
        return "no value (the enum is empty)"
    return shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " or " + shown[-1]


def _plural(count: Any, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def _at(document: Any, path: Sequence[str | int]) -> Any:
    for part in path:
        try:
            document = document[part]
        except (KeyError, IndexError, TypeError):
            return MISSING
    return document


def _unexpected(arguments: Any, schema: Any, error: Any, parts: tuple[str | int, ...]) -> list[Problem] | None:
    """``additionalProperties: false`` beside no ``properties``: jsonschema-rs reports one
    ``falseSchema`` error at the object, with the first extra value. Name every extra key."""
    holder = _at(arguments, parts)
    subschema = _at(schema, list(error.schema_path)[:-1])
    if not isinstance(holder, dict) or not isinstance(subschema, dict):
        return None
    known = subschema.get("properties", {})
    patterns = list(subschema.get("patternProperties", {}))

    def allowed(name: str) -> bool:
        try:
            return name in known or any(re.search(pattern, name) for pattern in patterns)
        except re.error:  # an ECMA-only pattern: count it as allowing, this is only the report
            return True

    names = [name for name in holder if not allowed(name)]
    return [_problem((*parts, name), "is not an allowed property", "additionalProperties", False, holder[name])
            for name in names] or None


def _errors_of(error: Any, arguments: Any, schema: Any) -> list[Problem]:
    """One jsonschema-rs ``ValidationError`` in our words (two or more for several unknown
    properties: each is named where it is)."""
    kind = error.kind
    keyword = kind.name
    parts = tuple(error.instance_path)
    received = error.instance
    if keyword == "falseSchema" and list(error.schema_path)[-1:] == ["additionalProperties"]:
        found = _unexpected(arguments, schema, error, parts)
        if found is not None:
            return found
    if keyword == "required":
        return [_problem((*parts, kind.property), "is required", "required")]
    if keyword == "additionalProperties":
        return [_problem((*parts, name), "is not an allowed property", "additionalProperties", False, received[name])
                for name in kind.unexpected]
    if keyword == "type":
        types = list(kind.types)
        return [_problem(parts, f"must be of type {' or '.join(types)}", "type", types[0] if len(types) == 1 else types, received)]
    words = {
        "minimum": lambda: f"must be at least {show(kind.limit)}",
        "maximum": lambda: f"must be at most {show(kind.limit)}",
        "exclusiveMinimum": lambda: f"must be greater than {show(kind.limit)}",
        "exclusiveMaximum": lambda: f"must be less than {show(kind.limit)}",
        "minLength": lambda: f"must be at least {_plural(kind.limit, 'character')} long",
        "maxLength": lambda: f"must be at most {_plural(kind.limit, 'character')} long",
        "minItems": lambda: f"must have at least {_plural(kind.limit, 'item')}",
        "maxItems": lambda: f"must have at most {_plural(kind.limit, 'item')}",
        "minProperties": lambda: f"must have at least {_plural(kind.limit, 'property')}",
        "maxProperties": lambda: f"must have at most {_plural(kind.limit, 'property')}",
        "pattern": lambda: f"must match pattern {_quoted(kind.pattern)}",
        "enum": lambda: f"must be one of {_one_of(kind.options)}",
        "const": lambda: f"must be {show(kind.expected_value)}",
        "multipleOf": lambda: f"must be a multiple of {show(kind.multiple_of)}",
        "uniqueItems": lambda: "must not contain the same item twice",
        "anyOf": lambda: "must match at least one of the allowed forms",
        "oneOf": lambda: ("matches more than one of the allowed forms; it must match exactly one"
                          if not any(kind.context) else "must match exactly one of the allowed forms"),
        "falseSchema": lambda: "is not allowed here",
        "format": lambda: f"must be a valid {kind.format}",
    }
    limits = {
        "minimum": "limit", "maximum": "limit", "exclusiveMinimum": "limit", "exclusiveMaximum": "limit",
        "minLength": "limit", "maxLength": "limit", "minItems": "limit", "maxItems": "limit",
        "minProperties": "limit", "maxProperties": "limit", "pattern": "pattern", "enum": "options",
        "const": "expected_value", "multipleOf": "multiple_of", "format": "format",
    }
    describe = words.get(keyword)
    try:
        rule = describe() if describe is not None else _library_words(error)
        limit = getattr(kind, limits[keyword]) if keyword in limits else None
    except AttributeError:  # a field renamed by a newer jsonschema-rs: its own words still name the rule
        rule, limit = _library_words(error), None
    return [_problem(parts, rule, keyword, limit, received)]


def _library_words(error: Any) -> str:
    return f"is invalid: {str(error.message).splitlines()[0]}"


class SchemaValidator:
    """A JSON Schema compiled once, checking many calls' arguments.

    ``owner`` names the tool in messages (``tool 'forecast'``). The schema is used as given:
    it is also what ``tools/list`` shows, so the check and the advertised contract are one.
    """

    __slots__ = ("owner", "schema", "max_errors", "_validator", "_decode")

    def __init__(self, schema: Mapping[str, Any], *, owner: str = "the tool", max_errors: int = DEFAULT_MAX_ERRORS,
                 regex_backtrack_limit: int = DEFAULT_REGEX_BACKTRACK_LIMIT) -> None:
        import jsonschema_rs  # the schema-defined-tools dependency, loaded only when one is registered

        if not isinstance(schema, Mapping):
            raise SchemaError(f"{owner}: the input schema must be a JSON object, not {type(schema).__name__}")
        if max_errors < 1 or regex_backtrack_limit < 1:
            raise ValueError("max_errors and regex_backtrack_limit must be positive")
        self.owner = owner
        self.schema = dict(schema)
        self.max_errors = max_errors
        try:
            self._validator = jsonschema_rs.validator_for(
                self.schema,
                validate_formats=False,  # 2020-12: format is an annotation
                offline=True,  # a $ref outside the schema is an error now, not a fetch later
                pattern_options=jsonschema_rs.FancyRegexOptions(backtrack_limit=regex_backtrack_limit),
            )
        except (jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError, ValueError, TypeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SchemaError(f"{owner}: the input schema is not usable: {first}") from None
        self._decode = msgspec.json.Decoder()

    def is_valid(self, arguments: Any) -> bool:
        return bool(self._validator.is_valid(arguments))

    def errors(self, arguments: Any) -> tuple[list[Problem], int]:
        """What is wrong with decoded ``arguments``: at most ``max_errors`` errors, and how
        many more there were. Empty for valid arguments (one fast check, no error objects)."""
        if self._validator.is_valid(arguments):
            return [], 0
        found: list[Problem] = []
        more = 0
        for error in self._validator.iter_errors(arguments):
            for problem in _errors_of(error, arguments, self.schema):
                if len(found) < self.max_errors:
                    found.append(problem)
                else:
                    more += 1
        return found, more

    def validate(self, arguments: Any) -> Any:
        """``arguments`` unchanged if they fit, else ``InvalidArguments`` naming every failure."""
        if self._validator.is_valid(arguments):
            return arguments
        found, more = self.errors(arguments)
        raise InvalidArguments(self.owner, found, more)

    def parse(self, raw: Raw | bytes | None | UnsetType) -> dict[str, Any]:
        """Decode and check a call's raw ``arguments`` JSON; absent or ``null`` means ``{}``.

        Bytes that are not JSON are the client program's mistake (``InvalidParams``), as is a
        value that is not an object; everything else that does not fit is ``InvalidArguments``.
        """
        data = _EMPTY_OBJECT if raw is None or raw is UNSET else bytes(raw)  # type: ignore[arg-type]
        if data == _NULL:
            data = _EMPTY_OBJECT
        try:
            arguments = self._decode.decode(data)
        except msgspec.DecodeError as exc:
            raise InvalidParams(f"invalid arguments for {self.owner}: not JSON: {exc}") from None
        if not isinstance(arguments, dict):
            raise InvalidParams(f"invalid arguments for {self.owner}: arguments must be an object, not {show(arguments)}")
        self.validate(arguments)
        return arguments
