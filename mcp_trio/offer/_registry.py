"""What a server offers: tool, resource, template and prompt definitions, and the immutable
snapshot of them that request tasks read.

The supervisor is the only writer: it builds a new ``Registry`` (copy on write) and publishes
it; a request task takes the snapshot once and uses it to the end, so a change never shows a
half-updated registry and needs no lock.

The definitions are frozen ``msgspec.Struct``s (``msgspec.structs.replace`` makes changed
copies): defining a frozen dataclass costs about 0.6 ms of generated code, a Struct 50 times
less, and a stdio child defines these on every start.
"""

from __future__ import annotations

import base64
import dis
import inspect
import re
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import msgspec

from ._schema import ArgumentParser, OutputShape
from ..protocol._errors import InvalidParams
from ..protocol._types import Prompt, Resource, ResourceTemplate, Tool

Handler = Callable[..., Any]


class MountedFrom(msgspec.Struct, frozen=True):
    """A definition another server offers, mounted here (``Server.mount``): its name (or URI,
    or URI template) in that server, the prefix it is mounted under, and that server's own
    middleware chain, which runs around calls of it (after this server's own, seeing the
    request as that server names it). ``inner``: the same one level further down, when that
    server had mounted it from a third."""

    prefix: str | None
    name: str
    middleware: tuple[Handler, ...] = ()
    inner: MountedFrom | None = None
    #: True when this level or one below has middleware (else a call needs nothing more).
    middleware_below: bool = False

    @classmethod
    def of(cls, prefix: str | None, name: str, middleware: tuple[Handler, ...], inner: MountedFrom | None) -> MountedFrom:
        return cls(prefix, name, middleware, inner, bool(middleware) or (inner is not None and inner.middleware_below))


class ToolDef(msgspec.Struct, frozen=True):
    """One tool: the function, how its arguments are parsed, and how it is listed."""

    name: str
    fn: Handler
    parser: ArgumentParser
    output: OutputShape
    wire: Tool
    is_async: bool
    timeout: float | None = None
    tags: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()
    #: False while switched off at run time (by name or by tag): unlisted, and calls are
    #: refused. The supervisor derives it from its switches on every publish.
    enabled: bool = True
    category: str | None = None
    version: str | None = None
    #: The deprecation message, or None when the tool is not deprecated.
    deprecated: str | None = None
    #: Example argument objects (validated against the signature when registered).
    examples: tuple[Mapping[str, Any], ...] = ()
    #: Accept ``"5"`` for an integer and the like (``ArgumentParser.parse_lenient``); None:
    #: as the serving ``Server``'s ``coerce_arguments`` says (default: strict).
    coerce_arguments: bool | None = None
    #: Where a mounted definition comes from (``Server.mount``): its own name there and that
    #: server's middleware; None for the server's own definitions.
    mount: MountedFrom | None = None
    #: An ``async def`` with no ``await`` of its own (``never_waits``): a deadline can never
    #: cancel it, so a call runs it with no timeout scope.
    never_waits: bool = False


class ResourceDef(msgspec.Struct, frozen=True):
    """A resource at a fixed URI."""

    uri: str
    fn: Handler
    parser: ArgumentParser
    wire: Resource
    is_async: bool
    mime_type: str | None
    scopes: frozenset[str] = frozenset()
    mount: MountedFrom | None = None


_TEMPLATE_VAR = re.compile(r"\{(\+?)([A-Za-z_][A-Za-z0-9_]*)\}")


def compile_template(uri_template: str) -> tuple[re.Pattern[str], tuple[str, ...]]:
    """RFC 6570 level 1 and 2 templates: ``{var}`` matches one path segment, ``{+var}`` any text."""
    names: list[str] = []
    pattern = ["^"]
    pos = 0
    for match in _TEMPLATE_VAR.finditer(uri_template):
        pattern.append(re.escape(uri_template[pos:match.start()]))
        reserved, name = match.groups()
        names.append(name)
        pattern.append(f"(?P<{name}>.+)" if reserved else f"(?P<{name}>[^/?#]+)")
        pos = match.end()
    # ``\Z``, not ``$``: ``$`` also matches before a trailing newline, a partial match.
    pattern.append(re.escape(uri_template[pos:]) + r"\Z")
    return re.compile("".join(pattern)), tuple(names)


class TemplateDef(msgspec.Struct, frozen=True):
    """A family of resources named by a URI template (``test://template/{id}/data``)."""

    uri_template: str
    pattern: re.Pattern[str]
    variables: tuple[str, ...]
    fn: Handler
    parser: ArgumentParser
    wire: ResourceTemplate
    is_async: bool
    mime_type: str | None
    scopes: frozenset[str] = frozenset()
    mount: MountedFrom | None = None

    def match(self, uri: str) -> dict[str, str] | None:
        found = self.pattern.match(uri)
        return found.groupdict() if found else None


