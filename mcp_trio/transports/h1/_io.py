"""Sockets for the engine: binding listeners, and a TCP stream with one scheduler trip per read.

``SocketStream`` is what ``trio.SocketStream`` would be without its per-operation
checkpoints: a read that had to wait returns as soon as the data is there (one that did
not still yields once, shielded, so nothing read is lost to a cancellation); a write that
completes at once does not yield. ``close_now`` closes synchronously, so the reaper can drop
a stalled peer and the task blocked on it wakes with ``ClosedResourceError``. The WebSocket
transport has the same idea (``websocket.SocketIO``); the two belong in the shared transport
helpers once the layers of issue 12 are in place.
"""

from __future__ import annotations

import contextlib
import errno
import socket

import trio

from ._parser import READ_SIZE

#: accept() errors that mean "out of resources for now": wait and retry (as trio does).
ACCEPT_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
#: Connections the kernel queues for us before we accept them.
BACKLOG = 4096


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
        is full, or it is closed or broken: ``send_all`` then waits, or finds out and raises).
        A WebSocket session on ``/ws`` writes its replies this way (``_channel.NowaitChannel``)."""
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


def socket_of(stream: trio.abc.Stream) -> SocketStream | None:
    """The ``SocketStream`` under ``stream`` (through TLS), if any."""
    while isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    return stream if isinstance(stream, SocketStream) else None


async def bind(host: str, port: int, *, reuse_port: bool = False) -> list[socket.socket]:
    """Listening sockets for ``host:port`` (every address it resolves to; ``port=0``: one free
    port, the same on all of them), non-blocking, with SO_REUSEADDR and, with ``reuse_port``,
    SO_REUSEPORT (several processes sharing the port)."""
    infos = await trio.socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    seen: set[tuple[int, object]] = set()
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in infos:
            if (family, address[0]) in seen:
                continue
            seen.add((family, address[0]))
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(sockets) > 1:
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            sock.bind(address)
            sock.listen(BACKLOG)
            sock.setblocking(False)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets
