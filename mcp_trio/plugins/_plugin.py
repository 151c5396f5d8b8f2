"""``Plugin``: what one plugin module offers (see ``plugins._manager`` for loading).

A plugin is a registrar (``offer._registrar``), like ``Server``: it has every decorator a
server has (``tool``, ``resource``, ``prompt``, ``completion``, ``method``, ``middleware``) and
refuses none of them. It is never served itself: its manager swaps its registry into the host
server's as a whole, so a reload replaces exactly that plugin's definitions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ..offer._registrar import Registrar


class PluginError(Exception):
    """A plugin module that imported but is not a usable plugin (or clashes with another)."""


class Plugin(Registrar):
    """What one plugin module offers: tools, resources, prompts and completions.

    It has every decorator of ``Server`` (``tool``, ``resource``, ``prompt``, ``completion``,
    ``method``, ``middleware``) and records what they register, so the plugin's definitions can be replaced or removed as
    a whole. ``tags`` and ``category`` are applied to each of its tools (tags are added to
    the tool's own; a tool's own category wins). ``name`` defaults to the module's name.
    """

    def __init__(
        self,
        name: str | None = None,
        version: str = "0.0.0",
        *,
        description: str | None = None,
        tags: Iterable[str] = (),
        category: str | None = None,
    ) -> None:
        super().__init__(name or "", version)
        self.description = description
        self.tags = frozenset((tags,) if isinstance(tags, str) else tags)
        self.category = category
        #: The server this plugin is loaded into (set by the loader).
        self.host: Any = None

    def add_tool(self, fn: Callable[..., Any], **options: Any) -> Any:
        if self.tags:
            own = options.get("tags", ())
            options["tags"] = self.tags | frozenset((own,) if isinstance(own, str) else own)
        if self.category is not None and options.get("category") is None:
            options["category"] = self.category
        return super().add_tool(fn, **options)

    def notify_resource_updated(self, uri: str) -> None:
        """Tell the sessions subscribed to ``uri`` on the host server that it changed."""
        if self.host is not None:
            self.host.notify_resource_updated(uri)