class PromptDef(msgspec.Struct, frozen=True):
    name: str
    fn: Handler
    parser: ArgumentParser
    wire: Prompt
    is_async: bool
    scopes: frozenset[str] = frozenset()
    mount: MountedFrom | None = None


class CompletionDef(msgspec.Struct, frozen=True):
    """Suggests values for one prompt argument or template variable."""

    fn: Handler
    is_async: bool


CompletionKey = tuple[str, str, str]  # ("ref/prompt" | "ref/resource", prompt name | uri template, argument)


class MethodDef(msgspec.Struct, frozen=True):
    """A custom JSON-RPC method (``@server.method("vendor/name")``): its params' type, and the
    function's parameters that receive the params and the ``Context``."""

    name: str
    fn: Handler
    params_type: Any
    params_param: str | None
    context_param: str | None
    is_async: bool

    def decode(self, raw: Any) -> Any:
        """The params as ``params_type``; ``-32602`` when they do not fit."""
        try:
            return msgspec.json.decode(b"{}" if raw is None else raw, type=self.params_type)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise InvalidParams(f"invalid params for {self.name}: {exc}") from None


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


def _empty() -> Mapping[str, Any]:
    return MappingProxyType({})


class RegistryKeys(msgspec.Struct, frozen=True):
    """The names of what one registry (a plugin's, say) defines: what to remove on a reload."""

    tools: frozenset[str] = frozenset()
    resources: frozenset[str] = frozenset()
    templates: frozenset[str] = frozenset()
    prompts: frozenset[str] = frozenset()
    completions: frozenset[CompletionKey] = frozenset()
    methods: frozenset[str] = frozenset()
    middleware: frozenset[Handler] = frozenset()

    def kinds(self) -> frozenset[str]:
        """The lists (``tools``, ``resources``, ``prompts``) that these definitions appear in."""
        kinds = set()
        if self.tools:
            kinds.add("tools")
        if self.resources or self.templates:
            kinds.add("resources")
        if self.prompts:
            kinds.add("prompts")
        return frozenset(kinds)

    def union(self, other: RegistryKeys) -> RegistryKeys:
        return RegistryKeys(self.tools | other.tools, self.resources | other.resources, self.templates | other.templates,
                            self.prompts | other.prompts, self.completions | other.completions, self.methods | other.methods,
                            self.middleware | other.middleware)

    def minus(self, other: RegistryKeys) -> RegistryKeys:
        return RegistryKeys(self.tools - other.tools, self.resources - other.resources, self.templates - other.templates,
                            self.prompts - other.prompts, self.completions - other.completions, self.methods - other.methods,
                            self.middleware - other.middleware)

    def clashes(self, other: RegistryKeys) -> list[str]:
        """What both define, described (``tool 'x'``), sorted."""
        found = [f"tool {name!r}" for name in self.tools & other.tools]
        found += [f"resource {uri!r}" for uri in self.resources & other.resources]
        found += [f"resource template {uri!r}" for uri in self.templates & other.templates]
        found += [f"prompt {name!r}" for name in self.prompts & other.prompts]
        found += [f"method {name!r}" for name in self.methods & other.methods]
        return sorted(found)

    def __bool__(self) -> bool:
        return bool(self.tools or self.resources or self.templates or self.prompts or self.completions or self.methods
                    or self.middleware)


