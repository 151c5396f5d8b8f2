"""A client worker process of ``mcp-trio bench --processes N`` (not for direct use).

Protocol on its stdin/stdout, one line each: it reads a JSON ``LoadSpec``, opens its
sessions and writes ``ready [server pids]``; it reads ``go`` and drives the load, writing
``progress OK FAILED`` every ``PROGRESS_S``; last it writes ``result {WorkerReport}``.
Anything else a library prints goes to stderr, so stdout stays the protocol channel.
"""

from __future__ import annotations

import os
import sys

import msgspec
import trio

from ._load import LoadSpec, Recorder, run_load
from ._runner import PROGRESS_S, raise_fd_limit


class _Lines:
    def __init__(self, stream: trio.lowlevel.FdStream) -> None:
        self._stream = stream
        self._buffer = b""

    async def line(self) -> bytes:
        while b"\n" not in self._buffer:
            chunk = await self._stream.receive_some(65536)
            if not chunk:
                raise EOFError("the parent closed our stdin")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line


async def main() -> None:
    stdin = trio.lowlevel.FdStream(os.dup(0))
    stdout = trio.lowlevel.FdStream(os.dup(1))
    sys.stdout = sys.stderr
    lines = _Lines(stdin)
    spec = msgspec.json.decode(await lines.line(), type=LoadSpec)
    recorder = Recorder(len(spec.workload), spec.interval)
    async with trio.open_nursery() as nursery:

        async def report_progress() -> None:
            while True:
                await stdout.send_all(b"progress %d %d\n" % (recorder.ok, recorder.failed))
                await trio.sleep(PROGRESS_S)

        async def gate(pids: list[int]) -> float:
            await stdout.send_all(b"ready " + msgspec.json.encode(pids) + b"\n")
            if (await lines.line()).strip() != b"go":
                raise EOFError("expected 'go'")
            nursery.start_soon(report_progress)
            return trio.current_time()

        report = await run_load(spec, gate=gate, recorder=recorder)
        nursery.cancel_scope.cancel()
    await stdout.send_all(b"progress %d %d\n" % (recorder.ok, recorder.failed))
    await stdout.send_all(b"result " + msgspec.json.encode(report) + b"\n")


if __name__ == "__main__":
    raise_fd_limit()
    trio.run(main)
