"""Streamable HTTP (and the rest of the one-port ASGI app) end to end.

The server runs in-process (``serve_http`` on port 0, the demo app unless a test says
otherwise). Two kinds of client drive it:

* a raw HTTP client (``tests/http_client.py``, h11 on trio sockets) for every status code and
  limit of the transport, SSE framing, resumption, the GET stream, health, metrics, WebSocket;
* the official ``mcp`` SDK client over Streamable HTTP through every method, with the wire
  recorded as in ``test_stdio_sdk.py``.

Every served block also checks on the way out that the server logged no error.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import trio
import trio_websocket

from mcp_trio import Limits, Server, demo
from mcp_trio.serving._supervisor import Supervisor
from mcp_trio.transports.http import serve_http
from tests import stdio_sdk_app
from tests.http_client import McpHttp, SseEvent, open_request, request

PARSE_ERROR = -32700
INVALID_REQUEST = -32600


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class Served:
    port: int
    supervisor: Supervisor
    stopped: trio.Event

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def client(self) -> McpHttp:
        return McpHttp(self.port)

    async def health(self) -> dict[str, Any]:
        return (await request(self.port, "GET", "/healthz")).json()


@asynccontextmanager
async def serving(app: Server = demo.server, limits: Limits | None = None, **options: Any) -> AsyncIterator[Served]:
    """``serve_http(app)`` on a free port for the block; no error may be logged meanwhile."""
    collect = _Collect()
    logging.getLogger("mcp_trio").addHandler(collect)
    try:
        async with trio.open_nursery() as nursery:
            stopped = trio.Event()

            async def run(task_status: trio.TaskStatus[int]) -> None:
                try:
                    await serve_http(app, limits, port=0, task_status=task_status, **options)
                finally:
                    stopped.set()

            port = await nursery.start(run)
            assert app._supervisor is not None
            try:
                yield Served(port, app._supervisor, stopped)
            finally:
                nursery.cancel_scope.cancel()
    finally:
        logging.getLogger("mcp_trio").removeHandler(collect)
    errors = [f"{r.name}: {r.getMessage()}" for r in collect.records if r.levelno >= logging.ERROR]
    assert not errors, errors


def error_of(response: Any) -> dict[str, Any]:
    body = response.json()
    assert body["jsonrpc"] == "2.0" and "result" not in body, body
    return body["error"]


# =============================================================================================
# raw HTTP: the Streamable HTTP transport
# =============================================================================================
async def test_initialize_json_and_session_id() -> None:
    with trio.fail_after(10):
        async with serving() as served:
            mcp = served.client()
            response = await mcp.initialize()
            assert response.content_type == "application/json"
            body = response.json()
            assert body["id"] == 1 and body["result"]["protocolVersion"] == "2025-11-25"
            session_id = response.headers["mcp-session-id"]
            assert len(session_id) >= 32 and all(0x21 <= ord(c) <= 0x7E for c in session_id)

            # A second session gets a different id; both work.
            other = served.client()
            await other.initialize()
            assert other.session_id != session_id
            assert (await mcp.call("ping"))["result"] == {}
            assert (await other.call("tools/call", {"name": "echo", "arguments": {"text": "x"}}))["result"]["content"][0]["text"] == "x"
            assert (await served.health())["sessions"] == 2


async def test_notifications_and_responses_get_202() -> None:
    with trio.fail_after(10):
        async with serving() as served:
            mcp = served.client()
            await mcp.initialize()
            accepted = await mcp.notify("notifications/roots/list_changed")
            assert (accepted.status, accepted.body) == (202, b"")
            # A response to a request the server never sent is accepted (and ignored).
            stray = await mcp.post({"jsonrpc": "2.0", "id": 999, "result": {}})
            assert (stray.status, stray.body) == (202, b"")


async def test_session_header_rules() -> None:
    with trio.fail_after(10):
        async with serving() as served:
            mcp = served.client()
            # No session yet: anything but initialize is refused with 400.
            missing = await mcp.post(mcp.message("tools/list"))
            assert missing.status == 400 and error_of(missing)["code"] == INVALID_REQUEST
            assert "Mcp-Session-Id" in error_of(missing)["message"]
            assert (await mcp.notify("notifications/initialized")).status == 400
            async with mcp.get_stream() as get:
                assert get.status == 400

            await mcp.initialize()
            unknown = McpHttp(served.port, session_id="no-such-session")
            for response in (await unknown.post(unknown.message("ping")), await unknown.notify("notifications/initialized"),
                             await unknown.delete()):
                assert response.status == 404
            async with unknown.get_stream() as get:
                assert get.status == 404
            # An initialize naming an unknown session is refused too (the client must start afresh).
            stale = await unknown.post(unknown.message("initialize", {"protocolVersion": "2025-11-25", "capabilities": {},
                                                                       "clientInfo": {"name": "x", "version": "1"}}))
            assert stale.status == 404


async def test_delete_ends_the_session() -> None:
    with trio.fail_after(10):
        async with serving() as served:
            mcp = served.client()
            await mcp.initialize()
            deleted = await mcp.delete()
            assert deleted.status == 204
            assert (await mcp.post(mcp.message("ping"))).status == 404
            assert (await mcp.notify("notifications/initialized")).status == 404
            async with mcp.get_stream() as get:
                assert get.status == 404
            assert (await mcp.delete()).status == 404
            with trio.fail_after(2):
                while (await served.health())["connections"]:
                    await trio.sleep(0.01)


async def test_accept_and_content_type() -> None:
    with trio.fail_after(10):
        async with serving() as served:
            mcp = served.client()
            init = mcp.message("initialize", {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "x", "version": "1"}})
            for accept in ("application/json", "text/event-stream", "text/html", ""):
                refused = await mcp.post(init, accept=accept)
                assert refused.status == 406, accept
                assert error_of(refused)["code"] == INVALID_REQUEST
            # Media ranges count; parameters and order do not matter.
            assert (await mcp.post(mcp.message("initialize", init["params"]), accept="text/event-stream;q=0.9, application/json")).status == 200
            assert (await mcp.post(mcp.message("initialize", init["params"]), accept="*/*")).status == 200

            assert (await mcp.post(init, content_type="text/plain")).status == 415
            assert (await mcp.post(mcp.message("initialize", init["params"]), content_type="application/json; charset=utf-8")).status == 200

            await mcp.initialize()
            async with mcp.get_stream(accept="application/json") as get:
                assert get.status == 406


async def test_protocol_version_header() -> None:
    with trio.fail_after(10):
        async with serving() as served:
            mcp = served.client()
            await mcp.initialize()
            refused = await mcp.post(mcp.message("ping"), mcp_protocol_version="1999-01-01")
            assert refused.status == 400 and "MCP-Protocol-Version" in error_of(refused)["message"]
            async with mcp.get_stream(mcp_protocol_version="2026-07-28") as get:
                assert get.status == 400
            # A session that negotiated 2025-11-25 still accepts 2025-03-26; absent means 2025-03-26.
            assert (await mcp.call("ping", mcp_protocol_version="2025-03-26"))["result"] == {}
            mcp.protocol_version = None
            assert (await mcp.call("ping"))["result"] == {}


async def test_malformed_bodies() -> None:
    with trio.fail_after(10):
        async with serving() as served:
            mcp = served.client()
            for body in (b"{not json", b"", b'{"jsonrpc": "2.0", "id": 1, "method": "initialize"', b"\xff\xfe"):
                response = await mcp.post(body)
                assert response.status == 400 and error_of(response)["code"] == PARSE_ERROR, body
                assert response.json()["id"] is None
            await mcp.initialize()
            for body, code in ((b"[]", INVALID_REQUEST), (b'[{"jsonrpc":"2.0","id":1,"method":"ping"}]', INVALID_REQUEST),
                               (b'"ping"', INVALID_REQUEST), (b'{"jsonrpc":"1.0","id":7,"method":"ping"}', INVALID_REQUEST),
                               (b"{not json", PARSE_ERROR)):
                response = await mcp.post(body)
                assert response.status == 400 and error_of(response)["code"] == code, body
            # The id of an invalid request is salvaged so the error reaches its caller.
            assert (await mcp.post(b'{"jsonrpc":"1.0","id":7,"method":"ping"}')).json()["id"] == 7
            # The session goes on.
            assert (await mcp.call("ping"))["result"] == {}


async def test_body_limit_413_before_reading() -> None:
    limits = Limits(max_message_size=1000)
    with trio.fail_after(10):
        async with serving(limits=limits) as served:
            mcp = served.client()
            await mcp.initialize()
            big = mcp.message("tools/call", {"name": "echo", "arguments": {"text": "x" * 2000}})
            # Content-Length over the limit: refused from the headers, the body is never read.
            async with open_request(served.port, "POST", headers={**mcp.headers(), "content-length": "5000000"}, body=None) as exchange:
                assert exchange.status == 413
                assert json.loads(await exchange.read_body())["error"]["code"] == INVALID_REQUEST
            assert (await mcp.post(big)).status == 413
            # Chunked, no Content-Length: counted while reading.
            async with open_request(served.port, "POST", headers={**mcp.headers(), "transfer-encoding": "chunked"},
                                    body=json.dumps(big).encode()) as exchange:
                assert exchange.status == 413
            # Just under the limit is fine.
            fits = mcp.message("tools/call", {"name": "echo", "arguments": {"text": "y" * 800}})
            assert (await mcp.post(fits)).status == 200


async def test_trickled_body_is_cut_off_408() -> None:
    limits = Limits(request_deadline=0.6)
    with trio.fail_after(10):
        async with serving(limits=limits) as served:
            mcp = served.client()
            await mcp.initialize()
            body = json.dumps(mcp.message("ping")).encode()
            stream = await trio.open_tcp_stream("127.0.0.1", served.port)
            async with stream:
                head = "".join(f"{k}: {v}\r\n" for k, v in {**mcp.headers(), "host": f"127.0.0.1:{served.port}",
                                                            "content-length": str(len(body))}.items())
                await stream.send_all(f"POST /mcp HTTP/1.1\r\n{head}\r\n".encode())
                started = time.monotonic()
                answer = b""
                # One byte every 0.25 s: each read is quick, the whole never arrives in time.
                with trio.move_on_after(5):
                    for byte in body:
                        await stream.send_all(bytes([byte]))
                        with trio.move_on_after(0.25):
                            answer += await stream.receive_some(65536)
                            break
                while b"\r\n\r\n" not in answer:
                    chunk = await stream.receive_some(65536)
                    if not chunk:
                        break
                    answer += chunk
                took = time.monotonic() - started
            assert answer.startswith(b"HTTP/1.1 408 "), answer[:100]
            assert 0.5 < took < 2.0, took


async def test_session_cap_503() -> None:
    limits = Limits(max_sessions=2)
    with trio.fail_after(10):
        async with serving(limits=limits) as served:
            first, second, third = served.client(), served.client(), served.client()
            await first.initialize()
            await second.initialize()
            refused = await third.post(third.message("initialize", {"protocolVersion": "2025-11-25", "capabilities": {},
                                                                      "clientInfo": {"name": "x", "version": "1"}}))
            assert refused.status == 503 and "mcp-session-id" not in refused.headers
            assert error_of(refused)["code"] == -32030
            assert "mcp_connections_refused_total 1" in (await request(served.port, "GET", "/metrics")).body.decode()
            # Ending one session makes room.
            assert (await first.delete()).status == 204
            await third.initialize()


async def test_idle_sessions_expire() -> None:
    limits = Limits(idle_timeout=0.3)
    with trio.fail_after(10):
        async with serving(limits=limits) as served:
            idle, busy, listening = served.client(), served.client(), served.client()
            for mcp in (idle, busy, listening):
                await mcp.initialize()
            async with trio.open_nursery() as nursery:
                async def listen() -> None:
                    async with listening.get_stream() as get:
                        assert get.status == 200
                        await trio.sleep_forever()

                nursery.start_soon(listen)
                # A call in flight (and an open GET stream) keeps a session alive.
                reply = await busy.call("tools/call", {"name": "sleep", "arguments": {"seconds": 0.6}})
                assert reply["result"]["content"][0]["text"] == "slept 0.6 s"
                assert (await idle.post(idle.message("ping"))).status == 404
                assert (await busy.call("ping"))["result"] == {}
                assert (await listening.call("ping"))["result"] == {}
                nursery.cancel_scope.cancel()
            await trio.sleep(0.7)
            assert (await busy.post(busy.message("ping"))).status == 404
            assert (await listening.post(listening.message("ping"))).status == 404
            assert (await served.health())["sessions"] == 0


async def test_origin_and_host_validation_403() -> None:
    with trio.fail_after(10):
        async with serving() as served:
            mcp = served.client()
            init = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "x", "version": "1"}}
            for extra in ({"origin": "http://evil.example.com"}, {"host": "evil.example.com"},
                          {"host": "evil.example.com", "origin": "http://evil.example.com"}, {"origin": "null"},
                          {"host": f"evil.example.com:{served.port}"}):
                refused = await mcp.post(mcp.message("initialize", init), **extra)
                assert refused.status == 403, extra
                assert error_of(refused)["code"] == INVALID_REQUEST
            assert (await request(served.port, "GET", "/healthz", headers={"host": "evil.example.com"})).status == 403
            for extra in ({"host": f"localhost:{served.port}"}, {"origin": f"http://localhost:{served.port}"},
                          {"origin": "http://127.0.0.1:3000"}, {"host": f"[::1]:{served.port}", "origin": f"http://[::1]:{served.port}"}):
                assert (await mcp.post(mcp.message("initialize", init), **extra)).status == 200, extra

        async with serving(allowed_origins=["https://app.example.com"], allowed_hosts=["mcp.example.com", "localhost"]) as served:
            mcp = served.client()
            ok = await mcp.post(mcp.message("initialize", init), host="mcp.example.com", origin="https://app.example.com")
            assert ok.status == 200
            assert (await mcp.post(mcp.message("initialize", init), host="mcp.example.com", origin="http://localhost")).status == 403
            assert (await mcp.post(mcp.message("initialize", init), host="127.0.0.1")).status == 403


async def test_other_methods_and_paths() -> None:
    with trio.fail_after(10):
        async with serving() as served:
            put = await request(served.port, "PUT", headers={"content-type": "application/json"}, body=b"{}")
            assert put.status == 405 and put.headers["allow"] == "GET, POST, DELETE"
            assert (await request(served.port, "GET", "/nope")).status == 404
            assert (await request(served.port, "POST", "/healthz", body=b"")).status == 405


async def test_duplicate_request_id_in_flight() -> None:
    with trio.fail_after(10):
        async with serving() as served:
            mcp = served.client()
            await mcp.initialize()
            call = {"jsonrpc": "2.0", "id": "same", "method": "tools/call",
                    "params": {"name": "sleep", "arguments": {"seconds": 0.3}, "_meta": {"progressToken": 1}}}
            async with mcp.post_streaming(call) as first:
                duplicate = await mcp.post(call)
                assert duplicate.status == 400 and duplicate.json()["id"] == "same"
                assert "duplicate" in error_of(duplicate)["message"]
                replies = [e.json() for e in (await _all_events(first)) if e.data]
                assert "result" in replies[-1], replies
                assert replies[-1]["result"]["content"][0]["text"] == "slept 0.3 s"
            # Once answered, the id may be used again.
            assert (await mcp.call("ping"))["result"] == {}


async def _all_events(exchange: Any) -> list[SseEvent]:
    events = []
    while (event := await exchange.next_event()) is not None:
        events.append(event)
    return events


# -- SSE on POST ------------------------------------------------------------------------------
async def test_request_answered_as_sse_when_it_streams() -> None:
    with trio.fail_after(10):
        async with serving() as served:
            mcp = served.client()
            await mcp.initialize()
            call = mcp.message("tools/call", {"name": "test_tool_with_progress", "arguments": {}, "_meta": {"progressToken": "tok"}})
            response = await mcp.post(call)
            assert response.status == 200 and response.content_type == "text/event-stream"
            assert response.headers["cache-control"].startswith("no-cache")
            events = response.events()
            # Priming first: an id, a retry, empty data.
            assert events[0].id and events[0].data == "" and events[0].retry == 1000
            messages = [e.json() for e in events[1:]]
            assert [m.get("method") for m in messages] == ["notifications/progress"] * 3 + [None]
            assert [m["params"]["progress"] for m in messages[:3]] == [0, 50, 100]
            assert all(m["params"]["progressToken"] == "tok" for m in messages[:3])
            assert messages[3]["id"] == call["id"] and messages[3]["result"]["content"][0]["text"] == "Progress test completed"
            ids = [e.id for e in events]
            assert len(set(ids)) == len(ids) and all(e.event == "message" for e in events)
            # Without a progress token the same call is a plain JSON answer.
            plain = await mcp.post(mcp.message("tools/call", {"name": "test_tool_with_progress", "arguments": {}}))
            assert plain.content_type == "application/json"


async def test_old_clients_get_no_priming_event() -> None:
    with trio.fail_after(10):
        async with serving() as served:
            mcp = served.client()
            mcp.protocol_version = "2025-03-26"
            await mcp.initialize({"protocolVersion": "2025-03-26", "capabilities": {}, "clientInfo": {"name": "old", "version": "1"}})
            response = await mcp.post(mcp.message("tools/call", {"name": "test_tool_with_progress", "arguments": {},
                                                                 "_meta": {"progressToken": 1}}))
            events = response.events()
            assert all(e.data for e in events)  # an empty data field would crash these clients
            assert len(events) == 4


async def test_json_response_mode_sends_related_messages_on_the_get_stream() -> None:
    with trio.fail_after(10):
        async with serving(json_response=True) as served:
            mcp = served.client()
            await mcp.initialize()
            async with mcp.get_stream() as get:
                response = await mcp.post(mcp.message("tools/call", {"name": "test_tool_with_progress", "arguments": {},
                                                                     "_meta": {"progressToken": 5}}))
                assert response.content_type == "application/json"
                assert response.json()["result"]["content"][0]["text"] == "Progress test completed"
                progress = []
                while len(progress) < 3:
                    event = await get.next_event()
                    assert event is not None
                    if event.data:
                        progress.append(event.json()["params"]["progress"])
                assert progress == [0, 50, 100]
            # JSON is enough for such a server.
            assert (await mcp.call("ping", accept="application/json"))["result"] == {}


async def test_sampling_round_trip_over_the_post_stream() -> None:
    with trio.fail_after(10):
        async with serving() as served:
            mcp = served.client()
            await mcp.initialize()
            call = mcp.message("tools/call", {"name": "test_sampling", "arguments": {"prompt": "2+2?"}})
            async with mcp.post_streaming(call) as stream:
                assert stream.headers["content-type"] == "text/event-stream"
                priming = await stream.next_event()
                assert priming is not None and priming.data == ""
                asked = await stream.next_event()
                assert asked is not None
                sampling = asked.json()
                assert sampling["method"] == "sampling/createMessage"
                answer = {"jsonrpc": "2.0", "id": sampling["id"],
                          "result": {"role": "assistant", "content": {"type": "text", "text": "4"}, "model": "m"}}
                assert (await mcp.post(answer)).status == 202
                final = await stream.next_event()
                assert final is not None and final.json()["result"]["content"][0]["text"] == "LLM response: 4"
                assert await stream.next_event() is None  # the stream ends with the reply


async def test_cancel_ends_the_post_stream_without_a_reply() -> None:
    with trio.fail_after(10):
        async with serving() as served:
            mcp = served.client()
            await mcp.initialize()
            call = mcp.message("tools/call", {"name": "sleep", "arguments": {"seconds": 30}, "_meta": {"progressToken": 1}})
            async with mcp.post_streaming(call) as stream:
                assert (await stream.next_event()).data == ""  # type: ignore[union-attr]
                progress = await stream.next_event()
                assert progress is not None and progress.json()["method"] == "notifications/progress"
                cancelled = await mcp.notify("notifications/cancelled", {"requestId": call["id"], "reason": "test"})
                assert cancelled.status == 202
                rest = await _all_events(stream)
                assert not any("result" in e.json() or "error" in e.json() for e in rest if e.data)
            assert (await served.health())["in_flight"] == 0
            # A resume of that stream is refused: it is over.
            async with mcp.get_stream(last_event_id=f"{progress.id}") as get:
                assert get.status == 400


async def test_close_stream_then_resume_with_last_event_id() -> None:
    """The pending conformance scenario, by hand: test_reconnection."""
    with trio.fail_after(10):
        async with serving() as served:
            mcp = served.client()
            await mcp.initialize()
            call = mcp.message("tools/call", {"name": "test_reconnection", "arguments": {}})
            response = await mcp.post(call, mcp_protocol_version="2025-03-26")
            events = response.events()
            # The priming event (id, retry), then a retry hint; no result on this stream.
            assert events[0].id and events[0].data == "" and events[0].retry == 1000
            assert events[-1].retry == 500
            assert not [e for e in events if e.data]
            async with mcp.get_stream(last_event_id=events[0].id) as get:
                assert get.status == 200
                resumed = await get.next_event()
                assert resumed is not None and resumed.id != events[0].id
                reply = resumed.json()
                assert reply["id"] == call["id"]
                assert reply["result"]["content"][0]["text"] == "Reconnection test completed successfully"
                assert await get.next_event() is None
            async with mcp.get_stream(last_event_id=events[0].id) as again:
                assert again.status == 400  # delivered: nothing left to resume
            async with mcp.get_stream(last_event_id="garbage") as bad:
                assert bad.status == 400


async def test_disconnected_post_stream_is_replayed_on_resume() -> None:
    with trio.fail_after(10):
        async with serving() as served:
            mcp = served.client()
            await mcp.initialize()
            call = mcp.message("tools/call", {"name": "sleep", "arguments": {"seconds": 0.5}, "_meta": {"progressToken": "p"}})
            async with mcp.post_streaming(call) as stream:
                priming = await stream.next_event()
                first = await stream.next_event()
                assert priming is not None and first is not None and first.json()["params"]["progress"] == pytest.approx(0.1)
            # The client is gone; the call goes on. Resume after the first progress event.
            await trio.sleep(0.6)
            async with mcp.get_stream(last_event_id=first.id) as get:
                rest = await _all_events(get)
            messages = [e.json() for e in rest]
            assert [m["params"]["progress"] for m in messages[:-1]] == pytest.approx([0.2, 0.3, 0.4, 0.5])
            assert messages[-1]["result"]["content"][0]["text"] == "slept 0.5 s"


# -- the GET stream ---------------------------------------------------------------------------
async def test_get_stream_carries_server_notifications_with_replay() -> None:
    limits = Limits(sse_replay_events=3)
    with trio.fail_after(10):
        async with serving(stdio_sdk_app.server, limits) as served:
            mcp = served.client()
            await mcp.initialize()
            assert (await mcp.call("resources/subscribe", {"uri": "test://watched"}))["result"] == {}
            async with mcp.get_stream() as get:
                assert get.status == 200 and get.headers["content-type"] == "text/event-stream"
                priming = await get.next_event()
                assert priming is not None and priming.data == "" and priming.retry
                await mcp.call("tools/call", {"name": "touch", "arguments": {"uri": "test://watched"}})
                updated = await get.next_event()
                assert updated is not None
                assert updated.json() == {"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": {"uri": "test://watched"}}
                last_seen = updated.id
            # Disconnected: five more changes, of which the last three are kept.
            for name in ("a", "b", "c", "d", "e"):
                await mcp.call("tools/call", {"name": "add_greeter", "arguments": {"name": f"greet_{name}"}})
                await trio.sleep(0.02)  # list_changed notifications are coalesced while one is pending
            async with mcp.get_stream(last_event_id=last_seen) as get:
                replayed = []
                while len(replayed) < 3:
                    event = await get.next_event()
                    assert event is not None
                    if event.data:
                        replayed.append(event)
                assert [e.json()["method"] for e in replayed] == ["notifications/tools/list_changed"] * 3
                # Live again after the replay.
                await mcp.call("tools/call", {"name": "touch", "arguments": {"uri": "test://watched"}})
                live = await get.next_event()
                assert live is not None and live.json()["method"] == "notifications/resources/updated"
            for name in ("a", "b", "c", "d", "e"):
                await mcp.call("tools/call", {"name": "remove", "arguments": {"name": f"greet_{name}"}})
            # A GET stream never carries a response.
            assert not any("result" in e.json() for e in replayed)


async def test_a_new_get_stream_takes_over() -> None:
    with trio.fail_after(10):
        async with serving(stdio_sdk_app.server) as served:
            mcp = served.client()
            await mcp.initialize()
            await mcp.call("resources/subscribe", {"uri": "test://watched"})
            async with mcp.get_stream() as old:
                await old.next_event()  # priming
                async with mcp.get_stream() as new:
                    await new.next_event()
                    assert await old.next_event() is None  # ended by the newcomer
                    await mcp.call("tools/call", {"name": "touch", "arguments": {"uri": "test://watched"}})
                    event = await new.next_event()
                    assert event is not None and event.json()["params"]["uri"] == "test://watched"


# -- health, metrics, shutdown ----------------------------------------------------------------
async def test_health_and_metrics() -> None:
    with trio.fail_after(10):
        async with serving() as served:
            mcp = served.client()
            await mcp.initialize()
            await mcp.call("tools/call", {"name": "echo", "arguments": {"text": "m"}})
            for path in ("/healthz", "/health"):
                health = await request(served.port, "GET", path)
                assert health.status == 200 and health.content_type == "application/json"
                assert health.json() == {"status": "ok", "connections": 1, "sessions": 1, "websockets": 0, "in_flight": 0}
            metrics = await request(served.port, "GET", "/metrics")
            assert metrics.status == 200 and metrics.content_type == "text/plain"
            text = metrics.body.decode()
            for line in ("# TYPE mcp_connections gauge", "mcp_connections 1", "mcp_http_sessions 1", "mcp_websocket_connections 0",
                         "mcp_requests_in_flight 0", 'mcp_requests_total{method="tools/call",outcome="ok"} 1',
                         "# TYPE mcp_request_duration_seconds histogram", "mcp_connections_opened_total 1"):
                assert line in text.splitlines(), line


async def test_graceful_shutdown() -> None:
    limits = Limits(grace_period=5)
    with trio.fail_after(10):
        async with serving(limits=limits) as served:
            mcp = served.client()
            await mcp.initialize()
            async with trio.open_nursery() as nursery:
                results: list[Any] = []

                async def slow_call() -> None:
                    results.append(await mcp.call("tools/call", {"name": "sleep", "arguments": {"seconds": 0.5}}))

                nursery.start_soon(slow_call)
                await trio.sleep(0.2)
                served.supervisor.shutdown()
                # No longer accepting: new connections are refused at once.
                with pytest.raises(OSError):
                    await request(served.port, "GET", "/healthz")
            assert results[0]["result"]["content"][0]["text"] == "slept 0.5 s"
            with trio.fail_after(2):
                await served.stopped.wait()
            with pytest.raises(OSError):
                await request(served.port, "GET", "/healthz")


async def test_shutdown_answers_calls_past_the_grace_period() -> None:
    limits = Limits(grace_period=0.2)
    with trio.fail_after(10):
        async with serving(limits=limits) as served:
            mcp = served.client()
            await mcp.initialize()
            async with trio.open_nursery() as nursery:
                results: list[Any] = []

                async def stuck_call() -> None:
                    results.append(await mcp.call("tools/call", {"name": "sleep", "arguments": {"seconds": 60}}))

                nursery.start_soon(stuck_call)
                await trio.sleep(0.2)
                started = trio.current_time()
                served.supervisor.shutdown()
            assert results[0]["error"]["code"] == -32031
            with trio.fail_after(2):
                await served.stopped.wait()
            assert trio.current_time() - started < 1.5


# -- authentication ---------------------------------------------------------------------------
async def test_authentication_and_sessions_bound_to_their_caller() -> None:
    from mcp_trio.auth import ApiKey, ApiKeyStore, Authenticator, generate_api_key

    ada_key, ada_digest = generate_api_key()
    bob_key, bob_digest = generate_api_key()
    authenticator = Authenticator(api_keys=ApiKeyStore([ApiKey("ada", ada_digest), ApiKey("bob", bob_digest)]),
                                  resource="http://127.0.0.1/mcp")
    with trio.fail_after(10):
        async with serving(authenticator=authenticator) as served:
            anonymous = served.client()
            refused = await anonymous.post(anonymous.message("initialize", {"protocolVersion": "2025-11-25", "capabilities": {},
                                                                             "clientInfo": {"name": "x", "version": "1"}}))
            assert refused.status == 401 and refused.headers["www-authenticate"].startswith("Bearer")
            assert "resource_metadata=" in refused.headers["www-authenticate"]
            wrong = await anonymous.post(anonymous.message("ping"), x_api_key="mcpk_wrong")
            assert wrong.status == 401

            metadata = await request(served.port, "GET", "/.well-known/oauth-protected-resource/mcp")
            assert metadata.status == 200 and metadata.json()["resource"] == "http://127.0.0.1/mcp"
            assert (await request(served.port, "GET", "/healthz")).status == 200  # probes need no credential

            ada = McpHttp(served.port)
            ada_headers = {"x_api_key": ada_key}
            init = await ada.post(ada.message("initialize", {"protocolVersion": "2025-11-25", "capabilities": {},
                                                              "clientInfo": {"name": "ada", "version": "1"}}), **ada_headers)
            assert init.status == 200
            ada.session_id = init.headers["mcp-session-id"]
            assert (await ada.post(ada.message("ping"), **ada_headers)).status == 200
            # Every request is authenticated: the session id alone is not enough...
            assert (await ada.post(ada.message("ping"))).status == 401
            # ...and to another caller, ada's session does not exist.
            assert (await ada.post(ada.message("ping"), x_api_key=bob_key)).status == 404
            async with ada.get_stream(x_api_key=bob_key) as get:
                assert get.status == 404
            assert (await request(served.port, "DELETE", headers={"mcp-session-id": ada.session_id, "x-api-key": bob_key})).status == 404
            assert (await request(served.port, "DELETE", headers={"mcp-session-id": ada.session_id, "x-api-key": ada_key})).status == 204

            url = f"ws://127.0.0.1:{served.port}/ws"
            with pytest.raises(trio_websocket.ConnectionRejected) as rejected:
                async with trio_websocket.open_websocket_url(url):
                    pass
            assert rejected.value.status_code == 401
            async with trio_websocket.open_websocket_url(url, extra_headers=[("X-API-Key", bob_key)]) as ws:
                assert (await _ws_call(ws, {"jsonrpc": "2.0", "id": 1, "method": "ping"}))["result"] == {}


# -- WebSocket on the same port ---------------------------------------------------------------
async def _ws_call(ws: trio_websocket.WebSocketConnection, message: dict[str, Any]) -> dict[str, Any]:
    await ws.send_message(json.dumps(message))
    while True:
        reply = json.loads(await ws.get_message())
        if reply.get("id") == message.get("id") and "method" not in reply:
            return reply


async def test_websocket_on_the_same_port() -> None:
    with trio.fail_after(10):
        async with serving() as served:
            url = f"ws://127.0.0.1:{served.port}/ws"
            async with trio_websocket.open_websocket_url(url, subprotocols=["mcp"]) as ws:
                assert ws.subprotocol == "mcp"
                init = await _ws_call(ws, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                    "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "ws", "version": "1"}}})
                assert init["result"]["serverInfo"]["name"] == "mcp-trio-demo"
                await ws.send_message(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}))
                echoed = await _ws_call(ws, {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "ws"}}})
                assert echoed["result"]["content"][0]["text"] == "ws"
                assert (await served.health())["websockets"] == 1
            with trio.fail_after(2):
                while (await served.health())["websockets"]:
                    await trio.sleep(0.01)
            # No subprotocol offered: accepted without one.
            async with trio_websocket.open_websocket_url(url) as ws:
                assert ws.subprotocol is None
                reply = await _ws_call(ws, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
                assert reply["error"]["code"] == INVALID_REQUEST  # not initialized yet; the session goes on
                assert (await _ws_call(ws, {"jsonrpc": "2.0", "id": 2, "method": "ping"}))["result"] == {}


async def test_websocket_closing_handshake_codes() -> None:
    """A client's close is answered with its own code (hypercorn answers it); our own close at
    graceful shutdown says 1001, as the WebSocket transport's does."""
    sleep = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "sleep", "arguments": {"seconds": 0.3}}}
    with trio.fail_after(10):
        async with serving(limits=Limits(grace_period=5)) as served:
            url = f"ws://127.0.0.1:{served.port}/ws"
            async with trio_websocket.open_websocket_url(url) as ws:
                assert (await _ws_call(ws, {"jsonrpc": "2.0", "id": 1, "method": "ping"}))["result"] == {}
                await ws.aclose(4000, "done")
                assert ws.closed is not None and (ws.closed.code, ws.closed.reason) == (4000, "done")
            async with trio_websocket.open_websocket_url(url) as ws:
                await _ws_call(ws, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                    "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "ws", "version": "1"}}})
                await ws.send_message(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}))
                await ws.send_message(json.dumps(sleep))
                while not served.supervisor.statistics()["in_flight"]:
                    await trio.sleep(0.01)
                served.supervisor.shutdown()
                assert json.loads(await ws.get_message())["result"]["content"][0]["text"] == "slept 0.3 s"
                with pytest.raises(trio_websocket.ConnectionClosed) as closed:
                    await ws.get_message()
                assert (closed.value.reason.code, closed.value.reason.reason) == (1001, "server shutting down")


