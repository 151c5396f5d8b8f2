"""The registry: URI templates, pagination cursors, and copy-on-write snapshots."""

from __future__ import annotations

import base64
from types import MappingProxyType
from typing import Any

import pytest

from mcp_trio import Context, Server
from mcp_trio.offer._registry import (
    PromptDef,
    Registry,
    ResourceDef,
    TemplateDef,
    ToolDef,
    compile_template,
    decode_cursor,
    encode_cursor,
    paginate,
)
from mcp_trio.offer._schema import build_parser, output_shape
from mcp_trio.protocol import INVALID_PARAMS, InvalidParams
from mcp_trio.protocol._types import Prompt, Resource, ResourceTemplate, Tool


def match(template: str, uri: str) -> dict[str, str] | None:
    pattern, _ = compile_template(template)
    found = pattern.match(uri)
    return found.groupdict() if found else None


# -- URI templates -----------------------------------------------------------------------------
def test_template_variables_in_order() -> None:
    _, names = compile_template("db://{table}/{+rest}/x/{id}")
    assert names == ("table", "rest", "id")
    assert compile_template("res://static")[1] == ()


@pytest.mark.parametrize(
    "uri, expected",
    [
        ("test://template/5/data", {"id": "5"}),
        ("test://template/abc-def_1.2/data", {"id": "abc-def_1.2"}),
        ("test://template/%2F/data", {"id": "%2F"}),
        ("test://template/5/6/data", None),  # {var} is one segment
        ("test://template//data", None),  # and not empty
        ("test://template/a?b/data", None),  # no query
        ("test://template/a#b/data", None),  # no fragment
        ("test://template/5/data/x", None),  # no partial match at the end
        ("test://template/5/dat", None),
        ("xtest://template/5/data", None),  # nor at the start
        ("test://template/5/data\n", None),  # nor before a trailing newline
        ("", None),
    ],
)
def test_simple_variable_matches_one_segment(uri: str, expected: dict[str, str] | None) -> None:
    assert match("test://template/{id}/data", uri) == expected


@pytest.mark.parametrize(
    "uri, expected",
    [
        ("file:///a/b/c.txt", {"path": "a/b/c.txt"}),
        ("file:///a", {"path": "a"}),
        ("file:///a?x=1#f", {"path": "a?x=1#f"}),
        ("file:///", None),  # {+var} still needs at least one character
        ("file:///a\n", None),
        ("file://a", None),
    ],
)
def test_reserved_variable_matches_anything(uri: str, expected: dict[str, str] | None) -> None:
    assert match("file:///{+path}", uri) == expected


def test_several_variables() -> None:
    assert match("db://{table}/{id}", "db://users/7") == {"table": "users", "id": "7"}
    assert match("db://{table}/{id}", "db://users/7/8") is None
    assert match("db://{table}/{id}", "db://users/") is None
    assert match("repo://{owner}/{+path}", "repo://me/src/a.py") == {"owner": "me", "path": "src/a.py"}
    assert match("repo://{owner}/{+path}", "repo:///src/a.py") is None


def test_literal_parts_are_escaped() -> None:
    assert match("x://a.b/{v}(1)", "x://a.b/z(1)") == {"v": "z"}
    assert match("x://a.b/{v}", "x://aXb/1") is None
    assert match("x://a+b/{v}", "x://aab/1") is None
    assert match("x://[a]/{v}", "x://a/1") is None


def test_template_without_variables_is_exact() -> None:
    assert match("res://static", "res://static") == {}
    assert match("res://static", "res://static/") is None


def test_invalid_variable_names_are_literal() -> None:
    # "{1x}" is not a variable (names start with a letter or underscore): it must appear verbatim.
    pattern, names = compile_template("a://{1x}/{ok}")
    assert names == ("ok",)
    assert pattern.match("a://{1x}/v").groupdict() == {"ok": "v"}  # type: ignore[union-attr]
    assert pattern.match("a://zz/v") is None


def template_def(uri_template: str, fn: Any = None) -> TemplateDef:
    def handler(**kwargs: str) -> str:
        return "x"

    def item(id: str) -> str:
        return id

    fn = fn or item
    pattern, variables = compile_template(uri_template)
    parser = build_parser(fn, uri_template, Context, forbid_unknown=False)
    wire = ResourceTemplate(uri_template=uri_template, name=fn.__name__)
    return TemplateDef(uri_template, pattern, variables, fn, parser, wire, False, None)


def test_find_template_first_match_wins_and_replaces_same_template() -> None:
    registry = Registry().with_template(template_def("a://{id}")).with_template(template_def("a://{+id}"))
    found = registry.find_template("a://x/y")
    assert found is not None
    assert found[0].uri_template == "a://{+id}" and found[1] == {"id": "x/y"}
    found = registry.find_template("a://x")
    assert found is not None and found[0].uri_template == "a://{id}"
    assert registry.find_template("b://x") is None
    # Registering the same template again replaces it rather than adding a second.
    again = registry.with_template(template_def("a://{id}"))
    assert [t.uri_template for t in again.templates] == ["a://{+id}", "a://{id}"]


def test_template_def_match() -> None:
    t = template_def("test://template/{id}/data")
    assert t.variables == ("id",)
    assert t.match("test://template/42/data") == {"id": "42"}
    assert t.match("test://template/42/data2") is None


# -- pagination --------------------------------------------------------------------------------
@pytest.mark.parametrize("offset", [0, 1, 99, 100, 12345, 2**40])
def test_cursor_round_trip(offset: int) -> None:
    cursor = encode_cursor(offset)
    assert isinstance(cursor, str) and cursor.isascii()
    assert decode_cursor(cursor) == offset


def test_cursor_is_opaque_urlsafe_base64() -> None:
    assert encode_cursor(100) == "bzoxMDA="
    assert base64.urlsafe_b64decode(encode_cursor(7)) == b"o:7"


def b64(text: bytes) -> str:
    return base64.urlsafe_b64encode(text).decode()


@pytest.mark.parametrize(
    "cursor",
    ["", "!!!", "abc", "é", "b286NQ", b64(b"o:-1"), b64(b"x:1"), b64(b"o:"), b64(b"o:1.5"), b64(b"1"), b64(b"o:\xff"), b64("o:٣".encode())],
)
def test_invalid_cursor_is_invalid_params(cursor: str) -> None:
    with pytest.raises(InvalidParams) as info:
        decode_cursor(cursor)
    assert info.value.code == INVALID_PARAMS
    assert "invalid cursor" in info.value.message


ITEMS = list(range(7))


def test_pages_cover_everything_once() -> None:
    pages: list[list[int]] = []
    cursor: str | None = None
    while True:
        page, cursor = paginate(ITEMS, cursor, 3)
        pages.append(page)
        if cursor is None:
            break
    assert pages == [[0, 1, 2], [3, 4, 5], [6]]


def test_page_boundaries() -> None:
    assert paginate([0, 1, 2, 3], None, 2) == ([0, 1], encode_cursor(2))
    assert paginate([0, 1, 2, 3], encode_cursor(2), 2) == ([2, 3], None)  # exact fit: no next cursor
    assert paginate([0, 1, 2], None, 3) == ([0, 1, 2], None)
    assert paginate([0, 1, 2], None, 4) == ([0, 1, 2], None)
    assert paginate([0, 1, 2, 3], None, 3) == ([0, 1, 2], encode_cursor(3))
    assert paginate([], None, 5) == ([], None)


def test_cursor_past_the_end_gives_an_empty_last_page() -> None:
    assert paginate(ITEMS, encode_cursor(100), 3) == ([], None)


def test_paginate_invalid_cursor_raises() -> None:
    with pytest.raises(InvalidParams):
        paginate(ITEMS, "not-a-cursor", 3)


def test_page_size_one() -> None:
    page, cursor = paginate(["a", "b"], None, 1)
    assert (page, cursor) == (["a"], encode_cursor(1))
    assert paginate(["a", "b"], cursor, 1) == (["b"], None)


# -- copy on write -----------------------------------------------------------------------------
def make_tool(name: str, enabled: bool = True) -> ToolDef:
    def fn(x: int) -> int:
        return x

    parser = build_parser(fn, f"tool {name!r}", Context)
    return ToolDef(
        name=name, fn=fn, parser=parser, output=output_shape(fn), wire=Tool(name=name, input_schema=parser.schema),
        is_async=False, enabled=enabled,
    )


def test_with_tool_leaves_the_old_snapshot_unchanged() -> None:
    empty = Registry()
    one = empty.with_tool(make_tool("a"))
    two = one.with_tool(make_tool("b"))
    assert dict(empty.tools) == {}
    assert list(one.tools) == ["a"]
    assert list(two.tools) == ["a", "b"]
    assert (empty.version, one.version, two.version) == (0, 1, 2)
    assert one.tools["a"] is two.tools["a"]  # unchanged definitions are shared, not copied


def test_replacing_and_removing_a_tool() -> None:
    first = make_tool("a")
    second = make_tool("a")
    old = Registry().with_tool(first)
    new = old.with_tool(second)
    assert old.tools["a"] is first and new.tools["a"] is second
    gone = new.without_tool("a")
    assert "a" in new.tools and "a" not in gone.tools
    assert gone.version == new.version + 1
    assert gone.without_tool("missing").tools == gone.tools  # removing what is absent is harmless


def test_snapshots_are_read_only() -> None:
    registry = Registry().with_tool(make_tool("a"))
    assert isinstance(registry.tools, MappingProxyType)
    with pytest.raises(TypeError):
        registry.tools["b"] = make_tool("b")  # type: ignore[index]
    with pytest.raises(AttributeError):
        registry.version = 9  # type: ignore[misc]


def test_default_registries_share_nothing_mutable() -> None:
    a, b = Registry(), Registry()
    a2 = a.with_tool(make_tool("x"))
    assert dict(a.tools) == {} and dict(b.tools) == {} and list(a2.tools) == ["x"]


def test_other_kinds_are_copy_on_write_too() -> None:
    def res() -> str:
        return "r"

    def prompt() -> str:
        return "p"

    base = Registry()
    resource = ResourceDef("res://a", res, build_parser(res, "r", Context), Resource(uri="res://a", name="res"), False, None)
    with_res = base.with_resource(resource)
    with_template = with_res.with_template(template_def("t://{id}"))
    with_prompt = with_template.with_prompt(PromptDef("p", prompt, build_parser(prompt, "p", Context), Prompt(name="p"), False))
    assert (dict(base.resources), base.templates, dict(base.prompts)) == ({}, (), {})
    assert list(with_res.resources) == ["res://a"] and with_res.templates == ()
    assert len(with_template.templates) == 1 and dict(with_template.prompts) == {}
    assert list(with_prompt.prompts) == ["p"]
    assert with_prompt.version == 3


def test_visible_tools_skips_disabled() -> None:
    registry = Registry().with_tool(make_tool("on")).with_tool(make_tool("off", enabled=False))
    assert [t.name for t in registry.visible_tools()] == ["on"]
    assert set(registry.tools) == {"on", "off"}


def test_server_decorators_publish_new_snapshots() -> None:
    server = Server("t")
    before = server.registry

    @server.tool
    def double(x: int) -> int:
        return 2 * x

    after = server.registry
    assert after is not before
    assert dict(before.tools) == {}
    assert after.tools["double"].wire.input_schema["properties"] == {"x": {"type": "integer"}}
    server.remove_tool("double")
    assert "double" in after.tools and "double" not in server.registry.tools
