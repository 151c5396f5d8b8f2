"""The server's lifespan: what a server opens once per process around serving, and closes after.

``@server.lifespan`` names an async context manager (a function of the server, or of nothing,
returning one; or an async generator function, which is made into one). The supervisor enters
it before it reports readiness, so no request runs before it, and leaves it after every session
has ended, so none runs after. What it yields is ``ctx.lifespan`` in every tool, resource and
prompt: the database pool, the HTTP client, the model a tool needs.

* Entering is bounded by ``Limits.lifespan_timeout``; a failure (or the timeout) is a
  ``LifespanError``: the server does not serve, and ``mcp-trio serve`` says why in one line.
* It lives in a task of its own, entered, held and left there (as trio requires of a context
  manager that opens a nursery or a cancel scope: a lifespan may run background tasks), and
  shielded once started: the cancellation that ends serving reaches neither the tasks it runs
  nor its clean-up (a pool's ``await close()``). It is left when serving ends, however it
  ends, within the same timeout (past it, it is cancelled, and that is logged).
* A failure of its own, at shutdown or while serving (a background task of it that crashed),
  is a ``LifespanError`` too: serving stops, and the process says why in one line.

One per process: ``--workers N`` runs N processes, each with its own supervisor, so each
enters the lifespan once (a pool per process, as a pool should be).
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import trio

from .._containment import describe_raised

logger = logging.getLogger("mcp_trio.lifespan")


class LifespanError(Exception):
    """The lifespan could not start: the server does not serve. The message is one line
    saying what failed and what to do."""


@asynccontextmanager
async def running_lifespan(server: Any, timeout: float) -> AsyncIterator[Any]:
    """Enter ``server``'s lifespan (None when it has none) for the block; yields its value.

    The lifespan lives in a task of its own (``_Holder``), shielded once it has started, so
    the cancellation that ends serving reaches neither its clean-up nor the tasks it runs:
    it is left when the block ends, however it ends, within ``timeout``.
    """
    if getattr(server, "lifespan_factory", None) is None:
        yield None
        return
    holder = _Holder(server, timeout)
    async with trio.open_nursery() as nursery:
        started = await nursery.start(holder.run)
        if not isinstance(started, LifespanError):
            try:
                yield started
            finally:
                holder.release.set()
    if isinstance(started, LifespanError):
        raise started


class _Holder:
    """The task that enters the lifespan, waits for the end of serving, and leaves it."""

    def __init__(self, server: Any, timeout: float) -> None:
        self.server = server
        self.timeout = timeout
        self.release = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        """Report the lifespan's value (or the ``LifespanError`` that kept it from starting),
        then hold it until ``release``."""
        name, timeout = self.server.name, self.timeout
        entered = False
        # One scope around all of it: a lifespan that opens a nursery or a scope of its own
        # nests inside it. Its deadline bounds the start; then it is shielded.
        with trio.CancelScope(deadline=trio.current_time() + timeout) as scope:
            try:
                manager = self.server.lifespan_factory(self.server)
                value = await manager.__aenter__()
            except (trio.Cancelled, KeyboardInterrupt):
                raise
            except BaseException as exc:
                error = LifespanError(f"the lifespan of server {name!r} failed at start: {_raised(exc)} "
                                      "(--log-level debug shows the traceback)")
                error.__cause__ = exc
                task_status.started(error)
                return
            entered = True
            scope.deadline = math.inf
            scope.shield = True
            logger.debug("lifespan of %r started", name)
            task_status.started(value)
            try:
                await self.release.wait()
            except BaseException as exc:  # the lifespan's own scope was cancelled: a task of its failed
                await _leave(manager, exc, scope, name, timeout, "while serving")
                raise
            await _leave(manager, None, scope, name, timeout, "at shutdown")
        if not scope.cancelled_caught:
            return
        if not entered:
            task_status.started(LifespanError(f"the lifespan of server {name!r} did not start within {timeout:g} s "
                                              "(lifespan_timeout): make it faster, or raise --lifespan-timeout"))
            return
        logger.error("the lifespan of server %r did not stop within %g s (lifespan_timeout); it was cancelled",
                     name, timeout)


async def _leave(manager: AbstractAsyncContextManager[Any], exc: BaseException | None, scope: trio.CancelScope,
                 name: str, timeout: float, when: str) -> None:
    """Leave the lifespan as ``async with`` would (``exc`` thrown in, never suppressed),
    within ``timeout``. A failure of its own is a ``LifespanError`` (one line for the
    operator); the exception thrown in goes on as it is."""
    scope.deadline = trio.current_time() + timeout
    try:
        if exc is None:
            await manager.__aexit__(None, None, None)
        else:
            await manager.__aexit__(type(exc), exc, exc.__traceback__)
    except BaseException as failure:
        if failure is exc or isinstance(failure, (trio.Cancelled, KeyboardInterrupt)):
            raise
        raise LifespanError(f"the lifespan of server {name!r} failed {when}: {_raised(failure)}") from failure
    logger.debug("lifespan of %r stopped", name)


def _raised(exc: BaseException) -> str:
    """``ValueError: no such database``: the first leaf of what was raised, in one line."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, Exception):
        return f"{type(exc).__name__}: {exc}"
    return f"it raised {describe_raised(exc)}"