async def test_websocket_limits() -> None:
    limits = Limits(max_message_size=1000, max_connections=1, idle_timeout=0.3)
    with trio.fail_after(10):
        async with serving(limits=limits) as served:
            url = f"ws://127.0.0.1:{served.port}/ws"
            # Too large a message: close 1009.
            async with trio_websocket.open_websocket_url(url) as ws:
                await ws.send_message(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"x": "y" * 2000}}))
                with pytest.raises(trio_websocket.ConnectionClosed) as closed:
                    await ws.get_message()
                assert closed.value.reason.code == 1009
            # A binary frame: close 1003, with the reason.
            async with trio_websocket.open_websocket_url(url) as ws:
                await ws.send_message(b'{"jsonrpc": "2.0", "id": 1, "method": "ping"}')
                with pytest.raises(trio_websocket.ConnectionClosed) as closed:
                    await ws.get_message()
                assert closed.value.reason.code == 1003 and "text frame" in closed.value.reason.reason
            # Bad Origin: 403 at the handshake.
            with pytest.raises(trio_websocket.ConnectionRejected) as rejected:
                async with trio_websocket.open_websocket_url(url, extra_headers=[("Origin", "http://evil.example.com")]):
                    pass
            assert rejected.value.status_code == 403
            # Silent for idle_timeout: close 1000 "idle timeout", as on the WebSocket transport.
            # Meanwhile a second connection is refused (503).
            async with trio_websocket.open_websocket_url(url) as ws:
                with pytest.raises(trio_websocket.ConnectionRejected) as rejected:
                    async with trio_websocket.open_websocket_url(url):
                        pass
                assert rejected.value.status_code == 503
                with pytest.raises(trio_websocket.ConnectionClosed) as closed:
                    await ws.get_message()
                assert (closed.value.reason.code, closed.value.reason.reason) == (1000, "idle timeout")
            with pytest.raises(trio_websocket.ConnectionRejected) as rejected:
                async with trio_websocket.open_websocket_url(f"ws://127.0.0.1:{served.port}/elsewhere"):
                    pass
            assert rejected.value.status_code == 404


