"""From a Python signature to a JSON Schema and a validating argument parser.

Each tool gets a msgspec ``Struct`` type built from its parameters (``Annotated`` constraints
included), so one ``msgspec.json.decode`` call both validates the raw ``arguments`` bytes and
converts them, and ``msgspec.json.schema`` of the same type is the tool's ``inputSchema``: the
schema the client sees and the check the server runs cannot drift apart.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Callable
from typing import Any

import msgspec
from msgspec import UNSET, Raw, UnsetType

from ..protocol._errors import InvalidParams

if typing.TYPE_CHECKING:
    from .._explain import Problem

_EMPTY_OBJECT = b"{}"
_NULL = Raw(b"null")
_TOP_LEVEL = msgspec.json.Decoder(dict[str, Raw])


class SignatureError(TypeError):
    """A decorated function's signature cannot be served (``*args``, two contexts, ...)."""


class InvalidArguments(InvalidParams):
    """An arguments object that does not fit the parameters: out of range, wrong type, missing,
    unknown. ``problems`` are the ``_explain.Problem``s, each naming the argument, the rule and
    the value received. Raised by both argument checkers: a signature's (``ArgumentParser``)
    and a JSON Schema given as data (``_jsonschema.SchemaValidator``).

    For a tool this is not a protocol error (SEP-1303, revision 2025-11-25): the call is
    answered with a result the model reads, ``isError: true``, so it can correct its call
    (``_results.invalid_arguments_result``). Arguments that are not an object at all stay
    ``InvalidParams`` (``-32602``): the client program, not the model, got that wrong.
    """

    def __init__(self, owner: str, problems: list[Problem], more: int = 0) -> None:
        first = problems[0].parts if problems else ()
        text = "; ".join(p.text(p.path or "the arguments") for p in problems)
        if more:
            text += f"; and {more} more"
        super().__init__(f"invalid arguments for {owner}: {text}",
                         {"argument": first[0]} if first and isinstance(first[0], str) else None)
        self.owner = owner
        self.problems = problems
        #: Problems found beyond those described (a schema-defined tool reports at most
        #: ``_jsonschema.DEFAULT_MAX_ERRORS``).
        self.more = more

    def details(self) -> list[dict[str, Any]]:
        """The problems as JSON data: ``argument`` (the top-level name) and ``Problem.detail``."""
        out = []
        for problem in self.problems:
            head = problem.parts[0] if problem.parts and isinstance(problem.parts[0], str) else None
            out.append({"argument": head, **problem.detail()} if head is not None else problem.detail())
        return out


class ContextParameter:
    """What a ``Context`` is to this layer: a parameter annotated with it (or a subclass, such
    as ``mcp_trio.Context``) is injected by the runtime, never read from the client."""

    __slots__ = ()


def is_context_annotation(annotation: Any, context_type: type = ContextParameter) -> bool:
    """Whether a parameter annotated ``annotation`` gets the Context: ``Context``,
    ``Context[AppState]`` (typed ``ctx.lifespan``), ``Context | None``, ``Annotated[Context, ...]``."""
    return _is_context(annotation, context_type)


