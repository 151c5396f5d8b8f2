"""Arguments checked against a JSON Schema given as data (``mcp_trio.offer._jsonschema``): the JSON
Schema Test Suite's draft 2020-12 files for the keywords tools use (vendored under
tests/data/json-schema-test-suite), errors that name the place, the rule and the value, raw
bytes, unusable schemas refused at registration, and the limits (errors per call, regex
backtracking).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from mcp_trio._explain import Problem, join_path
from mcp_trio.offer._jsonschema import DEFAULT_MAX_ERRORS, SchemaError, SchemaValidator
from mcp_trio.offer._schema import InvalidArguments
from mcp_trio.protocol._errors import InvalidParams

SUITE = Path(__file__).parent / "data" / "json-schema-test-suite" / "draft2020-12"
SUITE_FILES = sorted(SUITE.glob("*.json"))


def test_the_vendored_suite_is_there() -> None:
    assert len(SUITE_FILES) == 24 and (SUITE.parent / "LICENSE").is_file()


@pytest.mark.parametrize("path", SUITE_FILES, ids=[p.stem for p in SUITE_FILES])
def test_json_schema_test_suite(path: Path) -> None:
    wrong = []
    for case in json.loads(path.read_text(encoding="utf-8")):
        schema = case["schema"]
        if not isinstance(schema, dict):  # a bare true/false schema: never a tool's inputSchema
            continue
        validator = SchemaValidator(schema)
        for test in case["tests"]:
            errors, more = validator.errors(test["data"])
            verdicts = (validator.is_valid(test["data"]), not errors)
            if verdicts != (test["valid"], test["valid"]):
                wrong.append(f"{case['description']} / {test['description']}: {verdicts}")
            for error in errors:
                assert error.text()  # every failure can be said
    assert not wrong, wrong


ADDRESS = {
    "type": "object",
    "required": ["name", "address"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "days": {"type": "integer", "minimum": 1, "maximum": 14},
        "address": {
            "type": "object",
            "required": ["street", "zip", "country"],
            "properties": {
                "street": {"type": "string"},
                "zip": {"type": "string", "pattern": "^[0-9]{5}$"},
                "country": {"enum": ["FR", "DE", "US"]},
            },
        },
        "rows": {"type": "array", "maxItems": 3, "items": {"$ref": "#/$defs/row"}},
    },
    "$defs": {"row": {"type": "object", "properties": {"id": {"type": "integer", "exclusiveMinimum": 0}}}},
}
GOOD = {"name": "Ada", "address": {"street": "1 rue de Rivoli", "zip": "75001", "country": "FR"}}


def texts(validator: SchemaValidator, arguments: Any) -> list[str]:
    errors, _ = validator.errors(arguments)
    return [error.text() for error in errors]


def test_errors_name_the_place_the_rule_and_the_value() -> None:
    validator = SchemaValidator(ADDRESS, owner="tool 'ship'")
    assert validator.errors(GOOD) == ([], 0) and validator.validate(GOOD) is GOOD
    bad = {"name": "", "days": 30, "address": {"street": 5, "zip": "12", "country": "XX"},
           "rows": [{"id": 1}, {"id": 0}], "colour": "red", "weight kg": 3}
    assert sorted(texts(validator, bad)) == sorted([
        "name must be at least 1 character long (got \"\")",
        "days must be at most 14 (got 30)",
        "address.street must be of type string (got 5)",
        "address.zip must match pattern '^[0-9]{5}$' (got \"12\")",
        'address.country must be one of "FR", "DE" or "US" (got "XX")',
        "rows[1].id must be greater than 0 (got 0)",
        'colour is not an allowed property (got "red")',
        '["weight kg"] is not an allowed property (got 3)',
    ])
    missing = texts(validator, {"address": {"zip": "75001"}})
    assert sorted(missing) == ["address.country is required", "address.street is required", "name is required"]
    zip_error = next(e for e in validator.errors(bad)[0] if e.constraint == "pattern")
    assert zip_error.parts == ("address", "zip") and zip_error.limit == "^[0-9]{5}$" and zip_error.received == "12"
    assert zip_error.detail() == {"path": "address.zip", "constraint": "pattern", "limit": "^[0-9]{5}$", "received": "12",
                                  "message": "address.zip must match pattern '^[0-9]{5}$' (got \"12\")"}
    required = next(e for e in validator.errors({"address": GOOD["address"]})[0])
    assert required.detail() == {"path": "name", "constraint": "required", "message": "name is required"}


def test_validate_raises_one_error_naming_every_failure() -> None:
    validator = SchemaValidator(ADDRESS, owner="tool 'ship'")
    with pytest.raises(InvalidArguments) as caught:
        validator.validate({"name": "Ada", "address": {"street": "x", "zip": "1", "country": "FR"}, "days": 0})
    error = caught.value
    assert isinstance(error, InvalidParams)  # the one invalid-arguments error, whichever checker found it
    assert str(error) == ("invalid arguments for tool 'ship': address.zip must match pattern '^[0-9]{5}$' (got \"1\"); "
                          "days must be at least 1 (got 0)")
    assert sorted(d["path"] for d in error.details()) == ["address.zip", "days"]
    assert [d["argument"] for d in error.details()] == ["address", "days"]


def test_type_unions_consts_and_combinators_in_words() -> None:
    validator = SchemaValidator({"type": "object", "properties": {
        "n": {"type": ["integer", "null"]},
        "mode": {"const": "fast"},
        "id": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
        "both": {"oneOf": [{"type": "string"}, {"minLength": 1}]},
        "any": {"anyOf": [{"type": "string"}, {"type": "boolean"}]},
        "tags": {"type": "array", "uniqueItems": True, "prefixItems": [{"type": "string"}], "items": False},
    }})
    assert sorted(texts(validator, {"n": "x", "mode": "slow", "id": 1.5, "both": "ab", "any": 3, "tags": ["a", "a"]})) == sorted([
        'n must be of type null or integer (got "x")',
        'mode must be "fast" (got "slow")',
        "id must match exactly one of the allowed forms (got 1.5)",
        'both matches more than one of the allowed forms; it must match exactly one (got "ab")',
        "any must match at least one of the allowed forms (got 3)",
        'tags must not contain the same item twice (got ["a","a"])',
        'tags[1] is not allowed here (got "a")',
    ])


def test_long_values_are_cut_and_paths_quote_odd_keys() -> None:
    validator = SchemaValidator({"type": "object", "properties": {"text": {"type": "string", "maxLength": 3}}})
    [text] = texts(validator, {"text": "x" * 500})
    assert text.startswith('text must be at most 3 characters long (got "xxx') and text.endswith('...)') and len(text) < 140
    assert join_path(("a", 0, "b c", "d")) == 'a[0]["b c"].d' and join_path(()) == ""
    assert Problem((), "must be an object", "type", "object", 5).text("the arguments") == "the arguments must be an object (got 5)"


def test_every_unknown_property_is_named() -> None:
    # The spec's recommended schema for a tool with no parameters.
    validator = SchemaValidator({"type": "object", "additionalProperties": False})
    assert validator.is_valid({})
    assert texts(validator, {"a": 1, "b c": [2]}) == ["a is not an allowed property (got 1)",
                                                        '["b c"] is not an allowed property (got [2])']
    nested = SchemaValidator({"type": "object", "properties": {"opts": {
        "type": "object", "patternProperties": {"^x-": {}}, "additionalProperties": False}}})
    assert texts(nested, {"opts": {"x-ok": 1, "nope": 2}}) == ["opts.nope is not an allowed property (got 2)"]


def test_errors_per_call_are_capped() -> None:
    schema = {"type": "object", "additionalProperties": False}
    validator = SchemaValidator(schema, owner="tool 't'")
    arguments = {f"k{i}": i for i in range(25)}
    errors, more = validator.errors(arguments)
    assert len(errors) == DEFAULT_MAX_ERRORS and more == 25 - DEFAULT_MAX_ERRORS
    with pytest.raises(InvalidArguments, match=f"; and {25 - DEFAULT_MAX_ERRORS} more$"):
        validator.validate(arguments)
    assert len(SchemaValidator(schema, max_errors=2).errors(arguments)[0]) == 2
    with pytest.raises(ValueError, match="must be positive"):
        SchemaValidator(schema, max_errors=0)


def test_parse_takes_the_raw_arguments_bytes() -> None:
    validator = SchemaValidator(ADDRESS, owner="tool 'ship'")
    raw = msgspec.json.encode(GOOD)
    assert validator.parse(raw) == GOOD
    assert validator.parse(msgspec.Raw(raw)) == GOOD
    optional = SchemaValidator({"type": "object", "properties": {"x": {"type": "integer"}}})
    assert optional.parse(None) == {} and optional.parse(msgspec.UNSET) == {} and optional.parse(b"null") == {}
    with pytest.raises(InvalidArguments, match="name is required"):
        validator.parse(None)
    # Not JSON, or not an object: the client program's mistake, not the model's.
    for raw_bad, reason in [(b'{"name": ', "not JSON"), (b"[1, 2]", "must be an object, not \\[1,2\\]")]:
        with pytest.raises(InvalidParams, match=reason) as caught:
            validator.parse(raw_bad)
        assert not isinstance(caught.value, InvalidArguments)


@pytest.mark.parametrize(("schema", "reason"), [
    ({"type": "objekt"}, "not usable"),
    ({"type": "object", "properties": {"p": {"type": "string", "pattern": "(["}}}, "not usable"),
    ({"$ref": "https://schemas.example.invalid/address.json"}, "not usable.*address.json"),
    ({"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}, "not usable"),
])
def test_unusable_schemas_are_refused_when_registered(schema: dict[str, Any], reason: str) -> None:
    with pytest.raises(SchemaError, match=f"^tool 'bad': the input schema is {reason}") as caught:
        SchemaValidator(schema, owner="tool 'bad'")
    assert "\n" not in str(caught.value)


def test_a_schema_must_be_an_object() -> None:
    with pytest.raises(SchemaError, match="must be a JSON object, not list"):
        SchemaValidator([], owner="tool 'bad'")  # type: ignore[arg-type]


def test_format_is_an_annotation() -> None:
    validator = SchemaValidator({"type": "object", "properties": {"mail": {"type": "string", "format": "email"}}})
    assert validator.is_valid({"mail": "not an address"})


def test_a_pattern_that_backtracks_past_the_limit_refuses_the_value() -> None:
    # Look-around puts the pattern on the backtracking engine; (a+)+ on "aaa...b" is exponential.
    schema = {"type": "object", "properties": {"p": {"type": "string", "pattern": "^(?=a)(a+)+$"}}}
    validator = SchemaValidator(schema, regex_backtrack_limit=10_000)
    assert validator.is_valid({"p": "aaaa"})
    assert not validator.is_valid({"p": "a" * 64 + "b"})
    [text] = texts(validator, {"p": "a" * 64 + "b"})
    assert text.startswith("p must match pattern")
