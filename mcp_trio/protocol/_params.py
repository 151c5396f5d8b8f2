"""Params of each request method, decoded once into their type, with the right JSON-RPC error.

A request's ``params`` stay ``msgspec.Raw`` until the method is known; then they are decoded
here, once, into the method's struct, which travels with the request (``serving._request.InFlight``)
to admission (which reads the tool's name from it), middleware and the handler.

A 2026-07-28 (stateless) request also carries its envelope in ``params._meta`` and, on a retry,
``inputResponses`` and ``requestState``. ``STATELESS_PARAMS`` are the same structs widened by
those fields (subclasses, so handlers read them the same way): the era decision
(``protocol._era``) decodes a stateless request's params with them, envelope and all, in one
pass. Handshake-era requests are decoded with the plain structs, so what they accept is
unchanged.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from msgspec import UNSET, Raw, UnsetType, field

from ._errors import InvalidParams, PeerError
from ._jsonrpc import Notification
from ._types import (
    CallToolParams,
    CancelledParams,
    CompleteParams,
    GetPromptParams,
    InitializeParams,
    PaginatedParams,
    ReadResourceParams,
    RequestMeta,
    SetLevelParams,
    SubscribeParams,
    Wire,
)

T = TypeVar("T")

PROTOCOL_VERSION_KEY = "io.modelcontextprotocol/protocolVersion"
CLIENT_CAPABILITIES_KEY = "io.modelcontextprotocol/clientCapabilities"
CLIENT_INFO_KEY = "io.modelcontextprotocol/clientInfo"
LOG_LEVEL_KEY = "io.modelcontextprotocol/logLevel"


class _Decoders:
    """One reusable decoder per params type, built on first use (immutable afterwards)."""

    def __init__(self) -> None:
        self._by_type: dict[type, msgspec.json.Decoder[Any]] = {}

    def get(self, tp: type[T]) -> msgspec.json.Decoder[T]:
        decoder = self._by_type.get(tp)
        if decoder is None:
            decoder = self._by_type[tp] = msgspec.json.Decoder(tp)
        return decoder


_decoders = _Decoders()


def decode_params(raw: Raw | None, tp: type[T], method: str) -> T:
    """Decode ``params`` into ``tp``; a mismatch is ``InvalidParams`` saying where and why."""
    try:
        return _decoders.get(tp).decode(b"{}" if raw is None else raw)
    except msgspec.ValidationError as exc:
        raise InvalidParams(f"invalid params for {method}: {exc}") from None
    except msgspec.DecodeError as exc:  # pragma: no cover - the envelope was already valid JSON
        raise InvalidParams(f"invalid params for {method}: {exc}") from None


def decode_result(raw: Any, tp: type[T], method: str) -> T:
    """Decode the client's answer to one of our requests."""
    try:
        return _decoders.get(tp).decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise PeerError(f"the client's answer to {method} is invalid: {exc}") from None


def cancelled_request_id(note: Notification) -> int | str | None:
    """The request a ``notifications/cancelled`` names (None when it names none we can read)."""
    try:
        params = _decoders.get(CancelledParams).decode(b"{}" if note.params is None else note.params)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    request_id = params.request_id
    return request_id if isinstance(request_id, (int, str)) else None


# -- the structs of each method ----------------------------------------------------------------
class EmptyParams(Wire):
    """Params of a method that takes none (``ping``): anything given is ignored."""


class TaskParams(Wire):
    """``tasks/get``, ``tasks/update``, ``tasks/cancel``: the task and, for update, the answers."""

    task_id: Any = field(default=UNSET, name="taskId")
    input_responses: dict[str, Raw] | UnsetType = UNSET


class SubscriptionFilter(Wire):
    tools_list_changed: bool | UnsetType = UNSET
    prompts_list_changed: bool | UnsetType = UNSET
    resources_list_changed: bool | UnsetType = UNSET
    resource_subscriptions: list[str] | UnsetType = UNSET


class ListenParams(Wire):
    notifications: SubscriptionFilter = field(default_factory=SubscriptionFilter)


