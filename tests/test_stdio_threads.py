"""The thread-backed pipes of stdio (the Windows path), on real OS pipes.

The whole stdio suite already runs over this path (the ``stdio_io`` fixture); these tests
check what a spawned server cannot show: that the read-ahead and write-behind are bounded,
that a cancelled receive loses nothing, and what closing does to a thread blocked in a read
or a write that nothing will complete.
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
from collections.abc import Iterator

import pytest
import trio

from mcp_trio.transports._pipe_threads import READ_SIZE, ThreadPipeReader, ThreadPipeWriter
from mcp_trio.transports.stdio import uses_threads

from .helpers import spawn_stdio

F_GETPIPE_SZ = 1032  # Linux


class Pipe:
    """An OS pipe whose ends are closed at the end of the test, but for those handed to a
    thread (which closes its own: closing it here could close a reused fd number)."""

    def __init__(self) -> None:
        self.read_end, self.write_end = os.pipe()
        self._ours = {self.read_end, self.write_end}

    def give(self, fd: int) -> int:
        self._ours.discard(fd)
        return fd

    def close(self, fd: int) -> None:
        self._ours.discard(fd)
        os.close(fd)

    def cleanup(self) -> None:
        for fd in self._ours:
            os.close(fd)


@pytest.fixture
def pipe() -> Iterator[Pipe]:
    made = Pipe()
    yield made
    made.cleanup()


def alive(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name and t.is_alive()]


async def wait_until_gone(thread_name: str, timeout: float = 5) -> None:
    with trio.fail_after(timeout):
        while alive(thread_name):
            await trio.sleep(0.01)


def test_auto_means_threads_on_windows_only() -> None:
    assert uses_threads("auto", "win32") and uses_threads("threads", "linux")
    assert not uses_threads("auto", "linux") and not uses_threads("auto", "darwin") and not uses_threads("fd", "win32")
    with pytest.raises(ValueError):
        uses_threads("select")  # type: ignore[arg-type]


async def test_reader_hands_over_what_was_written_then_eof(pipe: Pipe) -> None:
    read_end, write_end = pipe.read_end, pipe.write_end
    with trio.fail_after(5):
        reader = ThreadPipeReader(pipe.give(read_end))
        os.write(write_end, b"hello\n")
        assert await reader.receive_some() == b"hello\n"
        os.write(write_end, b"a" * 10)
        assert await reader.receive_some(4) == b"aaaa"  # the rest is kept for the next receive
        assert await reader.receive_some() == b"a" * 6
        pipe.close(write_end)
        assert await reader.receive_some() == b""
        assert await reader.receive_some() == b""  # EOF stays EOF
        await wait_until_gone("mcp-trio pipe reader")  # it ended at EOF and closed its fd
        with pytest.raises(OSError) as closed:
            os.fstat(read_end)
        assert closed.value.errno == errno.EBADF
        await reader.aclose()


async def test_a_cancelled_receive_loses_nothing(pipe: Pipe) -> None:
    read_end, write_end = pipe.read_end, pipe.write_end
    with trio.fail_after(5):
        reader = ThreadPipeReader(pipe.give(read_end))
        with trio.move_on_after(0.05) as scope:
            await reader.receive_some()
        assert scope.cancelled_caught
        os.write(write_end, b"kept")
        assert await reader.receive_some() == b"kept"
        pipe.close(write_end)
        assert await reader.receive_some() == b""
        await wait_until_gone("mcp-trio pipe reader")


async def test_read_ahead_is_bounded_then_nothing_is_lost(pipe: Pipe) -> None:
    """A trio that does not receive stops the thread after READ_AHEAD chunks: the pipe fills
    and the writer (the host) blocks, instead of input piling up in memory."""
    read_end, write_end = pipe.read_end, pipe.write_end
    capacity = fcntl.fcntl(write_end, F_GETPIPE_SZ)
    read_ahead = 2
    with trio.fail_after(10):
        reader = ThreadPipeReader(pipe.give(read_end), read_ahead=read_ahead)
        os.set_blocking(write_end, False)
        block = bytes(range(256)) * 256  # 64 KiB
        sent = bytearray()
        stalled_rounds = 0
        while stalled_rounds < 5:
            wrote = 0
            while True:
                try:
                    n = os.write(write_end, block)
                except BlockingIOError:
                    break
                sent += block[:n]
                wrote += n
            stalled_rounds = stalled_rounds + 1 if wrote == 0 else 0
            await trio.sleep(0.02)  # the thread's chance to read more, if it may
        # The pipe is full, and the thread holds at most read_ahead chunks plus the one it
        # waits to hand over.
        assert len(sent) <= capacity + (read_ahead + 1) * READ_SIZE, (len(sent), capacity)
        received = bytearray()
        os.set_blocking(write_end, True)
        pipe.close(write_end)
        while chunk := await reader.receive_some():
            received += chunk
        assert received == sent
        await wait_until_gone("mcp-trio pipe reader")


async def test_close_does_not_wait_for_a_read_nothing_completes(pipe: Pipe) -> None:
    """What happens to the thread blocked in read() at shutdown: aclose returns at once;
    the thread ends when the next thing comes (here data, at a host's exit EOF), or with
    the process, which a daemon thread never holds up."""
    read_end, write_end = pipe.read_end, pipe.write_end
    with trio.fail_after(5):
        reader = ThreadPipeReader(pipe.give(read_end))
        await trio.sleep(0.05)  # the thread is now blocked in os.read
        [thread] = alive("mcp-trio pipe reader")
        assert thread.daemon
        started = trio.current_time()
        await reader.aclose()
        assert trio.current_time() - started < 0.5
        assert thread.is_alive()
        with pytest.raises(trio.ClosedResourceError):
            await reader.receive_some()
        os.write(write_end, b"too late")
        await wait_until_gone("mcp-trio pipe reader")


async def test_writer_writes_in_order_and_bounds_what_waits(pipe: Pipe) -> None:
    read_end, write_end = pipe.read_end, pipe.write_end
    capacity = fcntl.fcntl(write_end, F_GETPIPE_SZ)
    message = b"m" * 4096
    write_behind = 3
    with trio.fail_after(10):
        writer = ThreadPipeWriter(pipe.give(write_end), drain_timeout=0.2, write_behind=write_behind)
        # Nobody reads the pipe: send_all goes on until the pipe is full and write_behind
        # messages wait behind the one the thread is blocked writing, then it blocks.
        accepted = 0
        with trio.move_on_after(0.5):
            while True:
                await writer.send_all(message)
                accepted += 1
        assert accepted * len(message) <= capacity + (write_behind + 1) * len(message)
        assert accepted >= write_behind
        # Closing waits drain_timeout for the queue, then gives up on the blocked thread.
        started = trio.current_time()
        await writer.aclose()
        assert 0.15 <= trio.current_time() - started < 1
        [thread] = alive("mcp-trio pipe writer")
        # Once the reader reads again, the thread writes everything queued, in order, and ends.
        received = bytearray()
        while len(received) < accepted * len(message):
            received += await trio.to_thread.run_sync(os.read, read_end, 1 << 20)
        assert received == message * accepted
        await wait_until_gone("mcp-trio pipe writer")
        assert await trio.to_thread.run_sync(os.read, read_end, 10) == b""  # it closed its end


async def test_a_write_error_reaches_the_next_send(pipe: Pipe) -> None:
    read_end, write_end = pipe.read_end, pipe.write_end
    pipe.close(read_end)
    with trio.fail_after(5):
        writer = ThreadPipeWriter(pipe.give(write_end), drain_timeout=1)
        with pytest.raises(trio.BrokenResourceError) as broken:
            while True:
                await writer.send_all(b"nobody reads this\n")
                await trio.sleep(0.01)
        assert "Broken pipe" in str(broken.value)
        await writer.aclose()
        await wait_until_gone("mcp-trio pipe writer")


@pytest.mark.slow
@pytest.mark.parametrize(("env", "flag", "expected"), [
    ("threads", None, "a thread per pipe"),
    ("fd", None, "trio waits on the pipes"),
    ("fd", "threads", "a thread per pipe"),  # the flag wins over the environment
    (None, None, "trio waits on the pipes"),  # auto, on Linux
])
async def test_the_setting_picks_the_path(monkeypatch: pytest.MonkeyPatch, tmp_path: os.PathLike[str], env: str | None,
                                          flag: str | None, expected: str) -> None:
    if env is None:
        monkeypatch.delenv("MCP_TRIO_SERVER_STDIO_IO", raising=False)
    else:
        monkeypatch.setenv("MCP_TRIO_SERVER_STDIO_IO", env)
    stderr_path = f"{tmp_path}/stderr"
    args = ["--log-level", "debug", *(["--stdio-io", flag] if flag else [])]
    with trio.fail_after(15), open(stderr_path, "wb") as stderr:
        async with spawn_stdio(*args, stderr=stderr.fileno()) as (client, process):
            await client.initialize()
            assert (await client.request("ping"))["result"] == {}
            await client.close()
            assert await process.wait() == 0
    with open(stderr_path) as logged:
        assert f"stdio: {expected}" in logged.read()


def test_the_setting_in_a_file_and_a_wrong_value(tmp_path: os.PathLike[str]) -> None:
    from mcp_trio._config import ConfigError, load_config

    path = f"{tmp_path}/server.toml"
    with open(path, "w") as file:
        file.write('[server]\nstdio_io = "threads"\n')
    assert load_config(path, {}).server.stdio_io == "threads"
    assert load_config(None, {}).server.stdio_io == "auto"
    with pytest.raises(ConfigError, match="(?i)stdio_io"):
        load_config(None, {"MCP_TRIO_SERVER_STDIO_IO": "select"})


async def test_a_non_blocking_pipe_is_read_and_its_mode_put_back(pipe: Pipe) -> None:
    """The mode belongs to the open file description (a terminal's is the shell's too)."""
    read_end, write_end = pipe.read_end, pipe.write_end
    os.set_blocking(read_end, False)
    watcher = os.dup(read_end)  # the same description, to look at after the thread closed its fd
    try:
        with trio.fail_after(5):
            reader = ThreadPipeReader(pipe.give(read_end))
            assert os.get_blocking(watcher)
            os.write(write_end, b"x")
            assert await reader.receive_some() == b"x"
            pipe.close(write_end)
            assert await reader.receive_some() == b""
            await wait_until_gone("mcp-trio pipe reader")
        assert not os.get_blocking(watcher)
    finally:
        os.close(watcher)
