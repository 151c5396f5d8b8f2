"""Icons on tools, resources, prompts and the server (revision 2025-11-25, SEP-973), checked
when they are registered.

A client fetches an icon's ``src`` and shows it, so what a server may point it at is narrow:

* ``https:`` URLs (with a host): never ``http:`` (fetched in the clear, it could be swapped on
  the way; a client on an https page would refuse it as mixed content anyway), never
  ``file:``, ``javascript:`` or any other scheme a client might fetch or run locally;
* ``data:`` URIs holding base64 image data (``data:image/png;base64,...``), decoded here once
  to be sure they are, and at most ``MAX_DATA_ICON_BYTES`` decoded (each ``tools/list``
  carries it);
* ``mime_type``, when given, an ``image/`` type; ``sizes`` each ``WxH`` or ``any``; ``theme``
  ``light`` or ``dark``; at most ``MAX_ICONS`` per item.

A mistake is a ``ValueError`` naming the owner and the rule, raised where the icon is
registered, not a client's problem later. Icons are given as ``mcp_trio.Icon`` structs or as
dicts in the wire's spelling (``{"src": ..., "mimeType": ..., "sizes": [...], "theme": ...}``).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import msgspec
from msgspec import UNSET, UnsetType

from ..protocol._types import Icon

#: Icons one tool, resource, prompt or server may list.
MAX_ICONS = 16
#: Largest image a ``data:`` icon may hold, decoded, in bytes (every list result carries it).
MAX_DATA_ICON_BYTES = 256 * 1024
#: The schemes an icon's ``src`` may have.
ICON_SCHEMES = ("https", "data")

_SIZE = re.compile(r"^[1-9][0-9]{0,4}x[1-9][0-9]{0,4}$")
_DATA = re.compile(r"^data:(?P<type>[^;,]*)(?P<params>(?:;[^;,]*)*),(?P<payload>.*)$", re.DOTALL)


def icons_of(icons: Iterable[Icon | Mapping[str, Any]] | None, owner: str) -> list[Icon] | UnsetType:
    """``icons`` checked and as ``Icon`` structs; UNSET for none (nothing is sent)."""
    if icons is None:
        return UNSET
    if isinstance(icons, (str, bytes, Mapping, Icon)):
        raise ValueError(f"{owner}: icons must be a list of icons, not one {type(icons).__name__}")
    checked = [_icon(icon, owner) for icon in icons]
    if len(checked) > MAX_ICONS:
        raise ValueError(f"{owner}: {len(checked)} icons, more than the {MAX_ICONS} allowed")
    return checked if checked else UNSET


def _icon(value: Icon | Mapping[str, Any], owner: str) -> Icon:
    if isinstance(value, Icon):
        icon = value
    elif isinstance(value, Mapping):
        try:
            icon = msgspec.convert(dict(value), Icon)
        except msgspec.ValidationError as exc:
            raise ValueError(f"{owner}: not an icon ({exc}): give src, and optionally mimeType, sizes, theme") from None
    else:
        raise ValueError(f"{owner}: an icon is an mcp_trio.Icon or a dict, not {type(value).__name__}")
    _check_src(icon.src, owner)
    if not isinstance(icon.mime_type, UnsetType) and not icon.mime_type.lower().startswith("image/"):
        raise ValueError(f"{owner}: icon mimeType {icon.mime_type!r} is not an image/ type")
    if not isinstance(icon.sizes, UnsetType):
        for size in icon.sizes:
            if size != "any" and not _SIZE.match(size):
                raise ValueError(f"{owner}: icon size {size!r} is neither WxH (\"48x48\") nor \"any\"")
    if not isinstance(icon.theme, UnsetType) and icon.theme not in ("light", "dark"):  # a struct built by hand
        raise ValueError(f"{owner}: icon theme {icon.theme!r} is neither \"light\" nor \"dark\"")
    return icon


def _check_src(src: str, owner: str) -> None:
    scheme = src.split(":", 1)[0].lower() if ":" in src else ""
    if scheme == "https":
        parts = urlsplit(src)
        if not parts.hostname:
            raise ValueError(f"{owner}: icon src {src[:80]!r} has no host")
        return
    if scheme == "data":
        _check_data(src, owner)
        return
    shown = src if len(src) <= 80 else src[:77] + "..."
    raise ValueError(f"{owner}: icon src {shown!r}: only https: URLs and base64 data: URIs are allowed "
                     f"(a client fetches and shows it)")


def _check_data(src: str, owner: str) -> None:
    match = _DATA.match(src)
    if match is None:
        raise ValueError(f"{owner}: icon src is not a data: URI (data:image/png;base64,...)")
    media = match["type"].strip().lower()
    if not media.startswith("image/"):
        raise ValueError(f"{owner}: a data: icon must hold an image/ type, not {media or 'none'!r}")
    if ";base64" not in match["params"].lower():
        raise ValueError(f"{owner}: a data: icon must be base64 (data:{media};base64,...)")
    payload = match["payload"]
    if len(payload) * 3 // 4 > MAX_DATA_ICON_BYTES + 3:
        raise ValueError(f"{owner}: a data: icon of about {len(payload) * 3 // 4} bytes is larger than "
                         f"{MAX_DATA_ICON_BYTES} (serve it from an https: URL instead)")
    try:
        image = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{owner}: a data: icon's payload is not valid base64") from None
    if not image:
        raise ValueError(f"{owner}: a data: icon holds no data")