# =============================================================================================
# the official SDK client over Streamable HTTP
# =============================================================================================
import mcp_types as types
from mcp import Client
from mcp.client.session import ClientRequestContext
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.test_stdio_sdk import (
    DEMO_TOOLS,
    INVALID_PARAMS,
    RESOURCE_NOT_FOUND,
    Inbox,
    Wire,
    _recording,
    assert_argument_errors,
    text_of,
)

sdk = pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")


@asynccontextmanager
async def sdk_session(app: Server = demo.server, limits: Limits | None = None, *, mode: str = "legacy",
                      serve_options: dict[str, Any] | None = None, **options: Any) -> AsyncIterator[tuple[Client, Wire, Served]]:
    """An SDK client, wire recorded, on a fresh in-process ``serve_http(app)``."""
    async with serving(app, limits, **(serve_options or {})) as served:
        wire = Wire()
        async with Client(_recording(streamable_http_client(served.url), wire), mode=mode, **options) as client:
            yield client, wire, served
        unparsed = [m["exception"] for m in wire.received if "exception" in m]
        assert not unparsed, unparsed
        # The SDK ends its session with DELETE on the way out.
        with trio.fail_after(2):
            while (await served.health())["sessions"]:
                await trio.sleep(0.01)


@sdk
async def test_sdk_initialize_legacy_and_ping() -> None:
    with trio.fail_after(15):
        async with sdk_session() as (client, wire, served):
            assert client.protocol_version == "2025-11-25"
            assert client.server_info is not None and client.server_info.name == "mcp-trio-demo"
            caps = client.server_capabilities
            assert caps.tools is not None and caps.tools.list_changed
            assert caps.resources is not None and caps.resources.subscribe
            assert [m.get("method") for m in wire.sent[:2]] == ["initialize", "notifications/initialized"]
            assert isinstance(await client.send_ping(), types.EmptyResult)
            assert (await served.health())["sessions"] == 1


