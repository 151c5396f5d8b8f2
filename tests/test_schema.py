"""From signatures to schemas and parsers (``_schema.py``), and from return values to MCP result
bodies (``_results.py``). Pure: no server, no I/O."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Annotated, Any, Literal, NamedTuple, TypedDict

import msgspec
import pytest
from msgspec import Meta, Raw

from mcp_trio import (
    AssistantMessage,
    Audio,
    CallToolResult,
    Context,
    EmbeddedResource,
    Image,
    ImageContent,
    Message,
    ResourceLink,
    TextContent,
    TextResourceContents,
    UserMessage,
)
from mcp_trio.offer._results import (
    ResultEncodingError,
    error_result,
    prompt_messages,
    resource_contents,
    tool_result,
)
from mcp_trio.offer._schema import InvalidArguments, OutputShape, SignatureError, build_parser, output_shape
from mcp_trio.protocol import INVALID_PARAMS, InvalidParams
from mcp_trio.protocol._types import BlobResourceContents, PromptMessage

ENCODER = msgspec.json.Encoder()
NO_SCHEMA = OutputShape(None, False)


def wire(value: Any) -> Any:
    """What the client sees: encode to JSON and back to builtins."""
    return msgspec.json.decode(ENCODER.encode(value))


def parser_for(fn: Any, **kwargs: Any) -> Any:
    return build_parser(fn, f"tool {fn.__name__!r}", Context, **kwargs)


# -- fixtures: functions with interesting signatures ------------------------------------------
class Address(msgspec.Struct):
    street: str
    zip: Annotated[str, Meta(pattern=r"^\d{5}$")]


def search(
    ctx: Context,
    count: Annotated[int, Meta(ge=1, le=10)],
    name: Annotated[str, Meta(min_length=2, max_length=5)],
    mode: Literal["fast", "slow"] = "fast",
    note: str | None = None,
    address: Address | None = None,
) -> str:
    return name


def invalid_arguments(fn: Any, raw: bytes) -> InvalidParams:
    with pytest.raises(InvalidParams) as info:
        parser_for(fn).parse(Raw(raw))
    assert info.value.code == INVALID_PARAMS
    return info.value


# -- inputSchema ---------------------------------------------------------------------------
def test_input_schema_from_annotated_signature() -> None:
    schema = parser_for(search).schema
    assert schema["type"] == "object"
    assert schema["properties"]["count"] == {"type": "integer", "minimum": 1, "maximum": 10}
    assert schema["properties"]["name"] == {"type": "string", "minLength": 2, "maxLength": 5}
    assert schema["properties"]["mode"] == {"enum": ["fast", "slow"], "default": "fast"}
    assert schema["properties"]["note"] == {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None}
    assert schema["required"] == ["count", "name"]
    assert schema["additionalProperties"] is False
    assert "title" not in schema


def test_context_parameter_is_excluded_and_remembered() -> None:
    parser = parser_for(search)
    assert "ctx" not in parser.schema["properties"]
    assert parser.context_param == "ctx"
    assert parser.field_names == ("count", "name", "mode", "note", "address")


@pytest.mark.parametrize("annotation", [Context, Context | None, Annotated[Context, "x"]])
def test_context_parameter_in_any_spelling_is_excluded(annotation: Any) -> None:
    def fn(a: int, c=None) -> None: ...  # type: ignore[no-untyped-def]

    fn.__annotations__ = {"a": int, "c": annotation, "return": None}
    parser = parser_for(fn)
    assert parser.context_param == "c"
    assert list(parser.schema["properties"]) == ["a"]


def test_nested_struct_param_uses_defs_and_refs() -> None:
    schema = parser_for(search).schema
    assert schema["properties"]["address"] == {"anyOf": [{"$ref": "#/$defs/Address"}, {"type": "null"}], "default": None}
    address = schema["$defs"]["Address"]
    assert address["properties"] == {"street": {"type": "string"}, "zip": {"type": "string", "pattern": r"^\d{5}$"}}
    assert address["required"] == ["street", "zip"]


def test_no_defs_when_no_nested_types() -> None:
    def add(a: int, b: float = 1.5) -> float: ...

    schema = parser_for(add).schema
    assert schema == {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "number", "default": 1.5}},
        "required": ["a"],
        "additionalProperties": False,
    }


def test_no_parameters_gives_empty_object_schema() -> None:
    def now() -> str: ...

    schema = parser_for(now).schema
    assert schema["type"] == "object" and schema["properties"] == {}
    assert schema.get("required", []) == []


def test_unannotated_parameter_accepts_any_json() -> None:
    def anything(x, y=3):  # type: ignore[no-untyped-def]
        return x

    parser = parser_for(anything)
    assert parser.schema["properties"] == {"x": {}, "y": {"default": 3}}
    assert parser.parse(Raw(b'{"x":[1,{"a":null}]}')) == {"x": [1, {"a": None}], "y": 3}


def test_resource_template_parser_allows_unknown_fields() -> None:
    def item(id: int) -> str: ...

    parser = build_parser(item, "resource template", Context, forbid_unknown=False)
    assert "additionalProperties" not in parser.schema
    assert parser.parse(Raw(b'{"id":3,"extra":1}')) == {"id": 3}


# -- parsing -----------------------------------------------------------------------------------
def test_parse_fills_defaults_and_converts_nested_structs() -> None:
    parser = parser_for(search)
    assert parser.parse(Raw(b'{"count":3,"name":"ab"}')) == {"count": 3, "name": "ab", "mode": "fast", "note": None, "address": None}
    kwargs = parser.parse(Raw(b'{"count":10,"name":"abcde","mode":"slow","note":"n","address":{"street":"s","zip":"12345"}}'))
    assert kwargs == {"count": 10, "name": "abcde", "mode": "slow", "note": "n", "address": Address("s", "12345")}
    assert "ctx" not in kwargs


@pytest.mark.parametrize("raw", [None, Raw(b"null"), msgspec.UNSET, Raw(b"{}")])
def test_absent_or_null_arguments_mean_empty_object(raw: Any) -> None:
    def defaults(a: int = 1, b: str = "x") -> None: ...

    assert parser_for(defaults).parse(raw) == {"a": 1, "b": "x"}


@pytest.mark.parametrize(
    "raw, argument, words",
    [
        (b'{"count":"3","name":"ab"}', "count", 'count must be an integer (got "3")'),
        (b'{"count":0,"name":"ab"}', "count", "count must be at least 1 (got 0)"),
        (b'{"count":11,"name":"ab"}', "count", "count must be at most 10 (got 11)"),
        (b'{"count":1.5,"name":"ab"}', "count", "count must be an integer (got 1.5)"),
        (b'{"count":1,"name":"a"}', "name", 'name must be at least 2 characters long (got "a")'),
        (b'{"count":1,"name":"abcdef"}', "name", 'name must be at most 5 characters long (got "abcdef")'),
        (b'{"count":1,"name":"ab","mode":"medium"}', "mode", 'mode must be one of "fast", "slow" (got "medium")'),
        (b'{"count":1,"name":"ab","address":{"street":"s","zip":"1"}}', "address",
         'address.zip must match the pattern ^\\d{5}$ (got "1")'),
        (b'{"count":1,"name":"ab","address":{"street":"s"}}', "address", "address.zip is required"),
        (b'{"name":"ab"}', "count", "count is required"),
        (b'{"count":1}', "name", "name is required"),
        (b'{"count":1,"name":"ab","colour":"red"}', "colour", "colour is unknown"),
        (b'{"count":1,"name":"ab","ctx":{}}', "ctx", "ctx is unknown"),
        (b'{"count":1,"name":"ab","nam":"x"}', "nam", "nam is unknown (did you mean name?)"),
    ],
)
def test_parse_errors_name_the_argument_the_rule_and_the_value(raw: bytes, argument: str, words: str) -> None:
    error = invalid_arguments(search, raw)
    assert isinstance(error, InvalidArguments)
    assert error.data == {"argument": argument}
    assert error.message == f"invalid arguments for tool 'search': {words}"
    assert error.details()[0]["argument"] == argument


def test_every_unknown_and_missing_argument_at_once() -> None:
    error = invalid_arguments(search, b'{"colour":"red","cuont":3}')
    assert isinstance(error, InvalidArguments)
    assert error.message == ("invalid arguments for tool 'search': colour is unknown; cuont is unknown (did you mean "
                             "count?); count is required; name is required")
    assert [d["constraint"] for d in error.details()] == ["additionalProperties", "additionalProperties", "required", "required"]


def test_the_details_are_json_data() -> None:
    error = invalid_arguments(search, b'{"count":11,"name":"ab"}')
    assert isinstance(error, InvalidArguments)
    assert error.details() == [{"argument": "count", "path": "count", "message": "count must be at most 10 (got 11)",
                                "constraint": "maximum", "limit": 10, "received": 11}]


@pytest.mark.parametrize("raw, kind", [(b"[1]", "an array"), (b"5", "a number"), (b'"x"', "a string")])
def test_non_object_arguments_are_invalid_params(raw: bytes, kind: str) -> None:
    """Not a tool-argument problem the model can fix: stays a protocol error (-32602)."""
    error = invalid_arguments(search, raw)
    assert not isinstance(error, InvalidArguments)
    assert error.message == f"invalid arguments for tool 'search': arguments must be an object, not {kind}"
    assert error.data is None


def test_lenient_parsing_converts_what_models_send_as_text() -> None:
    parser = parser_for(search)
    kwargs = parser.parse_lenient(Raw(b'{"count":"3","name":"ab"}'))
    assert kwargs["count"] == 3
    assert parser.parse_lenient(Raw(b'{"count":3.0,"name":"ab"}'))["count"] == 3
    with pytest.raises(InvalidArguments) as info:  # converted, then still out of range
        parser.parse_lenient(Raw(b'{"count":"11","name":"ab"}'))
    assert info.value.message == "invalid arguments for tool 'search': count must be at most 10 (got \"11\")"
    with pytest.raises(InvalidParams):
        parser.parse_lenient(Raw(b"[1]"))


def test_malformed_argument_json_is_invalid_params() -> None:
    error = invalid_arguments(search, b'{"count":')
    assert error.data is None
    assert "tool 'search'" in error.message


def test_parse_mapping_converts_strings() -> None:
    def item(id: int, ratio: float, flag: bool = False) -> str: ...

    parser = parser_for(item)
    assert parser.parse_mapping({"id": "42", "ratio": "0.5", "flag": "true"}) == {"id": 42, "ratio": 0.5, "flag": True}
    with pytest.raises(InvalidParams) as info:
        parser.parse_mapping({"id": "forty-two", "ratio": "1"})
    assert "id" in info.value.message


# -- signatures that cannot be served ----------------------------------------------------------
def test_var_positional_rejected() -> None:
    def bad(*args: int) -> None: ...

    with pytest.raises(SignatureError, match=r"\*args"):
        parser_for(bad)


def test_var_keyword_rejected() -> None:
    def bad(a: int, **kwargs: int) -> None: ...

    with pytest.raises(SignatureError, match=r"\*\*kwargs"):
        parser_for(bad)


def test_positional_only_rejected() -> None:
    def bad(a: int, /) -> None: ...

    with pytest.raises(SignatureError, match="positional-only"):
        parser_for(bad)


def test_two_contexts_rejected() -> None:
    def bad(a: Context, b: Context) -> None: ...

    with pytest.raises(SignatureError, match="more than one Context"):
        parser_for(bad)


def test_unresolvable_annotation_rejected() -> None:
    def bad(a: NoSuchType) -> None: ...  # type: ignore[name-defined]  # noqa: F821

    with pytest.raises(SignatureError, match="cannot resolve"):
        parser_for(bad)


class Opaque:
    """A type msgspec cannot describe."""


def test_type_without_json_schema_rejected() -> None:
    def bad(a: Opaque) -> None: ...

    with pytest.raises(SignatureError, match="no JSON Schema"):
        parser_for(bad)


def test_signature_error_is_a_type_error() -> None:
    assert issubclass(SignatureError, TypeError)


# -- output shape ------------------------------------------------------------------------------
@dataclasses.dataclass
class Point:
    x: int
    y: int = 0


class Movie(TypedDict):
    title: str
    year: int


class Pair(NamedTuple):
    a: int
    b: str


def returns(tp: Any) -> Any:
    def fn() -> None: ...

    fn.__annotations__ = {"return": tp}
    return fn


def test_output_shape_struct() -> None:
    shape = output_shape(returns(Address))
    assert shape.wrap is False
    assert shape.schema == {
        "type": "object",
        "properties": {"street": {"type": "string"}, "zip": {"type": "string", "pattern": r"^\d{5}$"}},
        "required": ["street", "zip"],
    }


def test_output_shape_dataclass() -> None:
    shape = output_shape(returns(Point))
    assert shape == OutputShape(
        {"type": "object", "properties": {"x": {"type": "integer"}, "y": {"type": "integer", "default": 0}}, "required": ["x"]}, False
    )


def test_output_shape_typeddict() -> None:
    shape = output_shape(returns(Movie))
    assert shape.wrap is False
    assert shape.schema is not None
    assert shape.schema["properties"] == {"title": {"type": "string"}, "year": {"type": "integer"}}
    assert sorted(shape.schema["required"]) == ["title", "year"]


def test_output_shape_dict() -> None:
    assert output_shape(returns(dict[str, int])) == OutputShape({"type": "object", "additionalProperties": {"type": "integer"}}, False)
    assert output_shape(returns(dict)) == OutputShape({"type": "object"}, False)


def test_output_shape_nested_struct_keeps_defs() -> None:
    class Person(msgspec.Struct):
        name: str
        home: Address

    schema = output_shape(returns(Person)).schema
    assert schema is not None
    assert schema["properties"]["home"] == {"$ref": "#/$defs/Address"}
    assert "Address" in schema["$defs"]
    assert "Person" not in schema.get("$defs", {})


@pytest.mark.parametrize(
    "tp, inner",
    [
        (int, {"type": "integer"}),
        (float, {"type": "number"}),
        (bool, {"type": "boolean"}),
        (list[int], {"type": "array", "items": {"type": "integer"}}),
        (tuple[int, str], {"type": "array", "minItems": 2, "maxItems": 2, "items": False,
                           "prefixItems": [{"type": "integer"}, {"type": "string"}]}),
    ],
)
def test_output_shape_non_object_is_wrapped(tp: Any, inner: dict[str, Any]) -> None:
    shape = output_shape(returns(tp))
    assert shape.wrap is True
    assert shape.schema == {"type": "object", "properties": {"result": inner}, "required": ["result"]}


def test_output_shape_named_tuple_is_wrapped_not_an_object() -> None:
    shape = output_shape(returns(Pair))
    assert shape.wrap is True
    assert shape.schema is not None and list(shape.schema["properties"]) == ["result"]


@pytest.mark.parametrize("tp", [str, Image, Audio, TextContent, ImageContent, ResourceLink, EmbeddedResource, None, type(None), Any,
                                list[str], list[Image], list[TextContent | Image], str | Image, Annotated[str, "doc"]])
def test_output_shape_content_has_no_schema(tp: Any) -> None:
    assert output_shape(returns(tp)) == NO_SCHEMA


def test_output_shape_without_annotation() -> None:
    def bare():  # type: ignore[no-untyped-def]
        return 1

    assert output_shape(bare) == NO_SCHEMA


def test_output_shape_unschemable_return_gives_no_schema() -> None:
    assert output_shape(returns(Opaque)) == NO_SCHEMA


# -- tool results ------------------------------------------------------------------------------
def test_tool_result_str() -> None:
    assert wire(tool_result("hello", NO_SCHEMA, ENCODER)) == {"content": [{"type": "text", "text": "hello"}]}


def test_tool_result_image_and_audio() -> None:
    assert wire(tool_result(Image(b"\x89PNG"), NO_SCHEMA, ENCODER)) == {"content": [{"type": "image", "data": "iVBORw==", "mimeType": "image/png"}]}
    assert wire(tool_result(Image(b"abc", mime_type="image/jpeg"), NO_SCHEMA, ENCODER))["content"][0]["mimeType"] == "image/jpeg"
    assert wire(tool_result(Audio(b"abc"), NO_SCHEMA, ENCODER)) == {"content": [{"type": "audio", "data": "YWJj", "mimeType": "audio/wav"}]}


def test_tool_result_image_from_path_guesses_mime(tmp_path: Any) -> None:
    path = tmp_path / "pic.jpg"
    path.write_bytes(b"abc")
    assert wire(tool_result(Image(path), NO_SCHEMA, ENCODER)) == {"content": [{"type": "image", "data": "YWJj", "mimeType": "image/jpeg"}]}


def test_tool_result_list_of_blocks() -> None:
    value = ["a", Image(b"abc"), TextContent(text="t")]
    assert wire(tool_result(value, NO_SCHEMA, ENCODER)) == {
        "content": [{"type": "text", "text": "a"}, {"type": "image", "data": "YWJj", "mimeType": "image/png"}, {"type": "text", "text": "t"}]
    }


def test_tool_result_struct_is_structured_and_text() -> None:
    shape = output_shape(returns(Address))
    result = wire(tool_result(Address("Main St", "12345"), shape, ENCODER))
    assert result["structuredContent"] == {"street": "Main St", "zip": "12345"}
    assert result["content"] == [{"type": "text", "text": '{"street":"Main St","zip":"12345"}'}]
    assert "isError" not in result


def test_tool_result_dataclass_and_dict() -> None:
    assert wire(tool_result(Point(1, 2), output_shape(returns(Point)), ENCODER))["structuredContent"] == {"x": 1, "y": 2}
    result = wire(tool_result({"k": [1, 2], "when": datetime.date(2024, 1, 2)}, NO_SCHEMA, ENCODER))
    assert result == {"content": [{"type": "text", "text": '{"k":[1,2],"when":"2024-01-02"}'}], "structuredContent": {"k": [1, 2], "when": "2024-01-02"}}


def test_tool_result_wrapped_int_and_list() -> None:
    assert wire(tool_result(5, output_shape(returns(int)), ENCODER)) == {"content": [{"type": "text", "text": "5"}], "structuredContent": {"result": 5}}
    assert wire(tool_result([1, 2], output_shape(returns(list[int])), ENCODER)) == {
        "content": [{"type": "text", "text": "[1,2]"}],
        "structuredContent": {"result": [1, 2]},
    }


def test_tool_result_undeclared_non_object_is_text_only() -> None:
    # structuredContent must be an object: without a wrapping schema, a number is text only.
    assert wire(tool_result(5, NO_SCHEMA, ENCODER)) == {"content": [{"type": "text", "text": "5"}]}
    assert wire(tool_result([1, "a"], NO_SCHEMA, ENCODER)) == {"content": [{"type": "text", "text": '[1,"a"]'}]}


def test_tool_result_none_and_empty_list() -> None:
    assert wire(tool_result(None, NO_SCHEMA, ENCODER)) == {"content": []}
    assert wire(tool_result([], NO_SCHEMA, ENCODER)) == {"content": [{"type": "text", "text": "[]"}]}


def test_tool_result_passthrough() -> None:
    result = CallToolResult(content=[TextContent(text="mine")], structured_content={"a": 1}, is_error=True)
    assert tool_result(result, NO_SCHEMA, ENCODER) is result
    assert tool_result(result, output_shape(returns(int)), ENCODER) is result


@pytest.mark.parametrize("value", [object(), {"a": object()}, [1, object()], {1: {2, object()}}])
def test_tool_result_unencodable_raises_result_encoding_error(value: Any) -> None:
    with pytest.raises(ResultEncodingError, match="not JSON-serialisable"):
        tool_result(value, NO_SCHEMA, ENCODER)


def test_tool_result_unencodable_wrapped_raises_result_encoding_error() -> None:
    with pytest.raises(ResultEncodingError):
        tool_result(object(), output_shape(returns(int)), ENCODER)


def test_error_result() -> None:
    assert wire(error_result("boom")) == {"content": [{"type": "text", "text": "boom"}], "isError": True}


# -- resource contents -------------------------------------------------------------------------
def test_resource_contents_text() -> None:
    assert wire(resource_contents("res://a", "hello", None, ENCODER)) == [{"uri": "res://a", "text": "hello", "mimeType": "text/plain"}]
    assert wire(resource_contents("res://a", "# h", "text/markdown", ENCODER)) == [{"uri": "res://a", "text": "# h", "mimeType": "text/markdown"}]


@pytest.mark.parametrize("value", [b"\x00\x01\xff", bytearray(b"\x00\x01\xff"), memoryview(b"\x00\x01\xff")])
def test_resource_contents_bytes_are_base64(value: Any) -> None:
    assert wire(resource_contents("res://b", value, None, ENCODER)) == [{"uri": "res://b", "blob": "AAH/", "mimeType": "application/octet-stream"}]
    assert wire(resource_contents("res://b", value, "image/png", ENCODER))[0]["mimeType"] == "image/png"


def test_resource_contents_json_data() -> None:
    assert wire(resource_contents("res://c", {"a": [1, None]}, None, ENCODER)) == [
        {"uri": "res://c", "text": '{"a":[1,null]}', "mimeType": "application/json"}
    ]


def test_resource_contents_passthrough() -> None:
    text = TextResourceContents(uri="res://x", text="t")
    blob = BlobResourceContents(uri="res://y", blob="AA==")
    assert resource_contents("res://ignored", text, None, ENCODER) == [text]
    both = [text, blob]
    assert resource_contents("res://ignored", both, None, ENCODER) is both


def test_resource_contents_unencodable() -> None:
    with pytest.raises(ResultEncodingError):
        resource_contents("res://d", object(), None, ENCODER)


# -- prompt messages ---------------------------------------------------------------------------
def test_prompt_messages_text() -> None:
    assert wire(prompt_messages("hi")) == [{"role": "user", "content": {"type": "text", "text": "hi"}}]


def test_prompt_messages_mixed_list() -> None:
    value = [UserMessage("q"), AssistantMessage("a"), PromptMessage(role="assistant", content=TextContent(text="z")), Image(b"i"),
             Message(Audio(b"abc"), "assistant")]
    assert wire(prompt_messages(value)) == [
        {"role": "user", "content": {"type": "text", "text": "q"}},
        {"role": "assistant", "content": {"type": "text", "text": "a"}},
        {"role": "assistant", "content": {"type": "text", "text": "z"}},
        {"role": "user", "content": {"type": "image", "data": "aQ==", "mimeType": "image/png"}},
        {"role": "assistant", "content": {"type": "audio", "data": "YWJj", "mimeType": "audio/wav"}},
    ]


def test_prompt_messages_single_message_and_tuple() -> None:
    assert wire(prompt_messages(AssistantMessage("x"))) == [{"role": "assistant", "content": {"type": "text", "text": "x"}}]
    assert len(prompt_messages(("a", "b"))) == 2


@pytest.mark.parametrize("value", [1, [1], ["ok", {"a": 1}], None])
def test_prompt_messages_refuse_non_content(value: Any) -> None:
    with pytest.raises(ResultEncodingError, match="a prompt must return"):
        prompt_messages(value)


def test_prompt_message_with_non_content_raises_type_error() -> None:
    with pytest.raises(TypeError, match="prompt message content"):
        prompt_messages(Message(5))
