"""The floor of our WebSocket stack: a raw trio-websocket echo server, no MCP.

Usage::

    python bench/floors/ws_echo.py [--host 127.0.0.1] [--port 8765]

Every text message that carries an ``id`` is answered with
``{"jsonrpc": "2.0", "id": <id>, "result": <params>}`` in one text frame; messages without
an ``id`` (notifications) get no answer. ``initialize`` and ``tools/call`` are echoed like
anything else, so one driver measures it and ``mcp-trio serve --transport ws`` alike. The
subprotocol ``mcp`` is accepted when offered, as the real server does.

It uses exactly the pieces mcp_trio's WebSocket transport is measured against -- trio-websocket's
``serve_websocket`` with its defaults, one msgspec decoder and one msgspec encoder -- so the gap
between this server and ours is the cost of the framework, not of trio, wsproto or msgspec.

Kept deliberately tiny: anything added here raises the floor and hides overhead.
"""

import argparse
from typing import Any

import msgspec
import trio
from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket


class _Request(msgspec.Struct):
    """Only the fields the echo needs; ``params`` stays raw, never rebuilt."""

    id: Any = msgspec.UNSET
    params: msgspec.Raw = msgspec.Raw(b"null")


class _Response(msgspec.Struct):
    jsonrpc: str
    id: Any
    result: msgspec.Raw


_decoder = msgspec.json.Decoder(_Request)
_encoder = msgspec.json.Encoder()


async def _echo(request: WebSocketRequest) -> None:
    subprotocol = "mcp" if "mcp" in request.proposed_subprotocols else None
    ws = await request.accept(subprotocol=subprotocol)
    try:
        while True:
            message = await ws.get_message()
            incoming = _decoder.decode(message)
            if incoming.id is msgspec.UNSET:
                continue
            await ws.send_message(_encoder.encode(_Response("2.0", incoming.id, incoming.params)).decode())
    except ConnectionClosed:
        pass


async def main(host: str, port: int) -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_websocket, _echo, host, port, None)
        print(f"ws_echo listening on ws://{host}:{server.port}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    try:
        trio.run(main, args.host, args.port)
    except KeyboardInterrupt:
        pass
