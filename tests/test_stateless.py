"""Protocol revision 2026-07-28 (stateless) next to the handshake era: core, connection, HTTP.

Three layers, no SDK (``test_stateless_sdk.py`` drives the official client):

* the sans-io core: the envelope ladder, routing headers, result stamps, ``requestState``
  sealing (forged, tampered, expired, another caller's, another request's: all refused);
* one connection, in memory, as stdio and WebSocket serve it: per-request envelopes, the
  era decided by the client's first requests, input-required replay, listen streams;
* Streamable HTTP with a raw client: statuses, header validation, JSON versus SSE, keep-alive
  comments, a closed response cancelling its request, POST only.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
import trio

from mcp_trio import Context, Limits, Server, demo
from mcp_trio._request_state import RequestStateCodec, RequestStateError, subject_of
from mcp_trio.auth import Principal
from mcp_trio.protocol._errors import HeaderMismatch, InvalidParams, UnsupportedProtocolVersion
from mcp_trio.protocol._headers import check_param_headers, check_routing_headers, decode_header_value, header_params
from mcp_trio.protocol._envelope import ResultStamp, decode_envelope, looks_stateless
from mcp_trio.protocol._types import Implementation
from mcp_trio.transports import _stateless_http
from tests.helpers import serve_in_memory
from tests.http_client import open_request, request
from tests.test_http import serving

VERSION = "2026-07-28"
META: dict[str, Any] = {
    "io.modelcontextprotocol/protocolVersion": VERSION,
    "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}, "sampling": {}, "roots": {}},
    "io.modelcontextprotocol/clientInfo": {"name": "stateless-test", "version": "1"},
}


def meta(**changes: Any) -> dict[str, Any]:
    out = dict(META)
    for key, value in changes.items():
        name = f"io.modelcontextprotocol/{key}"
        if value is None:
            out.pop(name, None)
        else:
            out[name] = value
    return out


def raw(value: Any) -> msgspec.Raw:
    return msgspec.Raw(json.dumps(value).encode())


# =============================================================================================
# sans-io core
# =============================================================================================
def test_era_detection_is_a_cheap_prefilter() -> None:
    assert looks_stateless("tools/list", raw({"_meta": META}))
    assert looks_stateless("server/discover", None)  # stateless-only methods, envelope or not
    assert not looks_stateless("tools/list", raw({"cursor": "x"}))
    assert not looks_stateless("tools/list", None)
    # Mentioned but not in _meta: the prefilter says yes, the decoder says no.
    mention = raw({"name": "echo", "arguments": {"text": "io.modelcontextprotocol/protocolVersion"}})
    assert looks_stateless("tools/call", mention)
    assert decode_envelope(mention, required=False) is None


def test_envelope_ladder() -> None:
    with pytest.raises(InvalidParams, match="_meta must be an object"):
        decode_envelope(raw({}))
    with pytest.raises(InvalidParams, match="missing 'io.modelcontextprotocol/clientCapabilities'"):
        decode_envelope(raw({"_meta": meta(clientCapabilities=None)}))
    with pytest.raises(InvalidParams, match="must be a string"):
        decode_envelope(raw({"_meta": meta(protocolVersion=7)})).resolve()  # type: ignore[union-attr]
    with pytest.raises(UnsupportedProtocolVersion) as unsupported:
        decode_envelope(raw({"_meta": meta(protocolVersion="2025-11-25")})).resolve()  # type: ignore[union-attr]
    assert unsupported.value.code == -32022
    assert unsupported.value.data == {"supported": ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25", VERSION],
                                      "requested": "2025-11-25"}
    with pytest.raises(InvalidParams, match="logLevel"):
        decode_envelope(raw({"_meta": meta(logLevel="loud")})).resolve()  # type: ignore[union-attr]
    envelope = decode_envelope(raw({"_meta": meta(clientInfo=None, logLevel="warning")})).resolve()  # type: ignore[union-attr]
    assert envelope.profile.protocol_version == VERSION and envelope.profile.supports("sampling")
    assert envelope.wants_log("error") and not envelope.wants_log("info")
    assert not decode_envelope(raw({"_meta": META})).resolve().wants_log("emergency")  # type: ignore[union-attr]


def test_result_stamp_splices_bytes() -> None:
    stamp = ResultStamp(Implementation(name="s", version="1"), ttl_ms=5000)
    tools = json.loads(bytes(stamp.stamp("tools/list", b'{"tools":[]}', "public")))
    assert tools == {"resultType": "complete", "ttlMs": 5000, "cacheScope": "public",
                     "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "s", "version": "1"}}, "tools": []}
    assert json.loads(bytes(stamp.stamp("tools/call", b"{}"))) == {
        "resultType": "complete", "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "s", "version": "1"}}}


def test_header_values_and_routing() -> None:
    assert decode_header_value("plain") == "plain"
    assert decode_header_value("=?base64?SGVsbG8=?=") == "Hello"
    assert decode_header_value("=?base64?SGVsbG8?=") is None  # padding missing
    assert decode_header_value("=?base64?SGVs!!!bG8=?=") is None
    assert decode_header_value("=?base64?SGVsbG8=") == "=?base64?SGVsbG8="  # no suffix: literal
    headers = {"mcp-protocol-version": VERSION, "mcp-method": "tools/call", "mcp-name": "echo"}
    check_routing_headers(headers, set(), "tools/call", {"name": "echo"}, VERSION)
    for bad, repeated in (({**headers, "mcp-name": "other"}, set()), ({**headers, "mcp-method": "TOOLS/CALL"}, set()),
                          ({k: v for k, v in headers.items() if k != "mcp-name"}, set()),
                          ({**headers, "mcp-protocol-version": "2025-11-25"}, set()), (headers, {"mcp-method"})):
        with pytest.raises(HeaderMismatch):
            check_routing_headers(bad, repeated, "tools/call", {"name": "echo"}, VERSION)


def test_param_headers() -> None:
    schema = {"type": "object", "properties": {
        "region": {"type": "string", "x-mcp-header": "Region"},
        "count": {"type": "integer", "x-mcp-header": "Count"},
        "free": {"type": "string"},
    }}
    declared = header_params(schema)
    assert declared == {("region",): ("Region", "string"), ("count",): ("Count", "integer")}
    check_param_headers(declared, {"region": "eu", "count": 3}, {"mcp-param-region": "eu", "mcp-param-count": "3.0"}, set())
    check_param_headers(declared, {}, {}, set())
    check_param_headers(declared, {"region": "é"}, {"mcp-param-region": "=?base64?w6k=?="}, set())
    for args, headers in (({"region": "eu"}, {}), ({}, {"mcp-param-region": "eu"}),
                          ({"region": "eu"}, {"mcp-param-region": "us"}), ({"count": 3}, {"mcp-param-count": "3.5"})):
        with pytest.raises(HeaderMismatch):
            check_param_headers(declared, args, headers, set())
    # An invalid annotation declares nothing (a conforming client sends no headers then).
    assert header_params({"properties": {"x": {"type": "number", "x-mcp-header": "X"}}}) == {}


def test_request_state_refusals() -> None:
    now = [1000.0]
    codec = RequestStateCodec(["k" * 32], ttl=60, clock=lambda: now[0])
    alice, bob = subject_of(Principal("alice")), subject_of(Principal("bob"))
    token = codec.seal(subject=alice, request="req", answers={}, pending={"confirm": "digest"})
    assert codec.open(token, subject=alice, request="req").pend == {"confirm": "digest"}
    head, mac = token.rsplit(".", 1)
    forged = RequestStateCodec(["f" * 32], clock=lambda: now[0]).seal(subject=alice, request="req", answers={}, pending={})
    cases = {
        "tampered": token[:-2] + ("AA" if token[-2:] != "AA" else "BB"),
        "payload swapped": head.rsplit(".", 1)[0] + "." + forged.split(".")[2] + "." + mac,
        "forged": forged,
        "garbage": "not-a-state",
        "suffixed": token + "-TAMPERED",
    }
    for what, bad in cases.items():
        with pytest.raises(RequestStateError):
            codec.open(bad, subject=alice, request="req")
    with pytest.raises(RequestStateError, match="another caller"):
        codec.open(token, subject=bob, request="req")
    with pytest.raises(RequestStateError, match="another request"):
        codec.open(token, subject=alice, request="other")
    now[0] += 120
    with pytest.raises(RequestStateError, match="expired"):
        codec.open(token, subject=alice, request="req")
    # Rotation: a new key seals, the old one still verifies.
    now[0] = 1000.0
    rotated = RequestStateCodec(["n" * 32, "k" * 32], ttl=60, clock=lambda: now[0])
    assert rotated.open(token, subject=alice, request="req").pend == {"confirm": "digest"}
    with pytest.raises(ValueError, match="32 bytes"):
        RequestStateCodec(["short"])


# =============================================================================================
# one connection (stdio, WebSocket)
# =============================================================================================
async def stateless_call(client: Any, method: str, params: dict[str, Any] | None = None, **meta_changes: Any) -> dict[str, Any]:
    return await client.request(method, {**(params or {}), "_meta": meta(**meta_changes)})


async def test_both_eras_on_one_connection() -> None:
    async with serve_in_memory(demo.server) as (client, supervisor, connection):
        discovered = await stateless_call(client, "server/discover")
        assert discovered["result"]["supportedVersions"][-1] == VERSION
        assert discovered["result"]["capabilities"]["tools"] == {"listChanged": True}
        listed = await stateless_call(client, "tools/list")
        assert listed["result"]["resultType"] == "complete" and listed["result"]["cacheScope"] == "public"
        assert (await stateless_call(client, "ping"))["error"]["code"] == -32601  # removed in 2026-07-28
        assert (await stateless_call(client, "logging/setLevel", {"level": "debug"}))["error"]["code"] == -32601
        unsupported = await stateless_call(client, "tools/list", protocolVersion="2099-01-01")
        assert unsupported["error"]["code"] == -32022 and unsupported["error"]["data"]["requested"] == "2099-01-01"
        assert (await client.request("tools/list"))["error"]["code"] == -32600  # no envelope, no handshake
        # The handshake still works on this connection, and from then on it is the handshake era's.
        await client.initialize()
        legacy = await client.request("tools/list", {"_meta": META})
        assert "resultType" not in legacy["result"]
        assert (await client.request("ping"))["result"] == {}


async def test_input_required_round_trip_and_refusals() -> None:
    async with serve_in_memory(demo.server) as (client, _, connection):
        first = await stateless_call(client, "tools/call", {"name": "test_input_required_result_request_state", "arguments": {}})
        result = first["result"]
        assert result["resultType"] == "input_required"
        assert result["inputRequests"]["confirm"]["method"] == "elicitation/create"
        state = result["requestState"]
        answer = {"confirm": {"action": "accept", "content": {"ok": True}}}
        done = await stateless_call(client, "tools/call", {"name": "test_input_required_result_request_state", "arguments": {},
                                                        "inputResponses": answer, "requestState": state})
        assert done["result"]["content"][0]["text"] == "Confirmed: ok=True (state-ok)"

        async def retry(**changes: Any) -> dict[str, Any]:
            params = {"name": "test_input_required_result_request_state", "arguments": {}, "inputResponses": answer,
                      "requestState": state, **changes}
            return await stateless_call(client, "tools/call", params)

        tampered = await retry(requestState=state[:-4] + ("AAAA" if not state.endswith("AAAA") else "BBBB"))
        assert tampered["error"]["code"] == -32602 and "integrity" in tampered["error"]["message"]
        assert (await retry(requestState="mt1.nope.nope.nope"))["error"]["code"] == -32602
        assert "another request" in (await retry(name="test_input_required_result_tampered_state"))["error"]["message"]
        assert (await retry(inputResponses=None))["error"]["code"] == -32602
        assert (await retry(inputResponses={"confirm": 12345}))["error"]["code"] == -32602
        # Bound to the caller: another principal cannot replay it.
        connection.principal = Principal("mallory")
        assert "another caller" in (await retry())["error"]["message"]


async def test_answers_given_without_a_state_and_extra_keys() -> None:
    async with serve_in_memory(demo.server) as (client, _, _):
        done = await stateless_call(client, "tools/call", {
            "name": "test_input_required_result_elicitation", "arguments": {},
            "inputResponses": {"user_name": {"action": "accept", "content": {"name": "Ada"}}, "extra": {"x": 1}}})
        assert done["result"]["content"][0]["text"] == "Hello, Ada!"
        again = await stateless_call(client, "tools/call", {
            "name": "test_input_required_result_elicitation", "arguments": {},
            "inputResponses": {"wrong_key": {"action": "accept", "content": {}}}})
        assert again["result"]["resultType"] == "input_required"  # re-asked, not an error


async def test_capabilities_come_from_each_request() -> None:
    async with serve_in_memory(demo.server) as (client, _, _):
        refused = await stateless_call(client, "tools/call", {"name": "test_missing_capability", "arguments": {}},
                                    clientCapabilities={})
        assert refused["error"]["code"] == -32021
        assert refused["error"]["data"] == {"requiredCapabilities": {"sampling": {}}}
        asked = await stateless_call(client, "tools/call", {"name": "test_input_required_result_capabilities", "arguments": {}},
                                  clientCapabilities={"sampling": {}})
        assert [r["method"] for r in asked["result"]["inputRequests"].values()] == ["sampling/createMessage"]


async def test_replay_escapes_tool_code_that_catches_everything() -> None:
    server = Server("greedy")
    runs: list[str] = []

    @server.tool
    async def greedy(ctx: Context) -> str:
        runs.append("run")
        try:
            answer = await ctx.elicit("Name?", {"type": "object", "properties": {"n": {"type": "string"}}}, key="n")
        except Exception as exc:  # must not swallow the input-required signal
            return f"swallowed {exc!r}"
        return f"got {answer.content}"

    async with serve_in_memory(server) as (client, _, _):
        first = await stateless_call(client, "tools/call", {"name": "greedy", "arguments": {}})
        assert first["result"]["resultType"] == "input_required"
        done = await stateless_call(client, "tools/call", {"name": "greedy", "arguments": {},
                                                        "inputResponses": {"n": {"action": "accept", "content": {"n": "x"}}},
                                                        "requestState": first["result"]["requestState"]})
        assert done["result"]["content"][0]["text"] == "got {'n': 'x'}"
        assert runs == ["run", "run"]


async def test_changed_question_is_asked_again() -> None:
    """A recorded answer is replayed only to the question it answered."""
    server = Server("fickle")

    @server.tool
    async def fickle(topic: str, ctx: Context) -> str:
        first = await ctx.elicit("Topic?", {"type": "object"})
        second = await ctx.elicit(f"More about {first.content.get('t')}?", {"type": "object"})  # type: ignore[union-attr]
        return f"{first.content} {second.content}"

    async with serve_in_memory(server) as (client, _, _):
        round1 = (await stateless_call(client, "tools/call", {"name": "fickle", "arguments": {"topic": "a"}}))["result"]
        assert list(round1["inputRequests"]) == ["elicitation-1"]
        round2 = (await stateless_call(client, "tools/call", {
            "name": "fickle", "arguments": {"topic": "a"}, "requestState": round1["requestState"],
            "inputResponses": {"elicitation-1": {"action": "accept", "content": {"t": "cats"}}}}))["result"]
        assert list(round2["inputRequests"]) == ["elicitation-2"]
        assert round2["inputRequests"]["elicitation-2"]["params"]["message"] == "More about cats?"


async def test_log_level_per_request() -> None:
    async with serve_in_memory(demo.server) as (client, _, _):
        await stateless_call(client, "tools/call", {"name": "test_logging_tool", "arguments": {}})
        assert not [m for m in client.backlog if m.get("method") == "notifications/message"]
        reply = await stateless_call(client, "tools/call", {"name": "test_logging_tool", "arguments": {}}, logLevel="info")
        assert reply["result"]["resultType"] == "complete"
        logs = [m for m in client.backlog if m.get("method") == "notifications/message"]
        assert [m["params"]["data"] for m in logs] == ["Tool execution started", "Tool processing data", "Tool execution completed"]


async def test_listen_stream() -> None:
    server = Server("listened")

    @server.resource("test://a")
    async def a() -> str:
        return "a"

    @server.tool
    async def touch(uri: str, ctx: Context) -> str:
        ctx.notify_resource_updated(uri)
        return "ok"

    async with serve_in_memory(server, Limits(max_in_flight=1)) as (client, supervisor, _):
        listen_id = client.new_id()
        await client.send({"jsonrpc": "2.0", "id": listen_id, "method": "subscriptions/listen", "params": {
            "_meta": META, "notifications": {"toolsListChanged": True, "resourceSubscriptions": ["test://a", "test://b"]}}})
        ack = await client.receive()
        assert ack["method"] == "notifications/subscriptions/acknowledged"
        assert ack["params"]["_meta"] == {"io.modelcontextprotocol/subscriptionId": listen_id}
        # test://b names no resource: left out of the agreed filter (the subset honoured).
        assert ack["params"]["notifications"] == {"toolsListChanged": True, "resourceSubscriptions": ["test://a"]}
        # The stream does not hold the connection's only in-flight slot.
        await stateless_call(client, "tools/call", {"name": "touch", "arguments": {"uri": "test://a"}})
        await stateless_call(client, "tools/call", {"name": "touch", "arguments": {"uri": "test://c"}})
        server.add_prompt(lambda: "p", name="ignored")  # prompts were not asked for
        server.add_tool(lambda: "t", name="added")
        seen = []
        with trio.fail_after(5):
            while len(seen) < 2:
                seen.append(await client.receive_until(lambda m: m.get("method", "").startswith("notifications/")))
        assert [m["method"] for m in seen] == ["notifications/resources/updated", "notifications/tools/list_changed"]
        assert seen[0]["params"]["uri"] == "test://a"
        assert all(m["params"]["_meta"] == {"io.modelcontextprotocol/subscriptionId": listen_id} for m in seen)
        supervisor.shutdown()  # graceful end: the listen request gets its result
        end = await client.reply_to(listen_id)
        assert end["result"] == {"resultType": "complete", "_meta": {
            "io.modelcontextprotocol/subscriptionId": listen_id,
            "io.modelcontextprotocol/serverInfo": {"name": "listened", "version": "0.0.0"}}}


async def test_listen_cancelled_by_the_client() -> None:
    async with serve_in_memory(demo.server) as (client, supervisor, _):
        listen_id = client.new_id()
        await client.send({"jsonrpc": "2.0", "id": listen_id, "method": "subscriptions/listen",
                           "params": {"_meta": META, "notifications": {"promptsListChanged": True}}})
        assert (await client.receive())["method"] == "notifications/subscriptions/acknowledged"
        await client.notify("notifications/cancelled", {"requestId": listen_id})
        with trio.fail_after(5):
            while supervisor.stateless.listeners:
                await trio.sleep(0.01)
        assert (await stateless_call(client, "tools/list"))["result"]["tools"]


async def test_gather_runs_requests_concurrently_in_the_handshake_era() -> None:
    async with serve_in_memory(demo.server) as (client, _, _):
        await client.initialize()
        call_id = client.new_id()
        await client.send({"jsonrpc": "2.0", "id": call_id, "method": "tools/call",
                           "params": {"name": "test_input_required_result_multiple_inputs", "arguments": {}}})
        asked = [await client.receive() for _ in range(3)]  # all three before any answer
        assert sorted(m["method"] for m in asked) == ["elicitation/create", "roots/list", "sampling/createMessage"]
        answers = {
            "elicitation/create": {"action": "accept", "content": {"name": "Ada"}},
            "sampling/createMessage": {"role": "assistant", "content": {"type": "text", "text": "Hi"}, "model": "m"},
            "roots/list": {"roots": []},
        }
        for message in asked:
            await client.send({"jsonrpc": "2.0", "id": message["id"], "result": answers[message["method"]]})
        assert (await client.reply_to(call_id))["result"]["content"][0]["text"] == "Hi Ada (0 roots)"


# =============================================================================================
# Streamable HTTP
# =============================================================================================
def headers_for(method: str, name: str | None = None, **extra: str) -> dict[str, str]:
    headers = {"accept": "application/json, text/event-stream", "content-type": "application/json",
               "mcp-protocol-version": VERSION, "mcp-method": method}
    if name is not None:
        headers["mcp-name"] = name
    headers.update({k.replace("_", "-"): v for k, v in extra.items()})
    return headers


def body_for(method: str, params: dict[str, Any] | None = None, rid: int = 1, **meta_changes: Any) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": rid, "method": method,
                       "params": {**(params or {}), "_meta": meta(**meta_changes)}}).encode()


async def post(port: int, method: str, params: dict[str, Any] | None = None, *, name: str | None = None,
               headers: dict[str, str] | None = None, **meta_changes: Any) -> Any:
    return await request(port, "POST", headers=headers or headers_for(method, name), body=body_for(method, params, **meta_changes))


async def test_http_statuses_and_header_checks() -> None:
    async with serving() as served:
        port = served.port
        listed = await post(port, "tools/list")
        assert listed.status == 200 and listed.content_type == "application/json"
        assert "mcp-session-id" not in listed.headers
        assert listed.json()["result"]["resultType"] == "complete"

        mismatch = await post(port, "tools/list", headers=headers_for("tools/list", mcp_protocol_version="2025-11-25"))
        assert mismatch.status == 400  # a handshake version with no session: refused as the handshake era does
        wrong_version = await post(port, "tools/list", protocolVersion="2099-01-01")
        assert wrong_version.status == 400 and wrong_version.json()["error"]["code"] == -32020
        unsupported = await post(port, "tools/list", headers=headers_for("tools/list", mcp_protocol_version="2099-01-01"),
                                 protocolVersion="2099-01-01")
        assert unsupported.status == 400 and unsupported.json()["error"]["code"] == -32022
        assert unsupported.json()["id"] == 1
        for headers in (headers_for("tools/list", mcp_method="prompts/list"), {**headers_for("tools/list"), "mcp-method": "TOOLS/LIST"}):
            refused = await post(port, "tools/list", headers=headers)
            assert refused.status == 400 and refused.json()["error"]["code"] == -32020
        no_name = await post(port, "tools/call", {"name": "test_simple_text", "arguments": {}})
        assert no_name.status == 400 and no_name.json()["error"]["code"] == -32020
        missing = await post(port, "resources/read", {"uri": "test://nope"}, name="test://nope")
        assert missing.status == 400 and missing.json()["error"] == {
            "code": -32602, "message": "resource not found: test://nope", "data": {"uri": "test://nope"}}
        removed = await post(port, "ping")
        assert removed.status == 404 and removed.json()["error"]["code"] == -32601
        no_meta = await request(port, "POST", headers=headers_for("tools/list"),
                                body=b'{"jsonrpc":"2.0","id":3,"method":"tools/list"}')
        assert no_meta.status == 400 and no_meta.json()["error"]["code"] == -32602
        capability = await post(port, "tools/call", {"name": "test_missing_capability", "arguments": {}},
                                name="test_missing_capability", clientCapabilities={})
        assert capability.status == 400 and capability.json()["error"]["code"] == -32021

        for method in ("GET", "DELETE"):
            refused = await request(port, method, headers={"accept": "text/event-stream", "mcp-protocol-version": VERSION})
            assert refused.status == 405 and refused.headers["allow"] == "POST"
        note = await request(port, "POST", headers=headers_for("notifications/cancelled"),
                             body=b'{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}')
        assert note.status == 202


async def test_http_param_headers() -> None:
    async with serving() as served:
        args = {"name": "test_header_parameter", "arguments": {"region": "Hello"}}
        ok = await post(served.port, "tools/call", args,
                        headers=headers_for("tools/call", "test_header_parameter", mcp_param_region="=?base64?SGVsbG8=?="))
        assert ok.status == 200 and ok.json()["result"]["content"][0]["text"] == "region=Hello"
        for value in ("=?base64?SGVsbG8?=", "Goodbye", None):
            extra = {} if value is None else {"mcp_param_region": value}
            refused = await post(served.port, "tools/call", args, headers=headers_for("tools/call", "test_header_parameter", **extra))
            assert refused.status == 400 and refused.json()["error"]["code"] == -32020, value


async def test_http_sse_keepalive_and_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_stateless_http, "SSE_KEEPALIVE", 0.2)
    async with serving() as served:
        params = {"name": "sleep", "arguments": {"seconds": 0.7}}
        async with open_request(served.port, "POST", headers=headers_for("tools/call", "sleep"),
                                body=body_for("tools/call", params)) as exchange:
            raw_body = await exchange.read_body()
        # Silent for longer than the keep-alive interval: SSE, with comments, then the result.
        assert exchange.status == 200 and exchange.headers["content-type"] == "text/event-stream"
        assert exchange.headers["x-accel-buffering"] == "no"
        assert b": keep-alive" in raw_body
        assert json.loads(raw_body.rsplit(b"data: ", 1)[1])["result"]["content"][0]["text"] == "slept 0.7 s"

        params = {"name": "test_tool_with_progress", "arguments": {}, "_meta": {"progressToken": "p"}}
        body = json.dumps({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                           "params": {**params, "_meta": {**META, "progressToken": "p"}}}).encode()
        streamed = await request(served.port, "POST", headers=headers_for("tools/call", "test_tool_with_progress"), body=body)
        events = [e.json() for e in streamed.events()]
        assert [e.get("method") for e in events[:-1]] == ["notifications/progress"] * 3
        assert events[-1]["id"] == 5 and events[-1]["result"]["resultType"] == "complete"


async def test_http_closing_the_response_cancels_the_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_stateless_http, "SSE_KEEPALIVE", 0.1)  # the head comes once the answer is SSE
    server = Server("cancellable")
    cancelled = trio.Event()
    started = trio.Event()

    @server.tool
    async def wait_forever() -> str:
        started.set()
        try:
            await trio.sleep_forever()
        finally:
            cancelled.set()
        return "never"  # pragma: no cover

    async with serving(server) as served:
        with trio.fail_after(10):
            async with open_request(served.port, "POST", headers=headers_for("tools/call", "wait_forever"),
                                    body=body_for("tools/call", {"name": "wait_forever", "arguments": {}})):
                await started.wait()
            await cancelled.wait()


async def test_http_listen_stream() -> None:
    async with serving(demo.server) as served:
        params = {"notifications": {"promptsListChanged": True}}
        with trio.fail_after(10):
            async with open_request(served.port, "POST", headers=headers_for("subscriptions/listen"),
                                    body=body_for("subscriptions/listen", params, rid=41)) as exchange:
                assert exchange.headers["content-type"] == "text/event-stream"
                ack = (await exchange.next_event()).json()  # type: ignore[union-attr]
                assert ack["method"] == "notifications/subscriptions/acknowledged"
                assert ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"] == 41
                triggered = await post(served.port, "tools/call", {"name": "test_trigger_prompt_change", "arguments": {}},
                                       name="test_trigger_prompt_change")
                assert triggered.status == 200
                changed = (await exchange.next_event()).json()  # type: ignore[union-attr]
                assert changed["method"] == "notifications/prompts/list_changed"
                assert changed["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"] == 41
                served.supervisor.shutdown()
                end = (await exchange.next_event()).json()  # type: ignore[union-attr]
                assert end["id"] == 41 and end["result"]["_meta"]["io.modelcontextprotocol/subscriptionId"] == 41


async def test_http_listen_needs_sse() -> None:
    async with serving() as served:
        refused = await post(served.port, "subscriptions/listen", {"notifications": {}},
                             headers={**headers_for("subscriptions/listen"), "accept": "application/json"})
        assert refused.status == 406


# =============================================================================================
# the tasks extension
# =============================================================================================
TASKS = {"extensions": {"io.modelcontextprotocol/tasks": {}}, "elicitation": {}}


async def task_call(client: Any, method: str, params: dict[str, Any], capabilities: dict[str, Any] | None = None) -> dict[str, Any]:
    return await stateless_call(client, method, params, clientCapabilities=TASKS if capabilities is None else capabilities)


async def settled(client: Any, task_id: str, until: frozenset[str] = frozenset({"completed", "failed", "cancelled"})) -> dict[str, Any]:
    with trio.fail_after(10):
        while True:
            got = (await task_call(client, "tasks/get", {"taskId": task_id}))["result"]
            if got["status"] in until:
                return got
            await trio.sleep(0.02)


async def test_task_lifecycle() -> None:
    async with serve_in_memory(demo.server) as (client, _, _):
        created = (await task_call(client, "tools/call", {"name": "slow_compute", "arguments": {"seconds": 0.2, "label": "x"}}))["result"]
        assert created["resultType"] == "task" and created["status"] == "working"
        assert {"taskId", "createdAt", "lastUpdatedAt", "ttlMs", "pollIntervalMs"} <= set(created)
        assert "requestState" not in created and "result" not in created
        working = (await task_call(client, "tasks/get", {"taskId": created["taskId"]}))["result"]
        assert working["resultType"] == "complete" and working["status"] == "working" and "result" not in working
        done = await settled(client, created["taskId"])
        assert done["status"] == "completed" and done["result"]["content"][0]["text"] == "computed x in 0.2 s"
        # The immediate shortcut: no task for a call that needs no time.
        quick = (await task_call(client, "tools/call", {"name": "slow_compute", "arguments": {"seconds": 0}}))["result"]
        assert quick["resultType"] == "complete" and quick["content"][0]["text"] == "computed result in 0 s"

        long = (await task_call(client, "tools/call", {"name": "slow_compute", "arguments": {"seconds": 60}}))["result"]
        ack = (await task_call(client, "tasks/cancel", {"taskId": long["taskId"]}))["result"]
        assert ack["resultType"] == "complete" and "status" not in ack
        assert (await settled(client, long["taskId"]))["status"] == "cancelled"
        assert (await task_call(client, "tasks/cancel", {"taskId": long["taskId"]}))["result"]["resultType"] == "complete"

        failing = (await task_call(client, "tools/call", {"name": "failing_job", "arguments": {}}))["result"]
        failed_tool = await settled(client, failing["taskId"])
        assert failed_tool["status"] == "completed" and failed_tool["result"]["isError"] is True
        broken = (await task_call(client, "tools/call", {"name": "protocol_error_job", "arguments": {}}))["result"]
        failed = await settled(client, broken["taskId"])
        assert failed["status"] == "failed" and failed["error"]["code"] == -32001 and "result" not in failed

        unknown = await task_call(client, "tasks/get", {"taskId": "nope"})
        assert unknown["error"]["code"] == -32602
        for removed in ("tasks/result", "tasks/list"):
            assert (await task_call(client, removed, {"taskId": "nope"}))["error"]["code"] == -32601


async def test_task_input_rounds() -> None:
    async with serve_in_memory(demo.server) as (client, _, _):
        created = (await task_call(client, "tools/call", {"name": "multi_input", "arguments": {}}))["result"]
        waiting = await settled(client, created["taskId"], frozenset({"input_required"}))
        with trio.fail_after(5):
            while len(waiting.get("inputRequests", {})) < 2:
                waiting = (await task_call(client, "tasks/get", {"taskId": created["taskId"]}))["result"]
        # Asked concurrently: which key is which question is the order they ran in.
        by_message = {ask["params"]["message"]: key for key, ask in waiting["inputRequests"].items()}
        first, second = by_message["First name?"], by_message["Confirm?"]
        assert waiting["inputRequests"][first]["method"] == "elicitation/create"
        ack = await task_call(client, "tasks/update", {"taskId": created["taskId"], "inputResponses": {
            first: {"action": "accept", "content": {"name": "Ada"}}, "unknown": {"x": 1}}})
        assert ack["result"]["resultType"] == "complete"
        partial = (await task_call(client, "tasks/get", {"taskId": created["taskId"]}))["result"]
        assert partial["status"] == "input_required" and list(partial["inputRequests"]) == [second]
        await task_call(client, "tasks/update", {"taskId": created["taskId"], "inputResponses": {
            second: {"action": "accept", "content": {"confirm": True}}}})
        done = await settled(client, created["taskId"])
        assert done["result"]["content"][0]["text"] == "Ada / True"


async def test_stateless_rounds_then_a_task() -> None:
    async with serve_in_memory(demo.server) as (client, _, _):
        round1 = (await task_call(client, "tools/call", {"name": "test_tool_with_task", "arguments": {}}))["result"]
        assert round1["resultType"] == "input_required" and "taskId" not in round1
        round2 = (await task_call(client, "tools/call", {
            "name": "test_tool_with_task", "arguments": {}, "requestState": round1["requestState"],
            "inputResponses": {"user_name": {"action": "accept", "content": {"name": "Alice"}}}}))["result"]
        assert round2["resultType"] == "task" and "requestState" not in round2 and "inputRequests" not in round2
        done = await settled(client, round2["taskId"])
        assert done["result"]["content"][0]["text"] == "Hello, Alice, from a task!"


async def test_tasks_need_the_extension_and_the_caller() -> None:
    async with serve_in_memory(demo.server) as (client, _, connection):
        plain = {"elicitation": {}}
        for method in ("tasks/get", "tasks/update", "tasks/cancel"):
            refused = await task_call(client, method, {"taskId": "x", "inputResponses": {}}, plain)
            assert refused["error"]["code"] == -32021
        required = await task_call(client, "tools/call", {"name": "failing_job", "arguments": {}}, plain)
        assert required["error"]["data"] == {"requiredCapabilities": {"extensions": {"io.modelcontextprotocol/tasks": {}}}}
        sync = (await task_call(client, "tools/call", {"name": "slow_compute", "arguments": {"seconds": 0.01}}, plain))["result"]
        assert sync["resultType"] == "complete" and "taskId" not in sync  # optional: runs as a plain call

        connection.principal = Principal("alice")
        created = (await task_call(client, "tools/call", {"name": "slow_compute", "arguments": {"seconds": 30}}))["result"]
        connection.principal = Principal("bob")
        assert (await task_call(client, "tasks/get", {"taskId": created["taskId"]}))["error"]["code"] == -32602
        assert (await task_call(client, "tasks/cancel", {"taskId": created["taskId"]}))["error"]["code"] == -32602
        connection.principal = Principal("alice")
        await task_call(client, "tasks/cancel", {"taskId": created["taskId"]})


async def test_task_capable_tools_in_the_handshake_era() -> None:
    async with serve_in_memory(demo.server) as (client, _, _):
        await client.initialize()
        reply = await client.request("tools/call", {"name": "slow_compute", "arguments": {"seconds": 0.05}})
        assert reply["result"]["content"][0]["text"] == "computed result in 0.05 s"


async def test_listen_streams_are_limited_per_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    from mcp_trio.serving import _stateless_side as _stateless

    monkeypatch.setattr(_stateless, "MAX_LISTENS_PER_CONNECTION", 2)
    async with serve_in_memory(demo.server) as (client, supervisor, _):
        for _ in range(2):
            await client.send({"jsonrpc": "2.0", "id": client.new_id(), "method": "subscriptions/listen",
                               "params": {"_meta": META, "notifications": {"toolsListChanged": True}}})
            assert (await client.receive())["method"] == "notifications/subscriptions/acknowledged"
        refused = await stateless_call(client, "subscriptions/listen", {"notifications": {}})
        assert refused["error"]["code"] == -32030
        supervisor.shutdown()


async def test_input_rounds_are_not_tool_errors() -> None:
    async with serve_in_memory(demo.server) as (client, supervisor, _):
        await stateless_call(client, "tools/call", {"name": "test_input_required_result_elicitation", "arguments": {}})
        stats = supervisor.metrics.tools["test_input_required_result_elicitation"]
        assert stats.calls == 1 and stats.errors == 0
