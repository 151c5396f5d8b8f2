"""Functions written for asyncio, as the registry holds them (``runtime="asyncio"``).

A tool, resource, prompt or middleware declared ``runtime="asyncio"`` is registered as an
``OnAsyncio`` (or ``OnAsyncioMiddleware``) wrapping the user's function: an async callable
like any other, so the tool-call path, the handlers and the middleware chain call it as they
call every function (no branch on the hot path). Called, it hands the function to the asyncio
runtime it is bound to (``_asyncio_runtime.AsyncioRuntime``: one asyncio loop on a thread),
with the request's ``Context`` (``context_param``) given as an ``AsyncioContext``, and a
middleware's ``call_next`` made awaitable from asyncio.

Binding: the supervisor that publishes a registry binds every ``OnAsyncio`` in it to its own
runtime (``bind``), starting none until a call needs one, and closes that runtime at
shutdown. This layer knows the runtime only as ``Runtime`` (no trio here).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

#: The runtimes a function may ask for: ``"trio"`` (the default: the request's own task, or a
#: worker thread for a plain ``def``) and ``"asyncio"``.
RUNTIMES = ("trio", "asyncio")


class Runtime(Protocol):
    """What ``OnAsyncio`` needs of ``_asyncio_runtime.AsyncioRuntime``."""

    async def call(self, fn: Callable[..., Awaitable[Any]], kwargs: Mapping[str, Any], *,
                   context_param: str | None = None, trio_functions: tuple[str, ...] = ()) -> Any: ...


class NotServed(RuntimeError):
    """An asyncio function called by no served server (no runtime bound yet)."""


def check_runtime(runtime: str | None, fn: Callable[..., Any], is_async: bool, what: str) -> bool:
    """Whether ``fn`` runs on asyncio; a runtime we do not know, or asyncio for a plain
    ``def``, is a one-line ``ValueError`` at registration."""
    if runtime is None or runtime == "trio":
        return False
    if runtime not in RUNTIMES:
        raise ValueError(f"{what}: runtime must be one of {', '.join(map(repr, RUNTIMES))}, not {runtime!r}")
    if not is_async:
        raise ValueError(f"{what}: runtime='asyncio' is for async functions (async def); a plain def already "
                         "runs in a worker thread")
    return True


class OnAsyncio:
    """``fn`` run on the asyncio runtime it is bound to; ``context_param`` names its Context."""

    __slots__ = ("fn", "context_param", "runtime", "__name__", "__qualname__", "__wrapped__")

    def __init__(self, fn: Callable[..., Awaitable[Any]], context_param: str | None = None) -> None:
        self.fn = fn
        self.context_param = context_param
        #: Set by the supervisor that publishes this definition (``bind``).
        self.runtime: Runtime | None = None
        self.__name__ = getattr(fn, "__name__", type(fn).__name__)
        self.__qualname__ = getattr(fn, "__qualname__", self.__name__)
        self.__wrapped__ = fn

    def bind(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def _runtime(self) -> Runtime:
        runtime = self.runtime
        if runtime is None:
            raise NotServed(f"{self.__qualname__} runs on asyncio, and only a served server runs it")
        return runtime

    async def __call__(self, **kwargs: Any) -> Any:
        return await self._runtime().call(self.fn, kwargs, context_param=self.context_param)

    def __repr__(self) -> str:
        return f"OnAsyncio({self.__qualname__})"


class OnAsyncioMiddleware(OnAsyncio):
    """A middleware ``fn(request, call_next)`` run on asyncio: ``await call_next(request)``
    there runs the rest of the chain, and the handler, in trio."""

    __slots__ = ()

    async def __call__(self, request: Any, call_next: Any) -> Any:  # type: ignore[override]
        return await self._runtime().call(functools.partial(_positional, self.fn), {"request": request, "call_next": call_next},
                                          trio_functions=("call_next",))


def _positional(fn: Callable[..., Awaitable[Any]], request: Any, call_next: Any) -> Awaitable[Any]:
    return fn(request, call_next)


def asyncio_functions(registry: Any) -> list[OnAsyncio]:
    """Every ``OnAsyncio`` a registry holds (tools, resources, templates, prompts, middleware)."""
    found: list[OnAsyncio] = []
    for group in (registry.tools.values(), registry.resources.values(), registry.templates, registry.prompts.values()):
        found += [definition.fn for definition in group if isinstance(definition.fn, OnAsyncio)]
    found += [fn for fn in registry.middleware if isinstance(fn, OnAsyncio)]
    return found
