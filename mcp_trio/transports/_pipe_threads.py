"""Pipe ends served by threads, for platforms where trio cannot wait on a pipe.

trio waits for a pipe with ``wait_readable`` / ``wait_writable``, which exist for file
descriptors on Unix but not for the anonymous pipe handles a Windows host gives its stdio
child (trio's Windows loop waits on sockets and overlapped handles only). There, one thread
per direction does the blocking ``os.read`` / ``os.write`` and hands its data to trio:

* **reading**: the reader thread reads chunks of up to 64 KiB and hands each to trio (one
  wakeup per read, however many messages the chunk holds); ``LineChannel`` splits them into
  messages exactly as on the fd path, so the line limit, its error and the skipping of an
  oversized line are the same code on both paths. At most ``READ_AHEAD`` chunks wait for
  trio: past that the thread stops reading and the host's writes block (backpressure).
* **writing**: ``send_all`` queues the bytes (one batch of messages from the connection's
  writer) and returns at once unless ``WRITE_BEHIND`` are already waiting; the writer thread
  writes them in order. A write error is raised by the next ``send_all``.

EOF, errors and cancellation: a read of ``b""`` is EOF; an ``OSError`` in a thread becomes
``trio.BrokenResourceError`` in trio; cancelling a ``receive_some`` or ``send_all`` loses
nothing (a chunk stays queued for the next receive; bytes are queued whole or not at all).

Shutdown, and the read that cannot be interrupted: a thread blocked in ``os.read`` on a pipe
cannot be woken portably (closing the fd under it is unsafe, a signal only restarts it). So
the threads are daemon threads that own their fds, ``aclose`` never waits for the reader, and
the reader ends when the next thing happens: the host closes our stdin (EOF, the normal way a
host stops a stdio server), data arrives (it is dropped), or the process exits, which daemon
threads never hold up. On Windows ``aclose`` also cancels the blocked read with
``CancelSynchronousIo``. The writer gets a bounded drain at ``aclose`` (``drain_timeout``,
the connection's ``send_timeout``) for what is queued; a host that stopped reading leaves
it blocked in ``os.write``, and it too ends with the process.
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
from collections.abc import Callable

import trio

logger = logging.getLogger("mcp_trio.stdio")

#: Bytes per read (as the fd path reads).
READ_SIZE = 65536
#: Chunks read ahead of trio, at most: READ_AHEAD × READ_SIZE bytes of input held.
READ_AHEAD = 4
#: Writes queued behind the writer thread, at most (each one batch of messages).
WRITE_BEHIND = 8


class ThreadPipeReader(trio.abc.ReceiveStream):
    """A pipe (or console) read by a thread of its own; trio receives what it read."""

    def __init__(self, fd: int, read_ahead: int = READ_AHEAD) -> None:
        self._restore = _make_blocking(fd)  # the thread waits in read(), not in a poll loop
        self._token = trio.lowlevel.current_trio_token()
        self._send, self._receive = trio.open_memory_channel[bytes | OSError](read_ahead)
        # The thread takes a slot before it hands a chunk over, trio gives it back on receipt:
        # the channel's buffer never overflows, and a slow trio stops the reading.
        self._slots = threading.Semaphore(read_ahead)
        self._closed = False
        self._eof = False
        self._leftover = b""
        self._thread = threading.Thread(target=self._run, args=(fd,), name="mcp-trio pipe reader", daemon=True)
        self._thread.start()

    def _run(self, fd: int) -> None:
        try:
            while not self._closed:
                item: bytes | OSError
                try:
                    item = os.read(fd, READ_SIZE)
                except OSError as exc:
                    item = exc
                self._slots.acquire()
                if self._closed:
                    return
                try:
                    self._token.run_sync_soon(self._deliver, item)
                except trio.RunFinishedError:
                    return
                if not isinstance(item, bytes) or not item:
                    return  # EOF or an error: nothing more to read
        finally:
            self._restore()
            os.close(fd)

    def _deliver(self, item: bytes | OSError) -> None:
        """In trio's thread: queue what the reader thread read (never blocks: it has a slot)."""
        try:
            self._send.send_nowait(item)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass  # closed meanwhile: dropped

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._closed:
            raise trio.ClosedResourceError("pipe closed")
        if not self._leftover:
            if self._eof:
                await trio.lowlevel.checkpoint()
                return b""
            item = await self._receive.receive()
            self._slots.release()
            if isinstance(item, OSError):
                self._eof = True
                raise trio.BrokenResourceError(f"read failed: {item}") from item
            if not item:
                self._eof = True
                return b""
            self._leftover = item
        else:
            await trio.lowlevel.checkpoint()
        size = max_bytes or READ_SIZE
        data, self._leftover = self._leftover[:size], self._leftover[size:]
        return data

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._receive.close()
            self._slots.release()  # a thread waiting for a slot sees the close and ends
            if self._thread.is_alive():
                _cancel_blocking_io(self._thread)
        await trio.lowlevel.checkpoint()


