"""Tools defined as classes, and tools defined by a JSON Schema and a handler.

A function with typed parameters is the shortest way to write a tool (``@server.tool``). Some
tools are better as a class: a family of tools sharing a client or settings, a tool generated
from a database table, a config file, an OpenAPI operation or an upstream server's listing,
where the input schema is data, not a signature. ``Tool`` is that class::

    class Forecast(Tool):
        "Weather forecast for a place."
        name = "forecast"
        version = "2.1"
        tags = {"weather"}
        timeout = 10
        input_schema = {"type": "object", "required": ["zip"],
                        "properties": {"zip": {"type": "string", "pattern": "^[0-9]{5}$"}}}

        async def run(self, arguments, ctx):
            return await self.client.forecast(arguments["zip"])

    server.add_tool(Forecast())

With ``input_schema`` (JSON Schema data), ``run(self, arguments, ctx)`` gets the arguments as a
dict, checked against the schema first (``mcp_trio.offer._jsonschema``, errors naming the path).
Without it, ``run``'s own typed parameters are the arguments, exactly as for a decorated
function (``async def run(self, zip: str, days: int = 3, ctx: Context | None = None)``): the
schema is derived from the signature by ``_schema.build_parser``. The Context is optional in
both forms: the second parameter of the schema form, a ``Context``-annotated one in the typed.

Metadata are class attributes (overridable per instance: ``Forecast(timeout=5)``): ``name``
(default: the class name in snake_case), ``title``, ``description`` (default: the class
docstring), ``version``, ``tags``, ``category``, ``examples``, ``timeout``, ``read_only``,
``destructive``, ``idempotent``, ``open_world``, ``annotations`` (the same hints spelled as MCP
does: ``{"readOnlyHint": True}``), ``deprecated``, ``scopes``, ``output_schema``, ``meta``,
``runtime`` (``"asyncio"`` for a ``run`` written for asyncio).

``add_tool_from_schema(server, name, schema, handler)`` is the function form: ``handler(arguments,
ctx)`` (async, or sync to run in a worker thread) with the same validation.

A ``Tool`` registers through ``Server.add_tool(instance)``, which takes ``tool_options()``:
the bound ``run`` (or the handler), a ready argument parser, and the usual keyword options.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from msgspec import Raw, UnsetType

if TYPE_CHECKING:  # imported by schema_parser: a server with no schema-typed tool never loads it
    from ._jsonschema import SchemaValidator

#: What the 2025-11-25 specification says a tool name SHOULD be (SEP-986): 1 to 128 ASCII
#: letters, digits, ``_``, ``-`` and ``.``. Class-based tools are held to it.
TOOL_NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}\Z")
_HINTS = {"readOnlyHint": "read_only", "destructiveHint": "destructive", "idempotentHint": "idempotent",
          "openWorldHint": "open_world"}
_OPTIONS = ("name", "title", "description", "version", "tags", "category", "examples", "timeout", "read_only",
            "destructive", "idempotent", "open_world", "annotations", "deprecated", "scopes", "input_schema",
            "output_schema", "meta", "runtime")


class ToolDefinitionError(TypeError):
    """A ``Tool`` subclass or a schema-defined tool that cannot be served, said in one line."""


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


class SchemaArgumentParser:
    """The argument parser of a schema-defined tool: the same seam as ``_schema.ArgumentParser``
    (``parse``, ``context_param``, ``schema``, ``field_names``) over a ``SchemaValidator``.

    ``parse`` returns ``{arguments_param: <the checked dict>}``, so the tool-call path calls
    ``handler(arguments=..., ctx=...)`` like any function tool.
    """

    __slots__ = ("owner", "validator", "arguments_param", "context_param", "field_names")

    def __init__(self, validator: SchemaValidator, arguments_param: str, context_param: str | None) -> None:
        self.owner = validator.owner
        self.validator = validator
        self.arguments_param = arguments_param
        self.context_param = context_param
        self.field_names = tuple(validator.schema.get("properties", {}))

    @property
    def schema(self) -> dict[str, Any]:
        return self.validator.schema

    def parse(self, raw: Raw | bytes | None | UnsetType) -> dict[str, Any]:
        return {self.arguments_param: self.validator.parse(raw)}

    def parse_mapping(self, values: Mapping[str, Any]) -> dict[str, Any]:
        return {self.arguments_param: self.validator.validate(dict(values))}


def _handler_parameters(handler: Callable[..., Any], owner: str) -> tuple[str, str | None]:
    """The names of a schema tool handler's parameters, by position: the arguments dict, then
    (optionally) the request's Context. By position, not annotation: this layer does not know
    the runtime's ``Context`` type."""
    try:
        params = [p for p in inspect.signature(handler).parameters.values()
                  if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    except (TypeError, ValueError):
        raise ToolDefinitionError(f"{owner}: the handler has no signature to read") from None
    extra = [p.name for p in params[2:] if p.default is p.empty]
    if not params or extra:
        raise ToolDefinitionError(f"{owner}: the handler must take (arguments) or (arguments, ctx)")
    return params[0].name, params[1].name if len(params) > 1 else None


class Tool:
    """Base class of tools defined as classes (see the module docstring for both forms)."""

    name: ClassVar[str | None] = None
    title: ClassVar[str | None] = None
    description: ClassVar[str | None] = None
    version: ClassVar[str | None] = None
    tags: ClassVar[Iterable[str]] = ()
    category: ClassVar[str | None] = None
    examples: ClassVar[Iterable[Mapping[str, Any]]] = ()
    timeout: ClassVar[float | None] = None
    read_only: ClassVar[bool | None] = None
    destructive: ClassVar[bool | None] = None
    idempotent: ClassVar[bool | None] = None
    open_world: ClassVar[bool | None] = None
    annotations: ClassVar[Mapping[str, bool] | None] = None
    deprecated: ClassVar[str | bool | None] = None
    scopes: ClassVar[str | Iterable[str]] = ()
    input_schema: ClassVar[Mapping[str, Any] | None] = None
    output_schema: ClassVar[Mapping[str, Any] | None] = None
    meta: ClassVar[Mapping[str, Any] | None] = None
    #: ``"asyncio"`` when ``run`` is written for asyncio (aiohttp, asyncpg...): it runs on the
    #: server's asyncio loop. None: trio.
    runtime: ClassVar[str | None] = None

    def __init__(self, **overrides: Any) -> None:
        unknown = set(overrides) - set(_OPTIONS)
        if unknown:
            raise ToolDefinitionError(f"{type(self).__name__}: unknown tool option(s) {sorted(unknown)}; "
                                      f"known: {', '.join(_OPTIONS)}")
        for key, value in overrides.items():
            setattr(self, key, value)
        self._parser: Any = None
        self._check()

    async def run(self, arguments: dict[str, Any], ctx: Any) -> Any:
        """Do the tool's work; override it (see the module docstring for the two forms)."""
        raise NotImplementedError(f"{type(self).__name__} must define async def run(...)")

    # -- what the server needs ----------------------------------------------------------------
    @property
    def tool_name(self) -> str:
        return self.name if self.name else _snake(type(self).__name__)

    @property
    def owner(self) -> str:
        return f"tool {self.tool_name!r}"

    @property
    def schema_defined(self) -> bool:
        """True when ``input_schema`` is data; False when ``run``'s signature is the schema."""
        return self.input_schema is not None

    def _check(self) -> None:
        """Everything that can be wrong with the definition, said now, not at the first call."""
        owner = self.owner
        if not TOOL_NAME.match(self.tool_name):
            raise ToolDefinitionError(f"{owner}: a tool name is 1 to 128 letters, digits, '_', '-' or '.'")
        if type(self).run is Tool.run:
            raise ToolDefinitionError(f"{owner}: {type(self).__name__} must define async def run(...)")
        if not inspect.iscoroutinefunction(self.run):
            raise ToolDefinitionError(f"{owner}: run must be an async function (async def run)")
        if self.timeout is not None and self.timeout <= 0:
            raise ToolDefinitionError(f"{owner}: timeout must be positive")
        if self.annotations is not None:
            unknown = set(self.annotations) - set(_HINTS)
            if unknown:
                raise ToolDefinitionError(f"{owner}: unknown annotation(s) {sorted(unknown)}; known: {', '.join(_HINTS)}")
            for hint, option in _HINTS.items():
                given, attribute = self.annotations.get(hint), getattr(self, option)
                if given is not None and attribute is not None and given != attribute:
                    raise ToolDefinitionError(f"{owner}: annotations[{hint!r}]={given} contradicts {option}={attribute}")
        if self.schema_defined:
            self._parser = self.schema_parser(self.run)
        # The typed form's parser is built by the server (``build_parser``) at registration.

    def schema_parser(self, target: Callable[..., Any]) -> SchemaArgumentParser:
        assert self.input_schema is not None
        from ._jsonschema import SchemaValidator

        arguments_param, context_param = _handler_parameters(target, self.owner)
        return SchemaArgumentParser(SchemaValidator(self.input_schema, owner=self.owner), arguments_param, context_param)

    def hints(self) -> dict[str, bool | None]:
        """The four MCP tool annotations, from the attributes or ``annotations``."""
        given = dict(self.annotations or {})
        return {option: getattr(self, option) if getattr(self, option) is not None else given.get(hint)
                for hint, option in _HINTS.items()}

    def tool_options(self) -> tuple[Callable[..., Any], dict[str, Any]]:
        """``(target, options)`` for ``Server.add_tool(target, **options)``: the bound ``run``,
        and every option, ``parser`` included for the schema form (None: derive it from
        ``run``'s signature)."""
        doc = type(self).__dict__.get("__doc__")
        description = self.description if self.description is not None else (inspect.cleandoc(doc) if doc else None)
        hints = self.hints()
        options: dict[str, Any] = {
            "name": self.tool_name, "title": self.title, "description": description,
            "read_only": hints["read_only"], "destructive": hints["destructive"],
            "idempotent": hints["idempotent"], "open_world": hints["open_world"],
            "timeout": self.timeout, "tags": frozenset((self.tags,) if isinstance(self.tags, str) else self.tags),
            "category": self.category, "version": self.version, "examples": tuple(self.examples),
            "scopes": self.scopes, "deprecated": self.deprecated,
            "input_schema": dict(self.input_schema) if self.input_schema is not None else None,
            "output_schema": dict(self.output_schema) if self.output_schema is not None else None,
            "meta": dict(self.meta) if self.meta is not None else None,
            "parser": self._parser,
            "runtime": self.runtime,
        }
        return self.run, options


class SchemaTool(Tool):
    """The tool ``add_tool_from_schema`` makes: a name, a schema and a handler. The handler
    itself is what the server calls (a plain function runs in a worker thread), not ``run``."""

    def __init__(self, name: str, input_schema: Mapping[str, Any], handler: Callable[..., Any], **options: Any) -> None:
        if not callable(handler):
            raise ToolDefinitionError(f"tool {name!r}: the handler must be callable")
        self._handler = handler
        super().__init__(name=name, input_schema=input_schema, **options)

    def _check(self) -> None:
        owner = self.owner
        if not TOOL_NAME.match(self.tool_name):
            raise ToolDefinitionError(f"{owner}: a tool name is 1 to 128 letters, digits, '_', '-' or '.'")
        if self.timeout is not None and self.timeout <= 0:
            raise ToolDefinitionError(f"{owner}: timeout must be positive")
        self._parser = self.schema_parser(self._handler)

    def tool_options(self) -> tuple[Callable[..., Any], dict[str, Any]]:
        _, options = super().tool_options()
        if self.description is None:
            doc = inspect.getdoc(self._handler)
            options["description"] = doc.strip() if doc else None
        return self._handler, options


def add_tool_from_schema(server: Any, name: str, schema: Mapping[str, Any], handler: Callable[..., Any], **options: Any) -> Any:
    """Register ``handler(arguments, ctx)`` as tool ``name`` whose input is checked against
    ``schema`` (JSON Schema data); ``options`` as for ``Tool`` (``description``, ``timeout``,
    ``tags``, ``scopes``...). Returns the tool's definition."""
    return server.add_tool(SchemaTool(name, schema, handler, **options))

