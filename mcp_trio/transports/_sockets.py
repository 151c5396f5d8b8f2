"""A connected TCP socket as a trio stream with one trip through the scheduler per operation
at most: what the h1 engine serves HTTP on and what every WebSocket session reads from.

``trio.SocketStream`` checkpoints after every read that did not wait and after every write,
and parks a reader six coroutine frames deep. As stdio's ``PipeStream`` does for pipes: a read
that had to wait returns as soon as the data is there; one that did not still yields once
(``cancel_shielded_checkpoint``, so nothing read is lost to a cancellation); a write that
completes at once does not yield (the writer has just yielded receiving what it writes).
``write_nowait`` writes what the socket takes without waiting (replies made inline,
``_channel.NowaitChannel``); ``close_now`` closes synchronously, so a reaper can drop a
stalled peer and the task blocked on it wakes with ``ClosedResourceError``.
"""

from __future__ import annotations

import contextlib
import socket

import trio

#: Bytes asked of the socket per read.
READ_SIZE = 65536


class SocketStream(trio.abc.HalfCloseableStream):
    """A connected, non-blocking TCP socket as a trio stream (see the module docstring)."""

    __slots__ = ("socket",)

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.socket = sock

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        sock = self.socket
        await trio.lowlevel.checkpoint_if_cancelled()
        waited = False
        while True:
            try:
                data = sock.recv(max_bytes or READ_SIZE)
                break
            except BlockingIOError:
                if sock.fileno() < 0:
                    raise trio.ClosedResourceError("socket closed") from None
            except OSError as exc:
                if sock.fileno() < 0:
                    raise trio.ClosedResourceError("socket closed") from None
                raise trio.BrokenResourceError(f"receive failed: {exc}") from exc
            # Waited for outside the except block: there, the BlockingIOError (its traceback
            # and strings, about 400 bytes) would be held for as long as the peer is quiet.
            await trio.lowlevel.wait_readable(sock)
            waited = True
        if not waited:
            await trio.lowlevel.cancel_shielded_checkpoint()
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        sock = self.socket
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            sent = sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            raise self._send_error(exc) from exc
        if sent == len(data):
            return
        with memoryview(data) as view:
            total = len(view)
            while sent < total:
                try:
                    sent += sock.send(view[sent:])
                except BlockingIOError:
                    await trio.lowlevel.wait_writable(sock)
                except OSError as exc:
                    raise self._send_error(exc) from exc

    def write_nowait(self, data: bytes | bytearray | memoryview) -> int:
        """Send what the socket takes now, without waiting: the bytes sent (0 when its buffer
        is full, or it is closed or broken: ``send_all`` then waits, or finds out and raises)."""
        try:
            return self.socket.send(data)
        except OSError:  # BlockingIOError when full
            return 0

    def _send_error(self, exc: OSError) -> Exception:
        if self.socket.fileno() < 0:
            return trio.ClosedResourceError("socket closed")
        return trio.BrokenResourceError(f"send failed: {exc}")

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.wait_writable(self.socket)

    async def send_eof(self) -> None:
        with contextlib.suppress(OSError):
            self.socket.shutdown(socket.SHUT_WR)
        await trio.lowlevel.checkpoint()

    def close_now(self) -> None:
        sock = self.socket
        if sock.fileno() >= 0:
            trio.lowlevel.notify_closing(sock)
            sock.close()

    async def aclose(self) -> None:
        self.close_now()
        await trio.lowlevel.checkpoint()

    def peer_host(self) -> str | None:
        """The remote address (host only), None once the socket is gone."""
        try:
            return str(self.socket.getpeername()[0])
        except OSError:
            return None


def socket_of(stream: trio.abc.Stream) -> SocketStream | None:
    """The ``SocketStream`` under ``stream`` (through TLS), if any."""
    while isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    return stream if isinstance(stream, SocketStream) else None
