"""Which era a request belongs to, decided once, in one place, for every transport (sans-io).

Two eras share every port and every connection: the **handshake** era (``initialize`` opens a
session that remembers the client) and the **stateless** era (protocol revision 2026-07-28:
each request carries its own envelope in ``params._meta``). ``decide_era`` is the one decision,
a pure function of what the request carries: its method, its params' bytes and, over HTTP, its
headers. stdio, WebSocket and both kinds of HTTP exchange all ask it.

The rules, first match wins (the spec's probe rules):

1. a request inside a handshake session (a connection that sent ``initialize``, an HTTP
   request naming ``Mcp-Session-Id``) is the handshake era's;
2. over HTTP, an ``MCP-Protocol-Version`` header that names no handshake revision makes it
   stateless (an unknown revision is then refused with ``-32022`` listing what is served);
3. ``initialize`` is the handshake;
4. ``server/discover`` and ``subscriptions/listen`` exist only in the stateless era: stateless,
   even with no envelope (then refused with ``-32602``, which a probing client reads as "a
   stateless server, a bad request");
5. any other request is stateless when its ``params._meta`` carries the protocol-version key:
   a ``bytes`` search finds the key in tens of nanoseconds and a decode confirms it is in
   ``_meta``, so a tool argument that merely contains the text stays in the handshake era.

A stateless request's params are decoded here, once, into the method's struct with the
envelope in it (``protocol._params.STATELESS_PARAMS``); the rungs of the spec's ladder follow
in its order: the envelope is there (``-32602``), the routing headers agree with the body
(``-32020``, HTTP only), the revision is served (``-32022``), the envelope is well formed.
(The tool's ``Mcp-Param-*`` headers are the last rung: they need the tool's schema, so the HTTP
transport checks them once the tool is known.)
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Set
from typing import Any

from msgspec import UNSET, Raw

from ._envelope import STATELESS_ONLY_METHODS, Envelope, envelope_of
from ._errors import McpError
from ._headers import NAME_FIELDS, PROTOCOL_VERSION_HEADER, check_routing_headers
from ._params import PROTOCOL_VERSION_KEY, decode_stateless
from ._versions import SUPPORTED_VERSIONS


class Era(enum.Enum):
    HANDSHAKE = "handshake"
    STATELESS = "stateless"


class EraDecision:
    """What ``decide_era`` found: the era; for a stateless request its envelope and its params
    (decoded, or None when they did not fit the method's struct), or the error refusing it."""

    __slots__ = ("era", "envelope", "params", "error")

    def __init__(self, era: Era, envelope: Envelope | None = None, params: Any = None, error: McpError | None = None) -> None:
        self.era = era
        self.envelope = envelope
        self.params = params
        self.error = error

    @property
    def stateless(self) -> bool:
        return self.era is Era.STATELESS


HANDSHAKE = EraDecision(Era.HANDSHAKE)
_search_version_key = re.compile(re.escape(PROTOCOL_VERSION_KEY.encode())).search
_NO_HEADERS: frozenset[str] = frozenset()


def stateless_version_header(value: str | bytes | None) -> bool:
    """An ``MCP-Protocol-Version`` header value that makes a request stateless (rule 2): any
    value but a handshake revision."""
    if value is None:
        return False
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    return text.strip() not in SUPPORTED_VERSIONS


def decide_era(method: str | None, params: Raw | None, headers: Mapping[str, str] | None = None,
               repeated: Set[str] = _NO_HEADERS, *, in_session: bool = False) -> EraDecision:
    """The era of one request (see the module's docstring for the rules).

    ``method``: None for what is not a request (a notification or a response posted over HTTP,
    a GET or DELETE), decided by the headers alone. ``headers``: lower-case name -> trimmed
    value, and ``repeated`` the names given more than once (HTTP only; None elsewhere).
    ``in_session``: the request belongs to a handshake session (rule 1).
    """
    if in_session:
        return HANDSHAKE
    required = headers is not None and stateless_version_header(headers.get(PROTOCOL_VERSION_HEADER))
    if method is None:
        return EraDecision(Era.STATELESS) if required else HANDSHAKE
    if not required:
        if method == "initialize":
            return HANDSHAKE
        required = method in STATELESS_ONLY_METHODS
        if not required and (params is None or _search_version_key(params) is None):
            return HANDSHAKE
    typed, meta = decode_stateless(method, params)
    try:
        raw = envelope_of(meta, required=required)
        if raw is None:
            return HANDSHAKE  # the key was only mentioned, not in _meta
        if headers is not None:
            field = NAME_FIELDS.get(method)
            named: dict[str, Any] = {}
            if field is not None and typed is not None:
                value = getattr(typed, _ATTRIBUTES.get(field, field), UNSET)
                named[field] = None if value is UNSET else value
            check_routing_headers(headers, set(repeated), method, named, raw.protocol_version)
        return EraDecision(Era.STATELESS, raw.resolve(), typed)
    except McpError as exc:
        return EraDecision(Era.STATELESS, error=exc)


#: The params field a routing header mirrors -> the attribute of the decoded struct.
_ATTRIBUTES = {"taskId": "task_id"}