def _is_context(annotation: Any, context_type: type) -> bool:
    def fits(arg: Any) -> bool:
        if not isinstance(arg, type):
            arg = typing.get_origin(arg)  # Context[AppState] is a Context
        return isinstance(arg, type) and issubclass(arg, context_type)

    if fits(annotation):
        return True
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return fits(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return any(fits(arg) for arg in typing.get_args(annotation))
    return False


def _resolve_hints(fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn, include_extras=True)
    except NameError as exc:
        raise SignatureError(f"cannot resolve the annotations of {fn.__qualname__}: {exc}") from None


class ArgumentParser:
    """Validates a raw ``arguments`` object against a function's parameters.

    ``parse`` returns keyword arguments ready for the call; a mismatch raises ``InvalidParams``
    naming the argument and what was wrong with it.
    """

    __slots__ = ("owner", "struct", "field_names", "context_param", "_decoder", "schema", "_empty")

    def __init__(self, owner: str, struct: type[msgspec.Struct], context_param: str | None) -> None:
        self.owner = owner
        self.struct = struct
        self.field_names: tuple[str, ...] = struct.__struct_fields__
        self.context_param = context_param
        self._decoder = msgspec.json.Decoder(struct)
        self.schema = object_schema(struct)
        self._empty: dict[str, Any] | None = None

    def parse(self, raw: Raw | None | UnsetType) -> dict[str, Any]:
        """Validate and convert ``arguments``; absent or ``null`` arguments mean ``{}``.

        Raises ``InvalidArguments`` for an object that does not fit, ``InvalidParams`` for
        anything that is not an object.
        """
        data = _EMPTY_OBJECT if raw is None or raw is UNSET or raw == _NULL else raw
        try:
            value = self._decoder.decode(data)
        except msgspec.ValidationError as exc:
            raise self._invalid(exc, data) from None
        except msgspec.DecodeError as exc:
            raise InvalidParams(f"invalid arguments for {self.owner}: {exc}") from None
        return {name: getattr(value, name) for name in self.field_names}

    def parse_lenient(self, raw: Raw | None | UnsetType) -> dict[str, Any]:
        """Like ``parse``, converting what models often send as text: ``"5"`` for an integer,
        ``"2.5"`` for a number, ``"true"`` for a boolean, ``5.0`` for an integer (msgspec's
        ``strict=False``). Opt-in (``coerce_arguments``): a strict schema is a promise too."""
        data = _EMPTY_OBJECT if raw is None or raw is UNSET or raw == _NULL else raw
        try:
            decoded = msgspec.json.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return self.parse(raw)  # not coercible: the strict parser says why
        try:
            value = msgspec.convert(decoded, self.struct, strict=False)
        except msgspec.ValidationError as exc:
            raise self._invalid(exc, data) from None
        return {name: getattr(value, name) for name in self.field_names}

    def _invalid(self, error: msgspec.ValidationError, data: bytes) -> InvalidParams:
        """The error for ``data`` that failed validation: every unknown and missing argument
        at once when there are any (a model fixes them in one go), else msgspec's first
        problem in plain words. Only on the error path (hence the late import)."""
        from .._explain import Problem, explain, suggest

        try:
            top = _TOP_LEVEL.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            kind = {b"[": "an array", b'"': "a string", b"t": "a boolean", b"f": "a boolean", b"n": "null"}
            got = kind.get(bytes(data).lstrip()[:1], "a number")
            return InvalidParams(f"invalid arguments for {self.owner}: arguments must be an object, not {got}")
        values: dict[str, Any] = {}
        for key, item in top.items():
            try:
                values[key] = msgspec.json.decode(item)
            except (msgspec.DecodeError, msgspec.ValidationError):  # a number msgspec cannot hold
                continue
        known = list(self.field_names)
        problems = [Problem((key,), f"is unknown{suggest(key, known)}", "additionalProperties", False)
                    for key in top if key not in self.field_names]
        problems += [Problem((f.name,), "is required", "required", f.name)
                     for f in msgspec.structs.fields(self.struct) if f.required and f.name not in top]
        return InvalidArguments(self.owner, problems or [explain(error, values, self.schema)])

    def parse_mapping(self, values: dict[str, Any]) -> dict[str, Any]:
        """Like ``parse`` for an already-decoded mapping (prompt arguments, template variables).

        Strings convert to the annotated type (``"123"`` to ``int``), as URIs and prompt
        arguments carry only strings.
        """
        try:
            value = msgspec.convert(values, self.struct, strict=False)
        except msgspec.ValidationError as exc:
            from .._explain import explain

            raise InvalidParams(f"invalid arguments for {self.owner}: {explain(exc, values, self.schema).text()}") from None
        return {name: getattr(value, name) for name in self.field_names}


def build_parser(
    fn: Callable[..., Any],
    owner: str,
    context_type: type = ContextParameter,
    *,
    forbid_unknown: bool = True,
) -> ArgumentParser:
    """Compile ``fn``'s signature into an ``ArgumentParser``.

    A parameter annotated with ``context_type`` is injected, not read from the client, and is
    absent from the schema. Unannotated parameters accept any JSON value.
    """
    hints = _resolve_hints(fn)
    fields: list[tuple[str, Any, Any] | tuple[str, Any]] = []
    context_param: str | None = None
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise SignatureError(f"{fn.__qualname__}: *args and **kwargs cannot be described to a client")
        if param.kind is param.POSITIONAL_ONLY:
            raise SignatureError(f"{fn.__qualname__}: positional-only parameter {param.name!r} cannot be passed by name")
        annotation = hints.get(param.name, Any)
        if _is_context(annotation, context_type):
            if context_param is not None:
                raise SignatureError(f"{fn.__qualname__}: more than one Context parameter")
            context_param = param.name
            continue
        if param.default is param.empty:
            fields.append((param.name, annotation))
        else:
            fields.append((param.name, annotation, param.default))
    name = "".join(part.capitalize() for part in re.split(r"[^0-9A-Za-z]+", owner) if part) + "Arguments"
    struct = msgspec.defstruct(name or "Arguments", fields, kw_only=True, forbid_unknown_fields=forbid_unknown)
    try:
        parser = ArgumentParser(owner, struct, context_param)
    except (TypeError, msgspec.ValidationError) as exc:
        raise SignatureError(f"{fn.__qualname__}: a parameter type has no JSON Schema: {exc}") from None
    return parser


def object_schema(tp: Any) -> dict[str, Any]:
    """The JSON Schema of ``tp`` with its top-level definition inlined and ``$defs`` kept.

    MCP wants ``inputSchema``/``outputSchema`` to be an object schema at the top, not a ``$ref``.
    """
    (top,), components = msgspec.json.schema_components((tp,), ref_template="#/$defs/{name}")
    ref = top.get("$ref")
    if ref is not None:
        top = dict(components.pop(ref.rsplit("/", 1)[1]))
    top.pop("title", None)
    if components:
        top["$defs"] = components
    return top


# -- return types -----------------------------------------------------------------------------
def _is_structured_type(tp: Any) -> bool:
    """Types whose values become ``structuredContent`` objects as they are."""
    origin = typing.get_origin(tp) or tp
    if origin is typing.Annotated:
        return _is_structured_type(typing.get_args(tp)[0])
    if isinstance(origin, type):
        # (``dataclasses.is_dataclass`` reads this attribute; importing dataclasses costs every start.)
        if issubclass(origin, msgspec.Struct) or hasattr(origin, "__dataclass_fields__"):
            return True
        if issubclass(origin, dict):
            return True
        if typing.is_typeddict(origin):
            return True
        if issubclass(origin, tuple) and hasattr(origin, "_fields"):  # NamedTuple
            return False
    return False


class OutputShape(msgspec.Struct, frozen=True):
    """How a tool's return value becomes structured content.

    ``schema`` is the advertised ``outputSchema`` (None: the tool returns content, not data);
    ``wrap`` is True when a non-object value (a number, a list) is sent as ``{"result": value}``,
    since MCP requires structured content to be an object.
    """

    schema: dict[str, Any] | None
    wrap: bool


_CONTENT_RETURNS: tuple[str, ...] = ("str", "Image", "Audio", "TextContent", "ImageContent", "AudioContent",
                                     "EmbeddedResource", "ResourceLink", "NoneType", "Message")


def output_shape(fn: Callable[..., Any]) -> OutputShape:
    """Derive the output schema from ``fn``'s return annotation."""
    hints = _resolve_hints(fn)
    if "return" not in hints:
        return OutputShape(None, False)
    tp = hints["return"]
    if tp is None or tp is type(None) or tp is Any:
        return OutputShape(None, False)
    if _names_content(tp):
        return OutputShape(None, False)
    if _is_structured_type(tp):
        try:
            return OutputShape(object_schema(tp), False)
        except TypeError:
            return OutputShape(None, False)
    try:
        wrapped = msgspec.defstruct("Result", [("result", tp)])
        return OutputShape(object_schema(wrapped), True)
    except TypeError:
        return OutputShape(None, False)


def _names_content(tp: Any) -> bool:
    """True when ``tp`` is content (text, image, blocks), or a list or union of content."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _names_content(typing.get_args(tp)[0])
    if origin in (list, tuple, typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(tp) if arg is not Ellipsis]
        return bool(args) and all(_names_content(arg) for arg in args)
    return getattr(tp, "__name__", "") in _CONTENT_RETURNS
