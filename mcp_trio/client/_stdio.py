"""stdio: the server is a child process; one JSON message per line on its stdin and stdout."""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Callable, Mapping
from typing import Any

import trio

from ._errors import ConnectError, ProtocolError
from ._wire import CLOSE_TIMEOUT, READ_SIZE, Writer


class StdioTransport:
    """A child process: newline-delimited JSON on its stdin and stdout."""

    inline_answers = False

    def __init__(self, process: trio.Process, max_message_size: int) -> None:
        assert process.stdin is not None and process.stdout is not None
        self.process = process
        self.pid: int | None = process.pid
        self._stdin = process.stdin
        self._stdout = process.stdout
        self._max = max_message_size
        self._writer = Writer(process.stdin, "the server's stdin")

    @classmethod
    async def open(cls, argv: list[str], *, max_message_size: int, stderr: Any, cwd: Any,
                   env: Mapping[str, str] | None) -> StdioTransport:
        try:
            process = await trio.lowlevel.open_process(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, cwd=cwd, env=env
            )
        except OSError as exc:
            raise ConnectError(f"cannot start {shlex.join(argv)}: {exc}") from None
        return cls(process, max_message_size)

    async def send(self, data: bytes, headers: Any = None, call: Any = None) -> None:
        await self._writer.write(data + b"\n")

    async def receive_loop(self, deliver: Callable[[bytes], None]) -> str:
        """Hand every line to ``deliver`` until EOF; returns why it stopped."""
        partial = b""
        while True:
            try:
                chunk = await self._stdout.receive_some(READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                chunk = b""
            if not chunk:
                code = await _exit_code(self.process)
                return f"the server closed its stdout (exit code {code})"
            *lines, partial = (partial + chunk).split(b"\n")
            if len(partial) > self._max:
                raise ProtocolError(f"the server wrote a line longer than {self._max} bytes")
            for line in lines:
                if len(line) > self._max:
                    raise ProtocolError(f"the server wrote a line longer than {self._max} bytes")
                if line.strip():
                    deliver(line)

    async def aclose(self) -> None:
        """EOF on stdin is the stdio shutdown signal; a child that does not exit in
        CLOSE_TIMEOUT is killed."""
        process = self.process
        with trio.CancelScope(shield=True):
            try:
                await self._stdin.aclose()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            with trio.move_on_after(CLOSE_TIMEOUT):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
            await self._stdout.aclose()


async def _exit_code(process: trio.Process) -> int | None:
    with trio.move_on_after(1.0):
        await process.wait()
    return process.returncode
