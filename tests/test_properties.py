"""Property tests of the codec: whatever arrives, ``decode`` answers with a message or a
``Malformed``, never an exception, and ids survive the trip from request to response exactly."""

from __future__ import annotations

from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcp_trio.protocol import (
    INVALID_REQUEST,
    PARSE_ERROR,
    ErrorResponse,
    Malformed,
    MessageCodec,
    Notification,
    Request,
    Response,
)

CODEC = MessageCodec(max_size=1 << 20)
ACCEPTED = (Request, Notification, Response, ErrorResponse, Malformed)

fast = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=20,
)
envelope_keys = st.sampled_from(["jsonrpc", "id", "method", "params", "result", "error"])
#: Objects built from the envelope's own keys with arbitrary values: the interesting near-misses.
near_messages = st.dictionaries(envelope_keys | st.text(max_size=4), json_values, max_size=6)
request_ids = st.integers() | st.text()
methods = st.text(min_size=1)


def check_decoded(result: Any) -> None:
    assert isinstance(result, ACCEPTED), result
    if isinstance(result, Malformed):
        assert result.error.code in (PARSE_ERROR, INVALID_REQUEST)
        assert result.id is None or (isinstance(result.id, (int, str)) and not isinstance(result.id, bool))
        # What we answer with must itself be a valid error response.
        back = CODEC.decode(CODEC.encode(result))
        assert isinstance(back, ErrorResponse)
        assert back.id == result.id and back.error.code == result.error.code


@fast
@given(st.binary(max_size=256))
def test_any_bytes_decode_without_raising(data: bytes) -> None:
    check_decoded(CODEC.decode(data))


@fast
@given(st.binary(max_size=64), st.binary(max_size=64))
def test_bytes_spliced_into_a_request_decode_without_raising(prefix: bytes, suffix: bytes) -> None:
    check_decoded(CODEC.decode(prefix + b'{"jsonrpc":"2.0","id":1,"method":"m","params":' + suffix))
    check_decoded(CODEC.decode(b'{"jsonrpc":"2.0","id":' + prefix + b',"method":"m"}' + suffix))


@fast
@given(json_values)
def test_any_json_value_decodes_without_raising(value: Any) -> None:
    check_decoded(CODEC.decode(msgspec.json.encode(value)))


@fast
@given(near_messages)
def test_near_miss_objects_decode_without_raising(value: dict[str, Any]) -> None:
    result = CODEC.decode(msgspec.json.encode(value))
    check_decoded(result)
    if value.get("jsonrpc") != "2.0":
        assert isinstance(result, Malformed)


@fast
@given(request_ids, methods, st.none() | json_values)
def test_request_id_round_trips_exactly_into_the_response(rid: int | str, method: str, params: Any) -> None:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
    if params is not None:
        message["params"] = params
    request = CODEC.decode(msgspec.json.encode(message))
    assert isinstance(request, Request), request
    assert type(request.id) is type(rid) and request.id == rid
    assert request.method == method
    if params is None:
        assert request.params is None
    else:
        assert msgspec.json.decode(request.params) == params

    reply = msgspec.json.decode(CODEC.encode(Response(request.id, {"ok": True})))
    assert reply == {"jsonrpc": "2.0", "id": rid, "result": {"ok": True}}
    assert type(reply["id"]) is type(rid)
    assert list(reply) == ["jsonrpc", "id", "result"]


@fast
@given(methods, json_values)
def test_notification_round_trips(method: str, params: Any) -> None:
    data = msgspec.json.encode({"jsonrpc": "2.0", "method": method, "params": params})
    note = CODEC.decode(data)
    assert isinstance(note, Notification)
    assert note.method == method
    assert msgspec.json.decode(CODEC.encode(note)) == {"jsonrpc": "2.0", "method": method, "params": params}


@fast
@given(request_ids, st.integers(min_value=-(2**31), max_value=2**31), st.text(), st.none() | json_values)
def test_error_response_round_trips(rid: int | str, code: int, message: str, data: Any) -> None:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    wire = msgspec.json.encode({"jsonrpc": "2.0", "id": rid, "error": error})
    decoded = CODEC.decode(wire)
    assert isinstance(decoded, ErrorResponse)
    assert decoded.id == rid and decoded.error.code == code and decoded.error.message == message
    assert CODEC.encode(decoded) == wire