@sdk
async def test_sdk_auto_mode_probes_discover_and_goes_stateless() -> None:
    with trio.fail_after(15):
        async with sdk_session(mode="auto") as (client, wire, served):
            assert wire.sent[0]["method"] == "server/discover"
            assert client.session.discover_result is not None and client.session.initialize_result is None
            assert client.protocol_version == "2026-07-28"
            assert text_of(await client.call_tool("echo", {"text": "stateless"})) == "stateless"
            assert "initialize" not in [m.get("method") for m in wire.sent]
            assert (await served.health())["sessions"] == 0  # nothing kept between requests


@sdk
async def test_sdk_tools() -> None:
    with trio.fail_after(15):
        async with sdk_session() as (client, _, _):
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
            assert set(tools) == DEMO_TOOLS
            assert tools["json_schema_2020_12_tool"].input_schema == demo._ADDRESS_SCHEMA
            assert text_of(await client.call_tool("echo", {"text": "héllo\nwörld"})) == "héllo\nwörld"
            assert text_of(await client.call_tool("test_simple_text")) == "This is a simple text response for testing."
            image = (await client.call_tool("test_image_content")).content
            assert isinstance(image[0], types.ImageContent) and image[0].mime_type == "image/png"
            audio = (await client.call_tool("test_audio_content")).content
            assert isinstance(audio[0], types.AudioContent) and audio[0].mime_type == "audio/wav"
            embedded = (await client.call_tool("test_embedded_resource")).content
            assert isinstance(embedded[0], types.EmbeddedResource)
            mixed = await client.call_tool("test_multiple_content_types")
            assert [type(c) for c in mixed.content] == [types.TextContent, types.ImageContent, types.EmbeddedResource]

            failed = await client.call_tool("test_error_handling")
            assert failed.is_error is True
            await assert_argument_errors(client)  # isError results (SEP-1303); unknown tool -32602
            assert text_of(await client.call_tool("echo", {"text": "still here"})) == "still here"


