"""Running asyncio code from trio: one asyncio event loop on a dedicated thread.

A tool written for asyncio (aiohttp, asyncpg, redis.asyncio, a vendor SDK) cannot run in a trio
task: asyncio wants its own running loop. ``AsyncioRuntime`` owns one stock asyncio loop on one
thread, created per served server at the first asyncio call and closed at shutdown (no global
loop, nothing started for a server without asyncio tools). ``await runtime.call(fn, kwargs)``
runs ``fn(**kwargs)`` as an asyncio task on that loop and gives its result back to the trio
caller, with:

- **cancellation both ways**: a cancelled trio caller (a client's ``notifications/cancelled``,
  a tool timeout, shutdown) cancels the asyncio task and waits for it to finish (bounded by
  ``cancel_grace``), then the caller sees ``trio.Cancelled`` as usual; an asyncio exception is
  raised to the caller as itself (the tool's error); an ``asyncio.CancelledError`` the tool
  raises on its own, not asked for by trio, becomes ``AsyncioTaskCancelled`` (an ``Exception``,
  so it is that call's error and nothing more);
- **contextvars**: the task runs in a copy of the caller's context, so the request id, the
  principal and anything else set in the trio task are visible on the asyncio side;
- **calls back into trio**: ``context_param`` names the argument holding the request's
  ``Context``; the tool gets an ``AsyncioContext`` in its place, whose coroutine methods
  (``report_progress``, ``log``, ``elicit``, ``sample``...) are awaitable from asyncio and run
  in trio, as children of the calling trio task (so they end with it).

Why a thread and not ``trio-asyncio`` (an asyncio loop inside trio): measured in
``bench/asyncio_runtime.py`` (see the commit message for the figures) and because importing
trio-asyncio replaces ``asyncio.get_running_loop``, ``asyncio.current_task``,
``asyncio.new_event_loop`` and the event-loop policy functions for the whole process.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import trio

logger = logging.getLogger("mcp_trio.asyncio")

#: Seconds a cancelled asyncio task gets to finish (run its ``finally`` blocks, close its
#: connections) before the trio caller stops waiting for it and the task is abandoned.
DEFAULT_CANCEL_GRACE = 5.0
#: Seconds ``aclose`` waits for the loop's thread to cancel what is left and stop.
DEFAULT_CLOSE_TIMEOUT = 10.0


class AsyncioTaskCancelled(Exception):
    """The asyncio side cancelled the tool's task (it raised ``asyncio.CancelledError``), not
    the trio caller: the call failed, the request was not cancelled."""


class AsyncioRuntimeClosed(RuntimeError):
    """A call arrived after ``aclose``: the server is shutting down."""


class _Call:
    """One asyncio task run for a trio caller; every field is written on the loop's thread
    before ``done`` is set, and read on the trio side after."""

    __slots__ = ("task", "value", "error", "cancelled", "cancel_requested", "done")

    def __init__(self) -> None:
        self.task: asyncio.Task[Any] | None = None
        self.value: Any = None
        self.error: BaseException | None = None
        self.cancelled = False
        self.cancel_requested = False
        self.done = trio.Event()


class AsyncioRuntime:
    """One asyncio event loop on one thread, shared by the asyncio tools of a served server.

    Build it in ``main`` (or the supervisor) and pass it down; it starts its thread at the first
    ``call`` and must be closed with ``aclose`` (or ``async with runtime:``).
    """

    def __init__(self, *, cancel_grace: float = DEFAULT_CANCEL_GRACE, close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
                 thread_name: str = "mcp-trio-asyncio") -> None:
        if cancel_grace < 0 or close_timeout <= 0:
            raise ValueError("cancel_grace must be >= 0 and close_timeout > 0")
        self.cancel_grace = cancel_grace
        self.close_timeout = close_timeout
        self._thread_name = thread_name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Future[None] | None = None
        self._closed = False
        #: Tasks abandoned after ``cancel_grace`` (they ignored cancellation); for statistics.
        self.abandoned = 0

    @property
    def started(self) -> bool:
        return self._thread is not None

    async def __aenter__(self) -> AsyncioRuntime:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- the loop's thread --------------------------------------------------------------------
    def _ensure_started(self) -> asyncio.AbstractEventLoop:
        if self._closed:
            raise AsyncioRuntimeClosed("the asyncio runtime is closed (the server is shutting down)")
        if self._loop is None:
            # Created here, run there: ``call_soon_threadsafe`` queues work before ``run_forever``
            # begins, so the first call needs no hand-shake with the new thread.
            loop = asyncio.new_event_loop()
            self._stop = loop.create_future()
            self._thread = threading.Thread(target=self._run_loop, args=(loop,), name=self._thread_name, daemon=True)
            self._loop = loop
            self._thread.start()
        return self._loop

    def _run_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            assert self._stop is not None
            loop.run_until_complete(self._stop)
            # What is left (abandoned or fire-and-forget tasks) is cancelled and awaited, like
            # ``asyncio.run`` does, so their ``finally`` blocks run before the loop closes.
            pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        except BaseException:  # a bug of ours or an abandoned task's: the thread ends, the process does not
            logger.exception("the asyncio runtime's loop stopped with an error")
        finally:
            asyncio.set_event_loop(None)
            loop.close()

    async def aclose(self) -> None:
        """Cancel what still runs on the loop, stop it and join its thread (bounded by
        ``close_timeout``; a thread that does not stop is left behind, it is a daemon)."""
        if self._closed:
            return
        self._closed = True
        loop, stop, thread = self._loop, self._stop, self._thread
        if loop is None or stop is None or thread is None:
            return
        try:
            loop.call_soon_threadsafe(_settle_stop, stop)
        except RuntimeError:  # the loop is already closed
            return
        with trio.move_on_after(self.close_timeout) as waited:
            await trio.to_thread.run_sync(thread.join, abandon_on_cancel=True)
        if waited.cancelled_caught:
            logger.warning("the asyncio runtime did not stop within %g s; its thread is left to the process exit",
                           self.close_timeout)

    # -- calls --------------------------------------------------------------------------------
    async def call(self, fn: Callable[..., Awaitable[Any]], kwargs: Mapping[str, Any], *,
                   context_param: str | None = None, trio_functions: tuple[str, ...] = ()) -> Any:
        """Run ``fn(**kwargs)`` on the asyncio loop and return its result to this trio task.

        ``context_param``: the keyword holding the request's ``Context``; the function gets an
        ``AsyncioContext`` wrapping it instead. ``trio_functions``: keywords holding functions
        that return trio awaitables (a middleware's ``call_next``); the function gets each as
        a function whose calls are awaitable from asyncio and run in trio.
        """
        loop = self._ensure_started()
        token = trio.lowlevel.current_trio_token()
        call = _Call()
        context = contextvars.copy_context()
        async with trio.open_nursery() as nursery:
            arguments = dict(kwargs)
            if context_param is not None or trio_functions:
                bridge = _Bridge(loop, token, nursery, contextvars.copy_context())
                if context_param is not None:
                    arguments[context_param] = AsyncioContext(arguments[context_param], bridge)
                for name in trio_functions:
                    arguments[name] = _TrioFunction(bridge, arguments[name])
            try:
                loop.call_soon_threadsafe(_start, loop, token, call, context, fn, arguments)
            except RuntimeError:  # closed between the check and now
                raise AsyncioRuntimeClosed("the asyncio runtime is closed (the server is shutting down)") from None
            try:
                await call.done.wait()
            except trio.Cancelled:
                await self._cancel(loop, call, fn)
                raise
            finally:
                nursery.cancel_scope.cancel()  # calls back into trio the tool left running
        if call.error is not None:
            raise call.error
        if call.cancelled:
            raise AsyncioTaskCancelled(f"{_name(fn)}: its asyncio task was cancelled from the asyncio side")
        return call.value

    async def _cancel(self, loop: asyncio.AbstractEventLoop, call: _Call, fn: Callable[..., Any]) -> None:
        """Cancel the asyncio task and wait (shielded, bounded) until it has finished."""
        call.cancel_requested = True
        try:
            loop.call_soon_threadsafe(_cancel_task, call)
        except RuntimeError:  # the loop is closed: nothing runs there any more
            return
        with trio.CancelScope(shield=True):
            with trio.move_on_after(self.cancel_grace) as waited:
                await call.done.wait()
        if waited.cancelled_caught:
            self.abandoned += 1
            logger.warning("%s: its asyncio task ignored cancellation for %g s and was abandoned",
                           _name(fn), self.cancel_grace)


# Functions run on the loop's thread -----------------------------------------------------------
def _settle_stop(stop: asyncio.Future[None]) -> None:
    if not stop.done():
        stop.set_result(None)


def _start(loop: asyncio.AbstractEventLoop, token: trio.lowlevel.TrioToken, call: _Call,
           context: contextvars.Context, fn: Callable[..., Awaitable[Any]], arguments: dict[str, Any]) -> None:
    if call.cancel_requested:
        call.cancelled = True
        _wake(token, call)
        return
    try:
        awaitable = context.run(functools.partial(fn, **arguments))
        if not inspect.isawaitable(awaitable):
            raise TypeError(f"{_name(fn)} is not an async function (it returned {type(awaitable).__name__})")
        call.task = loop.create_task(_guard(awaitable), context=context)
    except Exception as exc:  # calling it failed before it ran: that is the call's error
        call.error = exc
        _wake(token, call)
        return
    call.task.add_done_callback(functools.partial(_finished, token, call))


async def _guard(awaitable: Awaitable[Any]) -> Any:
    """Keep ``KeyboardInterrupt``/``SystemExit`` from a tool inside its result: asyncio would
    re-raise them out of the loop and end the thread."""
    try:
        return (await awaitable, None)
    except (KeyboardInterrupt, SystemExit) as exc:
        return (None, exc)


def _finished(token: trio.lowlevel.TrioToken, call: _Call, task: asyncio.Task[Any]) -> None:
    if task.cancelled():
        call.cancelled = True
    else:
        error = task.exception()
        if error is not None:
            call.error = error
        else:
            call.value, call.error = task.result()
    _wake(token, call)


def _cancel_task(call: _Call) -> None:
    if call.task is not None:
        call.task.cancel()


def _wake(token: trio.lowlevel.TrioToken, call: _Call) -> None:
    try:
        token.run_sync_soon(call.done.set)
    except trio.RunFinishedError:  # the trio side is gone; nobody waits for this call
        pass


def _name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


# -- calling back into trio -----------------------------------------------------------------------
class _Bridge:
    """Runs trio coroutine functions for asyncio code: each in a trio task of the calling
    request's nursery, its outcome delivered to an asyncio future on the runtime's loop.

    The task is started in (a copy of) the caller's context: trio starts it from a
    ``run_sync_soon`` callback, where no task's context is current, so without it the request
    id (and every other context variable) would be lost below a middleware's ``call_next``."""

    __slots__ = ("_loop", "_token", "_nursery", "_context")

    def __init__(self, loop: asyncio.AbstractEventLoop, token: trio.lowlevel.TrioToken, nursery: trio.Nursery,
                 context: contextvars.Context) -> None:
        self._loop = loop
        self._token = token
        self._nursery = nursery
        self._context = context

    def run(self, afn: Callable[..., Awaitable[Any]], args: tuple[Any, ...], kwargs: dict[str, Any]) -> asyncio.Future[Any]:
        """Start ``afn(*args, **kwargs)`` in trio; call from the loop's thread."""
        future = self._loop.create_future()
        scope = trio.CancelScope()

        def cancel_in_trio(done: asyncio.Future[Any]) -> None:
            if done.cancelled():  # the asyncio side stopped waiting: stop the trio side too
                self._token.run_sync_soon(scope.cancel)

        future.add_done_callback(cancel_in_trio)
        try:
            self._token.run_sync_soon(self._start, future, scope, afn, args, kwargs)
        except trio.RunFinishedError:
            future.set_exception(AsyncioRuntimeClosed("the trio side of this call has finished"))
        return future

    def _start(self, *args: Any) -> None:
        """On the trio thread: start the task with the caller's context current (trio copies
        the current context into a new task)."""
        self._context.run(self._nursery.start_soon, self._run, *args)

    async def _run(self, future: asyncio.Future[Any], scope: trio.CancelScope, afn: Callable[..., Awaitable[Any]],
                   args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        value: Any = None
        error: BaseException | None = None
        with scope:
            try:
                value = await afn(*args, **kwargs)
            except Exception as exc:  # the trio call's failure is the asyncio awaiter's exception
                error = exc
        if scope.cancelled_caught:
            self._deliver(_cancel_future, future)
        else:
            self._deliver(_settle_future, future, value, error)

    def _deliver(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop closed: nobody waits for this future
            pass


def _settle_future(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


def _cancel_future(future: asyncio.Future[Any]) -> None:
    future.cancel()


class TrioCall:
    """A trio coroutine call not yet started: awaiting it from asyncio runs it in trio, and
    ``AsyncioContext.gather`` hands several of them to ``Context.gather`` at once."""

    __slots__ = ("_bridge", "afn", "args", "kwargs")

    def __init__(self, bridge: _Bridge, afn: Callable[..., Awaitable[Any]], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self._bridge = bridge
        self.afn = afn
        self.args = args
        self.kwargs = kwargs

    def __await__(self) -> Any:
        return self._bridge.run(self.afn, self.args, self.kwargs).__await__()


class _TrioFunction:
    """A function returning trio awaitables, as asyncio code calls it: each call is a
    ``TrioCall`` (``await call_next(request)`` runs the rest of a middleware chain in trio)."""

    __slots__ = ("_bridge", "_fn")

    def __init__(self, bridge: _Bridge, fn: Callable[..., Awaitable[Any]]) -> None:
        self._bridge = bridge
        self._fn = fn

    def __call__(self, *args: Any, **kwargs: Any) -> TrioCall:
        return TrioCall(self._bridge, self._fn, args, kwargs)


class AsyncioContext:
    """The request's ``Context`` as asyncio code sees it.

    Its coroutine methods return ``TrioCall`` awaitables (``await ctx.report_progress(1, 2)``,
    ``await ctx.log("info", "...")``, ``await ctx.elicit(...)``), run in trio; its plain
    methods (``notify_resource_updated``) run on the trio thread too, the asyncio thread
    waiting for them; its data attributes (``request_id``, ``principal``, ``client``,
    ``progress_token``) are read as they are.
    """

    __slots__ = ("_context", "_bridge")

    def __init__(self, context: Any, bridge: _Bridge) -> None:
        object.__setattr__(self, "_context", context)
        object.__setattr__(self, "_bridge", bridge)

    @property
    def trio_context(self) -> Any:
        """The wrapped trio ``Context`` (usable only from trio code)."""
        return self._context

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._context, name)
        if inspect.iscoroutinefunction(attribute):
            bridge = self._bridge

            def start(*args: Any, **kwargs: Any) -> TrioCall:
                return TrioCall(bridge, attribute, args, kwargs)

            start.__name__ = name
            start.__doc__ = attribute.__doc__
            return start
        if callable(attribute) and not isinstance(attribute, type):
            token = self._bridge._token

            def run_on_trio_thread(*args: Any, **kwargs: Any) -> Any:
                return trio.from_thread.run_sync(functools.partial(attribute, *args, **kwargs), trio_token=token)

            return run_on_trio_thread
        return attribute

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("AsyncioContext is read-only")

    async def gather(self, *asks: TrioCall) -> list[Any]:
        """``Context.gather`` for asyncio code: ``await ctx.gather(ctx.elicit(...), ctx.sample(...))``
        (one ``InputRequiredResult`` for all of them in the 2026-07-28 era)."""
        if not all(isinstance(ask, TrioCall) for ask in asks):
            raise TypeError("gather takes the context's own calls, e.g. ctx.gather(ctx.elicit(...), ctx.sample(...))")
        context = self._context

        async def together() -> list[Any]:
            return await context.gather(*(ask.afn(*ask.args, **ask.kwargs) for ask in asks))

        return await self._bridge.run(together, (), {})