class ThreadPipeWriter(trio.abc.SendStream):
    """A pipe written by a thread of its own; ``send_all`` queues, the thread writes in order."""

    def __init__(self, fd: int, drain_timeout: float, write_behind: int = WRITE_BEHIND) -> None:
        self._restore = _make_blocking(fd)
        self._token = trio.lowlevel.current_trio_token()
        self._queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._limit = write_behind
        self._pending = 0  # queued and not yet written (under _lock)
        self._space: trio.Event | None = None  # a send_all waiting for _pending < _limit
        self._error: OSError | None = None
        self._drain_timeout = drain_timeout
        self._done = trio.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, args=(fd,), name="mcp-trio pipe writer", daemon=True)
        self._thread.start()

    def _run(self, fd: int) -> None:
        try:
            while True:
                data = self._queue.get()
                if data is None:
                    return
                try:
                    with memoryview(data) as view:
                        written = 0
                        while written < len(view):
                            written += os.write(fd, view[written:])
                except OSError as exc:
                    with self._lock:  # seen by send_all under the lock: no wakeup is lost
                        self._error = exc
                    self._wake()
                    return
                with self._lock:
                    self._pending -= 1
                self._wake()
        finally:
            self._restore()
            os.close(fd)
            try:
                self._token.run_sync_soon(self._done.set)
            except trio.RunFinishedError:
                pass

    def _wake(self) -> None:
        """Let a ``send_all`` waiting for room (or for news of an error) go on."""
        with self._lock:
            space, self._space = self._space, None
        if space is not None:
            try:
                self._token.run_sync_soon(space.set)
            except trio.RunFinishedError:
                pass

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed:
            raise trio.ClosedResourceError("pipe closed")
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            with self._lock:
                error = self._error
                if error is None and self._pending < self._limit:
                    self._pending += 1
                    break
                space = self._space = trio.Event()
            if error is not None:
                raise trio.BrokenResourceError(f"write failed: {error}") from error
            await space.wait()
        self._queue.put(bytes(data))

    async def wait_send_all_might_not_block(self) -> None:
        while True:
            with self._lock:
                if self._pending < self._limit or self._error is not None:
                    break
                space = self._space = trio.Event()
            await space.wait()

    async def aclose(self) -> None:
        """Let the thread write what is queued (for ``drain_timeout`` at most), then stop it."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            with trio.move_on_after(self._drain_timeout):
                await self._done.wait()
            if not self._done.is_set():
                logger.debug("stdout not drained in %g s (the host is not reading): writer thread abandoned", self._drain_timeout)
                _cancel_blocking_io(self._thread)
        await trio.lowlevel.checkpoint()


def _make_blocking(fd: int) -> Callable[[], None]:
    """Put ``fd`` in blocking mode; what puts the old mode back. The mode belongs to the open
    file description, which a terminal's stdin shares with the shell: it is restored on close."""
    if os.name == "nt" or os.get_blocking(fd):
        return lambda: None
    os.set_blocking(fd, True)
    return lambda: os.set_blocking(fd, False)


def _cancel_blocking_io(thread: threading.Thread) -> None:
    """Windows: end a synchronous read or write ``thread`` is blocked in (it then sees an
    error and exits). Elsewhere there is no such call; the daemon thread ends with the process."""
    if sys.platform != "win32" or thread.native_id is None:
        return
    import ctypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined,unused-ignore]
    thread_terminate = 0x0001  # the access right CancelSynchronousIo needs
    handle = kernel32.OpenThread(thread_terminate, False, thread.native_id)
    if handle:
        try:
            kernel32.CancelSynchronousIo(handle)
        finally:
            kernel32.CloseHandle(handle)
