"""JSON-RPC 2.0 envelopes: bytes in, typed messages out, and back.

Sans-io like h11: ``MessageCodec.decode`` never raises on bad input, it returns a
``Malformed`` carrying the JSON-RPC error to answer with (and the request id when one could be
salvaged), so a reader can answer garbage and go on. ``params`` and ``result`` stay
``msgspec.Raw`` until the method is known, so each is decoded once, straight into its type.
"""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import UNSET, Raw, UnsetType

from ._errors import BatchRefused, InvalidRequest, McpError, ParseError

RequestId = int | str


class Request(msgspec.Struct, frozen=True):
    """A call that wants an answer. ``params`` is ``None`` when the message had none."""

    id: RequestId
    method: str
    params: Raw | None = None


class Notification(msgspec.Struct, frozen=True):
    """A one-way message: no ``id``, never answered."""

    method: str
    params: Raw | None = None


class ErrorObject(msgspec.Struct, frozen=True, omit_defaults=True):
    code: int
    message: str
    data: Any = None


class Response(msgspec.Struct, frozen=True):
    """A successful answer; ``result`` is ``Raw`` when decoded, any encodable value when sent."""

    id: RequestId
    result: Any


class ErrorResponse(msgspec.Struct, frozen=True):
    """An error answer. ``id`` is ``None`` only when the request's id could not be read."""

    id: RequestId | None
    error: ErrorObject


class Malformed(msgspec.Struct, frozen=True):
    """Input that is not a valid message; answer it with ``error`` (to ``id`` if known)."""

    id: RequestId | None
    error: McpError


class BatchReply(msgspec.Struct, frozen=True):
    """The replies to one JSON-RPC batch's requests, each already encoded: sent as one array."""

    frames: list[bytes]


Message = Request | Notification | Response | ErrorResponse


class _Envelope(msgspec.Struct):
    """Every field a JSON-RPC object may have; classification happens after decoding."""

    jsonrpc: str | UnsetType = UNSET
    id: int | str | None | UnsetType = UNSET
    method: str | UnsetType = UNSET
    params: Raw | UnsetType = UNSET
    result: Raw | UnsetType = UNSET
    error: ErrorObject | UnsetType = UNSET


class _IdOnly(msgspec.Struct):
    """Used to salvage the id of an otherwise invalid request, so the error reaches its caller."""

    id: Any = None


# Outgoing wire shapes: ``jsonrpc`` first, nothing omitted.
class _OutRequest(msgspec.Struct, kw_only=True):
    jsonrpc: str = "2.0"
    id: RequestId
    method: str
    params: Any = UNSET


class _OutNotification(msgspec.Struct, kw_only=True):
    jsonrpc: str = "2.0"
    method: str
    params: Any = UNSET


class _OutResponse(msgspec.Struct, kw_only=True):
    jsonrpc: str = "2.0"
    id: RequestId
    result: Any


class _OutError(msgspec.Struct, kw_only=True):
    jsonrpc: str = "2.0"
    id: RequestId | None
    error: ErrorObject


def error_object(error: McpError) -> ErrorObject:
    return ErrorObject(error.code, error.message, error.data)



def is_batch(data: bytes) -> bool:
    """Whether ``data`` is a JSON array: a JSON-RPC batch (or garbage shaped like one)."""
    return data.lstrip()[:1] == b"["


_BATCH = msgspec.json.Decoder(list[Raw])