class Registry(msgspec.Struct, frozen=True):
    """An immutable snapshot of everything a server offers. Build new ones with ``with_*``."""

    tools: Mapping[str, ToolDef] = msgspec.field(default_factory=_empty)
    resources: Mapping[str, ResourceDef] = msgspec.field(default_factory=_empty)
    templates: tuple[TemplateDef, ...] = ()
    prompts: Mapping[str, PromptDef] = msgspec.field(default_factory=_empty)
    completions: Mapping[CompletionKey, CompletionDef] = msgspec.field(default_factory=_empty)
    #: Custom JSON-RPC methods by name (``@server.method``).
    methods: Mapping[str, MethodDef] = msgspec.field(default_factory=_empty)
    #: The middleware chain, outermost first (``@server.middleware``); empty: none runs.
    middleware: tuple[Handler, ...] = ()
    #: Bumped on every change, so caches of listings know when to rebuild.
    version: int = 0

    def with_tool(self, tool: ToolDef) -> Registry:
        return msgspec.structs.replace(self, tools=_frozen({**self.tools, tool.name: tool}), version=self.version + 1)

    def without_tool(self, name: str) -> Registry:
        tools = dict(self.tools)
        tools.pop(name, None)
        return msgspec.structs.replace(self, tools=_frozen(tools), version=self.version + 1)

    def with_resource(self, resource: ResourceDef) -> Registry:
        return msgspec.structs.replace(self, resources=_frozen({**self.resources, resource.uri: resource}), version=self.version + 1)

    def with_template(self, template: TemplateDef) -> Registry:
        others = tuple(t for t in self.templates if t.uri_template != template.uri_template)
        return msgspec.structs.replace(self, templates=(*others, template), version=self.version + 1)

    def with_prompt(self, prompt: PromptDef) -> Registry:
        return msgspec.structs.replace(self, prompts=_frozen({**self.prompts, prompt.name: prompt}), version=self.version + 1)

    def with_completion(self, key: CompletionKey, completion: CompletionDef) -> Registry:
        return msgspec.structs.replace(self, completions=_frozen({**self.completions, key: completion}), version=self.version + 1)

    def with_method(self, method: MethodDef) -> Registry:
        return msgspec.structs.replace(self, methods=_frozen({**self.methods, method.name: method}), version=self.version + 1)

    def with_middleware(self, middleware: Handler) -> Registry:
        return msgspec.structs.replace(self, middleware=(*self.middleware, middleware), version=self.version + 1)

    def keys(self) -> RegistryKeys:
        return RegistryKeys(frozenset(self.tools), frozenset(self.resources), frozenset(t.uri_template for t in self.templates),
                            frozenset(self.prompts), frozenset(self.completions), frozenset(self.methods),
                            frozenset(self.middleware))

    def swap(self, remove: RegistryKeys, add: Registry) -> Registry:
        """One new snapshot: everything named in ``remove`` taken out, everything in ``add`` put
        in (replacing what has the same name). A plugin's reload in one step."""
        tools = {k: v for k, v in self.tools.items() if k not in remove.tools}
        resources = {k: v for k, v in self.resources.items() if k not in remove.resources}
        prompts = {k: v for k, v in self.prompts.items() if k not in remove.prompts}
        completions = {k: v for k, v in self.completions.items() if k not in remove.completions}
        added = {t.uri_template for t in add.templates}
        templates = tuple(t for t in self.templates if t.uri_template not in remove.templates and t.uri_template not in added)
        methods = {k: v for k, v in self.methods.items() if k not in remove.methods}
        middleware = tuple(m for m in self.middleware if m not in remove.middleware and m not in add.middleware)
        return Registry(
            tools=_frozen({**tools, **add.tools}),
            resources=_frozen({**resources, **add.resources}),
            templates=(*templates, *add.templates),
            prompts=_frozen({**prompts, **add.prompts}),
            completions=_frozen({**completions, **add.completions}),
            methods=_frozen({**methods, **add.methods}),
            middleware=(*middleware, *add.middleware),
            version=self.version + 1,
        )

    def find_template(self, uri: str) -> tuple[TemplateDef, dict[str, str]] | None:
        for template in self.templates:
            values = template.match(uri)
            if values is not None:
                return template, values
        return None

    def visible_tools(self) -> list[ToolDef]:
        return [tool for tool in self.tools.values() if tool.enabled]


# -- pagination -------------------------------------------------------------------------------
def encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode("ascii")


def decode_cursor(cursor: str) -> int:
    """The offset a cursor stands for; a cursor we did not issue is ``InvalidParams``."""
    try:
        text = base64.urlsafe_b64decode(cursor.encode("ascii")).decode("ascii")
        prefix, _, number = text.partition(":")
        offset = int(number)
    except (ValueError, UnicodeError):
        raise InvalidParams(f"invalid cursor: {cursor!r}") from None
    if prefix != "o" or offset < 0 or encode_cursor(offset) != cursor:
        raise InvalidParams(f"invalid cursor: {cursor!r}")
    return offset


def paginate(items: list[Any], cursor: str | None, page_size: int) -> tuple[list[Any], str | None]:
    """One page of ``items`` and the cursor of the next page (None on the last page)."""
    start = 0 if cursor is None else decode_cursor(cursor)
    end = start + page_size
    return items[start:end], (encode_cursor(end) if end < len(items) else None)


def is_async_callable(fn: Handler) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))


_YIELD_VALUE = dis.opmap["YIELD_VALUE"]


def never_waits(fn: Handler) -> bool:
    """True when ``fn`` is an ``async def`` (or a method of one) whose own code has no
    ``await``, ``async with`` or ``async for``: its coroutine cannot suspend (a coroutine only
    suspends by yielding from its own frame), so it runs to its end when first stepped, and no
    deadline can cancel it. Any other callable (an object with ``__call__``, a partial, a
    ``def``) is assumed to wait. Read once, when the tool is registered."""
    function = getattr(fn, "__func__", fn)
    if not inspect.iscoroutinefunction(function):
        return False
    code = getattr(function, "__code__", None)
    # Wordcode: every instruction (and every inline cache entry, opcode 0) is two bytes, the
    # opcode first, so the even bytes are the opcodes (``dis`` reads them the same way, 100
    # times slower: this runs for every tool at every start).
    return code is not None and _YIELD_VALUE not in code.co_code[::2]
