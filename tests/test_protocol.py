"""The sans-io protocol core, pushed through synchronously: codec, version negotiation, session.

No sockets, no trio: bytes in, typed messages out (``MessageCodec.decode``), and back
(``MessageCodec.encode``). Every malformed input must come back as a ``Malformed`` carrying the
JSON-RPC error to answer with, never as an exception.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from mcp_trio.protocol import (
    INVALID_REQUEST,
    LATEST_VERSION,
    PARSE_ERROR,
    SUPPORTED_VERSIONS,
    ClientProfile,
    ErrorObject,
    ErrorResponse,
    InvalidParams,
    InvalidRequest,
    Malformed,
    MessageCodec,
    Notification,
    ParseError,
    Phase,
    Request,
    Response,
    SessionState,
    at_least,
    negotiate_version,
)
from mcp_trio.protocol._types import LOG_LEVELS, Implementation, InitializeParams


@pytest.fixture
def codec() -> MessageCodec:
    return MessageCodec()


def enc(value: Any) -> bytes:
    return msgspec.json.encode(value)


def assert_malformed(result: Any, code: int, rid: Any = None) -> Malformed:
    assert isinstance(result, Malformed), result
    assert result.error.code == code, result
    assert result.id == rid, result
    assert isinstance(result.error.message, str) and result.error.message
    return result


# -- decoding: the four kinds of message ----------------------------------------------------
def test_request_with_int_id(codec: MessageCodec) -> None:
    msg = codec.decode(b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}')
    assert msg == Request(1, "tools/list", None)


def test_request_with_str_id_and_params_kept_raw(codec: MessageCodec) -> None:
    msg = codec.decode(b'{"jsonrpc":"2.0","id":"abc","method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}')
    assert isinstance(msg, Request)
    assert msg.id == "abc"
    assert msg.method == "tools/call"
    assert isinstance(msg.params, msgspec.Raw)
    assert msgspec.json.decode(msg.params) == {"name": "echo", "arguments": {"text": "hi"}}


def test_field_order_does_not_matter(codec: MessageCodec) -> None:
    msg = codec.decode(b'{"params":[1,2],"method":"m","id":-7,"jsonrpc":"2.0"}')
    assert isinstance(msg, Request)
    assert (msg.id, msg.method, bytes(msg.params or b"")) == (-7, "m", b"[1,2]")


def test_request_id_zero_and_empty_string_are_ids(codec: MessageCodec) -> None:
    assert codec.decode(b'{"jsonrpc":"2.0","id":0,"method":"ping"}') == Request(0, "ping")
    assert codec.decode(b'{"jsonrpc":"2.0","id":"","method":"ping"}') == Request("", "ping")


def test_absent_id_is_a_notification(codec: MessageCodec) -> None:
    msg = codec.decode(b'{"jsonrpc":"2.0","method":"notifications/initialized"}')
    assert msg == Notification("notifications/initialized", None)
    msg = codec.decode(b'{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":3}}')
    assert isinstance(msg, Notification)
    assert msgspec.json.decode(msg.params) == {"requestId": 3}


def test_null_id_with_method_is_invalid_request_not_notification(codec: MessageCodec) -> None:
    result = codec.decode(b'{"jsonrpc":"2.0","id":null,"method":"tools/list"}')
    assert_malformed(result, INVALID_REQUEST, None)
    assert "null" in result.error.message


def test_response_keeps_result_raw(codec: MessageCodec) -> None:
    msg = codec.decode(b'{"jsonrpc":"2.0","id":5,"result":{"roots":[]}}')
    assert isinstance(msg, Response)
    assert msg.id == 5
    assert isinstance(msg.result, msgspec.Raw)
    assert bytes(msg.result) == b'{"roots":[]}'


def test_response_with_null_result_is_a_response(codec: MessageCodec) -> None:
    msg = codec.decode(b'{"jsonrpc":"2.0","id":"r","result":null}')
    assert isinstance(msg, Response)
    assert (msg.id, bytes(msg.result)) == ("r", b"null")


def test_error_response(codec: MessageCodec) -> None:
    msg = codec.decode(b'{"jsonrpc":"2.0","id":9,"error":{"code":-1,"message":"user declined","data":{"k":[1]}}}')
    assert msg == ErrorResponse(9, ErrorObject(-1, "user declined", {"k": [1]}))


def test_error_response_with_null_id(codec: MessageCodec) -> None:
    msg = codec.decode(b'{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}')
    assert msg == ErrorResponse(None, ErrorObject(-32700, "parse error"))


def test_response_with_both_result_and_error_is_invalid(codec: MessageCodec) -> None:
    result = codec.decode(b'{"jsonrpc":"2.0","id":4,"result":1,"error":{"code":1,"message":"m"}}')
    assert_malformed(result, INVALID_REQUEST, 4)


def test_id_without_method_result_or_error_is_invalid(codec: MessageCodec) -> None:
    assert_malformed(codec.decode(b'{"jsonrpc":"2.0","id":4}'), INVALID_REQUEST, 4)


def test_result_with_null_id_is_invalid(codec: MessageCodec) -> None:
    assert_malformed(codec.decode(b'{"jsonrpc":"2.0","id":null,"result":1}'), INVALID_REQUEST, None)


def test_empty_object_is_invalid(codec: MessageCodec) -> None:
    assert_malformed(codec.decode(b'{"jsonrpc":"2.0"}'), INVALID_REQUEST, None)


def test_unknown_envelope_fields_are_ignored(codec: MessageCodec) -> None:
    assert codec.decode(b'{"jsonrpc":"2.0","id":1,"method":"ping","extra":{"a":[1]}}') == Request(1, "ping")


# -- decoding: the jsonrpc member ---------------------------------------------------------------
@pytest.mark.parametrize("version", [b'"1.0"', b'"2"', b'"2.0 "', b'""'])
def test_wrong_jsonrpc_version_salvages_id(codec: MessageCodec, version: bytes) -> None:
    result = codec.decode(b'{"jsonrpc":' + version + b',"id":12,"method":"ping"}')
    assert_malformed(result, INVALID_REQUEST, 12)
    assert "2.0" in result.error.message


def test_missing_jsonrpc_salvages_id(codec: MessageCodec) -> None:
    assert_malformed(codec.decode(b'{"id":"x","method":"ping"}'), INVALID_REQUEST, "x")


def test_numeric_jsonrpc_salvages_id(codec: MessageCodec) -> None:
    assert_malformed(codec.decode(b'{"jsonrpc":2.0,"id":3,"method":"ping"}'), INVALID_REQUEST, 3)


def test_missing_jsonrpc_on_notification_has_no_id(codec: MessageCodec) -> None:
    assert_malformed(codec.decode(b'{"method":"notifications/initialized"}'), INVALID_REQUEST, None)


# -- decoding: shapes that are not one JSON-RPC object ----------------------------------------
@pytest.mark.parametrize("data", [b'[{"jsonrpc":"2.0","id":1,"method":"ping"}]', b"[]", b"  [1, 2]"])
def test_batch_is_refused(codec: MessageCodec, data: bytes) -> None:
    result = assert_malformed(codec.decode(data), INVALID_REQUEST, None)
    assert "batch" in result.error.message


@pytest.mark.parametrize("data", [b"42", b'"a string"', b"null", b"true", b"1.5", b' "x"'])
def test_non_object_is_invalid_request(codec: MessageCodec, data: bytes) -> None:
    result = assert_malformed(codec.decode(data), INVALID_REQUEST, None)
    assert "object" in result.error.message


@pytest.mark.parametrize(
    "data",
    [
        b"{bad",
        b'{"jsonrpc":"2.0","id":1,"method":"ping"',
        b'{"jsonrpc":"2.0","id":1,"method":"ping"} trailing',
        b'{"jsonrpc":"2.0",}',
        b"",
        b"   ",
        b"\xef\xbb\xbf{}",  # a byte-order mark is not JSON
        b"NaN",
    ],
)
def test_invalid_json_is_parse_error(codec: MessageCodec, data: bytes) -> None:
    result = assert_malformed(codec.decode(data), PARSE_ERROR, None)
    assert type(result.error) is ParseError


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xfe{}",
        b'{"jsonrpc":"2.0","id":1,"method":"\xff"}',
        b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"text":"\xc3\x28"}}',  # inside Raw params
        b'{"jsonrpc":"2.0","id":1,"method":"ping","unknown":"\xed\xa0\x80"}',  # in a skipped field (a surrogate)
        b'{"\xff":1,"jsonrpc":"2.0","id":1,"method":"ping"}',  # in a key
        b'{"jsonrpc":"2.0","id":1,"result":"\xf8\x88\x80\x80\x80"}',  # inside a Raw result
    ],
)
def test_invalid_utf8_anywhere_is_parse_error(codec: MessageCodec, data: bytes) -> None:
    result = assert_malformed(codec.decode(data), PARSE_ERROR, None)
    assert "UTF-8" in result.error.message


def test_valid_non_ascii_utf8_passes(codec: MessageCodec) -> None:
    msg = codec.decode('{"jsonrpc":"2.0","id":"é","method":"ping","params":{"t":"日本 🎉"}}'.encode())
    assert isinstance(msg, Request)
    assert msg.id == "é"
    assert msgspec.json.decode(msg.params) == {"t": "日本 🎉"}


def test_lone_surrogate_escape_in_id_is_parse_error(codec: MessageCodec) -> None:
    assert_malformed(codec.decode(b'{"jsonrpc":"2.0","id":"\\ud800","method":"ping"}'), PARSE_ERROR, None)


@pytest.mark.parametrize(
    "data",
    [
        b"[" * 100_000,
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 100_000,
        b'{"jsonrpc":"2.0","id":1,"method":"ping","params":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"jsonrpc":"2.0","id":1,"result":' + b'{"a":' * 100_000 + b"1" + b"}" * 100_001,
        b'{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"m","data":' + b"[" * 100_000 + b"]" * 100_000 + b"}}",
    ],
)
def test_deeply_nested_json_is_an_error_not_an_exception(codec: MessageCodec, data: bytes) -> None:
    result = codec.decode(data)
    assert isinstance(result, Malformed)
    assert result.error.code in (PARSE_ERROR, INVALID_REQUEST)
    assert result.id is None


def test_deep_nesting_in_an_invalid_id_does_not_escape_salvage(codec: MessageCodec) -> None:
    # The envelope decoder refuses the id; the id salvager (``id: Any``) must not recurse away.
    data = b'{"jsonrpc":"2.0","method":"ping","id":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert_malformed(codec.decode(data), INVALID_REQUEST, None)


# -- decoding: ids of the wrong type -----------------------------------------------------------
@pytest.mark.parametrize("rid", [b"true", b"false", b"1.5", b"1.0", b"1e2", b"[1]", b'{"a":1}'])
def test_id_of_wrong_type_is_invalid_request_with_no_id(codec: MessageCodec, rid: bytes) -> None:
    result = assert_malformed(codec.decode(b'{"jsonrpc":"2.0","id":' + rid + b',"method":"ping"}'), INVALID_REQUEST, None)
    assert "$.id" in result.error.message


@pytest.mark.parametrize("rid, expected", [(b"7", 7), (b'"s-1"', "s-1"), (b"-3", -3)])
def test_valid_id_is_salvaged_when_another_field_is_wrong(codec: MessageCodec, rid: bytes, expected: Any) -> None:
    result = codec.decode(b'{"jsonrpc":"2.0","id":' + rid + b',"method":5}')
    assert_malformed(result, INVALID_REQUEST, expected)
    assert "$.method" in result.error.message


def test_bad_error_object_salvages_id(codec: MessageCodec) -> None:
    result = codec.decode(b'{"jsonrpc":"2.0","id":2,"error":{"code":"x","message":"m"}}')
    assert_malformed(result, INVALID_REQUEST, 2)


def test_bool_id_is_not_salvaged_as_int(codec: MessageCodec) -> None:
    # bool is an int subclass in Python; salvage must not answer id 1 for "id": true.
    result = codec.decode(b'{"jsonrpc":"2.0","id":true,"method":5}')
    assert_malformed(result, INVALID_REQUEST, None)
    assert result.id is not True


def test_big_integer_ids_round_trip(codec: MessageCodec) -> None:
    for rid in (2**63, 2**64, -(2**63) - 1, 10**30):
        msg = codec.decode(b'{"jsonrpc":"2.0","id":%d,"method":"ping"}' % rid)
        assert msg == Request(rid, "ping")
        assert msgspec.json.decode(codec.encode(Response(rid, {}))) == {"jsonrpc": "2.0", "id": rid, "result": {}}


# -- decoding: size limit ----------------------------------------------------------------------
def test_message_over_max_size_is_invalid_request() -> None:
    codec = MessageCodec(max_size=64)
    small = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'
    big = b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":"' + b"x" * 100 + b'"}}'
    assert codec.decode(small) == Request(1, "ping")
    result = assert_malformed(codec.decode(big), INVALID_REQUEST, None)
    assert str(len(big)) in result.error.message and "64" in result.error.message


def test_max_size_is_inclusive() -> None:
    data = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'
    assert MessageCodec(max_size=len(data)).decode(data) == Request(1, "ping")
    assert_malformed(MessageCodec(max_size=len(data) - 1).decode(data), INVALID_REQUEST, None)


def test_size_check_happens_before_parsing() -> None:
    # Over the limit and not JSON: the size error wins (nothing was parsed).
    assert_malformed(MessageCodec(max_size=10).decode(b"{" * 11), INVALID_REQUEST, None)


# -- encoding ----------------------------------------------------------------------------------
def test_encode_response_jsonrpc_first(codec: MessageCodec) -> None:
    data = codec.encode(Response(1, {"tools": []}))
    assert data == b'{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}'


def test_encode_response_with_raw_result_is_verbatim(codec: MessageCodec) -> None:
    assert codec.encode(Response("a", msgspec.Raw(b'{"x":[1,2]}'))) == b'{"jsonrpc":"2.0","id":"a","result":{"x":[1,2]}}'


def test_encode_response_with_struct_result(codec: MessageCodec) -> None:
    from mcp_trio.protocol._types import EmptyResult, TextContent

    assert codec.encode(Response(2, EmptyResult())) == b'{"jsonrpc":"2.0","id":2,"result":{}}'
    assert codec.encode(Response(3, TextContent(text="t"))) == b'{"jsonrpc":"2.0","id":3,"result":{"type":"text","text":"t"}}'


def test_encode_error_omits_none_data(codec: MessageCodec) -> None:
    data = codec.encode(ErrorResponse(7, ErrorObject(-32601, "method not found")))
    assert data == b'{"jsonrpc":"2.0","id":7,"error":{"code":-32601,"message":"method not found"}}'


def test_encode_error_keeps_data(codec: MessageCodec) -> None:
    data = codec.encode(ErrorResponse("q", ErrorObject(-32602, "bad", {"argument": "x"})))
    assert data == b'{"jsonrpc":"2.0","id":"q","error":{"code":-32602,"message":"bad","data":{"argument":"x"}}}'


def test_encode_error_with_null_id(codec: MessageCodec) -> None:
    data = codec.encode(ErrorResponse(None, ErrorObject(-32700, "parse error")))
    assert data == b'{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}'


def test_encode_malformed_as_its_error_response(codec: MessageCodec) -> None:
    assert codec.encode(Malformed(None, ParseError("nope"))) == b'{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"nope"}}'
    assert codec.encode(Malformed(5, InvalidParams("bad", {"argument": "a"}))) == (
        b'{"jsonrpc":"2.0","id":5,"error":{"code":-32602,"message":"bad","data":{"argument":"a"}}}'
    )


def test_encode_request_and_notification(codec: MessageCodec) -> None:
    assert codec.encode(Request(1, "roots/list")) == b'{"jsonrpc":"2.0","id":1,"method":"roots/list"}'
    assert codec.encode(Request("s", "m", msgspec.Raw(b'{"a":1}'))) == b'{"jsonrpc":"2.0","id":"s","method":"m","params":{"a":1}}'
    assert codec.encode(Notification("notifications/tools/list_changed")) == b'{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}'
    assert codec.encode(Notification("n", msgspec.Raw(b"[1]"))) == b'{"jsonrpc":"2.0","method":"n","params":[1]}'


@pytest.mark.parametrize(
    "data",
    [
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}',
        b'{"jsonrpc":"2.0","id":"x-1","method":"ping"}',
        b'{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":0.5}}',
        b'{"jsonrpc":"2.0","id":4,"result":{"roots":[{"uri":"file:///a"}]}}',
        b'{"jsonrpc":"2.0","id":4,"error":{"code":-1,"message":"declined","data":[1,"two"]}}',
        b'{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"p"}}',
    ],
)
def test_decode_encode_round_trip_is_byte_exact_for_canonical_input(codec: MessageCodec, data: bytes) -> None:
    msg = codec.decode(data)
    assert not isinstance(msg, Malformed), msg
    assert codec.encode(msg) == data


def test_malformed_round_trips_as_a_valid_error_response(codec: MessageCodec) -> None:
    malformed = codec.decode(b'{"jsonrpc":"1.0","id":3,"method":"ping"}')
    back = codec.decode(codec.encode(malformed))
    assert isinstance(back, ErrorResponse)
    assert back.id == 3 and back.error.code == INVALID_REQUEST


def test_encode_value(codec: MessageCodec) -> None:
    assert codec.encode_value({"a": [1, None]}) == b'{"a":[1,null]}'


# -- version negotiation -----------------------------------------------------------------------
@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_supported_versions_are_echoed(version: str) -> None:
    assert negotiate_version(version) == version


@pytest.mark.parametrize("version", ["", "2099-01-01", "2024-11-04", "1.0", "2025-11-25 ", "latest"])
def test_unknown_version_gets_latest(version: str) -> None:
    assert negotiate_version(version) == LATEST_VERSION


def test_version_table() -> None:
    assert SUPPORTED_VERSIONS == ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
    assert LATEST_VERSION == "2025-11-25"
    assert list(SUPPORTED_VERSIONS) == sorted(SUPPORTED_VERSIONS)  # oldest first, as documented


def test_at_least() -> None:
    assert at_least("2025-06-18", "2025-03-26")
    assert at_least("2025-06-18", "2025-06-18")
    assert not at_least("2024-11-05", "2025-03-26")
    assert not at_least("2030-01-01", "2024-11-05")  # unknown revisions are not "newer"
    assert not at_least("2025-06-18", "bogus")


# -- session state -----------------------------------------------------------------------------
def init_params(version: str = "2025-06-18", capabilities: dict[str, Any] | None = None) -> InitializeParams:
    return msgspec.json.decode(
        enc({"protocolVersion": version, "capabilities": capabilities or {}, "clientInfo": {"name": "c", "version": "9"}}),
        type=InitializeParams,
    )


@pytest.mark.parametrize("method", ["tools/list", "tools/call", "resources/read", "logging/setLevel", "prompts/get", "completion/complete"])
def test_only_ping_and_initialize_before_initialize(method: str) -> None:
    state = SessionState()
    assert state.phase is Phase.NEW
    state.check_request("ping")
    state.check_request("initialize")
    with pytest.raises(InvalidRequest) as info:
        state.check_request(method)
    assert info.value.code == INVALID_REQUEST
    assert method in info.value.message
    state.initialize(init_params())
    state.check_request(method)  # now accepted


def test_initialize_sets_profile_and_phase() -> None:
    state = SessionState()
    profile = state.initialize(init_params("2025-03-26", {"sampling": {}}))
    assert state.phase is Phase.INITIALIZED
    assert state.client is profile
    assert profile.protocol_version == "2025-03-26"
    assert profile.capabilities == {"sampling": {}}
    assert profile.info == Implementation(name="c", version="9")


def test_initialize_negotiates_unknown_version_to_latest() -> None:
    assert SessionState().initialize(init_params("1999-01-01")).protocol_version == LATEST_VERSION


def test_second_initialize_is_refused_and_keeps_the_first_profile() -> None:
    state = SessionState()
    first = state.initialize(init_params("2025-03-26"))
    with pytest.raises(InvalidRequest) as info:
        state.initialize(init_params("2025-06-18"))
    assert info.value.code == INVALID_REQUEST
    assert "already" in info.value.message
    assert state.client is first
    assert state.client.protocol_version == "2025-03-26"


def test_wants_log_default_threshold_is_info() -> None:
    state = SessionState()
    assert state.log_level is None
    assert not state.wants_log("debug")
    assert state.wants_log("info")
    assert state.wants_log("emergency")


@pytest.mark.parametrize("threshold", LOG_LEVELS)
def test_wants_log_thresholds(threshold: str) -> None:
    state = SessionState()
    state.set_log_level(threshold)
    cut = LOG_LEVELS.index(threshold)
    assert [state.wants_log(level) for level in LOG_LEVELS] == [i >= cut for i in range(len(LOG_LEVELS))]


def test_log_levels_are_the_syslog_order() -> None:
    assert LOG_LEVELS == ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")


def profile(capabilities: dict[str, Any]) -> ClientProfile:
    return ClientProfile(protocol_version=LATEST_VERSION, capabilities=capabilities, info=Implementation(name="c"))


def test_client_profile_supports() -> None:
    p = profile({"sampling": {}, "roots": {"listChanged": True}, "elicitation": None})
    assert p.supports("sampling")
    assert p.supports("roots")
    assert not p.supports("elicitation")  # declared as null: not supported
    assert not p.supports("experimental")
    assert not profile({}).supports("sampling")


@pytest.mark.parametrize(
    "elicitation, expected",
    [({}, True), ({"form": {}}, True), ({"url": {}}, False), ({"form": {}, "url": {}}, True), (None, False), (True, False)],
)
def test_client_profile_form_elicitation(elicitation: Any, expected: bool) -> None:
    caps = {} if elicitation is None else {"elicitation": elicitation}
    assert profile(caps).supports_form_elicitation() is expected