@sdk
async def test_sdk_progress_arrives_before_the_result() -> None:
    with trio.fail_after(15):
        async with sdk_session() as (client, wire, _):
            steps = Inbox()

            async def on_progress(progress: float, total: float | None, message: str | None) -> None:
                steps.add((progress, total, message))

            result = await client.call_tool("test_tool_with_progress", progress_callback=on_progress)
            assert text_of(result) == "Progress test completed"
            await steps.wait_for(lambda items: len(items) >= 3)
            assert sorted(steps.items) == [(0, 100, "step 1 of 3"), (50, 100, "step 2 of 3"), (100, 100, "step 3 of 3")]
            call = wire.last_request("tools/call")
            reply_at = wire.reply_index(call["id"])
            notes = wire.notifications_received("notifications/progress")
            assert len(notes) == 3 and all(wire.received.index(note) < reply_at for note in notes)


@sdk
async def test_sdk_logging_levels() -> None:
    logs = Inbox()

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        logs.add(params)

    with trio.fail_after(15):
        async with sdk_session(logging_callback=on_log) as (client, wire, _):
            await client.set_logging_level("debug")
            assert text_of(await client.call_tool("test_tool_with_logging")) == "Logging test completed"
            expected = ["Tool execution started", "Tool processing data", "Tool execution completed"]
            assert [m["params"]["data"] for m in wire.notifications_received("notifications/message")] == expected
            await logs.wait_for(lambda items: len(items) >= 3)
            await client.set_logging_level("error")
            mark = len(wire.received)
            assert text_of(await client.call_tool("test_tool_with_logging")) == "Logging test completed"
            assert wire.notifications_received("notifications/message", since=mark) == []


