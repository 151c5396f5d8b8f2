"""The floor of our HTTP stack: a raw POST echo on our own HTTP/1.1 engine (``transports/h1``), no MCP.

    python bench/floors/h1_echo.py --port N     (0: any free port; the port is printed)

Every POST body is decoded as JSON-RPC (id and raw params, one msgspec decoder) and answered
``{"jsonrpc": "2.0", "id": <id>, "result": <params>}`` as ``application/json`` (the engine
adds Content-Length); a body without an ``id`` gets 202. Path and headers are ignored, so the
same driver sends it exactly what it sends an MCP server. It is served by the engine
``mcp-trio serve --transport http`` runs on (``serve_h1``: httptools parsing, one task per
connection, keep-alive, its default limits), so the gap between this and ours is the cost
of mcp_trio's Streamable HTTP and MCP layers, not of the engine, trio or msgspec.
(``http_echo.py`` is the same echo on hypercorn: the floor of ``--http2``.) Kept
deliberately tiny.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import msgspec
import trio

from mcp_trio.transports.h1 import Request, Responder, serve_h1


class _Request(msgspec.Struct):
    id: Any = msgspec.UNSET
    params: msgspec.Raw = msgspec.Raw(b"null")


class _Response(msgspec.Struct):
    jsonrpc: str
    id: Any
    result: msgspec.Raw


_decode = msgspec.json.Decoder(_Request).decode
_encode = msgspec.json.Encoder().encode
_JSON = [(b"content-type", b"application/json")]


async def echo(request: Request, responder: Responder) -> None:
    message = _decode(request.body)
    if message.id is msgspec.UNSET:
        await responder.respond(202)
        return
    await responder.respond(200, _JSON, _encode(_Response("2.0", message.id, message.params)))


async def main(port: int) -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(lambda task_status: serve_h1(echo, host="127.0.0.1", port=port, task_status=task_status))
        print(server.addresses[0][1], flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000)
    try:
        trio.run(main, parser.parse_args().port)
    except KeyboardInterrupt:
        sys.exit(0)
