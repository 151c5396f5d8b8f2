"""The stdio transport: newline-delimited JSON on stdin and stdout.

stdout carries protocol messages only; logs go to stderr. A line longer than the message
limit is skipped to its end and answered with an error, so the session goes on. EOF on stdin,
SIGINT or SIGTERM (on Windows also Ctrl+Break; Ctrl+C arrives as SIGINT) start a graceful
shutdown; the process then exits 0.

Two ways to move the bytes, chosen by ``io`` (``[server] stdio_io``, ``--stdio-io``):
``"fd"`` waits on the pipes with trio (non-blocking fds: Linux, macOS, the BSDs); ``"threads"``
gives each pipe a thread doing blocking reads and writes (``_pipe_threads``: what Windows needs,
where trio cannot wait on a pipe handle); ``"auto"`` (the default) is threads on Windows and fd
elsewhere. Both run the same line splitting and limits (``LineChannel``).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Literal

import trio

from .._channel import MessageTooLarge
from ..serving._connection import Connection
from .._limiter import RateLimits
from .._limits import DEFAULT_SEND_TIMEOUT, Limits
from .._server import Server
from ..serving._supervisor import Supervisor

logger = logging.getLogger("mcp_trio.stdio")

_READ_SIZE = 65536

#: How stdio moves its bytes: see the module's docstring.
StdioIO = Literal["auto", "threads", "fd"]


def uses_threads(io: StdioIO, platform: str = sys.platform) -> bool:
    """Whether ``io`` means the thread-backed pipes on ``platform``."""
    if io not in ("auto", "threads", "fd"):
        raise ValueError(f"stdio io must be auto, threads or fd, not {io!r}")
    return io == "threads" or (io == "auto" and platform == "win32")


class LineChannel(trio.abc.Channel[bytes]):
    """Newline-delimited messages over a pair of byte streams, with a line-length limit.

    Over a ``PipeStream`` it also writes without waiting (``send_batch_nowait``, see
    ``_channel.NowaitChannel``); over other streams that attribute is None.
    """

    send_batch_nowait: Callable[[list[bytes]], bool] | None

    def __init__(self, receive_stream: trio.abc.ReceiveStream, send_stream: trio.abc.SendStream, max_line: int) -> None:
        self._receive_stream = receive_stream
        self._send_stream = send_stream
        self._max_line = max_line
        self._buffer = bytearray()
        self._scan_from = 0
        self._eof = False
        self._write_nowait: Callable[[bytes], int] | None = getattr(send_stream, "write_nowait", None)
        self.send_batch_nowait = self._send_batch_nowait if self._write_nowait is not None else None
        self._kept: bytes | None = None  # what send_batch_nowait could not write yet

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

    def message_ready(self) -> bool:
        """A whole line is buffered already: ``receive`` will return it without waiting."""
        return self._buffer.find(b"\n", self._scan_from) >= 0

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
        await self.flush()
        await self._send_stream.send_all(data + b"\n")

    async def send_batch(self, messages: list[bytes]) -> None:
        """Write several messages with one write (the connection's writer batches)."""
        await self.flush()
        messages.append(b"")
        await self._send_stream.send_all(b"\n".join(messages))

    def _send_batch_nowait(self, messages: list[bytes]) -> bool:
        """Write ``messages`` now if the pipe takes them all; else keep the rest for ``flush``."""
        messages.append(b"")
        data = b"\n".join(messages)
        if self._kept is not None:
            self._kept += data
            return False
        assert self._write_nowait is not None
        written = self._write_nowait(data)
        if written == len(data):
            return True
        self._kept = data[written:]
        return False

    async def flush(self) -> None:
        """Write what ``send_batch_nowait`` kept (it raises, as ``send`` does, if the peer is gone)."""
        kept = self._kept
        if kept is not None:
            self._kept = None
            await self._send_stream.send_all(kept)

    async def aclose(self) -> None:
        await self._send_stream.aclose()
        await self._receive_stream.aclose()


class PipeStream(trio.abc.HalfCloseableStream):
    """One non-blocking pipe end, with one trip through the scheduler per operation.

    ``trio.lowlevel.FdStream`` checkpoints before every write and again after every read,
    even when it waited for the fd: two extra scheduler rounds per request on the stdio hot
    path (measured: about a quarter of a sequential round trip). Here a read that had to wait
    returns as soon as the data is there, a read that did not wait still yields once
    (``cancel_shielded_checkpoint``, so no data is lost to a cancellation), and a write that
    completes at once does not yield: the connection's writer has just yielded receiving it.
    """

    def __init__(self, fd: int) -> None:
        # The mode belongs to the open file description, shared with the original fd (and a
        # terminal, if that is what it is): remember it and put it back on close.
        self._was_blocking = os.get_blocking(fd)
        os.set_blocking(fd, False)
        self._fd = fd
        self._closed = False

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._closed:
            raise trio.ClosedResourceError("pipe closed")
        await trio.lowlevel.checkpoint_if_cancelled()
        waited = False
        while True:
            try:
                data = os.read(self._fd, max_bytes or _READ_SIZE)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(self._fd)
                waited = True
            except OSError as exc:
                raise trio.BrokenResourceError(f"read failed: {exc}") from exc
            else:
                break
        if not waited:
            await trio.lowlevel.cancel_shielded_checkpoint()
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed:
            raise trio.ClosedResourceError("pipe closed")
        await trio.lowlevel.checkpoint_if_cancelled()
        with memoryview(data) as view:
            sent = 0
            while sent < len(view):
                try:
                    sent += os.write(self._fd, view[sent:])
                except BlockingIOError:
                    await trio.lowlevel.wait_writable(self._fd)
                except OSError as exc:
                    raise trio.BrokenResourceError(f"write failed: {exc}") from exc

    def write_nowait(self, data: bytes) -> int:
        """Write what the pipe takes now, without waiting: the bytes written (0 when it is
        full, closed or broken: ``send_all`` then waits, or finds out and raises)."""
        if self._closed:
            return 0
        try:
            return os.write(self._fd, data)
        except OSError:  # BlockingIOError when full
            return 0

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.wait_writable(self._fd)

    async def send_eof(self) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            trio.lowlevel.notify_closing(self._fd)
            if self._was_blocking:
                os.set_blocking(self._fd, True)
            os.close(self._fd)
        await trio.lowlevel.checkpoint()


def open_stdio(max_line: int, io: StdioIO = "auto", *, send_timeout: float = DEFAULT_SEND_TIMEOUT) -> LineChannel:
    """A channel over this process's stdin and stdout, which it takes for itself.

    The protocol keeps private duplicates of fds 0 and 1; fd 1 is then pointed at stderr and
    fd 0 at the null device, so a stray ``print()`` in a tool (or a C library writing to
    stdout) lands in the logs instead of corrupting the message stream, and nothing else can
    steal input. ``send_timeout`` bounds how long closing waits for the writer thread to
    drain (threads only; the fd path writes as it goes).
    """
    protocol_in = os.dup(0)
    protocol_out = os.dup(1)
    sys.stdout.flush()
    os.dup2(2, 1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    threads = uses_threads(io)
    logger.debug("stdio: %s", "a thread per pipe (threads)" if threads else "trio waits on the pipes (fd)")
    if not threads:
        return LineChannel(PipeStream(protocol_in), PipeStream(protocol_out), max_line)
    if sys.platform == "win32":  # bytes as they are: no CRLF translation, no Ctrl+Z as EOF
        import msvcrt

        for fd in (protocol_in, protocol_out):
            msvcrt.setmode(fd, os.O_BINARY)  # type: ignore[attr-defined,unused-ignore]
    from ._pipe_threads import ThreadPipeReader, ThreadPipeWriter

    return LineChannel(ThreadPipeReader(protocol_in), ThreadPipeWriter(protocol_out, send_timeout), max_line)


async def serve_stdio(
    server: Server,
    limits: Limits | None = None,
    *,
    channel: trio.abc.Channel[bytes] | None = None,
    rate_limits: RateLimits | None = None,
    io: StdioIO = "auto",
) -> None:
    """Serve ``server`` on stdin/stdout until EOF or a shutdown signal.

    stdio is a trusted local channel (the host that spawned us): no credential is asked, and
    ``rate_limits`` (when given) applies to the one session as a whole. ``io``: how the bytes
    move (see the module's docstring).
    """
    limits = limits or Limits()
    channel = channel or open_stdio(limits.max_message_size, io, send_timeout=limits.send_timeout)
    async with trio.open_nursery() as nursery:
        supervisor: Supervisor = await nursery.start(Supervisor(server, limits, rate_limits=rate_limits).run)
        nursery.start_soon(supervisor.watch_signals)
        connection = Connection(supervisor, channel, session_id="stdio")
        await connection.run()
        supervisor.close()
        nursery.cancel_scope.cancel()
