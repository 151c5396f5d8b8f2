"""The HAProxy fixture balances every request on its own (round-robin, no stickiness).

Two trivial trio HTTP/1.1 backends answer with their names; one keep-alive client connection
through a real ``haproxy`` sees them alternate, request by request, as a session's requests
will hop between cluster workers.
"""

from __future__ import annotations

from functools import partial

import h11
import trio

from tests.cluster_fixtures import HAProxy


async def backend(name: bytes, stream: trio.SocketStream) -> None:
    """Answer every request on the connection with ``name`` (keep-alive, as HAProxy asks)."""
    connection = h11.Connection(h11.SERVER)
    async with stream:
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                if not data:
                    return
                connection.receive_data(data)
            elif isinstance(event, h11.EndOfMessage):
                response = [h11.Response(status_code=200, headers=[("content-length", str(len(name)))]),
                            h11.Data(data=name), h11.EndOfMessage()]
                await stream.send_all(b"".join(connection.send(part) or b"" for part in response))
                if connection.our_state is h11.MUST_CLOSE:
                    return
                connection.start_next_cycle()
            elif isinstance(event, h11.ConnectionClosed):
                return


async def get_many(port: int, count: int) -> list[bytes]:
    """``count`` GETs, one after the other, on one keep-alive connection; the bodies."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    connection = h11.Connection(h11.CLIENT)
    bodies = []
    async with stream:
        for _ in range(count):
            await stream.send_all(connection.send(h11.Request(method="GET", target="/", headers=[("host", "mcp")]))
                                  + connection.send(h11.EndOfMessage()))
            body = b""
            while True:
                event = connection.next_event()
                if event is h11.NEED_DATA:
                    connection.receive_data(await stream.receive_some(65536))
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
            bodies.append(body)
            connection.start_next_cycle()
    return bodies


async def test_round_robin_per_request_on_one_client_connection(start_haproxy) -> None:  # type: ignore[no-untyped-def]
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            listeners = []
            for name in (b"a", b"b"):
                listeners += await nursery.start(partial(trio.serve_tcp, partial(backend, name), 0, host="127.0.0.1"))
            ports = [listener.socket.getsockname()[1] for listener in listeners]
            proxy: HAProxy = start_haproxy([("127.0.0.1", port) for port in ports])
            bodies = await get_many(proxy.port, 6)
            nursery.cancel_scope.cancel()
    assert sorted(set(bodies)) == [b"a", b"b"]
    assert all(first != second for first, second in zip(bodies, bodies[1:])), bodies