#: Method -> the struct its params decode into (handshake era; the stateless era's below).
PARAMS: dict[str, type] = {
    "initialize": InitializeParams,
    "ping": EmptyParams,
    "logging/setLevel": SetLevelParams,
    "tools/list": PaginatedParams,
    "tools/call": CallToolParams,
    "resources/list": PaginatedParams,
    "resources/templates/list": PaginatedParams,
    "resources/read": ReadResourceParams,
    "resources/subscribe": SubscribeParams,
    "resources/unsubscribe": SubscribeParams,
    "prompts/list": PaginatedParams,
    "prompts/get": GetPromptParams,
    "completion/complete": CompleteParams,
    "server/discover": EmptyParams,
    "subscriptions/listen": ListenParams,
    "tasks/get": TaskParams,
    "tasks/update": TaskParams,
    "tasks/cancel": TaskParams,
}


# -- the stateless era's widening --------------------------------------------------------------
class StatelessMeta(RequestMeta):
    """``params._meta`` of a 2026-07-28 request: the progress token and the envelope, as sent
    (judged by ``protocol._envelope``: a wrong type here is a ladder error there, not a decode error)."""

    protocol_version: Any = field(default=UNSET, name=PROTOCOL_VERSION_KEY)
    capabilities: Any = field(default=UNSET, name=CLIENT_CAPABILITIES_KEY)
    client_info: Any = field(default=UNSET, name=CLIENT_INFO_KEY)
    log_level: Any = field(default=UNSET, name=LOG_LEVEL_KEY)


class EnvelopeOnly(Wire):
    """Just ``params._meta``: for methods whose struct is not known here (custom methods) and
    for finding the envelope's error when the method's struct did not fit."""

    meta: StatelessMeta | UnsetType = field(default=UNSET, name="_meta")


class _Retry(Wire):
    input_responses: Raw | UnsetType = UNSET
    request_state: Any = UNSET


def _widened(base: type, retry: bool = False) -> type:
    """``base`` with ``_meta`` read as ``StatelessMeta`` (and, for the methods that may need
    input, ``inputResponses``/``requestState``)."""
    namespace: dict[str, Any] = {"__annotations__": {"meta": StatelessMeta | UnsetType}, "meta": field(default=UNSET, name="_meta")}
    if retry:
        namespace["__annotations__"].update(input_responses=Raw | UnsetType, request_state=Any)
        namespace.update(input_responses=field(default=UNSET, name="inputResponses"),
                         request_state=field(default=UNSET, name="requestState"))
    return type(f"Stateless{base.__name__}", (base,), namespace)


#: Method -> the struct a stateless request's params decode into, envelope included.
STATELESS_PARAMS: dict[str, type] = {
    method: _widened(tp, retry=method in ("tools/call", "prompts/get", "resources/read"))
    for method, tp in PARAMS.items()
    if method not in ("initialize", "ping", "logging/setLevel", "resources/subscribe", "resources/unsubscribe")
}


def params_type(method: str, stateless: bool) -> type | None:
    """The struct ``method``'s params decode into in that era; None for a method not defined here."""
    return (STATELESS_PARAMS if stateless else PARAMS).get(method)


def decode_stateless(method: str, raw: Raw | None) -> tuple[Any, Any]:
    """``(params, meta)`` of a stateless request: the method's widened struct (None when it does
    not fit, or the method is not defined here: the handler's decode then says why) and its
    ``_meta`` (``UNSET`` when absent, None when not an object)."""
    tp = STATELESS_PARAMS.get(method)
    data = b"{}" if raw is None else raw
    if tp is not None:
        try:
            params = _decoders.get(tp).decode(data)
            return params, params.meta
        except (msgspec.ValidationError, msgspec.DecodeError):
            pass
    try:
        return None, _decoders.get(EnvelopeOnly).decode(data).meta
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None, None  # params or _meta is not an object: as good as no _meta


def retry_of(params: Any) -> tuple[dict[str, Raw] | None, str | None]:
    """``(inputResponses, requestState)`` of a decoded stateless input method's params, each
    None when absent; ``-32602`` when malformed."""
    responses: dict[str, Raw] | None = None
    given = getattr(params, "input_responses", UNSET)
    if given is not UNSET:
        try:
            responses = _decoders.get(dict[str, Raw]).decode(given)
        except (msgspec.ValidationError, msgspec.DecodeError):
            raise InvalidParams("inputResponses must be an object mapping input request keys to responses") from None
    state = getattr(params, "request_state", UNSET)
    if state is UNSET:
        state = None
    elif not isinstance(state, str):
        raise InvalidParams("requestState must be a string (as the server sent it)")
    return responses, state
