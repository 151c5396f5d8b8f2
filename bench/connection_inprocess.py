"""One ``Connection`` in process, no pipes: the serving core's own cost per request.

Usage::

    python bench/connection_inprocess.py [--calls N] [--depth D] [--rounds R] [--method M] [--tool T]

A channel of our own feeds the connection pre-encoded requests (``tools/call echo`` by
default) and counts the answers: a closed loop with ``--depth`` requests outstanding, with no
client task and no system calls, so what is left is the reader, the request's task (or none),
the kernel, the handler and the writer. Prints microseconds per request for each round and
their median. Used to compare variants of the hot path A B A B (``farm-bench --vs``) when the
machine is too noisy for the process-level rows of ``make bench``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import msgspec
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mcp_trio import Limits  # noqa: E402
from mcp_trio.demo import server  # noqa: E402
from mcp_trio.serving._connection import Connection  # noqa: E402
from mcp_trio.serving._supervisor import Supervisor  # noqa: E402

INIT = msgspec.json.encode({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
    "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "inprocess", "version": "1"}}})
INITIALIZED = b'{"jsonrpc":"2.0","method":"notifications/initialized"}'


class LoopChannel(trio.abc.Channel[bytes]):
    """Hands out requests while fewer than ``depth`` are unanswered; ends after ``calls``."""

    def __init__(self, calls: int, depth: int, method: str, params: dict) -> None:
        self.calls, self.depth = calls, depth
        self.sent = self.answered = 0
        self.prefix = b'{"jsonrpc":"2.0","method":"' + method.encode() + b'","params":' + msgspec.json.encode(params) + b',"id":'
        self.ready = trio.Event()
        self.started = self.finished = 0.0
        self.head = [INIT, INITIALIZED]

    async def receive(self) -> bytes:
        if self.head:
            await trio.lowlevel.checkpoint()
            return self.head.pop(0)
        if self.sent >= self.calls:
            raise trio.EndOfChannel
        while self.sent - self.answered >= self.depth:
            self.ready = trio.Event()
            await self.ready.wait()
        if self.sent == 0:
            self.started = time.process_time()
        self.sent += 1
        # One scheduler round per message read, as a stream that has data at hand costs.
        await trio.lowlevel.cancel_shielded_checkpoint()
        return self.prefix + str(self.sent).encode() + b"}"

    def _count(self, frames: list[bytes]) -> None:
        for frame in frames:
            if b'"id":0' in frame:
                continue
            if b'"result"' not in frame:
                raise RuntimeError(f"unexpected answer: {frame[:200]!r}")
            self.answered += 1
        self.ready.set()
        if self.answered >= self.calls:
            self.finished = time.process_time()

    async def send(self, value: bytes) -> None:
        self._count([value])

    async def send_batch(self, frames: list[bytes]) -> None:
        self._count(frames)

    def send_batch_nowait(self, frames: list[bytes]) -> bool:
        """As a pipe or socket that has room (``_channel.NowaitChannel``)."""
        self._count(frames)
        return True

    async def flush(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


async def one_round(calls: int, depth: int, method: str, params: dict) -> float:
    channel = LoopChannel(calls, depth, method, params)
    async with trio.open_nursery() as nursery:
        supervisor: Supervisor = await nursery.start(Supervisor(server, Limits()).run)
        await Connection(supervisor, channel, session_id="inprocess").run()
        supervisor.close()
        nursery.cancel_scope.cancel()
    if channel.answered != calls:
        raise RuntimeError(f"{channel.answered} of {calls} answered")
    return (channel.finished - channel.started) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--depth", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--method", default="tools/call")
    parser.add_argument("--tool", default="echo")
    args = parser.parse_args()
    params: dict = {"name": args.tool, "arguments": {"text": "hello"}} if args.method == "tools/call" else {}
    trio.run(one_round, 2000, args.depth, args.method, params)  # warm-up
    times = [trio.run(one_round, args.calls, args.depth, args.method, params) for _ in range(args.rounds)]
    print(" ".join(f"{t:.2f}" for t in times), f"median {statistics.median(times):.2f} us/request "
          f"({args.method} {args.tool if args.method == 'tools/call' else ''}, depth {args.depth})")


if __name__ == "__main__":
    main()
