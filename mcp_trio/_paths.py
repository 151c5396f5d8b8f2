"""Safe types for resource-template variables that name files.

What a template variable receives (``Server.resource("file:///{name}")``): the text the URI
has there, exactly, **not percent-decoded**. ``{name}`` matches one segment (no ``/``, ``?``,
``#``), but that segment may be ``.`` or ``..``; ``{+path}`` matches anything, ``../``
included. A function that turns a variable into a file path must not trust it: annotate the
parameter with one of these types, and a value that could leave the directory is refused with
``-32602`` before the function runs::

    @server.resource("file:///docs/{name}")
    def doc(name: PathSegment) -> str:              # "..", "a/b", "a\\b", "" are refused
        return (DOCS / name).read_text()

    @server.resource("file:///docs/{+path}")
    def nested(path: RelativePath) -> str:          # "../x", "/etc", "a//b", "a/./b" are refused
        return (DOCS / path).read_text()

Both refuse NUL and backslashes (a separator on Windows). A function that percent-decodes a
value itself must check what it decoded, not what it was given.
"""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta

#: One path segment: not empty, not ``.`` or ``..``, no ``/``, ``\`` or NUL.
PathSegment = Annotated[str, Meta(
    pattern=r"^(?!\.\.?$)[^/\\\x00]+$",
    description="one path segment: not empty, '.' or '..', and without '/', '\\' or NUL")]

#: Segments joined by ``/``: relative (no leading ``/``), none empty, ``.`` or ``..``, no ``\`` or NUL.
RelativePath = Annotated[str, Meta(
    pattern=r"^(?:(?!\.\.?/)[^/\\\x00]+/)*(?!\.\.?$)[^/\\\x00]+$",
    description="a relative path: segments joined by '/', none empty, '.' or '..', without '\\' or NUL")]
