"""HTTP routing headers of the stateless revision (2026-07-28, SEP-2243), sans-io.

Over Streamable HTTP a 2026-07-28 request repeats parts of its body in headers, so that
intermediaries can route without parsing JSON: ``MCP-Protocol-Version`` (the envelope's
version), ``Mcp-Method``, ``Mcp-Name`` (the tool or prompt name, the resource URI) and, for
tool arguments whose schema property carries ``"x-mcp-header": "Region"``, ``Mcp-Param-Region``.
A header that disagrees with the body is refused with ``-32020`` (HTTP 400): the body is what
the server acts on, so a proxy must never see something else.

Values that are not plain printable ASCII travel as ``=?base64?<standard base64>?=``; a
malformed wrapper never matches. Header names are case-insensitive, values are compared
exactly after trimming the optional whitespace around them (RFC 9110 5.5).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from typing import Any

from ._errors import HeaderMismatch

PROTOCOL_VERSION_HEADER = "mcp-protocol-version"
METHOD_HEADER = "mcp-method"
NAME_HEADER = "mcp-name"
PARAM_HEADER_PREFIX = "mcp-param-"
X_MCP_HEADER = "x-mcp-header"
#: Method -> the params field ``Mcp-Name`` mirrors.
NAME_FIELDS = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri",
               "tasks/get": "taskId", "tasks/update": "taskId", "tasks/cancel": "taskId"}
_ROUTING = frozenset({PROTOCOL_VERSION_HEADER, METHOD_HEADER, NAME_HEADER})
_SENTINEL = re.compile(r"=\?base64\?(.*)\?=", re.DOTALL)
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_DECIMAL = re.compile(r"-?[0-9]+(\.[0-9]+)?")
_HEADER_TYPES = frozenset({"string", "integer", "boolean"})


def decode_header_value(value: str | None) -> str | None:
    """The value a header carries: itself, or the text inside a ``=?base64?...?=`` wrapper
    (None when the wrapper holds non-canonical base64 or non-UTF-8 bytes)."""
    if value is None:
        return None
    match = _SENTINEL.fullmatch(value)
    if match is None:
        return value
    payload = match.group(1)
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        return None
    if base64.b64encode(raw).decode("ascii") != payload:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def fold_headers(raw: Iterable[tuple[bytes, bytes]]) -> tuple[dict[str, str], set[str]]:
    """ASGI header pairs -> (lower-case name -> trimmed value, names given more than once)."""
    folded: dict[str, str] = {}
    repeated: set[str] = set()
    for name_b, value_b in raw:
        name = name_b.decode("latin-1").lower()
        if name in folded:
            repeated.add(name)
        folded[name] = value_b.decode("latin-1").strip()
    return folded, repeated


def check_routing_headers(headers: Mapping[str, str], repeated: set[str], method: str, params: Any,
                          protocol_version: Any) -> None:
    """``-32020`` unless ``MCP-Protocol-Version``, ``Mcp-Method`` and ``Mcp-Name`` agree with
    the body (``params``: the decoded params object, ``protocol_version``: the envelope's)."""
    for name in sorted(repeated & _ROUTING):
        raise HeaderMismatch(f"the {name} header appears more than once")
    version = headers.get(PROTOCOL_VERSION_HEADER)
    if version is None or version != protocol_version:
        raise HeaderMismatch("the MCP-Protocol-Version header does not match params._meta['io.modelcontextprotocol/protocolVersion']",
                             {"header": PROTOCOL_VERSION_HEADER})
    if headers.get(METHOD_HEADER) != method:
        raise HeaderMismatch("the Mcp-Method header does not match the request's method", {"header": METHOD_HEADER})
    field = NAME_FIELDS.get(method)
    if field is not None and isinstance(params, dict):
        value = params.get(field)
        if value is not None and decode_header_value(headers.get(NAME_HEADER)) != value:
            raise HeaderMismatch(f"the Mcp-Name header does not match params.{field}", {"header": NAME_HEADER})


def header_params(schema: Any) -> dict[tuple[str, ...], tuple[str, str | None]]:
    """The ``x-mcp-header`` annotations of a tool's input schema: property path -> (header
    token, JSON type). Only properties reached through ``properties`` alone count; a schema
    with an invalid annotation (not a token, not a primitive, a duplicate) declares none, as
    a conforming client then sends none."""
    found: dict[tuple[str, ...], tuple[str, str | None]] = {}
    seen: set[str] = set()
    stack: list[tuple[tuple[str, ...], Any]] = [((), schema)]
    while stack:
        path, node = stack.pop()
        if not isinstance(node, dict):
            continue
        if X_MCP_HEADER in node and path:
            token = node[X_MCP_HEADER]
            kind = node.get("type")
            if not isinstance(token, str) or not _TOKEN.fullmatch(token) or kind not in _HEADER_TYPES or token.lower() in seen:
                return {}
            seen.add(token.lower())
            found[path] = (token, kind)
        properties = node.get("properties")
        if isinstance(properties, dict):
            stack.extend(((*path, name), sub) for name, sub in properties.items())
    return found


def _rendered(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        try:
            return str(value)
        except ValueError:  # an int past the str conversion limit
            return None
    return None


def _value_at(arguments: Any, path: tuple[str, ...]) -> Any:
    node = arguments
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def check_param_headers(declared: Mapping[tuple[str, ...], tuple[str, str | None]], arguments: Any,
                        headers: Mapping[str, str], repeated: set[str]) -> None:
    """``-32020`` unless every ``Mcp-Param-*`` header the tool declares agrees with its
    argument: both present and equal (integers compared as numbers), or both absent."""
    for path, (token, kind) in declared.items():
        name = PARAM_HEADER_PREFIX + token.lower()
        raw = headers.get(name)
        where = ".".join(path)
        if raw is not None and name in repeated:
            raise HeaderMismatch(f"the Mcp-Param-{token} header appears more than once", {"header": f"Mcp-Param-{token}"})
        value = _value_at(arguments, path)
        rendered = None if value is None else _rendered(value)
        if rendered is None:
            if raw is not None:
                raise HeaderMismatch(f"the Mcp-Param-{token} header is present but argument {where!r} is not",
                                     {"header": f"Mcp-Param-{token}"})
            continue
        if raw is None:
            raise HeaderMismatch(f"the Mcp-Param-{token} header is missing for argument {where!r}",
                                 {"header": f"Mcp-Param-{token}"})
        decoded = decode_header_value(raw)
        if decoded is None or not _same(kind, value, rendered, decoded):
            raise HeaderMismatch(f"the Mcp-Param-{token} header does not match argument {where!r}",
                                 {"header": f"Mcp-Param-{token}"})


def _same(kind: str | None, value: Any, rendered: str, decoded: str) -> bool:
    if (kind == "integer" and not isinstance(value, bool) and isinstance(value, (int, float))
            and _DECIMAL.fullmatch(decoded) is not None):
        whole, _, fraction = decoded.partition(".")
        if fraction.strip("0"):
            return False
        try:
            return int(whole) == value
        except ValueError:
            return False
    return decoded == rendered


# -- the client's side ------------------------------------------------------------------------
_PLAIN_VALUE = re.compile(r"[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?")


def encode_header_value(value: str) -> str:
    """A header value carrying ``value``: itself when it is printable ASCII with no space at
    either end, else ``=?base64?<standard base64 of its UTF-8>?=``; a value that merely looks
    like a wrapper is wrapped too, so that it decodes to itself."""
    if _PLAIN_VALUE.fullmatch(value) is not None and _SENTINEL.fullmatch(value) is None:
        return value
    return "=?base64?" + base64.b64encode(value.encode("utf-8")).decode("ascii") + "?="


def param_header_values(declared: Mapping[tuple[str, ...], tuple[str, str | None]], arguments: Any) -> list[tuple[str, str]]:
    """The ``Mcp-Param-*`` headers a client sends for a tool's ``arguments`` (``declared``:
    what :func:`header_params` found in its input schema): one per argument present with a
    primitive value, none for the others (what :func:`check_param_headers` expects)."""
    headers = []
    for path, (token, _kind) in declared.items():
        value = _value_at(arguments, path)
        rendered = None if value is None else _rendered(value)
        if rendered is not None:
            headers.append((PARAM_HEADER_PREFIX + token.lower(), encode_header_value(rendered)))
    return headers
