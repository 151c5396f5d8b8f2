"""Test peers: a raw JSON-RPC client over any message channel, and ways to reach servers.

``RawClient`` speaks JSON-RPC by hand (no SDK) over byte streams, so tests can send exactly
the bytes they mean, garbage included. ``serve_in_memory`` runs a server in memory on
``mcp_trio.testing``'s channel pair (what ``mcp_trio.testing.connect`` builds its typed client
on) and speaks JSON-RPC by hand over it (``MemoryClient``); ``spawn_stdio`` runs
``python -m mcp_trio serve`` as a child process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import trio

from mcp_trio import Limits, Server
from mcp_trio.serving._connection import Connection
from mcp_trio.serving._supervisor import Supervisor
from mcp_trio.testing._memory import MemoryTransport
from mcp_trio.testing._memory import session as memory_session
from mcp_trio.transports.stdio import LineChannel

INIT_PARAMS = {
    "protocolVersion": "2025-11-25",
    "capabilities": {"sampling": {}, "elicitation": {}, "roots": {"listChanged": True}},
    "clientInfo": {"name": "raw-test-client", "version": "1.0"},
}


class JsonRpcPeer:
    """The client side of JSON-RPC by hand, over any transport: subclasses give ``send`` (one
    message as a dict) and ``receive_fresh`` (the next message off the wire)."""

    def __init__(self) -> None:
        self._next_id = 0
        #: Messages received while waiting for something else (notifications, other replies).
        self.backlog: list[dict[str, Any]] = []

    async def send(self, message: dict[str, Any]) -> None:
        raise NotImplementedError

    async def receive_fresh(self) -> dict[str, Any]:
        raise NotImplementedError

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    async def receive(self) -> dict[str, Any]:
        if self.backlog:
            return self.backlog.pop(0)
        return await self.receive_fresh()

    async def receive_until(self, predicate: Any) -> dict[str, Any]:
        """Next message matching ``predicate``; others are kept in ``backlog`` in order."""
        for index, message in enumerate(self.backlog):
            if predicate(message):
                return self.backlog.pop(index)
        while True:
            message = await self.receive_fresh()
            if predicate(message):
                return message
            self.backlog.append(message)

    async def reply_to(self, request_id: Any) -> dict[str, Any]:
        return await self.receive_until(lambda m: m.get("id") == request_id and "method" not in m)

    async def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send a request and return its reply (the whole response object)."""
        request_id = self.new_id()
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        await self.send(message)
        return await self.reply_to(request_id)

    async def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        await self.send(message)

    async def initialize(self, params: dict[str, Any] | None = None) -> dict[str, Any]:
        reply = await self.request("initialize", params or INIT_PARAMS)
        await self.notify("notifications/initialized")
        return reply


class RawClient(JsonRpcPeer):
    """Line-oriented JSON-RPC peer over byte streams (stdio pipes, in-memory streams)."""

    def __init__(self, send_stream: trio.abc.SendStream, receive_stream: trio.abc.ReceiveStream) -> None:
        super().__init__()
        self._send = send_stream
        self._channel = LineChannel(receive_stream, send_stream, 64 * 1024 * 1024)

    async def send_raw(self, data: bytes) -> None:
        await self._send.send_all(data)

    async def send(self, message: dict[str, Any]) -> None:
        await self._send.send_all(msgspec.json.encode(message) + b"\n")

    async def receive_fresh(self) -> dict[str, Any]:
        return msgspec.json.decode(await self._channel.receive())

    async def close(self) -> None:
        await self._send.aclose()


class MemoryClient(JsonRpcPeer):
    """JSON-RPC by hand over ``mcp_trio.testing``'s in-memory transport (one message per send)."""

    def __init__(self, transport: MemoryTransport) -> None:
        super().__init__()
        self.transport = transport

    async def send(self, message: dict[str, Any]) -> None:
        await self.transport.send(msgspec.json.encode(message))

    async def send_message(self, data: bytes) -> None:
        """One message as these exact bytes (garbage included)."""
        await self.transport.send(data)

    async def receive_fresh(self) -> dict[str, Any]:
        return msgspec.json.decode(await self.transport.receive())

    async def close(self) -> None:
        await self.transport.aclose()


@asynccontextmanager
async def connect_in_memory(supervisor: Supervisor, session_id: str = "test") -> AsyncIterator[tuple[MemoryClient, Connection]]:
    """Open one more session on a running supervisor, in memory (``mcp_trio.testing``).

    Leaving the block closes the client side (EOF), then waits for the connection to drain.
    """
    async with memory_session(supervisor, session_id=session_id) as (transport, connection):
        yield MemoryClient(transport), connection


@asynccontextmanager
async def serve_in_memory(server: Server, limits: Limits | None = None, **supervisor_options: Any) -> AsyncIterator[tuple[MemoryClient, Supervisor, Connection]]:
    """Run ``server`` in memory (``mcp_trio.testing``); yields (client, supervisor, connection).

    ``supervisor_options`` go to ``Supervisor`` (``rate_limits=...``). Set
    ``connection.principal``/``connection.peer`` before the first request to act as a transport.
    """
    async with trio.open_nursery() as nursery:
        supervisor: Supervisor = await nursery.start(Supervisor(server, limits or Limits(), **supervisor_options).run)
        try:
            async with connect_in_memory(supervisor) as (client, connection):
                yield client, supervisor, connection
        finally:
            supervisor.close()


def stdio_command(*extra: str) -> list[str]:
    """``python -m mcp_trio serve ...`` with this interpreter."""
    return [sys.executable, "-m", "mcp_trio", "serve", *extra]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


@asynccontextmanager
async def spawn_stdio(*extra: str, stderr: int | None = subprocess.DEVNULL) -> AsyncIterator[tuple[RawClient, trio.Process]]:
    """Spawn the stdio server as a child; yields a raw client on its pipes and the process."""
    process = await trio.lowlevel.open_process(stdio_command(*extra), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, env=child_env())
    assert process.stdin is not None and process.stdout is not None
    client = RawClient(process.stdin, process.stdout)
    try:
        yield client, process
    finally:
        if process.returncode is None:
            try:
                await process.stdin.aclose()
            except trio.ClosedResourceError:
                pass
            with trio.move_on_after(5):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()


def authenticate(authenticator: Any, headers: Any) -> Any:
    """``await authenticator.authenticate(headers)`` from a synchronous test.

    For authenticators that never wait (static keys, API keys, anonymous): the answer is the
    same as in a transport; only the event loop is the test's own."""
    return trio.run(authenticator.authenticate, headers)