@sdk
async def test_sdk_cancel_a_running_tool() -> None:
    with trio.fail_after(15):
        async with sdk_session() as (client, wire, served):
            started = Inbox()

            async def on_progress(progress: float, total: float | None, message: str | None) -> None:
                started.add(progress)

            call_scope = trio.CancelScope()

            async def call_sleep() -> None:
                with call_scope:
                    await client.call_tool("sleep", {"seconds": 30}, progress_callback=on_progress)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(call_sleep)
                await started.wait_for(lambda items: len(items) >= 1)
                call_scope.cancel()
            call = wire.last_request("tools/call")
            assert [n["params"]["requestId"] for n in wire.notifications_sent("notifications/cancelled")] == [call["id"]]
            await client.send_ping()
            with trio.fail_after(2):
                while (await served.health())["in_flight"]:
                    await trio.sleep(0.01)
            await trio.sleep(0.35)
            assert not any(m.get("id") == call["id"] and "method" not in m for m in wire.received)
            assert text_of(await client.call_tool("echo", {"text": "alive"})) == "alive"


@sdk
async def test_sdk_cancel_while_the_server_waits_on_the_client() -> None:
    asked = trio.Event()
    callback_cancelled = trio.Event()

    async def elicitation(context: ClientRequestContext, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.set()
        try:
            await trio.sleep_forever()
        finally:
            callback_cancelled.set()

    with trio.fail_after(15):
        async with sdk_session(elicitation_callback=elicitation) as (client, wire, _):
            call_scope = trio.CancelScope()

            async def call() -> None:
                with call_scope:
                    await client.call_tool("test_elicitation", {"message": "never answered"})

            async with trio.open_nursery() as nursery:
                nursery.start_soon(call)
                await asked.wait()
                call_scope.cancel()
            # The server's cancel of its own elicitation/create reaches the client (on the GET
            # stream: the tool's POST stream ended with the client's cancel).
            with trio.fail_after(3):
                await callback_cancelled.wait()
            elicit_request = next(m for m in wire.received if m.get("method") == "elicitation/create")
            assert [n["params"]["requestId"] for n in wire.notifications_received("notifications/cancelled")] == [elicit_request["id"]]
            assert text_of(await client.call_tool("echo", {"text": "alive"})) == "alive"


@sdk
async def test_sdk_calls_run_concurrently() -> None:
    with trio.fail_after(15):
        async with sdk_session() as (client, _, _):
            results: list[str] = []

            async def nap() -> None:
                results.append(text_of(await client.call_tool("sleep", {"seconds": 0.3})))

            started = trio.current_time()
            async with trio.open_nursery() as nursery:
                for _ in range(10):
                    nursery.start_soon(nap)
            assert trio.current_time() - started < 1.5
            assert results == ["slept 0.3 s"] * 10


@sdk
async def test_sdk_sampling_and_elicitation() -> None:
    async def sampling(context: ClientRequestContext, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        content = params.messages[0].content
        assert isinstance(content, types.TextContent) and params.max_tokens == 100
        return types.CreateMessageResult(role="assistant", content=types.TextContent(type="text", text=f"answer to {content.text!r}"), model="m")

    async def elicitation(context: ClientRequestContext, params: types.ElicitRequestParams) -> types.ElicitResult:
        assert isinstance(params, types.ElicitRequestFormParams)
        assert params.requested_schema["required"] == ["username", "email"]
        return types.ElicitResult(action="accept", content={"username": "ada", "email": "ada@example.com"})

    with trio.fail_after(15):
        async with sdk_session(sampling_callback=sampling, elicitation_callback=elicitation) as (client, _, _):
            result = await client.call_tool("test_sampling", {"prompt": "What is 2+2?"})
            assert text_of(result) == "LLM response: answer to 'What is 2+2?'"
            result = await client.call_tool("test_elicitation", {"message": "Who are you?"})
            assert text_of(result) == 'User response: action=accept, content={"username":"ada","email":"ada@example.com"}'


@sdk
async def test_sdk_sampling_with_json_responses() -> None:
    """With json_response, the server's request travels on the GET stream."""
    async def sampling(context: ClientRequestContext, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        return types.CreateMessageResult(role="assistant", content=types.TextContent(type="text", text="42"), model="m")

    with trio.fail_after(15):
        async with sdk_session(sampling_callback=sampling, serve_options={"json_response": True}) as (client, _, _):
            assert text_of(await client.call_tool("test_sampling", {"prompt": "?"})) == "LLM response: 42"


@sdk
async def test_sdk_roots() -> None:
    calls = 0

    async def list_roots(context: ClientRequestContext) -> types.ListRootsResult:
        nonlocal calls
        calls += 1
        return types.ListRootsResult(roots=[types.Root(uri=f"file:///work/p{calls}", name="project")])

    with trio.fail_after(15):
        async with sdk_session(stdio_sdk_app.server, list_roots_callback=list_roots) as (client, wire, _):
            assert text_of(await client.call_tool("list_roots")) == "file:///work/p1 project"
            await client.send_roots_list_changed()
            assert text_of(await client.call_tool("list_roots")) == "file:///work/p2 project"


@sdk
async def test_sdk_resources() -> None:
    with trio.fail_after(15):
        async with sdk_session() as (client, wire, _):
            resources = {str(r.uri): r for r in (await client.list_resources()).resources}
            assert set(resources) == {"test://static-text", "test://static-binary", "test://watched-resource",
                                      "units+units://lengths"}  # the mounted units server's
            mounted = (await client.read_resource("units+units://lengths")).contents
            assert mounted[0].uri == "units+units://lengths" and '"mi":1609.344' in mounted[0].text  # type: ignore[union-attr]
            assert text_of(await client.call_tool("units_convert", {"value": 1, "unit": "km", "to": "m"})) == "1000.0"
            templates = (await client.list_resource_templates()).resource_templates
            assert [t.uri_template for t in templates] == ["test://template/{id}/data"]
            text = (await client.read_resource("test://static-text")).contents
            assert isinstance(text[0], types.TextResourceContents) and text[0].text == "This is the content of the static text resource."
            blob = (await client.read_resource("test://static-binary")).contents
            assert isinstance(blob[0], types.BlobResourceContents)
            templated = (await client.read_resource("test://template/123/data")).contents
            assert json.loads(templated[0].text) == {"id": "123", "templateTest": True, "data": "Data for ID: 123"}  # type: ignore[union-attr]
            with pytest.raises(MCPError) as caught:
                await client.read_resource("test://no-such-resource")
            assert caught.value.code == RESOURCE_NOT_FOUND
            assert isinstance(await client.subscribe_resource("test://watched-resource"), types.EmptyResult)
            assert isinstance(await client.unsubscribe_resource("test://watched-resource"), types.EmptyResult)


@sdk
async def test_sdk_resource_updated_on_the_get_stream() -> None:
    updates = Inbox()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            updates.add(str(message.params.uri))

    with trio.fail_after(15):
        async with sdk_session(stdio_sdk_app.server, message_handler=on_message) as (client, wire, _):
            await client.subscribe_resource("test://watched")
            assert text_of(await client.call_tool("touch", {"uri": "test://watched"})) == "touched test://watched"
            await updates.wait_for(lambda items: len(items) >= 1)
            await client.call_tool("touch", {"uri": "test://other"})
            await client.unsubscribe_resource("test://watched")
            await client.call_tool("touch", {"uri": "test://watched"})
            await client.send_ping()
            await trio.sleep(0.2)
            assert updates.items == ["test://watched"]


@sdk
async def test_sdk_prompts_and_completion() -> None:
    with trio.fail_after(15):
        async with sdk_session() as (client, _, _):
            prompts = {p.name for p in (await client.list_prompts()).prompts}
            assert prompts == {"test_simple_prompt", "test_prompt_with_arguments", "test_prompt_with_embedded_resource", "test_prompt_with_image",
                               "test_input_required_result_prompt"}
            simple = await client.get_prompt("test_simple_prompt")
            assert simple.messages[0].content.text == "This is a simple prompt for testing."  # type: ignore[union-attr]
            with_args = await client.get_prompt("test_prompt_with_arguments", {"arg1": "alpha", "arg2": "beta"})
            assert with_args.messages[0].content.text == "Prompt with arguments: arg1='alpha', arg2='beta'"  # type: ignore[union-attr]
            image = await client.get_prompt("test_prompt_with_image")
            assert isinstance(image.messages[0].content, types.ImageContent)
            with pytest.raises(MCPError) as caught:
                await client.get_prompt("test_prompt_with_arguments", {"arg1": "only one"})
            assert caught.value.code == INVALID_PARAMS
            completion = (await client.complete(
                types.PromptReference(type="ref/prompt", name="test_prompt_with_arguments"), {"name": "arg1", "value": "par"})).completion
            assert completion.values == ["paris", "park", "party"]


@sdk
async def test_sdk_tools_list_changed() -> None:
    changes = Inbox()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changes.add(message)

    with trio.fail_after(15):
        async with sdk_session(stdio_sdk_app.server, message_handler=on_message) as (client, _, _):
            assert text_of(await client.call_tool("add_greeter", {"name": "greet_ada"})) == "added greet_ada"
            await changes.wait_for(lambda items: len(items) >= 1)
            assert text_of(await client.call_tool("greet_ada", {"who": "Bob"})) == "hello Bob from greet_ada"
            await client.call_tool("remove", {"name": "greet_ada"})
            await changes.wait_for(lambda items: len(items) >= 2)
            assert "greet_ada" not in {t.name for t in (await client.list_tools()).tools}


@sdk
async def test_sdk_resumes_a_closed_stream() -> None:
    """test_reconnection: the SDK waits ``retry`` ms, resumes with Last-Event-ID, gets the result."""
    with trio.fail_after(15):
        async with sdk_session() as (client, _, _):
            started = trio.current_time()
            assert text_of(await client.call_tool("test_reconnection")) == "Reconnection test completed successfully"
            assert 0.45 < trio.current_time() - started < 3