class MessageCodec:
    """One reusable decoder and encoder. Cheap to build; build one per connection."""

    __slots__ = ("_decoder", "_id_decoder", "_encoder", "max_size")

    def __init__(self, max_size: int | None = None) -> None:
        self._decoder = msgspec.json.Decoder(_Envelope)
        self._id_decoder = msgspec.json.Decoder(_IdOnly)
        self._encoder = msgspec.json.Encoder()
        self.max_size = max_size

    # -- decoding -------------------------------------------------------------------------
    def decode(self, data: bytes) -> Message | Malformed:
        """Classify one whole message. Never raises on any input."""
        if self.max_size is not None and len(data) > self.max_size:
            return Malformed(None, InvalidRequest(f"message of {len(data)} bytes exceeds the limit of {self.max_size} bytes"))
        # msgspec checks UTF-8 only in strings it decodes: bytes inside ``params``/``result``
        # (kept Raw) or skipped fields would pass here and raise UnicodeDecodeError later, in a
        # handler, as an internal error. JSON text must be UTF-8 (RFC 8259 8.1): refuse it here.
        # ``isascii`` is a ~20 ns fast path for the usual all-ASCII message.
        if not data.isascii():
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                return Malformed(None, ParseError("parse error: message is not valid UTF-8"))
        try:
            env = self._decoder.decode(data)
        except msgspec.ValidationError as exc:
            stripped = data.lstrip()
            if stripped[:1] == b"[":
                return Malformed(None, BatchRefused("batch requests are not supported; send one JSON-RPC object per message"))
            if stripped[:1] != b"{":
                return Malformed(None, InvalidRequest("a JSON-RPC message must be a JSON object"))
            return Malformed(self._salvage_id(data), InvalidRequest(f"invalid JSON-RPC message: {exc}"))
        except msgspec.DecodeError as exc:
            return Malformed(None, ParseError(f"parse error: {exc}"))
        except UnicodeDecodeError:
            return Malformed(None, ParseError("parse error: message is not valid UTF-8"))
        except RecursionError:
            return Malformed(None, ParseError("parse error: JSON nested too deeply"))
        return self._classify(env)

    def split_batch(self, data: bytes, max_items: int) -> list[tuple[bytes, Message | Malformed]] | Malformed:
        """A JSON-RPC batch's messages, each as its bytes and its classification (``decode``'s),
        in order; or the one ``Malformed`` that refuses the whole batch: not a JSON array, an
        empty one (JSON-RPC 2.0 section 6), or more than ``max_items`` messages. An element
        that is itself an array is refused alone: batches do not nest."""
        if self.max_size is not None and len(data) > self.max_size:
            return Malformed(None, InvalidRequest(f"message of {len(data)} bytes exceeds the limit of {self.max_size} bytes"))
        try:
            items = _BATCH.decode(data)
        except msgspec.ValidationError:
            return Malformed(None, InvalidRequest("a JSON-RPC batch must be an array of JSON-RPC objects"))
        except msgspec.DecodeError as exc:
            return Malformed(None, ParseError(f"parse error: {exc}"))
        except (UnicodeDecodeError, RecursionError):
            return Malformed(None, ParseError("parse error: batch is not valid UTF-8 JSON"))
        if not items:
            return Malformed(None, InvalidRequest("an empty JSON-RPC batch"))
        if len(items) > max_items:
            return Malformed(None, InvalidRequest(f"a JSON-RPC batch of {len(items)} messages exceeds the limit of "
                                                  f"{max_items} (max_batch_size); send it in smaller batches"))
        out: list[tuple[bytes, Message | Malformed]] = []
        for item in items:
            element = bytes(item)
            if is_batch(element):
                out.append((element, Malformed(None, InvalidRequest("a JSON-RPC batch may not hold another batch"))))
            else:
                out.append((element, self.decode(element)))
        return out

    def _salvage_id(self, data: bytes) -> RequestId | None:
        try:
            rid = self._id_decoder.decode(data).id
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            return None
        if isinstance(rid, (int, str)) and not isinstance(rid, bool):
            return rid
        return None

    @staticmethod
    def _classify(env: _Envelope) -> Message | Malformed:
        rid = env.id
        if env.jsonrpc != "2.0":
            return Malformed(None if rid is UNSET else rid, InvalidRequest('"jsonrpc" must be exactly "2.0"'))
        params = None if env.params is UNSET else env.params
        if env.method is not UNSET:
            if rid is UNSET:
                return Notification(env.method, params)
            if rid is None:
                return Malformed(None, InvalidRequest("request id must be a string or an integer, not null"))
            return Request(rid, env.method, params)
        # isinstance, not ``is UNSET``: it narrows the sentinel away for the type checker too.
        result, error = env.result, env.error
        if isinstance(rid, UnsetType) or rid is None and isinstance(error, UnsetType):
            return Malformed(None, InvalidRequest('message has neither "method" nor an "id" with a result'))
        if not isinstance(result, UnsetType) and isinstance(error, UnsetType) and rid is not None:
            return Response(rid, result)
        if not isinstance(error, UnsetType) and isinstance(result, UnsetType):
            return ErrorResponse(rid, error)
        return Malformed(None if rid is None else rid, InvalidRequest('a response needs exactly one of "result" and "error"'))

    # -- encoding -------------------------------------------------------------------------
    def encode(self, message: Message | Malformed | BatchReply) -> bytes:
        """Encode any message; a ``Malformed`` is encoded as the error response it deserves."""
        return self._encoder.encode(self.wire(message))

    @staticmethod
    def wire(message: Message | Malformed | BatchReply) -> Any:
        match message:
            case Response(id=rid, result=result):
                return _OutResponse(id=rid, result=result)
            case ErrorResponse(id=rid, error=error):
                return _OutError(id=rid, error=error)
            case Request(id=rid, method=method, params=params):
                return _OutRequest(id=rid, method=method, params=UNSET if params is None else params)
            case Notification(method=method, params=params):
                return _OutNotification(method=method, params=UNSET if params is None else params)
            case Malformed(id=rid, error=error):
                return _OutError(id=rid, error=error_object(error))
            case BatchReply(frames=frames):
                return Raw(b"[" + b",".join(frames) + b"]")
        raise TypeError(f"not a message: {message!r}")  # pragma: no cover

    def encode_value(self, value: Any) -> bytes:
        return self._encoder.encode(value)
