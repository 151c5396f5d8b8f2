"""Which JSON Schema validator checks schema-defined tools' arguments: correctness on the
JSON Schema Test Suite's draft 2020-12 files for the keywords tools use (vendored under
tests/data/json-schema-test-suite), then speed on typical tool inputs.

Run from the repository root: ``.venv/bin/python bench/jsonschema_validators.py`` (needs
``pip install jsonschema-rs fastjsonschema jsonschema``; only the chosen one is a dependency).

Candidates: jsonschema (the reference), jsonschema-rs, fastjsonschema (compiles the schema to
Python source), and msgspec types compiled from the schema by the small translator below
(msgspec has no JSON Schema input, so this is what "compile to msgspec" means: one Struct per
object schema, ``Meta`` constraints, ``Literal`` enums; keywords it cannot express are refused).

Speed rows: per validation of already-decoded arguments (``valid``/``invalid``: a valid input
and one with an error), and from the raw ``arguments`` bytes (``raw``: msgspec decode + validate;
for msgspec types, one typed decode). Rounds alternate the candidates; medians of ROUNDS.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import msgspec

ROOT = Path(__file__).resolve().parent.parent
SUITE = ROOT / "tests" / "data" / "json-schema-test-suite" / "draft2020-12"
ROUNDS = 7
CALLS = 3000


# -- the candidates: compile(schema) -> (is_valid(instance), first_error(instance)) ---------------
def compile_jsonschema(schema: Any) -> Callable[[Any], bool]:
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema)
    return validator.is_valid


def compile_jsonschema_rs(schema: Any) -> Callable[[Any], bool]:
    import jsonschema_rs

    validator = jsonschema_rs.Draft202012Validator(schema)
    return validator.is_valid


def compile_fastjsonschema(schema: Any) -> Callable[[Any], bool]:
    import fastjsonschema

    validate = fastjsonschema.compile(schema)

    def is_valid(instance: Any) -> bool:
        try:
            validate(instance)
        except fastjsonschema.JsonSchemaValueException:
            return False
        return True

    return is_valid


class Unsupported(Exception):
    """A keyword msgspec types cannot express."""


_SIMPLE = {"string": str, "integer": int, "number": float, "boolean": bool, "null": type(None)}
_HANDLED = {"type", "properties", "required", "additionalProperties", "enum", "const", "minimum", "maximum",
            "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "pattern", "items", "minItems",
            "maxItems", "$defs", "$ref", "description", "title", "default", "$schema", "format", "examples"}


class _Translator:
    """JSON Schema (a subset) to a msgspec type."""

    def __init__(self, root: Any) -> None:
        self.root = root
        self.count = 0
        self.refs: dict[str, Any] = {}

    def type_of(self, schema: Any) -> Any:
        if schema is True or schema == {}:
            return Any
        if not isinstance(schema, dict):
            raise Unsupported("false schema")
        unknown = set(schema) - _HANDLED
        if unknown:
            raise Unsupported(", ".join(sorted(unknown)))
        if "$ref" in schema:
            if len(set(schema) - {"$ref", "description", "title"}) > 0:
                raise Unsupported("$ref with siblings")
            return self.ref(schema["$ref"])
        if "const" in schema:
            value = schema["const"]
            if not isinstance(value, (str, int)) or isinstance(value, bool):
                raise Unsupported("const of that type")
            return Literal[value]  # type: ignore[valid-type]
        if "enum" in schema:
            values = schema["enum"]
            if not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in values):
                raise Unsupported("enum of mixed types")
            return Literal[tuple(values)]  # type: ignore[valid-type]
        kind = schema.get("type")
        if isinstance(kind, list):
            return Union[tuple(self.type_of({**schema, "type": k}) for k in kind)]  # type: ignore[return-value]
        if kind == "object" or (kind is None and "properties" in schema):
            return self.struct(schema)
        if kind == "array":
            item = self.type_of(schema.get("items", True))
            meta = self.meta(schema, {"minItems": "min_length", "maxItems": "max_length"})
            return Annotated[list[item], meta] if meta else list[item]  # type: ignore[valid-type]
        if kind in _SIMPLE:
            meta = self.meta(schema, {"minimum": "ge", "maximum": "le", "exclusiveMinimum": "gt", "exclusiveMaximum": "lt",
                                      "minLength": "min_length", "maxLength": "max_length", "pattern": "pattern"})
            base = _SIMPLE[kind]
            return Annotated[base, meta] if meta else base
        if kind is None:
            if set(schema) & {"minimum", "maximum", "minLength", "maxLength", "pattern", "items", "required"}:
                raise Unsupported("a constraint without a type")  # applies to one type, any other passes
            return Any
        raise Unsupported(f"type {kind!r}")

    def meta(self, schema: dict[str, Any], names: dict[str, str]) -> msgspec.Meta | None:
        found = {names[k]: v for k, v in schema.items() if k in names}
        return msgspec.Meta(**found) if found else None

    def struct(self, schema: dict[str, Any]) -> Any:
        properties = schema.get("properties", {})
        required = set(schema.get("required", ()))
        if required - set(properties):
            raise Unsupported("required without a property schema")
        extra = schema.get("additionalProperties", True)
        if extra not in (True, False):
            raise Unsupported("additionalProperties as a schema")
        fields: list[Any] = []
        for name, sub in properties.items():
            tp = self.type_of(sub)
            fields.append((name, tp) if name in required else (name, tp | msgspec.UnsetType, msgspec.UNSET))
        self.count += 1
        return msgspec.defstruct(f"S{self.count}", fields, forbid_unknown_fields=extra is False, kw_only=True)

    def ref(self, ref: str) -> Any:
        if not ref.startswith("#/$defs/") or "/" in ref[len("#/$defs/"):]:
            raise Unsupported(f"$ref {ref}")
        name = ref[len("#/$defs/"):]
        if name not in self.refs:
            self.refs[name] = None
            self.refs[name] = self.type_of(self.root["$defs"][name])
        if self.refs[name] is None:
            raise Unsupported("recursive $ref")
        return self.refs[name]


def compile_msgspec(schema: Any) -> Callable[[Any], bool]:
    decoder = msgspec.json.Decoder(_Translator(schema).type_of(schema))

    def is_valid(instance: Any) -> bool:
        try:
            decoder.decode(msgspec.json.encode(instance))
        except msgspec.ValidationError:
            return False
        return True

    return is_valid


CANDIDATES: dict[str, Callable[[Any], Callable[[Any], bool]]] = {
    "jsonschema": compile_jsonschema,
    "jsonschema-rs": compile_jsonschema_rs,
    "fastjsonschema": compile_fastjsonschema,
    "msgspec types": compile_msgspec,
}


# -- correctness ----------------------------------------------------------------------------------
def correctness() -> dict[str, dict[str, tuple[int, int, int]]]:
    """Per candidate and file: (passed, wrong answers, tests whose schema did not compile)."""
    table: dict[str, dict[str, tuple[int, int, int]]] = {}
    for name, compile_ in CANDIDATES.items():
        row = table.setdefault(name, {})
        for path in sorted(SUITE.glob("*.json")):
            passed = wrong = refused = 0
            for case in json.loads(path.read_text()):
                try:
                    is_valid = compile_(case["schema"])
                except Exception:  # any refusal to compile counts against the candidate
                    refused += len(case["tests"])
                    continue
                for test in case["tests"]:
                    try:
                        ok = is_valid(test["data"]) == test["valid"]
                    except Exception:
                        ok = False
                    passed += ok
                    wrong += not ok
            row[path.stem] = (passed, wrong, refused)
    return table


# -- speed ----------------------------------------------------------------------------------------
ZIP = {"type": "string", "pattern": "^[0-9]{5}$"}
WORKLOADS: dict[str, tuple[dict[str, Any], Any, Any]] = {
    "small object": (
        {"type": "object", "properties": {"city": {"type": "string", "minLength": 1, "maxLength": 100},
                                          "days": {"type": "integer", "minimum": 1, "maximum": 14}},
         "required": ["city"], "additionalProperties": False},
        {"city": "Paris", "days": 3},
        {"city": "Paris", "days": 30},
    ),
    "nested + enum + pattern": (
        {"type": "object", "required": ["name", "address"], "additionalProperties": False, "properties": {
            "name": {"type": "string"},
            "address": {"type": "object", "required": ["street", "zip", "country"], "additionalProperties": False,
                        "properties": {"street": {"type": "string"}, "zip": ZIP,
                                       "country": {"enum": ["FR", "DE", "US", "GB"]}}}}},
        {"name": "Ada", "address": {"street": "1 rue de Rivoli", "zip": "75001", "country": "FR"}},
        {"name": "Ada", "address": {"street": "1 rue de Rivoli", "zip": "12", "country": "FR"}},
    ),
    "array of 50 objects": (
        {"type": "object", "required": ["rows"], "properties": {"rows": {"type": "array", "minItems": 1, "maxItems": 1000, "items": {
            "type": "object", "required": ["id", "score"], "additionalProperties": False,
            "properties": {"id": {"type": "integer", "minimum": 0}, "score": {"type": "number", "maximum": 1},
                           "label": {"type": "string", "maxLength": 40}}}}}},
        {"rows": [{"id": i, "score": i / 100, "label": f"row {i}"} for i in range(50)]},
        {"rows": [{"id": i, "score": i / 100, "label": f"row {i}"} for i in range(49)] + [{"id": -1, "score": 0.5}]},
    ),
    "$ref/$defs": (
        {"type": "object", "required": ["from", "to"], "properties": {"from": {"$ref": "#/$defs/place"}, "to": {"$ref": "#/$defs/place"}},
         "$defs": {"place": {"type": "object", "required": ["zip"], "properties": {"zip": ZIP, "city": {"type": "string"}}}}},
        {"from": {"zip": "75001", "city": "Paris"}, "to": {"zip": "10115", "city": "Berlin"}},
        {"from": {"zip": "75001", "city": "Paris"}, "to": {"zip": "1O115", "city": "Berlin"}},
    ),
}


def per_call(fn: Callable[[Any], Any], argument: Any) -> float:
    start = time.perf_counter()
    for _ in range(CALLS):
        fn(argument)
    return (time.perf_counter() - start) / CALLS


def speed() -> dict[str, dict[str, list[float]]]:
    runs: dict[str, dict[str, list[float]]] = {}
    compiled = {(name, load): compile_(schema) for name, compile_ in CANDIDATES.items()
                for load, (schema, _, _) in WORKLOADS.items()}
    typed = {load: msgspec.json.Decoder(_Translator(schema).type_of(schema)) for load, (schema, _, _) in WORKLOADS.items()}
    decode = msgspec.json.decode
    for _ in range(ROUNDS):
        for name in CANDIDATES:
            for load, (_, good, bad) in WORKLOADS.items():
                is_valid = compiled[name, load]
                assert is_valid(good) and not is_valid(bad), (name, load)
                row = runs.setdefault(f"{name}|{load}", {})
                raw = msgspec.json.encode(good)
                if name == "msgspec types":
                    decoder = typed[load]
                    row.setdefault("raw", []).append(per_call(decoder.decode, raw))
                    row.setdefault("valid", []).append(row["raw"][-1])  # it cannot validate without decoding
                else:
                    row.setdefault("valid", []).append(per_call(is_valid, good))
                    row.setdefault("raw", []).append(per_call(lambda b, v=is_valid: v(decode(b)), raw))
                row.setdefault("invalid", []).append(per_call(is_valid, bad))
    return runs


def main() -> None:
    table = correctness()
    files = sorted(next(iter(table.values())))
    print(f"JSON Schema Test Suite, draft 2020-12 ({len(files)} files): passed / wrong / refused to compile")
    print(f"{'file':<22}" + "".join(f"{name:>18}" for name in table))
    for stem in files:
        print(f"{stem:<22}" + "".join(f"{'%d/%d/%d' % table[name][stem]:>18}" for name in table))
    totals = {name: tuple(sum(row[stem][i] for stem in files) for i in range(3)) for name, row in table.items()}
    print(f"{'TOTAL':<22}" + "".join(f"{'%d/%d/%d' % totals[name]:>18}" for name in table))
    runs = speed()
    print(f"\nspeed, median of {ROUNDS} rounds, µs per validation (valid input / invalid input / from raw bytes)")
    print(f"{'workload':<26}" + "".join(f"{name:>24}" for name in CANDIDATES))
    for load in WORKLOADS:
        cells = []
        for name in CANDIDATES:
            row = runs[f"{name}|{load}"]
            cells.append(" / ".join(f"{statistics.median(row[k]) * 1e6:.1f}" for k in ("valid", "invalid", "raw")))
        print(f"{load:<26}" + "".join(f"{c:>24}" for c in cells))


if __name__ == "__main__":
    sys.setrecursionlimit(10_000)
    main()
