"""A server and a client in one process, joined by two trio memory channels.

No socket, no subprocess, no thread: the server side is the same ``serving.Connection`` every
transport runs (reader, dispatcher, writer; the answer kernel; both eras), reading and writing
whole messages on a channel of bytes, and the client side is ``mcp_trio.client``'s own
``Client`` over a transport (``MemoryTransport``) that moves the same bytes. What a test sees
is what a client on stdio would see, message for message, minus the pipes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio

from .._limiter import RateLimits
from .._limits import Limits
from .._server import Server
from ..client._errors import ConnectionLost
from ..serving._connection import Connection
from ..serving._supervisor import Supervisor

#: Messages either side may queue before the sender waits. Small and bounded, like a pipe:
#: enough that a burst of notifications does not make the server's writer wait on every one.
CHANNEL_BUFFER = 16


class ServerChannel(trio.abc.Channel[bytes]):
    """The server's end: what its ``Connection`` reads and writes (``_channel``'s interface)."""

    def __init__(self, incoming: trio.MemoryReceiveChannel[bytes], outgoing: trio.MemorySendChannel[bytes]) -> None:
        self._incoming = incoming
        self._outgoing = outgoing

    async def receive(self) -> bytes:
        return await self._incoming.receive()  # EndOfChannel once the client has closed its end

    async def send(self, value: bytes) -> None:
        await self._outgoing.send(value)

    async def aclose(self) -> None:
        self._outgoing.close()
        self._incoming.close()
        await trio.lowlevel.checkpoint()


class MemoryTransport:
    """The client's end, a ``mcp_trio.client.Transport``: whole messages both ways."""

    inline_answers = False
    pid = None

    def __init__(self, outgoing: trio.MemorySendChannel[bytes], incoming: trio.MemoryReceiveChannel[bytes]) -> None:
        self._outgoing = outgoing
        self._incoming = incoming

    async def send(self, data: bytes, headers: Any = None, call: Any = None) -> None:
        try:
            await self._outgoing.send(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise ConnectionLost("the in-memory server closed the connection") from None

    async def receive(self) -> bytes:
        """The next message from the server, for a test that reads the raw wire itself
        (``trio.EndOfChannel`` once the server has closed its end)."""
        return await self._incoming.receive()

    async def receive_loop(self, deliver: Callable[[bytes], None]) -> str:
        try:
            async for data in self._incoming:
                deliver(data)
        except trio.ClosedResourceError:
            pass
        return "the in-memory server closed the connection"

    def close(self) -> None:
        """EOF to the server (it drains, as at the end of stdin), and stop reading."""
        self._outgoing.close()
        self._incoming.close()

    async def aclose(self) -> None:
        self.close()
        await trio.lowlevel.checkpoint()


def channel_pair(buffer: int = CHANNEL_BUFFER) -> tuple[MemoryTransport, ServerChannel]:
    """A client transport and a server channel joined to each other."""
    to_server_send, to_server_receive = trio.open_memory_channel[bytes](buffer)
    to_client_send, to_client_receive = trio.open_memory_channel[bytes](buffer)
    return MemoryTransport(to_server_send, to_client_receive), ServerChannel(to_server_receive, to_client_send)


@asynccontextmanager
async def running_supervisor(server: Server, limits: Limits | None = None,
                             rate_limits: RateLimits | None = None) -> AsyncIterator[Supervisor]:
    """The supervisor serving ``server``: the one already running when something serves it
    (an HTTP server in the same test, say: the session joins it), else one started for the
    block, its lifespan entered, and stopped at the end (the lifespan left)."""
    running = server._supervisor
    if running is not None:
        if limits is not None or rate_limits is not None:
            raise ValueError(f"server {server.name!r} is already being served: its limits are the running "
                             "supervisor's; pass none")
        yield running  # type: ignore[misc]
        return
    async with trio.open_nursery() as nursery:
        supervisor: Supervisor = await nursery.start(Supervisor(server, limits or Limits(), rate_limits=rate_limits).run)
        try:
            yield supervisor
        finally:
            supervisor.close()


@asynccontextmanager
async def session(supervisor: Supervisor, *, principal: Any = None, peer: str | None = None,
                  session_id: str | None = None) -> AsyncIterator[tuple[MemoryTransport, Connection]]:
    """One more session on ``supervisor``, served over an in-memory channel pair. Leaving the
    block closes the client's end (EOF) and waits until the session has drained, as a stdio
    server does when its host closes stdin (in-flight requests get ``grace_period``)."""
    transport, channel = channel_pair()
    connection = Connection(supervisor, channel, session_id=session_id, principal=principal, peer=peer)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(connection.run)
        try:
            yield transport, connection
        finally:
            transport.close()
