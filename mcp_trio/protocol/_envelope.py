"""The stateless revision (2026-07-28), sans-io: the per-request envelope and its wire bodies.

A 2026-07-28 request carries what the handshake used to establish once per session in its own
``params._meta``: ``io.modelcontextprotocol/protocolVersion``, ``.../clientCapabilities``,
optionally ``.../clientInfo`` and ``.../logLevel``. Any worker can answer it; nothing is kept
between requests. This module reads that envelope (``decode_envelope`` then ``resolve``, the
rungs of the spec's validation ladder in its order), says which era a request belongs to
(``looks_stateless``; ``protocol._era`` makes the decision), and shapes 2026-07-28 results (``ResultStamp``: ``resultType``, the
``serverInfo`` stamp, ``ttlMs``/``cacheScope``) by splicing bytes in front of the encoded
body, so handshake-era results and the handlers that build them are untouched.

Era detection, per request (the spec's probe rules, both eras on one connection or port):

* ``initialize`` is the handshake, always;
* ``server/discover`` and ``subscriptions/listen`` exist only in the stateless revision: they
  take the stateless path even when their envelope is missing (and are refused for it with
  ``-32602``, which a probing client reads as "stateless server, bad request");
* any other request is stateless when its params mention the protocol-version key, which a
  ``bytes`` search finds in tens of nanoseconds; a hit is confirmed by decoding ``_meta``,
  so a tool argument that merely contains the text stays in the handshake era.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from msgspec import UNSET, Raw, UnsetType, field

from ._errors import InvalidParams, UnsupportedProtocolVersion
from ._params import (
    CLIENT_CAPABILITIES_KEY,
    CLIENT_INFO_KEY,
    LOG_LEVEL_KEY,
    PROTOCOL_VERSION_KEY,
    EnvelopeOnly,
)
from ._session import ClientProfile
from ._types import LOG_LEVELS, Implementation, Wire
from ._versions import ALL_VERSIONS, STATELESS_VERSIONS

SERVER_INFO_KEY = "io.modelcontextprotocol/serverInfo"
SUBSCRIPTION_ID_KEY = "io.modelcontextprotocol/subscriptionId"

#: Requests the stateless revision defines. Anything else in that era is ``-32601``: the
#: handshake-era ``initialize``, ``ping``, ``logging/setLevel``, ``resources/(un)subscribe``
#: were removed from it (HTTP: 404).
STATELESS_METHODS = frozenset({
    "server/discover", "subscriptions/listen",
    "tools/list", "tools/call",
    "resources/list", "resources/templates/list", "resources/read",
    "prompts/list", "prompts/get",
    "completion/complete",
    # the tasks extension (io.modelcontextprotocol/tasks); tasks/result and tasks/list are gone
    "tasks/get", "tasks/update", "tasks/cancel",
})
#: Methods that exist in the stateless revision only: always routed there.
STATELESS_ONLY_METHODS = frozenset({"server/discover", "subscriptions/listen"})
#: Methods whose result may be an ``InputRequiredResult`` (and whose retry carries
#: ``inputResponses``/``requestState``).
INPUT_METHODS = frozenset({"tools/call", "prompts/get", "resources/read"})
#: Methods whose results carry ``ttlMs`` and ``cacheScope`` (SEP-2549).
CACHEABLE_METHODS = frozenset({
    "server/discover", "tools/list", "prompts/list", "resources/list", "resources/templates/list", "resources/read",
})

_search_version_key = re.compile(re.escape(PROTOCOL_VERSION_KEY.encode())).search


def looks_stateless(method: str, params: Raw | None) -> bool:
    """Whether a request (not ``initialize``) takes the stateless path: cheap, may say yes
    wrongly (``decode_envelope`` then tells), never no wrongly."""
    if params is not None and _search_version_key(params) is not None:
        return True
    return method in STATELESS_ONLY_METHODS


_params_decoder = msgspec.json.Decoder(EnvelopeOnly)


class RawEnvelope(msgspec.Struct, frozen=True):
    """The envelope as sent: present, not yet judged (HTTP compares it with its headers first)."""

    protocol_version: Any
    capabilities: Any
    client_info: Any
    log_level: Any

    def resolve(self) -> Envelope:
        """The last rungs: the version is a string we serve statelessly, the rest well formed."""
        version = self.protocol_version
        if not isinstance(version, str):
            raise InvalidParams(f"params._meta[{PROTOCOL_VERSION_KEY!r}] must be a string")
        if version not in STATELESS_VERSIONS:
            raise UnsupportedProtocolVersion(
                f"unsupported protocol version {version!r}: send initialize for a handshake revision, "
                f"or one of {', '.join(STATELESS_VERSIONS)} in params._meta",
                {"supported": list(ALL_VERSIONS), "requested": version},
            )
        if not isinstance(self.capabilities, dict):
            raise InvalidParams(f"params._meta[{CLIENT_CAPABILITIES_KEY!r}] must be an object")
        info = _client_info(self.client_info)
        level = self.log_level
        if level is UNSET or level is None:
            level = None
        elif level not in LOG_LEVELS:
            raise InvalidParams(f"params._meta[{LOG_LEVEL_KEY!r}] must be one of {', '.join(LOG_LEVELS)}")
        return Envelope(ClientProfile(version, self.capabilities, info), level)


_ANONYMOUS_CLIENT = Implementation(name="")


def _client_info(value: Any) -> Implementation:
    if value is UNSET or value is None:
        return _ANONYMOUS_CLIENT  # clientInfo is a SHOULD: a request without it is served
    try:
        return msgspec.convert(value, Implementation)
    except msgspec.ValidationError as exc:
        raise InvalidParams(f"params._meta[{CLIENT_INFO_KEY!r}] is not an Implementation: {exc}") from None


class Envelope(msgspec.Struct, frozen=True):
    """One stateless request's client: who, what it can do, and the log level it asked for."""

    profile: ClientProfile
    #: Minimum level of ``notifications/message`` wanted; None: send none (the client did not ask).
    log_level: str | None = None

    def wants_log(self, level: str) -> bool:
        threshold = self.log_level
        return threshold is not None and LOG_LEVELS.index(level) >= LOG_LEVELS.index(threshold)


