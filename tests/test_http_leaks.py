"""Every HTTP answer ends its exchange cleanly: no descriptor outlives its connection.

After a 2026-07-28 POST or an SSE answer, the last write used to run under a disconnect
watcher that cancelled it half-way, and with it hypercorn's handling of ``Connection: close``
and of the keep-alive timeout: each such request left a socket open for good. The test counts
this process's descriptors (the server runs in it) over real sockets.
"""

from __future__ import annotations

import json
import os

import h11
import trio

from mcp_trio import Limits, demo
from tests.served import serving
from tests.test_stateless import body_for, headers_for


def head(port: int, method: str, path: str, *lines: str) -> bytes:
    return (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n" + "".join(f"{line}\r\n" for line in lines) + "\r\n").encode()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def _read_response(stream: trio.SocketStream) -> int:
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="POST", target="/", headers=[("host", "x")]))
    status = 0
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(65536))
        elif isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.EndOfMessage):
            return status


async def test_connections_close_after_json_and_sse_answers() -> None:
    """After a 2026-07-28 answer (JSON or SSE) or a session's SSE answer, ``Connection: close``
    closes the socket at once and an idle keep-alive connection closes after its timeout.
    The final write used to run under a disconnect watcher that cancelled it half-way, and
    with it the server's own close: every such request left a descriptor behind."""
    with trio.fail_after(30):
        async with serving(demo.server, Limits(keep_alive_timeout=0.5)) as served:
            port = served.port
            session = served.client()
            await session.initialize()
            await session.call("logging/setLevel", {"level": "debug"})
            logging_call = {"name": "test_tool_with_logging", "arguments": {}}
            kinds = {
                "stateless JSON": (headers_for("tools/list"), body_for("tools/list")),
                "stateless SSE": (headers_for("tools/call", "test_tool_with_logging"),
                                  body_for("tools/call", logging_call, logLevel="debug")),
                "session SSE": (session.headers(), json.dumps(session.message("tools/call", logging_call)).encode()),
            }
            baseline = open_fds()
            clients: list[trio.SocketStream] = []
            for round_ in range(6):
                for name, (headers, body) in kinds.items():
                    lines = [f"{k}: {v}" for k, v in headers.items()] + [f"Content-Length: {len(body)}"]
                    if round_ % 2 == 0:
                        lines.append("Connection: close")
                    stream = await trio.open_tcp_stream("127.0.0.1", port)
                    await stream.send_all(head(port, "POST", "/mcp", *lines) + body)
                    assert await _read_response(stream) == 200, name
                    clients.append(stream)
            # Every one is closed by the server: at once, or after 0.5 s idle.
            with trio.fail_after(5):
                for stream in clients:
                    assert await stream.receive_some(1) == b""
            # The clients still hold their ends; the server holds none of these connections.
            assert open_fds() - baseline <= len(clients) + 2, (open_fds(), baseline, len(clients))
            for stream in clients:
                await stream.aclose()
