"""Worker threads of sync (``def``) tools: run them, give them up, count the ones given up.

A Python thread cannot be stopped from outside. A sync tool that hangs (a network call with
no timeout, a lock never released) would otherwise hold its request, its in-flight slot and
one of trio's worker-thread tokens for ever: ``trio.to_thread.run_sync`` waits for the
thread even when the request is cancelled. Here the thread is started with
``abandon_on_cancel=True``: when the tool's timeout (or the client's cancellation, or the
shutdown's) cancels the call, the request is answered at once and the thread is *abandoned*:
it runs on, unowned, until its function returns, and is counted until then.

Abandoned threads are not free: each still holds one of the 40 tokens of trio's default
thread limiter (released only when the thread ends), and whatever it holds. So they are
capped, per tool (``Limits.max_abandoned_threads_per_tool``) and per server
(``Limits.max_abandoned_threads``, below 40 so that live calls always find a thread): at a
cap, new calls of the tool (of every sync tool, for the server's cap) are refused with
``-32030`` saying why, until threads finish.

Counting happens in the trio thread only: an abandoned thread reports its end with
``TrioToken.run_sync_soon``, and a lock per call settles the one race (the thread finishing
while the call is being given up).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

import trio

from .._containment import contained
from .._limits import Limits
from .._metrics import Metrics
from ..protocol._errors import ServerOverloaded


class _Call:
    """One call's thread: whether it ended and whether the trio side gave it up."""

    __slots__ = ("abandoned", "done", "lock")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done = False
        self.abandoned = False


class ToolThreads:
    """The sync tools' threads of one served server: run, abandon, count, cap."""

    def __init__(self, limits: Limits, metrics: Metrics) -> None:
        self.max_abandoned = limits.max_abandoned_threads
        self.max_abandoned_per_tool = limits.max_abandoned_threads_per_tool
        self._metrics = metrics
        #: Abandoned threads still running, by tool name (only names with one or more).
        self.abandoned: dict[str, int] = {}

    @property
    def running_abandoned(self) -> int:
        """Abandoned threads still running, server-wide."""
        return self._metrics.abandoned_threads

    def check(self, tool: str) -> None:
        """Refuse (``ServerOverloaded``) a call of sync tool ``tool`` while a cap is reached."""
        mine = self.abandoned.get(tool, 0)
        if mine >= self.max_abandoned_per_tool:
            self._refuse(tool, f"{mine} of its calls timed out or were cancelled and their threads still run "
                               f"(max_abandoned_threads_per_tool = {self.max_abandoned_per_tool})", mine)
        total = self._metrics.abandoned_threads
        if total >= self.max_abandoned:
            self._refuse(tool, f"{total} threads of sync tools were given up and still run "
                               f"(max_abandoned_threads = {self.max_abandoned})", total)

    def _refuse(self, tool: str, why: str, count: int) -> None:
        self._metrics.tool(tool).refused += 1
        raise ServerOverloaded(f"tool {tool!r} refused: {why}; retry once they finish, or fix the tool that hangs",
                               {"tool": tool, "abandonedThreads": count})

    async def run(self, tool: str, fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
        """``fn(**kwargs)`` in a worker thread; a cancellation answers at once and abandons it.

        What the function raises comes back as an ``Exception`` (``_containment``), as for
        every user function."""
        call = _Call()
        token = trio.lowlevel.current_trio_token()
        work = functools.partial(_work, fn, kwargs, call, token, functools.partial(self._ended, tool))
        try:
            return await trio.to_thread.run_sync(work, abandon_on_cancel=True)
        except trio.Cancelled:
            with call.lock:
                if not call.done:
                    call.abandoned = True
            if call.abandoned:
                self._abandon(tool)
            raise

    def _abandon(self, tool: str) -> None:
        self.abandoned[tool] = self.abandoned.get(tool, 0) + 1
        metrics = self._metrics
        metrics.abandoned_threads += 1
        metrics.abandoned_threads_total += 1
        metrics.tool(tool).abandoned += 1

    def _ended(self, tool: str) -> None:
        """An abandoned thread of ``tool`` has ended (run in the trio thread)."""
        left = self.abandoned.get(tool, 0) - 1
        if left > 0:
            self.abandoned[tool] = left
        else:
            self.abandoned.pop(tool, None)
        self._metrics.abandoned_threads -= 1
        stats = self._metrics.tools.get(tool)
        if stats is not None:
            stats.abandoned -= 1


def _work(fn: Callable[..., Any], kwargs: dict[str, Any], call: _Call, token: trio.lowlevel.TrioToken,
          ended: Callable[[], None]) -> Any:
    """The thread's body: the function, contained; then, if the call was given up meanwhile,
    the news of its end sent to the trio thread."""
    try:
        return fn(**kwargs)
    except Exception:
        raise
    except BaseException as exc:  # SystemExit and friends: that call's failure, not the process's
        replacement = contained(exc)
        if replacement is None or replacement is exc:
            raise
        raise replacement from exc
    finally:
        with call.lock:
            call.done = True
            abandoned = call.abandoned
        if abandoned:
            try:
                token.run_sync_soon(ended)
            except trio.RunFinishedError:
                pass  # the server has stopped: nobody is counting any more
