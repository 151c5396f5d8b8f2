"""The floor of our HTTP stack: a raw ASGI POST echo on hypercorn's trio worker, no MCP.

    python bench/floors/http_echo.py --port N     (0: any free port; the port is printed)

Every POST body is decoded as JSON-RPC (id and raw params, one msgspec decoder) and answered
``{"jsonrpc": "2.0", "id": <id>, "result": <params>}`` as ``application/json`` with a
Content-Length; a body without an ``id`` gets 202. Path and headers are ignored, so the same
driver sends it exactly what it sends an MCP server. The gap between this and
``serve_http`` is the cost of mcp_trio's Streamable HTTP and MCP layers, not of hypercorn,
trio or msgspec. Kept deliberately tiny.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import msgspec
import trio
from hypercorn.config import Config
from hypercorn.trio import serve


class _Request(msgspec.Struct):
    id: Any = msgspec.UNSET
    params: msgspec.Raw = msgspec.Raw(b"null")


class _Response(msgspec.Struct):
    jsonrpc: str
    id: Any
    result: msgspec.Raw


_decode = msgspec.json.Decoder(_Request).decode
_encode = msgspec.json.Encoder().encode


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    request = _decode(b"".join(chunks))
    if request.id is msgspec.UNSET:
        await send({"type": "http.response.start", "status": 202, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})
        return
    body = _encode(_Response("2.0", request.id, request.params))
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


async def main(port: int) -> None:
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve, app, config)
        print(binds[0].rpartition(":")[2], flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000)
    try:
        trio.run(main, parser.parse_args().port)
    except KeyboardInterrupt:
        sys.exit(0)
