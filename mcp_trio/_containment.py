"""Containment: what a user function or a session raises stays inside that request or session.

Python lets code raise ``BaseException``s that are not errors: ``SystemExit`` (``sys.exit()``,
or ``argparse`` refusing its input), ``KeyboardInterrupt``, ``GeneratorExit``. Escaping
``except Exception``, one of them raised by a tool would unwind through its request, its
session and the server's nursery, and stop the process. Here they are turned back into
ordinary errors at the two boundaries that matter:

* ``call_user``: every call of a user function (tool, resource, prompt, completion; async ones
  in the request task, sync ones in a worker thread). Anything but cancellation and the
  server's own control flow (``control_flow = True`` on the exception class: the 2026-07-28
  ``InputRequired`` and ``ProtocolEscape``) leaves it as an ``Exception``, so the request
  answers it as any other failure of that function: ``isError`` for a tool, ``-32603``
  otherwise.
* ``run_session``: the task that serves one session (an HTTP session, a WebSocket). Whatever
  ends it, except cancellation and ``KeyboardInterrupt``, is logged and ends that session
  alone. ``KeyboardInterrupt`` passes there: past ``call_user`` it is the operator's Ctrl-C
  (trio raises it wherever the program happens to be when no signal handler is installed).

``trio.Cancelled`` always passes: it is how a scope (a timeout, a client's cancellation,
shutdown) takes back control, and swallowing it would break the cancel scope that sent it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio

logger = logging.getLogger("mcp_trio.containment")


class UserFunctionExit(Exception):
    """A user function raised a ``BaseException`` that is not an error (``SystemExit``,
    ``KeyboardInterrupt``...); it is carried as an ordinary failure of that one request."""

    def __init__(self, raised: BaseException) -> None:
        leaf = _first_leaf(raised)
        super().__init__(f"the function raised {describe_raised(leaf)}, which would stop the server; "
                         "only this request failed")
        self.raised = raised


def describe_raised(exc: BaseException) -> str:
    """``SystemExit(2)``: the exception's type and first arguments, for a one-line message."""
    return type(exc).__name__ + "(" + ", ".join(repr(arg)[:80] for arg in exc.args[:2]) + ")"


def _first_leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _passes(exc: BaseException) -> bool:
    """Leaves that must go on unwinding: cancellation, the server's own control flow."""
    return isinstance(exc, trio.Cancelled) or getattr(exc, "control_flow", False)


def _escapes(exc: BaseException) -> bool:
    """Leaves that would stop the process if nobody caught them. ``split`` asks about every
    group before its leaves: a group is never one, or a nursery's ``Cancelled`` (a tool that
    opened a nursery and met its timeout) would be taken for an escaping group."""
    return not isinstance(exc, (Exception, BaseExceptionGroup)) and not _passes(exc)


def contained(exc: BaseException) -> BaseException | None:
    """What to raise instead of ``exc``, raised by a user function: None to raise ``exc``
    itself (an ``Exception``, a cancellation, control flow), else an ``Exception``.

    A group mixing cancellation with an escaping exception raises the group without the
    escaping part (it is logged): the cancellation is what its scope is waiting for.
    """
    if isinstance(exc, Exception):
        return None
    if not isinstance(exc, BaseExceptionGroup):
        return None if _passes(exc) else UserFunctionExit(exc)
    escaping, rest = exc.split(_escapes)
    if escaping is None:
        return None
    if rest is not None and rest.subgroup(_passes) is not None:
        logger.warning("a user function raised %s while being cancelled; the cancellation goes on",
                       type(_first_leaf(escaping)).__name__)
        return rest
    return UserFunctionExit(escaping)


def is_failure(exc: BaseException) -> bool:
    """Whether ``exc``, reaching a request's boundary, is that request's failure (answered
    ``-32603``) rather than something to let through: cancellation, control flow, or the
    operator's ``KeyboardInterrupt``. User functions are contained by ``call_user`` already;
    this catches what user code raises elsewhere (a ``__post_init__`` run by argument
    validation, a value's ``__str__``...)."""
    if isinstance(exc, BaseExceptionGroup):
        return all(is_failure(inner) for inner in exc.exceptions)
    return not _passes(exc) and not isinstance(exc, KeyboardInterrupt)


async def call_user(fn: Callable[..., Any], is_async: bool, kwargs: dict[str, Any]) -> Any:
    """Run user code, async functions in this task and sync ones in a worker thread; what
    it raises comes back as an ``Exception`` (see ``contained``)."""
    try:
        if is_async:
            return await fn(**kwargs)
        return await trio.to_thread.run_sync(functools.partial(fn, **kwargs))
    except Exception:
        raise
    except BaseException as exc:
        replacement = contained(exc)
        if replacement is None:
            raise
        if replacement is not exc:
            raise replacement from exc
        raise


async def run_session(what: str, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
    """Run one session's task; a failure of any kind but cancellation ends it alone (logged)."""
    try:
        await fn(*args)
    except Exception:
        logger.exception("%s failed and was closed; the server goes on", what)
    except BaseExceptionGroup as group:
        cancelled, rest = group.split((trio.Cancelled, KeyboardInterrupt))
        if rest is not None:
            logger.error("%s failed and was closed; the server goes on", what, exc_info=rest)
        if cancelled is not None:
            raise cancelled from None
    except (trio.Cancelled, KeyboardInterrupt):
        raise
    except BaseException as exc:  # SystemExit, GeneratorExit... from code that ran in it
        logger.error("%s raised %s and was closed; the server goes on", what, type(exc).__name__, exc_info=exc)
