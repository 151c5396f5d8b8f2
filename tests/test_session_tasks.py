"""How a connection runs requests: in the reader until they wait, then in a task of their own.

A request that never waits is answered by the task that read it (no task, no trip through the
scheduler); one that waits hands the reading to another task and stays cancellable; what a
request sets in a context variable stays its own; the tasks kept for later are bounded. And
replies written without waiting (stdio pipes, WebSocket sockets) arrive whole and in order
when the pipe or socket cannot take them at once.
"""

from __future__ import annotations

import contextvars
import socket
import subprocess
from typing import Any

import msgspec
import trio
import trio.testing
from wsproto.frame_protocol import FrameProtocol, Opcode

from mcp_trio import Limits, Server
from mcp_trio.serving._connection import _MAX_IDLE_TASKS, Connection
from mcp_trio.transports._sockets import SocketStream
from mcp_trio.transports._ws_channel import WebSocketChannel

from .helpers import serve_in_memory, spawn_stdio


def _call(request_id: int, name: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": {"name": name, "arguments": arguments or {}}}


def _text(reply: dict[str, Any]) -> str:
    return reply["result"]["content"][0]["text"]  # type: ignore[no-any-return]


def _server() -> tuple[Server, dict[str, Any]]:
    server = Server("session-tasks")
    state: dict[str, Any] = {"tasks": [], "gate": trio.Event(), "cancelled": 0, "waiting": 0}
    var: contextvars.ContextVar[str] = contextvars.ContextVar("request_var", default="unset")

    @server.tool
    async def where() -> str:
        state["tasks"].append(trio.lowlevel.current_task())
        return "here"

    @server.tool
    async def hold() -> str:
        state["waiting"] += 1
        try:
            await state["gate"].wait()
        except trio.Cancelled:
            state["cancelled"] += 1
            raise
        finally:
            state["waiting"] -= 1
        return "released"

    @server.tool
    async def set_var(value: str) -> str:
        before = var.get()
        var.set(value)
        return before

    @server.tool
    async def set_var_then_wait(value: str) -> str:
        before = var.get()
        var.set(value)
        await trio.sleep(0)
        return before

    @server.tool
    async def stop_reading() -> str:
        state["connection"].stop_reading()
        return "stopping"

    return server, state


async def test_requests_that_never_wait_are_answered_by_the_task_that_read_them() -> None:
    server, state = _server()
    with trio.fail_after(5):
        async with serve_in_memory(server) as (client, _, connection):
            await client.initialize()
            for request_id in (1, 2, 3):
                await client.send(_call(request_id, "where"))
            replies = [await client.receive() for _ in range(3)]
            assert sorted(r["id"] for r in replies) == [1, 2, 3]
            assert len(set(state["tasks"])) == 1  # one task read and ran all three
            assert connection.statistics()["parked_tasks"] == 0  # none was needed


def _tasks_under(task: trio.lowlevel.Task) -> list[trio.lowlevel.Task]:
    return [task] + [t for nursery in task.child_nurseries for child in nursery.child_tasks for t in _tasks_under(child)]


async def test_an_idle_session_is_three_tasks_and_its_own_task_reads() -> None:
    """Idle-session memory (issue 13): the connection's own task leads first, so an idle
    session is its reader, the dispatcher and the writer, as before requests ran inline (a
    fourth task that only waited for the end of input cost ~1 KiB a session)."""
    server, state = _server()
    with trio.fail_after(5):
        async with serve_in_memory(server) as (client, _, connection):
            await client.initialize()
            assert _text(await client.request("tools/call", {"name": "where", "arguments": {}})) == "here"
            await trio.testing.wait_all_tasks_blocked()
            [run_task] = [task for task in _tasks_under(trio.lowlevel.current_root_task())
                          if getattr(task.coro, "cr_code", None) is Connection.run.__code__]
            assert len(_tasks_under(run_task)) == 3
            assert state["tasks"] == [run_task]  # the request ran inline, in the reading task
            assert connection.statistics()["parked_tasks"] == 0


async def test_a_request_that_waits_hands_the_reading_over_and_stays_cancellable() -> None:
    server, state = _server()
    with trio.fail_after(5):
        async with serve_in_memory(server) as (client, _, connection):
            await client.initialize()
            await client.send(_call(10, "hold"))
            # It waits: another task reads on, and answers what never waits at once.
            assert (await client.request("ping"))["result"] == {}
            assert state["waiting"] == 1
            await client.notify("notifications/cancelled", {"requestId": 10, "reason": "no longer needed"})
            # Answered, unlike the cancelled call (the spec says not to answer it).
            assert _text(await client.request("tools/call", {"name": "where", "arguments": {}})) == "here"
            await trio.testing.wait_all_tasks_blocked()
            assert state["cancelled"] == 1 and state["waiting"] == 0
            assert connection.in_flight == 0
            # The task that ran the cancelled request is spent (its scope stays cancelled):
            # the next request that waits gets a live one, and finishes.
            await client.send(_call(11, "hold"))
            await trio.testing.wait_all_tasks_blocked()
            state["gate"].set()
            assert _text(await client.reply_to(11)) == "released"


async def test_what_a_request_sets_in_a_context_variable_stays_its_own() -> None:
    server, _ = _server()
    with trio.fail_after(5):
        async with serve_in_memory(server) as (client, _, _):
            await client.initialize()
            for name in ("set_var", "set_var", "set_var_then_wait", "set_var_then_wait", "set_var"):
                reply = await client.request("tools/call", {"name": name, "arguments": {"value": name}})
                assert _text(reply) == "unset", (name, reply)


async def test_tasks_kept_for_later_requests_are_bounded() -> None:
    server, state = _server()
    burst = _MAX_IDLE_TASKS + 8
    with trio.fail_after(10):
        async with serve_in_memory(server, Limits(max_in_flight=burst + 1)) as (client, _, connection):
            await client.initialize()
            for request_id in range(100, 100 + burst):
                await client.send(_call(request_id, "hold"))
            await trio.testing.wait_all_tasks_blocked()
            assert state["waiting"] == burst  # each in a task of its own
            state["gate"].set()
            replies = [await client.receive() for _ in range(burst)]
            assert all(_text(reply) == "released" for reply in replies)
            await trio.testing.wait_all_tasks_blocked()
            assert connection.statistics()["parked_tasks"] <= _MAX_IDLE_TASKS


async def test_a_request_that_stops_the_reading_is_still_answered() -> None:
    """``stop_reading`` called by the request the reader is running (a shutdown it asked for)
    stops the reading after that request, not in the middle of it."""
    server, state = _server()
    with trio.fail_after(5):
        async with serve_in_memory(server) as (client, _, connection):
            state["connection"] = connection
            await client.initialize()
            await client.send(_call(1, "stop_reading"))
            await client.send(_call(2, "where"))  # read before the stop, or never: not half
            assert _text(await client.reply_to(1)) == "stopping"
            await connection.input_done.wait()


async def test_a_reply_larger_than_the_pipe_arrives_whole_and_in_order() -> None:
    """Over stdio a reply is written without waiting when the pipe takes it; a 1 MiB reply
    does not fit a pipe (64 KiB): the rest is written by the writer, before the next reply."""
    big = "x" * (1 << 20)
    with trio.fail_after(30):
        async with spawn_stdio(stderr=subprocess.DEVNULL) as (client, _):
            await client.initialize()
            await client.send(_call(1, "echo", {"text": big}))
            await client.send({"jsonrpc": "2.0", "id": 2, "method": "ping"})
            first, second = await client.receive(), await client.receive()
            assert first["id"] == 1 and _text(first) == big
            assert second == {"jsonrpc": "2.0", "id": 2, "result": {}}


async def test_a_websocket_frame_the_socket_cannot_take_at_once_is_finished_before_any_other() -> None:
    """A frame partly written without waiting holds the socket: a control frame sent
    meanwhile (the pong the reader owes a client's ping) waits for ``flush`` to finish the
    frame, so the peer reads whole frames, in order."""
    ours, theirs = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    theirs.setblocking(False)
    message = msgspec.json.encode({"text": "y" * 300_000})
    channel = WebSocketChannel(SocketStream(ours), Limits(), trio.Event())
    assert channel.send_batch_nowait is not None
    received: list[tuple[Opcode, bytes]] = []

    async def read_all(until: int) -> None:
        proto = FrameProtocol(True, [])
        parts = bytearray()
        while len(received) < until:
            await trio.lowlevel.wait_readable(theirs)
            proto.receive_bytes(theirs.recv(65536))
            for frame in proto.received_frames():
                if frame.opcode is Opcode.TEXT:
                    parts += frame.payload.encode()
                    if frame.message_finished:
                        received.append((Opcode.TEXT, bytes(parts)))
                        parts.clear()
                else:
                    received.append((frame.opcode, bytes(frame.payload)))

    with trio.fail_after(10):
        assert channel.send_batch_nowait([message]) is False  # part of it went, the rest is kept
        async with trio.open_nursery() as nursery:
            # Another task's control frame: it waits its turn.
            nursery.start_soon(channel._send_control, channel._proto.pong(b"owed"))
            nursery.start_soon(read_all, 2)
            await trio.testing.wait_all_tasks_blocked()
            await channel.flush()
        assert received == [(Opcode.TEXT, message), (Opcode.PONG, b"owed")]
        assert channel.send_batch_nowait([b'{"small":1}']) is True  # nothing kept: written at once
    ours.close()
    theirs.close()


async def test_stdio_says_when_a_whole_message_is_buffered() -> None:
    """The connection writes its replies before a read that would wait (``message_ready``
    False) and keeps batching while whole lines are buffered (True)."""
    from mcp_trio.transports.stdio import LineChannel

    send, receive = trio.testing.memory_stream_one_way_pair()
    out, _ = trio.testing.memory_stream_one_way_pair()
    channel = LineChannel(receive, out, 1024)
    assert not channel.message_ready()
    await send.send_all(b'{"a":1}\n{"b":2}\n{"c"')
    with trio.fail_after(5):
        assert await channel.receive() == b'{"a":1}'
        assert channel.message_ready()
        assert await channel.receive() == b'{"b":2}'
        assert not channel.message_ready()  # half a line: the next read would wait
        await send.send_all(b":3}\n")
        assert await channel.receive() == b'{"c":3}'
        assert not channel.message_ready()


def test_websocket_sessions_on_both_ports_write_replies_without_waiting() -> None:
    """``--transport ws`` and ``/ws`` of the HTTP port (the h1 engine's socket) both read
    ``_sockets.SocketStream``, which offers ``send_batch_nowait``: a reply made without
    waiting needs no trip through the writer."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        channel = WebSocketChannel(SocketStream(ours), Limits(), trio.Event())
        assert channel.send_batch_nowait is not None
        assert channel.send_batch_nowait([b'{"x":1}'])
        theirs.setblocking(False)
        assert theirs.recv(100) == b'\x81\x07{"x":1}'
