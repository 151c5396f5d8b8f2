"""A WebSocket ``Transport`` for the official SDK's ``Client``, for tests.

The SDK has no WebSocket client; this one is the smallest that works: one JSON-RPC message per
text frame, over trio-websocket, bridged to the SDK's anyio streams (the tests run on trio,
which is one of anyio's backends). ``Client(ws_transport(url), mode="auto")`` then probes,
falls back and speaks either protocol era over WebSocket exactly as it does over stdio.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import mcp_types as types
import trio
from mcp.shared.message import SessionMessage
from trio_websocket import ConnectionClosed, open_websocket_url


@asynccontextmanager
async def ws_transport(url: str, log: dict[str, list[Any]] | None = None) -> AsyncIterator[tuple[Any, Any]]:
    """``(read_stream, write_stream)`` over a WebSocket to ``url`` (subprotocol ``mcp``).

    ``log``: when given, every message is appended as a dict to ``log["sent"]`` or
    ``log["received"]``.
    """
    read_writer, read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_stream, write_reader = anyio.create_memory_object_stream[SessionMessage](0)
    async with open_websocket_url(url, subprotocols=["mcp"]) as ws, trio.open_nursery() as nursery:

        async def reader() -> None:
            async with read_writer:
                try:
                    while True:
                        text = await ws.get_message()
                        try:
                            message = types.jsonrpc_message_adapter.validate_json(text, by_name=False)
                        except ValueError as exc:
                            await read_writer.send(exc)
                            continue
                        if log is not None:
                            log.setdefault("received", []).append(message.model_dump(by_alias=True, mode="json", exclude_none=True))
                        await read_writer.send(SessionMessage(message))
                except (ConnectionClosed, anyio.ClosedResourceError, anyio.BrokenResourceError):
                    pass

        async def writer() -> None:
            async with write_reader:
                async for item in write_reader:
                    if log is not None:
                        log.setdefault("sent", []).append(item.message.model_dump(by_alias=True, mode="json", exclude_none=True))
                    try:
                        await ws.send_message(item.message.model_dump_json(by_alias=True, exclude_unset=True))
                    except ConnectionClosed:
                        return

        nursery.start_soon(reader)
        nursery.start_soon(writer)
        try:
            yield read_stream, write_stream
        finally:
            nursery.cancel_scope.cancel()
