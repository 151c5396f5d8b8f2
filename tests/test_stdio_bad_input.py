"""Bad input over the real stdio pipe: every case gets the right JSON-RPC error, and the session
goes on (the next ``tools/call`` on the same process still works).

Most tests spawn ``python -m mcp_trio serve`` (the demo app) and speak raw bytes to it. The
concurrency limit and the grace period are checked in memory, where they can be observed
exactly (a tool that counts its concurrent runs; a mock clock) instead of by wall-clock timing.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import msgspec
import pytest
import trio
import trio.testing

from mcp_trio import Limits, Server
from mcp_trio.demo import server as demo_server
from mcp_trio.protocol._errors import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    SHUTTING_DOWN,
)

from .helpers import RawClient, serve_in_memory, spawn_stdio

#: Generous bound for anything that talks to a child process; a hang fails, it never blocks CI.
TIMEOUT = 15

def slow(test: Any) -> Any:
    """A test that spawns the server: marked slow, and run over both of stdio's I/O paths."""
    return pytest.mark.usefixtures("stdio_io")(pytest.mark.slow(test))


def _line(message: dict[str, Any]) -> bytes:
    return msgspec.json.encode(message) + b"\n"


def _call(request_id: Any, name: str, arguments: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": {"name": name, "arguments": arguments}}


async def assert_alive(client: RawClient, text: str = "still alive") -> None:
    """The next message the server sends is the answer to a fresh echo call: the session works
    and nothing stray (a second error, a reply to a notification) was queued before it."""
    request_id = f"alive-{client.new_id()}"
    await client.send(_call(request_id, "echo", {"text": text}))
    reply = await client.receive()
    assert reply == {"jsonrpc": "2.0", "id": request_id, "result": {"content": [{"type": "text", "text": text}]}}, reply


def assert_error(reply: dict[str, Any], code: int, request_id: Any) -> dict[str, Any]:
    assert reply.get("jsonrpc") == "2.0", reply
    assert "result" not in reply, reply
    assert reply["id"] == request_id, reply
    assert reply["error"]["code"] == code, reply
    assert isinstance(reply["error"]["message"], str) and reply["error"]["message"], reply
    return reply["error"]


async def assert_exits_cleanly(client: RawClient, process: trio.Process) -> None:
    """stdout reaches EOF with no further message, and the process exits 0."""
    with pytest.raises(trio.EndOfChannel):
        extra = await client.receive()
        pytest.fail(f"unexpected message after the last reply: {extra}")  # pragma: no cover
    assert await process.wait() == 0


# -- malformed messages: each answered once, the session goes on --------------------------------
_BAD_INPUT = [
    # (id, raw line, expected code, expected reply id, text expected in the message)
    ("garbage-bytes", b"\x00\xffnot json at all \x01\x02", PARSE_ERROR, None, None),
    ("truncated-json", b'{"jsonrpc":"2.0","id":3,"method":"pi', PARSE_ERROR, None, None),
    ("invalid-utf8-in-method", b'{"jsonrpc":"2.0","id":3,"method":"pi\xffng"}', PARSE_ERROR, None, "UTF-8"),
    # Inside params, which the envelope keeps raw: must still be a parse error, not -32603 later.
    ("invalid-utf8-in-arguments", b'{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"text":"a\xff\xfeb"}}}', PARSE_ERROR, None, "UTF-8"),
    ("invalid-utf8-in-unknown-field", b'{"jsonrpc":"2.0","id":3,"method":"ping","extra":"\xc3"}', PARSE_ERROR, None, "UTF-8"),
    ("batch-array", b'[{"jsonrpc":"2.0","id":3,"method":"ping"}]', INVALID_REQUEST, None, "batch"),
    ("empty-batch", b"[]", INVALID_REQUEST, None, None),
    ("scalar-number", b"42", INVALID_REQUEST, None, "object"),
    ("scalar-string", b'"ping"', INVALID_REQUEST, None, "object"),
    ("scalar-null", b"null", INVALID_REQUEST, None, "object"),
    ("id-true", b'{"jsonrpc":"2.0","id":true,"method":"ping"}', INVALID_REQUEST, None, None),
    ("id-float", b'{"jsonrpc":"2.0","id":1.5,"method":"ping"}', INVALID_REQUEST, None, None),
    ("id-object", b'{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}', INVALID_REQUEST, None, None),
    ("id-null-request", b'{"jsonrpc":"2.0","id":null,"method":"ping"}', INVALID_REQUEST, None, None),
    ("method-not-string", b'{"jsonrpc":"2.0","id":7,"method":42}', INVALID_REQUEST, 7, "method"),
    ("method-not-string-str-id", b'{"jsonrpc":"2.0","id":"abc","method":["ping"]}', INVALID_REQUEST, "abc", "method"),
    ("jsonrpc-missing", b'{"id":8,"method":"ping"}', INVALID_REQUEST, 8, "jsonrpc"),
    ("jsonrpc-wrong-version", b'{"jsonrpc":"1.0","id":8,"method":"ping"}', INVALID_REQUEST, 8, "jsonrpc"),
    ("neither-method-nor-id", b'{"jsonrpc":"2.0","params":{}}', INVALID_REQUEST, None, None),
    ("result-and-error", b'{"jsonrpc":"2.0","id":9,"result":{},"error":{"code":1,"message":"x"}}', INVALID_REQUEST, 9, None),
    ("tools-call-params-array", b'{"jsonrpc":"2.0","id":10,"method":"tools/call","params":[1,2]}', INVALID_PARAMS, 10, None),
    ("tools-call-params-string", b'{"jsonrpc":"2.0","id":11,"method":"tools/call","params":"echo"}', INVALID_PARAMS, 11, None),
    ("tools-call-params-null", b'{"jsonrpc":"2.0","id":12,"method":"tools/call","params":null}', INVALID_PARAMS, 12, None),
    ("tools-call-name-not-string", b'{"jsonrpc":"2.0","id":13,"method":"tools/call","params":{"name":5,"arguments":{}}}', INVALID_PARAMS, 13, None),
    ("tools-call-arguments-array", b'{"jsonrpc":"2.0","id":14,"method":"tools/call","params":{"name":"echo","arguments":["hi"]}}', INVALID_PARAMS, 14, None),
    ("unknown-tool", b'{"jsonrpc":"2.0","id":15,"method":"tools/call","params":{"name":"no_such_tool","arguments":{}}}', INVALID_PARAMS, 15, "no_such_tool"),
    ("unknown-method", b'{"jsonrpc":"2.0","id":16,"method":"no/such/method"}', METHOD_NOT_FOUND, 16, "no/such/method"),
    ("unknown-method-string-id", b'{"jsonrpc":"2.0","id":"q-1","method":"tools/explode","params":{}}', METHOD_NOT_FOUND, "q-1", None),
]


@slow
@pytest.mark.parametrize(("raw", "code", "reply_id", "text"), [case[1:] for case in _BAD_INPUT], ids=[case[0] for case in _BAD_INPUT])
async def test_bad_input_is_answered_and_session_goes_on(raw: bytes, code: int, reply_id: Any, text: str | None) -> None:
    with trio.fail_after(TIMEOUT):
        async with spawn_stdio() as (client, process):
            await client.initialize()
            await client.send_raw(raw + b"\n")
            error = assert_error(await client.receive(), code, reply_id)
            if text is not None:
                assert text in error["message"], error
            await assert_alive(client)
            await client.close()
            await assert_exits_cleanly(client, process)


@slow
@pytest.mark.parametrize(
    ("arguments", "argument"),
    [
        ({"text": 5}, "text"),
        ({"text": None}, "text"),
        ({"text": ["a"]}, "text"),
        ({}, "text"),  # missing
    ],
    ids=["int", "null", "array", "missing"],
)
async def test_wrong_tool_argument_names_the_argument(arguments: dict[str, Any], argument: str) -> None:
    """A tool-argument error is a result the model reads (SEP-1303), naming the argument."""

    def invalid(reply: dict[str, Any], request_id: int) -> dict[str, Any]:
        assert reply["id"] == request_id and reply["result"]["isError"] is True, reply
        return reply["result"]["_meta"]["invalidArguments"][0]

    with trio.fail_after(TIMEOUT):
        async with spawn_stdio() as (client, process):
            await client.initialize()
            await client.send(_call(21, "echo", arguments))
            assert invalid(await client.receive(), 21)["argument"] == argument
            # A constrained argument: sleep(seconds) has ge=0.
            await client.send(_call(22, "sleep", {"seconds": -1}))
            detail = invalid(await client.receive(), 22)
            assert (detail["argument"], detail["constraint"], detail["limit"], detail["received"]) == ("seconds", "minimum", 0, -1)
            await client.send(_call(23, "sleep", {"seconds": "soon"}))
            assert invalid(await client.receive(), 23)["message"] == 'seconds must be a number (got "soon")'
            await assert_alive(client)


@slow
async def test_deeply_nested_json_is_refused_and_server_survives() -> None:
    depth = 200_000
    lines = [
        b"[" * depth,  # a bare array: refused as a batch or as too deep
        b'{"jsonrpc":"2.0","id":31,"method":"ping","params":' + b"[" * depth + b"}",  # inside the raw params
        b'{"jsonrpc":"2.0","id":32,"method":"ping","junk":' + b'{"a":' * depth + b"}",  # inside a skipped field
        b'{"jsonrpc":"2.0","id":33,"method":"tools/call","params":{"name":"echo","arguments":{"text":' + b"[" * depth + b"}}}",
    ]
    with trio.fail_after(TIMEOUT):
        async with spawn_stdio() as (client, process):
            await client.initialize()
            for raw in lines:
                await client.send_raw(raw + b"\n")
                reply = await client.receive()
                assert "result" not in reply, reply
                assert reply["error"]["code"] in (PARSE_ERROR, INVALID_REQUEST), reply
                assert reply["id"] is None, reply
                await assert_alive(client)
            assert process.returncode is None
            await client.close()
            await assert_exits_cleanly(client, process)


# -- the message-size limit -----------------------------------------------------------------------
def _echo_line_of(size: int, request_id: int) -> bytes:
    """A valid echo request whose line (without the newline) is exactly ``size`` bytes."""
    bare = _line(_call(request_id, "echo", {"text": ""}))[:-1]
    line = _line(_call(request_id, "echo", {"text": "x" * (size - len(bare))}))[:-1]
    assert len(line) == size
    return line


@slow
@pytest.mark.parametrize("size", [1001, 5000, 300_000, 3_000_000], ids=["limit+1", "5k", "300k", "3M"])
async def test_oversized_line_is_refused_then_next_line_works(size: int) -> None:
    limit = 1000
    with trio.fail_after(TIMEOUT):
        async with spawn_stdio("--max-message-size", str(limit)) as (client, process):
            await client.initialize()
            # Exactly at the limit is accepted.
            await client.send_raw(_echo_line_of(limit, 40) + b"\n")
            reply = await client.receive()
            assert reply["id"] == 40 and "result" in reply, reply
            # Over it: a request that would succeed if the limit were not enforced.
            # The next request is in the same write, right behind the newline.
            await client.send_raw(_echo_line_of(size, 41) + b"\n" + _line({"jsonrpc": "2.0", "id": 42, "method": "ping"}))
            error = assert_error(await client.receive(), INVALID_REQUEST, None)
            assert str(limit) in error["message"] and "limit" in error["message"], error
            assert await client.receive() == {"jsonrpc": "2.0", "id": 42, "result": {}}
            await assert_alive(client)
            await client.close()
            await assert_exits_cleanly(client, process)


def _peak_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc status")  # pragma: no cover


@slow
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="peak RSS is read from /proc")
async def test_oversized_line_is_skipped_in_bounded_memory() -> None:
    """The line limit bounds memory: a 64 MiB line is discarded as it streams in, not buffered.

    (The codec's own size check alone would give the same error, after buffering it all.)
    """
    size = 64 * 1024 * 1024
    with trio.fail_after(TIMEOUT):
        async with spawn_stdio("--max-message-size", "1000") as (client, process):
            await client.initialize()
            await assert_alive(client)
            before = _peak_rss_kib(process.pid)
            chunk = b"x" * (1024 * 1024)
            await client.send_raw(b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"')
            for _ in range(size // len(chunk)):
                await client.send_raw(chunk)
            await client.send_raw(b'"}}}\n')
            error = assert_error(await client.receive(), INVALID_REQUEST, None)
            assert "1000" in error["message"], error
            await assert_alive(client)
            grown = _peak_rss_kib(process.pid) - before
            assert grown < 16 * 1024, f"peak RSS grew by {grown} KiB while skipping a {size >> 20} MiB line"


@slow
async def test_oversized_last_line_without_newline_then_eof() -> None:
    with trio.fail_after(TIMEOUT):
        async with spawn_stdio("--max-message-size", "1000") as (client, process):
            await client.initialize()
            await client.send_raw(b"{" + b" " * 200_000)
            await client.close()
            error = assert_error(await client.receive(), INVALID_REQUEST, None)
            assert "1000" in error["message"], error
            await assert_exits_cleanly(client, process)


# -- the session's phases ---------------------------------------------------------------------------
@slow
async def test_request_before_initialize_is_refused_then_initialize_works() -> None:
    with trio.fail_after(TIMEOUT):
        async with spawn_stdio() as (client, process):
            await client.send(_call(1, "echo", {"text": "too early"}))
            error = assert_error(await client.receive(), INVALID_REQUEST, 1)
            assert "initialize" in error["message"], error
            await client.send({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
            assert_error(await client.receive(), INVALID_REQUEST, 2)
            # ping is allowed before the handshake.
            pong = await client.request("ping")
            assert "result" in pong and pong["result"] == {}, pong
            assert process.returncode is None
            init = await client.initialize()
            assert init["result"]["serverInfo"]["name"] == "mcp-trio-demo", init
            await assert_alive(client)
            # A second initialize on the same session is refused, and changes nothing.
            again = await client.request("initialize", {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "other", "version": "2"}})
            assert_error(again, INVALID_REQUEST, again["id"])
            assert "already initialized" in again["error"]["message"], again
            await assert_alive(client)
            await client.close()
            await assert_exits_cleanly(client, process)


@slow
async def test_initialize_with_bad_params_is_invalid_params_and_can_be_retried() -> None:
    with trio.fail_after(TIMEOUT):
        async with spawn_stdio() as (client, process):
            await client.send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": 2025}})
            assert_error(await client.receive(), INVALID_PARAMS, 1)
            await client.initialize()
            await assert_alive(client)


# -- request ids ------------------------------------------------------------------------------------
@slow
async def test_duplicate_request_id_in_flight_is_refused_and_first_completes() -> None:
    with trio.fail_after(TIMEOUT):
        async with spawn_stdio() as (client, process):
            await client.initialize()
            await client.send_raw(_line(_call(7, "sleep", {"seconds": 0.3})) + _line(_call(7, "sleep", {"seconds": 0.01})))
            first = await client.receive()
            second = await client.receive()
            error = assert_error(first, INVALID_REQUEST, 7)
            assert "duplicate" in error["message"], error
            assert second == {"jsonrpc": "2.0", "id": 7, "result": {"content": [{"type": "text", "text": "slept 0.3 s"}]}}, second
            # Once answered, the id is free again.
            await client.send({"jsonrpc": "2.0", "id": 7, "method": "ping"})
            assert await client.receive() == {"jsonrpc": "2.0", "id": 7, "result": {}}
            await assert_alive(client)


# -- messages that get no reply -----------------------------------------------------------------------
_SILENT = [
    ("unknown-notification", {"jsonrpc": "2.0", "method": "notifications/bogus", "params": {"x": 1}}),
    ("unknown-non-notifications-method", {"jsonrpc": "2.0", "method": "foo/bar"}),
    ("request-method-without-id", {"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "x"}}}),
    ("cancelled-with-bad-params", {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": "garbage"}),
    ("cancelled-unknown-request", {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 12345}}),
    ("progress-unknown-token", {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": "t", "progress": 1}}),
    ("response-unknown-int-id", {"jsonrpc": "2.0", "id": 999, "result": {}}),
    ("response-unknown-str-id", {"jsonrpc": "2.0", "id": "never-sent", "result": {"x": 1}}),
    ("error-response-unknown-id", {"jsonrpc": "2.0", "id": 998, "error": {"code": -32000, "message": "nope"}}),
    ("error-response-null-id", {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "you sent garbage"}}),
]


@slow
@pytest.mark.parametrize("message", [case[1] for case in _SILENT], ids=[case[0] for case in _SILENT])
async def test_no_reply_to_notifications_and_stray_responses(message: dict[str, Any]) -> None:
    with trio.fail_after(TIMEOUT):
        async with spawn_stdio() as (client, process):
            await client.initialize()
            await client.send(message)
            await client.send({"jsonrpc": "2.0", "id": "after", "method": "ping"})
            # The very next message is the ping's answer: nothing was sent for ``message``.
            assert await client.receive() == {"jsonrpc": "2.0", "id": "after", "result": {}}
            await assert_alive(client)
            await client.close()
            await assert_exits_cleanly(client, process)


@slow
async def test_empty_lines_and_crlf_are_tolerated() -> None:
    with trio.fail_after(TIMEOUT):
        async with spawn_stdio() as (client, process):
            init = _line({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "crlf", "version": "1"}}})
            await client.send_raw(b"\n\r\n  \n\t\r\n" + init[:-1] + b"\r\n")
            assert (await client.receive())["id"] == 1
            await client.send_raw(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\r\n\r\n\r\n')
            await client.send_raw(_line(_call(2, "echo", {"text": "crlf"}))[:-1] + b"\r\n\n\n")
            reply = await client.receive()
            assert reply["id"] == 2 and reply["result"]["content"] == [{"type": "text", "text": "crlf"}], reply
            # A request split across writes, with CRLF, still arrives whole.
            raw = _line({"jsonrpc": "2.0", "id": 3, "method": "ping"})[:-1] + b"\r\n"
            await client.send_raw(raw[:10])
            await trio.sleep(0.05)
            await client.send_raw(raw[10:])
            assert await client.receive() == {"jsonrpc": "2.0", "id": 3, "result": {}}
            await assert_alive(client)
            await client.close()
            await assert_exits_cleanly(client, process)


# -- shutdown ----------------------------------------------------------------------------------------
@slow
async def test_eof_answers_in_flight_call_then_exits_0() -> None:
    # The default grace period is 10 s: a server that waited it out instead of exiting as soon
    # as the call is answered would trip this deadline.
    with trio.fail_after(5):
        async with spawn_stdio() as (client, process):
            await client.initialize()
            await client.send(_call(5, "sleep", {"seconds": 0.3}))
            await client.close()
            reply = await client.receive()
            assert reply == {"jsonrpc": "2.0", "id": 5, "result": {"content": [{"type": "text", "text": "slept 0.3 s"}]}}, reply
            await assert_exits_cleanly(client, process)


@slow
async def test_eof_with_nothing_in_flight_exits_0() -> None:
    with trio.fail_after(5):
        async with spawn_stdio() as (client, process):
            await client.close()
            await assert_exits_cleanly(client, process)


@slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_signal_answers_in_flight_call_then_exits_0(signum: signal.Signals) -> None:
    with trio.fail_after(TIMEOUT):
        async with spawn_stdio() as (client, process):
            await client.initialize()
            await client.send(_call(5, "sleep", {"seconds": 0.5}))
            # The ping's answer proves the sleep was accepted (the reader handles messages in
            # order) and that the server is running, with its signal handler installed.
            await client.send({"jsonrpc": "2.0", "id": 6, "method": "ping"})
            assert await client.receive() == {"jsonrpc": "2.0", "id": 6, "result": {}}
            process.send_signal(signum)
            reply = await client.receive()
            assert reply == {"jsonrpc": "2.0", "id": 5, "result": {"content": [{"type": "text", "text": "slept 0.5 s"}]}}, reply
            # stdin is still open: the signal alone ends the process, with code 0.
            await assert_exits_cleanly(client, process)


# -- stdout carries protocol messages only ---------------------------------------------------------
@slow
async def test_stdout_carries_only_jsonrpc_with_debug_logging(tmp_path: Any) -> None:
    stderr_path = tmp_path / "stderr.log"
    messages = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "log", "version": "1"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "logging/setLevel", "params": {"level": "debug"}},
        _call(3, "echo", {"text": "hello"}),
        {"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "sleep", "arguments": {"seconds": 0.25}, "_meta": {"progressToken": "p"}}},
        _call(5, "test_tool_with_logging", {}),
        _call(6, "test_error_handling", {}),
        _call(7, "echo", {"text": 1}),
        {"jsonrpc": "2.0", "id": 8, "method": "no/such"},
        {"jsonrpc": "2.0", "id": 999, "result": {}},  # logged at debug as dropped
        {"jsonrpc": "2.0", "method": "notifications/bogus"},
    ]
    raw = b"".join(_line(m) for m in messages) + b"\x00garbage\n[]\n"
    expected_ids = {1, 2, 3, 4, 5, 6, 7, 8}
    with trio.fail_after(TIMEOUT), stderr_path.open("wb") as stderr:
        async with spawn_stdio("--log-level", "debug", stderr=stderr.fileno()) as (client, process):
            assert process.stdout is not None
            await client.send_raw(raw)
            await client.close()
            output = bytearray()
            while chunk := await process.stdout.receive_some():
                output += chunk
            assert await process.wait() == 0
    assert output.endswith(b"\n"), bytes(output[-200:])
    replies: set[Any] = set()
    notifications: list[str] = []
    for line in bytes(output).split(b"\n")[:-1]:
        message = msgspec.json.decode(line)  # raises on any non-JSON line (a log line, a blank line)
        assert isinstance(message, dict) and message.get("jsonrpc") == "2.0", line
        if "method" in message:
            assert "id" not in message, message  # the server sends us no requests here
            notifications.append(message["method"])
        else:
            assert ("result" in message) != ("error" in message), message
            assert message["id"] not in replies or message["id"] is None, message
            replies.add(message["id"])
    assert replies == expected_ids | {None}, replies
    assert "notifications/progress" in notifications and "notifications/message" in notifications, notifications
    logs = stderr_path.read_text()
    assert "DEBUG" in logs, logs  # the debug logs were written, to stderr


# -- requests in flight ------------------------------------------------------------------------------
@slow
async def test_max_in_flight_over_stdio_answers_every_pipelined_call() -> None:
    with trio.fail_after(TIMEOUT):
        async with spawn_stdio("--max-in-flight", "2") as (client, process):
            await client.initialize()
            await client.send_raw(b"".join(_line(_call(100 + i, "sleep", {"seconds": 0.2})) for i in range(5)))
            replies = [await client.receive() for _ in range(5)]
            assert sorted(r["id"] for r in replies) == [100, 101, 102, 103, 104], replies
            for reply in replies:
                assert reply["result"]["content"] == [{"type": "text", "text": "slept 0.2 s"}], reply
            await assert_alive(client)
            await client.close()
            await assert_exits_cleanly(client, process)


def _gated_server() -> tuple[Server, dict[str, Any]]:
    """A server whose ``hold`` tool counts how many of its calls run at once."""
    state: dict[str, Any] = {"running": 0, "peak": 0, "started": 0, "gate": trio.Event()}
    server = Server("gated")

    @server.tool
    async def hold() -> str:
        state["running"] += 1
        state["started"] += 1
        state["peak"] = max(state["peak"], state["running"])
        try:
            await state["gate"].wait()
        finally:
            state["running"] -= 1
        return "released"

    @server.tool
    async def echo(text: str) -> str:
        return text

    return server, state


async def test_max_in_flight_bounds_concurrent_tool_runs() -> None:
    server, state = _gated_server()
    with trio.fail_after(5):
        async with serve_in_memory(server, Limits(max_in_flight=2)) as (client, _, connection):
            await client.initialize()
            for i in range(5):
                await client.send(_call(200 + i, "hold", {}))
            await trio.testing.wait_all_tasks_blocked()
            # Two run; the rest wait for a slot (stalling the reader, not piling up tasks).
            assert state["running"] == 2 and state["started"] == 2, state
            assert connection.statistics()["slots_free"] == 0, connection.statistics()
            state["gate"].set()
            replies = [await client.receive() for _ in range(5)]
            assert sorted(r["id"] for r in replies) == [200, 201, 202, 203, 204], replies
            assert all(r["result"]["content"] == [{"type": "text", "text": "released"}] for r in replies), replies
            assert state["peak"] == 2 and state["started"] == 5, state
            await assert_alive(client)
            await trio.testing.wait_all_tasks_blocked()
            stats = connection.statistics()
            assert {k: stats[k] for k in ("in_flight", "client_requests_pending", "slots_free")} == \
                {"in_flight": 0, "client_requests_pending": 0, "slots_free": 2}, stats
            # Tasks kept for the next requests that wait: no more than ever ran at once.
            assert stats["parked_tasks"] <= 2 + 1, stats


# -- grace period at shutdown ------------------------------------------------------------------------
def _sleep_call(request_id: int, seconds: float) -> dict[str, Any]:
    return _call(request_id, "sleep", {"seconds": seconds})


async def test_grace_period_cancels_slow_call_with_shutting_down(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(300):  # virtual seconds: the tool alone would take 100
        async with serve_in_memory(demo_server, Limits(grace_period=1)) as (client, supervisor, connection):
            await client.initialize()
            await client.send(_sleep_call(1, 100))
            await client.send(_sleep_call(2, 0.5))
            await client.send({"jsonrpc": "2.0", "id": 3, "method": "ping"})
            assert await client.receive() == {"jsonrpc": "2.0", "id": 3, "result": {}}
            assert connection.statistics()["in_flight"] == 2
            start = trio.current_time()
            supervisor.shutdown()
            quick = await client.receive()
            assert quick == {"jsonrpc": "2.0", "id": 2, "result": {"content": [{"type": "text", "text": "slept 0.5 s"}]}}, quick
            slow_reply = await client.receive()
            assert_error(slow_reply, SHUTTING_DOWN, 1)
            waited = trio.current_time() - start
            assert 1.0 <= waited < 2.0, waited  # the grace period, not the tool's 100 s
            with pytest.raises(trio.EndOfChannel):
                await client.receive()


async def test_call_finishing_within_grace_is_answered_normally(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(300):
        async with serve_in_memory(demo_server, Limits(grace_period=1)) as (client, supervisor, connection):
            await client.initialize()
            await client.send(_sleep_call(1, 0.5))
            await client.send({"jsonrpc": "2.0", "id": 2, "method": "ping"})
            assert await client.receive() == {"jsonrpc": "2.0", "id": 2, "result": {}}
            start = trio.current_time()
            supervisor.shutdown()
            reply = await client.receive()
            assert reply == {"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": "slept 0.5 s"}]}}, reply
            with pytest.raises(trio.EndOfChannel):
                await client.receive()
            # Drained as soon as the call finished, not at the end of the grace period.
            assert trio.current_time() - start < 1.0


async def test_no_new_requests_after_shutdown_begins(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(300):
        async with serve_in_memory(demo_server, Limits(grace_period=1)) as (client, supervisor, _):
            await client.initialize()
            await client.send(_sleep_call(1, 0.5))
            await client.send({"jsonrpc": "2.0", "id": 2, "method": "ping"})
            assert await client.receive() == {"jsonrpc": "2.0", "id": 2, "result": {}}
            supervisor.shutdown()
            # Sent after shutdown began: the reader has stopped, so this is never answered.
            await client.send(_call(3, "echo", {"text": "late"}))
            assert (await client.receive())["id"] == 1
            with pytest.raises(trio.EndOfChannel):
                await client.receive()


async def test_shutdown_answers_requests_still_waiting_for_a_slot() -> None:
    """Read but not yet started (the in-flight limit was reached): still answered at shutdown."""
    server, state = _gated_server()
    with trio.fail_after(5):
        async with serve_in_memory(server, Limits(max_in_flight=1, grace_period=0)) as (client, supervisor, connection):
            await client.initialize()
            await client.send(_call(1, "hold", {}))
            await client.send(_call(2, "hold", {}))
            await trio.testing.wait_all_tasks_blocked()
            assert state["running"] == 1, state
            supervisor.shutdown()
            replies = [await client.receive(), await client.receive()]
            assert sorted(r["id"] for r in replies) == [1, 2], replies
            for reply in replies:
                assert_error(reply, SHUTTING_DOWN, reply["id"])
            with pytest.raises(trio.EndOfChannel):
                await client.receive()
            assert state["running"] == 0, state
