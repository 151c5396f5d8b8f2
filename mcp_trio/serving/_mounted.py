"""Calls of mounted definitions: the mounted server's own middleware runs around them.

A mounted tool, resource or prompt (``Server.mount``) is called as a local one: the host's
admission and middleware, then its handler. When the server it came from has middleware of
its own, that chain runs too, inside the host's, seeing the request as that server names it
(``forecast``, ``data://cities/7``, not ``weather_forecast``, ``weather+data://cities/7``), so
it works unchanged; through nested mounts, each level's chain in turn, outermost first. A
middleware there may change the arguments or short-circuit, as anywhere. A mount with no
middleware at any level costs nothing here: the handlers test ``MountedFrom.middleware_below``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from ..offer._middleware import run_chain, view_type
from ..offer._mount import URI_SEPARATOR
from ..offer._registry import MountedFrom
from ._peer import Peer
from ._request import InFlight


def _as_named_there(params: Any, mount: MountedFrom) -> Any:
    """``params`` (a copy) with the name or URI the mounted server knows."""
    if hasattr(params, "uri"):
        uri = params.uri
        head = f"{mount.prefix}{URI_SEPARATOR}" if mount.prefix else ""
        return msgspec.structs.replace(params, uri=uri[len(head):] if head and uri.startswith(head) else uri)
    return msgspec.structs.replace(params, name=mount.name)


async def through_mounted(peer: Peer, call: InFlight, params: Any, mount: MountedFrom | None,
                          handler: Callable[[Any], Awaitable[Any]]) -> Any:
    """``handler(params)`` inside the middleware of every server ``mount`` passes through;
    ``handler`` gets the params as the innermost chain left them (changed arguments included)."""
    if mount is None or not mount.middleware_below:
        return await handler(params)
    there = _as_named_there(params, mount)
    if not mount.middleware:
        return await through_mounted(peer, call, there, mount.inner, handler)
    envelope = call.envelope
    view = view_type(call.method, False)(call.method, call.id, there, peer.principal, peer.session_id, envelope is not None,
                                        peer.state.client if envelope is None else envelope.profile)

    async def next_level(_peer: Peer, _call: InFlight) -> Any:
        return await through_mounted(peer, call, view.params, mount.inner, handler)

    return await run_chain(mount.middleware, view, next_level, peer, call)
