"""The floor of our own stack: a raw trio pipe echo child, no MCP.

It reads newline-delimited JSON from stdin and answers every line that carries an
``id`` with ``{"jsonrpc": "2.0", "id": <id>, "result": <params>}``; lines without
an ``id`` (notifications) get no answer. ``initialize`` and ``tools/call`` are
echoed like anything else, so the same driver measures throughput *and* cold start
against it. It uses exactly the pieces mcp_trio is built from -- a
``trio.lowlevel.FdStream`` on each of fd 0 and fd 1, one msgspec decoder and one
msgspec encoder -- so the gap between this child and ``mcp_trio serve`` is the
cost of the framework itself, not of trio or msgspec.

Kept deliberately tiny: anything added here raises the floor and hides overhead.
"""

import os
from typing import Any

import msgspec
import trio

_MAX_LINE = 2**20  # a line longer than this is a broken driver: fail loudly
_CHUNK = 65536


class _Request(msgspec.Struct):
    """Only the fields the echo needs; ``params`` stays raw bytes, never rebuilt."""

    id: Any = msgspec.UNSET
    params: msgspec.Raw = msgspec.Raw(b"null")


class _Response(msgspec.Struct):
    jsonrpc: str
    id: Any
    result: msgspec.Raw


async def main() -> None:
    """Echo until stdin reaches EOF. The FdStreams own dups, so fds 0/1 stay intact."""
    decoder = msgspec.json.Decoder(_Request)
    encoder = msgspec.json.Encoder()
    out = bytearray()
    async with trio.lowlevel.FdStream(os.dup(0)) as stdin, trio.lowlevel.FdStream(
        os.dup(1)
    ) as stdout:
        pending = b""
        while chunk := await stdin.receive_some(_CHUNK):
            *lines, pending = (pending + chunk).split(b"\n")
            if len(pending) > _MAX_LINE:
                raise ValueError(f"line longer than {_MAX_LINE} bytes")
            for line in lines:
                if not line.strip():
                    continue
                request = decoder.decode(line)
                if request.id is msgspec.UNSET:
                    continue
                encoder.encode_into(_Response("2.0", request.id, request.params), out, -1)
                out += b"\n"
            # One write per chunk read: pipelined requests arriving together leave together.
            if out:
                await stdout.send_all(out)
                out.clear()


if __name__ == "__main__":
    trio.run(main)
