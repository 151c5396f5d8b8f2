"""The registrar: the decorators that turn plain functions into what a server offers.

``Server`` and ``Plugin`` are both registrars: ``@x.tool``, ``@x.resource``, ``@x.prompt``,
``@x.completion``, ``@x.method`` (a custom JSON-RPC method) and ``@x.middleware`` compile each
function once (schema, argument parser, output shape, listing entry) into a definition and put
it in the registrar's registry (``_update``). A ``Server`` routes that update to its supervisor
while it is served; a ``Plugin``'s registry is swapped into its host's as a whole. Neither
refuses anything the other accepts.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar, overload

import msgspec
from msgspec import UNSET, UnsetType

from . import _tool_class
from ._middleware import Middleware
from ._on_asyncio import OnAsyncio, OnAsyncioMiddleware, check_runtime
from ._registry import (
    CompletionDef,
    MethodDef,
    PromptDef,
    Registry,
    ResourceDef,
    TemplateDef,
    ToolDef,
    compile_template,
    is_async_callable,
    never_waits,
)
from ._schema import ContextParameter, SignatureError, build_parser, is_context_annotation, output_shape
from ..protocol._errors import InvalidParams
from ..protocol._params import PARAMS
from ..protocol._types import (
    Icon,
    Prompt,
    PromptArgument,
    Resource,
    ResourceTemplate,
    Tool,
    ToolAnnotations,
)

F = TypeVar("F", bound=Callable[..., Any])


def _description(fn: Callable[..., Any]) -> str | None:
    doc = inspect.getdoc(fn)
    return doc.strip() if doc else None


def _icons(icons: Iterable[Icon | Mapping[str, Any]] | None, owner: str) -> list[Icon] | UnsetType:
    """``icons`` checked (``_icons``, imported only when a definition has some)."""
    if icons is None:
        return UNSET
    from ._icons import icons_of

    return icons_of(icons, owner)


def _scope_set(scopes: str | Iterable[str]) -> frozenset[str]:
    """Scopes as a set; a lone string is one scope (``scopes="write"``), not its letters."""
    found = frozenset((scopes,) if isinstance(scopes, str) else scopes)
    if not all(isinstance(scope, str) and scope and not any(ch.isspace() for ch in scope) for scope in found):
        raise ValueError(f"scopes must be non-empty strings without spaces: {sorted(map(str, found))}")
    return found



class Registrar:
    """Decorators that register tools, resources, prompts, completions, custom methods and
    middleware in a registry of this object's own (the base of ``Server`` and ``Plugin``)."""

    def __init__(self, name: str, version: str = "0.0.0") -> None:
        self.name = name
        self.version = version
        self._registry = Registry()

    @property
    def registry(self) -> Registry:
        """What this registrar defines now."""
        return self._registry

    def _update(self, change: Callable[[Registry], Registry], kind: str | Iterable[str]) -> None:
        """Apply ``change`` to the registry (``kind``: the lists it changes, for ``list_changed``)."""
        self._registry = change(self._registry)

    # -- tools ------------------------------------------------------------------------------
    @overload
    def tool(self, fn: F, /) -> F: ...
    @overload
    def tool(self, fn: None = None, /, **options: Any) -> Callable[[F], F]: ...

    def tool(self, fn: F | None = None, /, **options: Any) -> F | Callable[[F], F]:
        """Register ``fn`` as a tool. Use bare (``@server.tool``) or with options:

        ``name``, ``title``, ``description`` (default: the docstring), ``read_only``,
        ``destructive`` (or its alias ``dangerous``), ``idempotent``, ``open_world`` (MCP tool
        annotations: ``readOnlyHint``, ``destructiveHint``...), ``timeout`` (seconds; a call
        past it is cancelled and answered with a timeout error; default: the server's
        ``Limits.tool_timeout``, ``math.inf`` for none), ``tags`` and ``category``
        (for listing, and for switching tools on and off by tag), ``version``, ``examples``
        (argument objects, checked against the signature now), ``scopes``, ``deprecated``
        (True or a message; shown in the description and ``_meta``),
        ``input_schema``/``output_schema`` (raw overrides), ``meta``, ``coerce_arguments``
        (accept ``"5"`` for an integer and the like; default: the server's setting, strict),
        ``icons`` (``mcp_trio.Icon``s or dicts: https or base64 data URIs, see ``offer._icons``),
        ``runtime`` (``"asyncio"``: an ``async def`` written for asyncio runs on the server's
        asyncio loop, ``mcp_trio.offer._on_asyncio``).
        """

        def register(func: F) -> F:
            self.add_tool(func, **options)
            return func

        return register(fn) if fn is not None else register

    def add_tool(
        self,
        fn: Callable[..., Any] | _tool_class.Tool,
        *,
        name: str | None = None,
        title: str | None = None,
        description: str | None = None,
        read_only: bool | None = None,
        destructive: bool | None = None,
        dangerous: bool | None = None,
        idempotent: bool | None = None,
        open_world: bool | None = None,
        timeout: float | None = None,
        tags: Iterable[str] = (),
        category: str | None = None,
        version: str | None = None,
        examples: Iterable[Mapping[str, Any]] = (),
        scopes: str | Iterable[str] = (),
        deprecated: str | bool | None = None,
        input_schema: dict[str, Any] | None = None,
        output_schema: dict[str, Any] | None = None,
        meta: dict[str, Any] | None = None,
        coerce_arguments: bool | None = None,
        icons: Iterable[Icon | Mapping[str, Any]] | None = None,
        parser: Any = None,
        runtime: str | None = None,
    ) -> ToolDef:
        """Register ``fn``, or a ``Tool`` instance (``mcp_trio.offer._tool_class``) with its own
        options (options given here fill in what it leaves unset; tags add up). ``parser``: a
        ready argument parser (a schema-defined tool's), instead of one built from ``fn``'s signature."""
        if isinstance(fn, _tool_class.Tool):
            given = {key: value for key, value in dict(locals()).items() if key not in ("self", "fn") and value not in (None, ())}
            target, own = fn.tool_options()
            merged = {**given, **{key: value for key, value in own.items() if value not in (None, ())}}
            merged["tags"] = frozenset(own["tags"]) | frozenset((tags,) if isinstance(tags, str) else tags)
            return self.add_tool(target, **merged)
        tool_name = name or fn.__name__
        if parser is None:
            parser = build_parser(fn, f"tool {tool_name!r}")
        elif not hasattr(parser, "parse_lenient"):
            # A schema given as data is the contract as written (often by someone else: an
            # OpenAPI document, an upstream server): values are never converted to fit it.
            if coerce_arguments:
                raise ValueError(f"tool {tool_name!r}: coerce_arguments is for tools whose schema comes from their "
                                 "signature; a schema-defined tool takes its arguments exactly as its schema says")
            coerce_arguments = False
        shape = output_shape(fn)
        if output_schema is not None:
            shape = type(shape)(output_schema, shape.wrap)
        text = description if description is not None else _description(fn)
        tags = frozenset((tags,) if isinstance(tags, str) else tags)
        examples = tuple(dict(example) for example in examples)
        for number, example in enumerate(examples, 1):
            try:
                parser.parse(msgspec.json.encode(example))
            except (InvalidParams, TypeError) as exc:
                raise ValueError(f"tool {tool_name!r}: example {number} does not match its parameters: {exc}") from None
        if dangerous is not None:
            if destructive is not None and destructive != dangerous:
                raise ValueError(f"tool {tool_name!r}: dangerous={dangerous} contradicts destructive={destructive}")
            destructive = dangerous
        if destructive and read_only:
            raise ValueError(f"tool {tool_name!r}: a read-only tool cannot be destructive")
        wire_meta = dict(meta or {})
        if tags:
            wire_meta["tags"] = sorted(tags)
        if category:
            wire_meta["category"] = category
        if version:
            wire_meta["version"] = version
        if examples:
            wire_meta["examples"] = list(examples)
        note = None
        if deprecated:
            note = deprecated if isinstance(deprecated, str) else "This tool is deprecated."
            text = f"DEPRECATED: {note}" + (f"\n\n{text}" if text else "")
            wire_meta["deprecated"] = True
            wire_meta["deprecationMessage"] = note
        hints = {"read_only_hint": read_only, "destructive_hint": destructive, "idempotent_hint": idempotent, "open_world_hint": open_world}
        annotations = ToolAnnotations(**{k: v for k, v in hints.items() if v is not None}) if any(v is not None for v in hints.values()) else UNSET
        wire = Tool(
            name=tool_name,
            title=title if title else UNSET,
            description=text if text else UNSET,
            input_schema=input_schema if input_schema is not None else parser.schema,
            output_schema=shape.schema if shape.schema is not None else UNSET,
            annotations=annotations,
            icons=_icons(icons, f"tool {tool_name!r}"),
            meta=wire_meta if wire_meta else UNSET,
        )
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be positive")
        is_async = is_async_callable(fn)
        if check_runtime(runtime, fn, is_async, f"tool {tool_name!r}"):
            fn = OnAsyncio(fn, parser.context_param)
        definition = ToolDef(
            name=tool_name, fn=fn, parser=parser, output=shape, wire=wire, is_async=is_async,
            timeout=timeout, tags=tags, scopes=_scope_set(scopes), category=category, version=version,
            deprecated=note, examples=examples, coerce_arguments=coerce_arguments, never_waits=never_waits(fn),
        )
        self._update(lambda r: r.with_tool(definition), "tools")
        return definition

    def add_tool_from_schema(self, name: str, schema: Mapping[str, Any], handler: Callable[..., Any], **options: Any) -> ToolDef:
        """Register ``handler(arguments, ctx)`` as tool ``name``, its arguments checked against
        ``schema`` (JSON Schema data) first; ``options`` as for ``mcp_trio.Tool``."""
        return self.add_tool(_tool_class.SchemaTool(name, schema, handler, **options))

    def remove_tool(self, name: str) -> None:
        self._update(lambda r: r.without_tool(name), "tools")

    # -- resources --------------------------------------------------------------------------
    def resource(
        self,
        uri: str,
        *,
        name: str | None = None,
        title: str | None = None,
        description: str | None = None,
        mime_type: str | None = None,
        scopes: str | Iterable[str] = (),
        icons: Iterable[Icon | Mapping[str, Any]] | None = None,
        runtime: str | None = None,
    ) -> Callable[[F], F]:
        """Register a resource at ``uri``, or a template when ``uri`` has ``{variables}``.

        The function returns ``str`` (text), ``bytes`` (sent as a base64 blob), resource
        contents, or JSON data. A template's variables are passed as keyword arguments,
        converted to their annotated types. ``scopes``: what a caller must hold to see it
        listed, read it or subscribe to it (admin ⊇ write ⊇ read; see ``mcp_trio.auth``).
        ``icons``: as for tools.
        ``runtime="asyncio"``: an ``async def`` written for asyncio (as for tools).
        """
        required = _scope_set(scopes)
        shown = _icons(icons, f"resource {uri!r}")

        def register(fn: F) -> F:
            res_name = name or fn.__name__
            text = description if description is not None else _description(fn)
            is_async = is_async_callable(fn)
            on_asyncio = check_runtime(runtime, fn, is_async, f"resource {uri!r}")
            if "{" in uri:
                pattern, variables = compile_template(uri)
                parser = build_parser(fn, f"resource template {uri!r}", forbid_unknown=False)
                missing = set(variables) - set(parser.field_names)
                if missing:
                    raise SignatureError(f"{fn.__qualname__}: no parameter for template variable(s) {sorted(missing)}")
                wire_t = ResourceTemplate(uri_template=uri, name=res_name, title=title or UNSET, description=text or UNSET,
                                          mime_type=mime_type or UNSET, icons=shown)
                target = OnAsyncio(fn, parser.context_param) if on_asyncio else fn
                template = TemplateDef(uri, pattern, variables, target, parser, wire_t, is_async, mime_type, required)
                self._update(lambda r: r.with_template(template), "resources")
            else:
                parser = build_parser(fn, f"resource {uri!r}")
                if parser.field_names:
                    raise SignatureError(f"{fn.__qualname__}: a static resource takes no arguments (did you mean a {{template}}?)")
                wire_r = Resource(uri=uri, name=res_name, title=title or UNSET, description=text or UNSET,
                                  mime_type=mime_type or UNSET, icons=shown)
                target = OnAsyncio(fn, parser.context_param) if on_asyncio else fn
                resource = ResourceDef(uri, target, parser, wire_r, is_async, mime_type, required)
                self._update(lambda r: r.with_resource(resource), "resources")
            return fn

        return register

    # -- prompts ----------------------------------------------------------------------------
    @overload
    def prompt(self, fn: F, /) -> F: ...
    @overload
    def prompt(self, fn: None = None, /, **options: Any) -> Callable[[F], F]: ...

    def prompt(self, fn: F | None = None, /, **options: Any) -> F | Callable[[F], F]:
        """Register a prompt; its parameters are the prompt's arguments (``name``, ``title``,
        ``description``, ``scopes``, ``icons``, ``runtime`` options). It returns text, a message, or a
        list of messages."""

        def register(func: F) -> F:
            self.add_prompt(func, **options)
            return func

        return register(fn) if fn is not None else register

    def add_prompt(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        title: str | None = None,
        description: str | None = None,
        scopes: str | Iterable[str] = (),
        icons: Iterable[Icon | Mapping[str, Any]] | None = None,
        runtime: str | None = None,
    ) -> PromptDef:
        prompt_name = name or fn.__name__
        parser = build_parser(fn, f"prompt {prompt_name!r}")
        required = set(parser.schema.get("required", ()))
        props = parser.schema.get("properties", {})
        arguments = [
            PromptArgument(name=arg, description=props.get(arg, {}).get("description", UNSET), required=arg in required)
            for arg in parser.field_names
        ]
        text = description if description is not None else _description(fn)
        wire = Prompt(name=prompt_name, title=title or UNSET, description=text or UNSET, arguments=arguments if arguments else UNSET,
                      icons=_icons(icons, f"prompt {prompt_name!r}"))
        is_async = is_async_callable(fn)
        if check_runtime(runtime, fn, is_async, f"prompt {prompt_name!r}"):
            fn = OnAsyncio(fn, parser.context_param)
        definition = PromptDef(prompt_name, fn, parser, wire, is_async, _scope_set(scopes))
        self._update(lambda r: r.with_prompt(definition), "prompts")
        return definition

    # -- completions ------------------------------------------------------------------------
    def completion(self, *, argument: str, prompt: str | None = None, template: str | None = None) -> Callable[[F], F]:
        """Register value suggestions for a prompt argument or a template variable.

        The function takes ``(value: str, context: dict[str, str])`` and returns a list of
        strings (at most 100 are sent, with ``hasMore`` set when there were more).
        """
        if (prompt is None) == (template is None):
            raise ValueError("give exactly one of prompt= and template=")
        key = ("ref/prompt", prompt, argument) if prompt is not None else ("ref/resource", template, argument)

        def register(fn: F) -> F:
            definition = CompletionDef(fn, is_async_callable(fn))
            self._update(lambda r: r.with_completion(key, definition), "none")  # type: ignore[arg-type]
            return fn

        return register

    # -- custom methods ---------------------------------------------------------------------
    def method(self, name: str) -> Callable[[F], F]:
        """Register ``fn`` as the JSON-RPC method ``name`` (``"vendor/name"``): requests are
        answered with what it returns (JSON data or a msgspec ``Struct``), notifications run it
        and answer nothing. Its first parameter receives the params, decoded into its annotation
        (a msgspec ``Struct``, a ``dict``...; ``-32602`` when they do not fit); a parameter
        annotated ``Context`` gets the request's. It passes through admission and middleware
        like every request, in both eras. Names of MCP's own methods are refused."""
        if not isinstance(name, str) or "/" not in name or name.startswith(("notifications/", "rpc.")) or name in PARAMS:
            raise ValueError(f"custom method name {name!r}: use a vendor prefix (\"vendor/name\"), not one of MCP's methods")

        def register(fn: F) -> F:
            self._update(lambda r: r.with_method(_method_def(name, fn)), "none")
            return fn

        return register

    # -- middleware -------------------------------------------------------------------------
    @overload
    def middleware(self, fn: F, /) -> F: ...
    @overload
    def middleware(self, fn: None = None, /, *, runtime: str | None = None) -> Callable[[F], F]: ...

    def middleware(self, fn: F | None = None, /, *, runtime: str | None = None) -> F | Callable[[F], F]:
        """Register ``fn(request, call_next)`` around every request (see
        ``mcp_trio.offer._middleware``); the first registered runs outermost.
        ``runtime="asyncio"``: written for asyncio (``await call_next(request)`` works there)."""

        def register(func: F) -> F:
            self.add_middleware(func, runtime=runtime)
            return func

        return register(fn) if fn is not None else register

    def add_middleware(self, fn: Middleware, *, runtime: str | None = None) -> None:
        if not inspect.iscoroutinefunction(fn) and not inspect.iscoroutinefunction(getattr(fn, "__call__", None)):
            raise TypeError(f"middleware {getattr(fn, '__qualname__', fn)!r} must be an async function (request, call_next)")
        if check_runtime(runtime, fn, True, f"middleware {getattr(fn, '__qualname__', fn)!r}"):
            fn = OnAsyncioMiddleware(fn)
        self._update(lambda r: r.with_middleware(fn), "none")


def _method_def(name: str, fn: Callable[..., Any]) -> MethodDef:
    """Compile a custom method's function: which parameter gets the params (and their type),
    which the Context."""
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # boundary: an annotation that does not resolve is a signature error
        hints = {}
    params_param = context_param = None
    params_type: Any = Any
    for param in inspect.signature(fn).parameters.values():
        annotation = hints.get(param.name, Any)
        if is_context_annotation(annotation, ContextParameter):
            context_param = param.name
        elif params_param is None:
            params_param, params_type = param.name, annotation
        else:
            raise SignatureError(f"{fn.__qualname__}: a custom method takes its params and optionally a Context")
    return MethodDef(name, fn, params_type, params_param, context_param, is_async_callable(fn))
