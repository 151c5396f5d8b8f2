"""Mounting: another server's definitions under a prefix, in this server's registry.

``Server.mount(other, prefix="weather")`` copies what ``other`` offers into the host's
registry snapshot under prefixed names, so a call of a mounted tool is a call of a local one
(one dict lookup, no extra hop, no lookup by prefix at call time). The names follow
``docs/design-notes/mount-and-gateway.md``, which gives the sources:

* tools and prompts: ``{prefix}_{name}`` (``weather_forecast``): valid under the spec's tool
  names (SEP-986: 1 to 128 of ``A-Za-z0-9_-.``) and under the model APIs' stricter
  ``^[a-zA-Z0-9_-]{1,64}$``, and what FastMCP's ``mount`` makes. A name over 128 characters is
  refused at mount time; over 64, a warning (model APIs, and hosts' own prefixes, eat into it);
* resources and templates: ``{prefix}+{URI}`` (``weather+data://cities/{id}``): a valid URI
  (RFC 3986 allows ``+`` in a scheme), reversible at the first ``+``, template variables
  untouched, and never a different real URL (FastMCP's path form turns
  ``https://api.example.com/x`` into ``https://weather/api.example.com/x``). Their ``name``s
  become ``{prefix}_{name}``; titles stay;
* completions follow their prompt or template; custom methods are not mounted (they are one
  server's protocol extension, not something offered by name).

A prefix is ``[A-Za-z0-9-]{1,32}`` (no ``_``, no ``.``), so a person reads ``weather_forecast``
as prefix and name unambiguously; the separator may be ``.`` (the spec's ``admin.tools.list``
style). A name the host already has is refused at mount time, naming both sides.

The mounted server's scopes travel with its definitions; its middleware is carried on them
(``MountedFrom``) and run by the serving layer around calls of them.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Iterable
from typing import Any

import msgspec
from msgspec.structs import replace

from ._registry import MountedFrom, Registry, RegistryKeys, compile_template

logger = logging.getLogger("mcp_trio.mount")

#: What a prefix may be: letters, digits and ``-``, 1 to 32 of them.
PREFIX = re.compile(r"[A-Za-z0-9-]{1,32}\Z")
#: The separators between prefix and name: ``_`` (the default) or ``.``.
SEPARATORS = ("_", ".")
#: The longest name the 2025-11-25 specification allows a tool (SEP-986): longer is refused.
MAX_NAME_LENGTH = 128
#: The longest tool name model function-calling APIs commonly accept: longer is warned about.
MODEL_NAME_LENGTH = 64
#: Resource URIs and templates are mounted as ``{prefix}{URI_SEPARATOR}{URI}``.
URI_SEPARATOR = "+"


class MountError(ValueError):
    """A mount that cannot be made (a bad prefix, a name clash, a name too long), in one line."""


def check_prefix(prefix: str | None, separator: str) -> None:
    if separator not in SEPARATORS:
        raise MountError(f"separator must be one of {', '.join(map(repr, SEPARATORS))}, not {separator!r}")
    if prefix is not None and not PREFIX.match(prefix):
        raise MountError(f"prefix {prefix!r}: use 1 to 32 letters, digits or '-' (no '_' or '.', so a prefixed name "
                         "splits at its first separator)")


class Mount:
    """One mounted source in a host: how its names are made, and which names it holds now.

    ``source`` is what is mounted (a ``Server``; a remote upstream's definitions come from the
    gateway). ``scopes`` and ``tags`` are added to every mounted definition (switching the
    tag off switches the whole mount off).
    """

    def __init__(self, source: Any, prefix: str | None, *, separator: str = "_", scopes: Iterable[str] = (),
                 tags: Iterable[str] = (), remote: bool = False) -> None:
        check_prefix(prefix, separator)
        self.source = source
        #: True for a remote server (``Remote``): the gateway lists and forwards it.
        self.remote = remote
        self.prefix = prefix
        self.separator = separator
        self.scopes = frozenset((scopes,) if isinstance(scopes, str) else scopes)
        self.tags = frozenset((tags,) if isinstance(tags, str) else tags)
        #: What this mount holds in its host's registry now (replaced as a whole on a change).
        self.keys = RegistryKeys()
        self._warned: set[str] = set()

    @property
    def label(self) -> str:
        name = getattr(self.source, "name", None) or getattr(self.source, "label", None) or type(self.source).__name__
        return f"mount {self.prefix!r} ({name})" if self.prefix else f"mount of {name}"

    # -- names --------------------------------------------------------------------------------
    def name(self, name: str) -> str:
        """A tool's, prompt's, resource's or template's name as the host lists it."""
        return f"{self.prefix}{self.separator}{name}" if self.prefix else name

    def uri(self, uri: str) -> str:
        """A resource URI (or URI template) as the host serves it."""
        return f"{self.prefix}{URI_SEPARATOR}{uri}" if self.prefix else uri

    def original_uri(self, uri: str) -> str | None:
        """The source's URI for a host URI of this mount; None when it is not one."""
        if not self.prefix:
            return uri
        head = f"{self.prefix}{URI_SEPARATOR}"
        return uri[len(head):] if uri.startswith(head) else None

    def checked_name(self, kind: str, original: str) -> str:
        """The mounted name of tool or prompt ``original``; over ``MAX_NAME_LENGTH`` is refused."""
        name = self.name(original)
        if len(name) > MAX_NAME_LENGTH:
            raise MountError(f"{self.label}: {kind} name {name[:40]!r}... is {len(name)} characters, over the "
                             f"{MAX_NAME_LENGTH} the specification allows: use a shorter prefix, or rename {original!r}")
        if kind == "tool" and len(name) > MODEL_NAME_LENGTH and name not in self._warned:
            self._warned.add(name)
            logger.warning("%s: tool name %r is %d characters; model APIs commonly accept %d at most", self.label,
                           name, len(name), MODEL_NAME_LENGTH)
        return name

    # -- definitions ------------------------------------------------------------------------
    def prefixed(self, registry: Registry) -> Registry:
        """``registry``'s tools, resources, templates, prompts and completions under this
        mount's names, each carrying the source's middleware (``MountedFrom``)."""
        chain = tuple(registry.middleware)
        scopes, tags = self.scopes, self.tags
        out = Registry()
        for tool in registry.tools.values():
            name = self.checked_name("tool", tool.name)
            wire = msgspec.structs.replace(tool.wire, name=name)
            all_tags = tool.tags | tags
            if tags:
                meta = dict(wire.meta) if isinstance(wire.meta, dict) else {}
                meta["tags"] = sorted(all_tags)
                wire = msgspec.structs.replace(wire, meta=meta)
            out = out.with_tool(replace(tool, name=name, wire=wire, scopes=tool.scopes | scopes, tags=all_tags, enabled=True,
                                        parser=_renamed(tool.parser, f"tool {name!r}"),
                                        mount=MountedFrom.of(self.prefix, tool.name, chain, tool.mount)))
        for resource in registry.resources.values():
            uri = self.uri(resource.uri)
            wire = msgspec.structs.replace(resource.wire, uri=uri, name=self.name(resource.wire.name))
            out = out.with_resource(replace(resource, uri=uri, wire=wire, scopes=resource.scopes | scopes,
                                            mount=MountedFrom.of(self.prefix, resource.uri, chain, resource.mount)))
        for template in registry.templates:
            uri = self.uri(template.uri_template)
            pattern, variables = compile_template(uri)
            wire = msgspec.structs.replace(template.wire, uri_template=uri, name=self.name(template.wire.name))
            out = out.with_template(replace(template, uri_template=uri, pattern=pattern, variables=variables, wire=wire,
                                            scopes=template.scopes | scopes,
                                            mount=MountedFrom.of(self.prefix, template.uri_template, chain, template.mount)))
        for prompt in registry.prompts.values():
            name = self.checked_name("prompt", prompt.name)
            wire = msgspec.structs.replace(prompt.wire, name=name)
            out = out.with_prompt(replace(prompt, name=name, wire=wire, scopes=prompt.scopes | scopes,
                                          mount=MountedFrom.of(self.prefix, prompt.name, chain, prompt.mount)))
        for (kind, ref, argument), completion in registry.completions.items():
            mounted = self.name(ref) if kind == "ref/prompt" else self.uri(ref)
            out = out.with_completion((kind, mounted, argument), completion)
        return out

    def check(self, host: Registry, mounted: Registry) -> None:
        """Refuse ``mounted`` when a name of it is already the host's (or another mount's)."""
        clashes = mounted.keys().clashes(host.keys().minus(self.keys))
        if clashes:
            raise MountError(f"{self.label}: already defined in this server: {', '.join(clashes)}; "
                             "mount it under another prefix")


def _renamed(parser: Any, owner: str) -> Any:
    """A tool's argument parser naming the tool as the host lists it in its errors
    (``invalid arguments for tool 'weather_forecast'``): a shallow copy, the compiled
    validator shared."""
    if not hasattr(parser, "owner"):
        return parser
    renamed = copy.copy(parser)
    renamed.owner = owner
    validator = getattr(parser, "validator", None)  # a schema-defined tool's
    if validator is not None and hasattr(validator, "owner"):
        renamed.validator = copy.copy(validator)
        renamed.validator.owner = owner
    return renamed
