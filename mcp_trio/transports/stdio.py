"""The stdio transport: newline-delimited JSON on stdin and stdout.

stdout carries protocol messages only; logs go to stderr. A line longer than the message
limit is skipped to its end and answered with an error, so the session goes on. EOF on stdin,
SIGINT or SIGTERM start a graceful shutdown; the process then exits 0.
"""

from __future__ import annotations

import logging
import os
import signal

import trio

from .._channel import MessageTooLarge
from .._connection import Connection
from .._limits import Limits
from .._server import Server
from .._supervisor import Supervisor

logger = logging.getLogger("mcp_trio.stdio")

_READ_SIZE = 65536


class LineChannel(trio.abc.Channel[bytes]):
    """Newline-delimited messages over a pair of byte streams, with a line-length limit."""

    def __init__(self, receive_stream: trio.abc.ReceiveStream, send_stream: trio.abc.SendStream, max_line: int) -> None:
        self._receive_stream = receive_stream
        self._send_stream = send_stream
        self._max_line = max_line
        self._buffer = bytearray()
        self._scan_from = 0
        self._eof = False

    async def receive(self) -> bytes:
        """The next non-empty line without its newline; ``trio.EndOfChannel`` at EOF."""
        buffer = self._buffer
        while True:
            newline = buffer.find(b"\n", self._scan_from)
            if newline >= 0:
                line = bytes(buffer[:newline])
                del buffer[: newline + 1]
                self._scan_from = 0
                if line.strip():
                    return line
                continue
            if len(buffer) > self._max_line:
                await self._skip_line()
            if self._eof:
                if buffer.strip():
                    line = bytes(buffer)
                    buffer.clear()
                    return line  # a last message without its newline
                raise trio.EndOfChannel
            self._scan_from = len(buffer)
            chunk = await self._receive_stream.receive_some(_READ_SIZE)
            if not chunk:
                self._eof = True
            buffer += chunk

    async def _skip_line(self) -> None:
        """Discard the oversized line through its newline, then report it."""
        skipped = len(self._buffer)
        self._buffer.clear()
        self._scan_from = 0
        while True:
            chunk = await self._receive_stream.receive_some(_READ_SIZE)
            if not chunk:
                self._eof = True
                break
            newline = chunk.find(b"\n")
            if newline >= 0:
                skipped += newline
                self._buffer += chunk[newline + 1 :]
                break
            skipped += len(chunk)
        raise MessageTooLarge(skipped, self._max_line)

    async def send(self, data: bytes) -> None:
        await self._send_stream.send_all(data + b"\n")

    async def aclose(self) -> None:
        await self._send_stream.aclose()
        await self._receive_stream.aclose()


def open_stdio(max_line: int) -> LineChannel:
    """A channel over this process's stdin and stdout (duplicated, so closing is ours)."""
    stdin = trio.lowlevel.FdStream(os.dup(0))
    stdout = trio.lowlevel.FdStream(os.dup(1))
    return LineChannel(stdin, stdout, max_line)


async def serve_stdio(server: Server, limits: Limits | None = None, *, channel: trio.abc.Channel[bytes] | None = None) -> None:
    """Serve ``server`` on stdin/stdout until EOF or a shutdown signal."""
    limits = limits or Limits()
    channel = channel or open_stdio(limits.max_message_size)
    async with trio.open_nursery() as nursery:
        supervisor: Supervisor = await nursery.start(Supervisor(server, limits).run)
        nursery.start_soon(_watch_signals, supervisor)
        connection = Connection(supervisor, channel, session_id="stdio")
        await connection.run()
        supervisor.close()
        nursery.cancel_scope.cancel()


async def _watch_signals(supervisor: Supervisor) -> None:
    """First SIGINT/SIGTERM: graceful shutdown. A second one: stop at once."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            if supervisor.shutting_down.is_set():
                logger.warning("second %s: stopping now", signal.Signals(signum).name)
                raise KeyboardInterrupt
            logger.info("%s: shutting down gracefully", signal.Signals(signum).name)
            supervisor.shutdown()