def decode_envelope(params: Raw | None, *, required: bool = True) -> RawEnvelope | None:
    """The first rung: ``params._meta`` is an object carrying the version and the capabilities.

    ``required=False``: None (a handshake-era request) unless ``_meta`` has the version key.
    """
    meta: Any = UNSET
    if params is not None:
        try:
            meta = _params_decoder.decode(params).meta
        except (msgspec.ValidationError, msgspec.DecodeError):
            meta = None  # params or _meta is not an object: as good as no _meta
    return envelope_of(meta, required=required)


def envelope_of(meta: Any, *, required: bool = True) -> RawEnvelope | None:
    """``decode_envelope`` for a ``_meta`` already decoded (``StatelessMeta``, ``UNSET`` when
    absent, None when not an object): the same rungs, the same errors."""
    if not required and (meta is None or meta is UNSET or meta.protocol_version is UNSET):
        return None
    if meta is None or meta is UNSET:
        raise InvalidParams(f"params._meta must be an object carrying {PROTOCOL_VERSION_KEY!r} and "
                            f"{CLIENT_CAPABILITIES_KEY!r} (protocol revision 2026-07-28)")
    missing = [key for key, value in ((PROTOCOL_VERSION_KEY, meta.protocol_version), (CLIENT_CAPABILITIES_KEY, meta.capabilities))
               if value is UNSET]
    if missing:
        raise InvalidParams(f"params._meta is missing {', '.join(repr(k) for k in missing)}")
    return RawEnvelope(meta.protocol_version, meta.capabilities, meta.client_info, meta.log_level)


def has_envelope(params: Raw | None) -> bool:
    """Whether ``params._meta`` really carries the protocol-version key (confirms ``looks_stateless``)."""
    return params is not None and _search_version_key(params) is not None and decode_envelope(params, required=False) is not None


# -- results ----------------------------------------------------------------------------------
class StatelessListChanged(Wire):
    list_changed: bool


class StatelessResources(Wire):
    subscribe: bool
    list_changed: bool


class StatelessCapabilities(Wire):
    tools: StatelessListChanged | UnsetType = UNSET
    resources: StatelessResources | UnsetType = UNSET
    prompts: StatelessListChanged | UnsetType = UNSET
    logging: dict[str, Any] | UnsetType = UNSET
    completions: dict[str, Any] | UnsetType = UNSET
    extensions: dict[str, Any] | UnsetType = UNSET


class DiscoverResult(Wire):
    supported_versions: list[str]
    capabilities: StatelessCapabilities
    instructions: str | UnsetType = UNSET


class InputRequiredResult(Wire):
    result_type: str
    input_requests: dict[str, Any] | UnsetType = UNSET
    request_state: str | UnsetType = UNSET
    meta: dict[str, Any] | UnsetType = field(default=UNSET, name="_meta")


_encode = msgspec.json.encode
_OWN_META = b'{"_meta":{'


class ResultStamp:
    """The fields every 2026-07-28 result carries, spliced in front of an encoded result.

    ``stamp(method, body, scope)`` turns ``{"tools":[...]}`` into ``{"resultType":"complete",
    "ttlMs":0,"cacheScope":"public","_meta":{"io.modelcontextprotocol/serverInfo":{...}},
    "tools":[...]}``: one copy of the bytes, the handler's result encoded once, as before.
    A result with a ``_meta`` of its own encodes it first (``CallToolResult``); the stamp's
    key is merged into it, since a JSON object must not have ``_meta`` twice.
    """

    __slots__ = ("_plain", "_cacheable", "_meta_pair")

    def __init__(self, server_info: Implementation, ttl_ms: int = 0) -> None:
        meta = _encode({SERVER_INFO_KEY: server_info})
        self._meta_pair = meta[1:-1]
        self._plain = b'{"resultType":"complete","_meta":' + meta + b","
        self._cacheable = {
            scope: b'{"resultType":"complete","ttlMs":%d,"cacheScope":"%s","_meta":' % (ttl_ms, scope.encode()) + meta + b","
            for scope in ("public", "private")
        }

    def stamp(self, method: str, body: bytes, scope: str = "public") -> Raw:
        prefix = self._cacheable[scope] if method in CACHEABLE_METHODS else self._plain
        if body == b"{}":
            return Raw(prefix[:-1] + b"}")
        if body.startswith(_OWN_META):
            rest = body[len(_OWN_META):]
            head = prefix[: prefix.index(b'"_meta":')]
            return Raw(head + _OWN_META[1:] + self._meta_pair + (rest if rest.startswith(b"}") else b"," + rest))
        return Raw(prefix + body[1:])
