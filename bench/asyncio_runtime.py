"""What an asyncio tool call costs under trio: one asyncio loop on a thread (``AsyncioRuntime``,
A) against trio-asyncio's asyncio loop inside trio (B), with a plain trio call as the floor.
Run from the repository root: ``.venv/bin/python bench/asyncio_runtime.py`` (needs the test
extra's aiohttp and ``pip install trio-asyncio``, which the project does not depend on).

Rows, each the median over ROUNDS alternating rounds (A B A B ...):
- ``noop``: ``async def f(x): return x``, sequential calls: the bare crossing.
- ``sleep0``: the tool yields once to its loop (``await asyncio.sleep(0)``).
- ``callback``: the tool awaits one trio coroutine (as ``await ctx.report_progress(...)`` does).
- ``concurrent``: 64 trio tasks calling at once, per call of the total.
- ``aiohttp``: a GET to a local aiohttp server in another process, over one reused
  ``aiohttp.ClientSession`` living on the runtime's loop: real asyncio library work.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mcp_trio._asyncio_runtime import AsyncioRuntime  # noqa: E402

ROUNDS = 7
CALLS = {"noop": 4000, "sleep0": 4000, "callback": 2000, "concurrent": 4000, "aiohttp": 400}
CONCURRENCY = 64

SERVER = """
import sys
from aiohttp import web
async def hello(request):
    return web.Response(text="ok")
app = web.Application()
app.router.add_get("/", hello)
async def main():
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(site._server.sockets[0].getsockname()[1], flush=True)
    import asyncio
    await asyncio.Event().wait()
import asyncio
asyncio.run(main())
"""


async def noop(x: int) -> int:
    return x


async def sleep0(x: int) -> int:
    await asyncio.sleep(0)
    return x


async def trio_noop(x: int) -> int:
    return x


class Holder:
    """Per-variant state living on that variant's asyncio loop (the aiohttp session)."""

    session: Any = None
    url: str = ""


async def fetch(holder: Holder) -> str:
    import aiohttp

    if holder.session is None:
        holder.session = aiohttp.ClientSession()
    async with holder.session.get(holder.url) as response:
        return await response.text()


async def close_session(holder: Holder) -> None:
    if holder.session is not None:
        await holder.session.close()
        holder.session = None


Caller = Callable[[Callable[..., Awaitable[Any]], dict[str, Any]], Awaitable[Any]]
Callback = Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]


async def timed(call: Caller, fn: Callable[..., Awaitable[Any]], kwargs: dict[str, Any], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        await call(fn, kwargs)
    return (time.perf_counter() - start) / n


async def timed_concurrent(call: Caller, n: int) -> float:
    per_task = n // CONCURRENCY

    async def worker() -> None:
        for i in range(per_task):
            await call(sleep0, {"x": i})

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(CONCURRENCY):
            nursery.start_soon(worker)
    return (time.perf_counter() - start) / (per_task * CONCURRENCY)


async def run_variant(name: str, call: Caller, to_trio: Callback, holder: Holder, results: dict[str, dict[str, list[float]]]) -> None:
    async def with_callback(x: int) -> int:
        return await to_trio(trio_noop)(x)

    row = results.setdefault(name, {})
    row.setdefault("noop", []).append(await timed(call, noop, {"x": 1}, CALLS["noop"]))
    row.setdefault("sleep0", []).append(await timed(call, sleep0, {"x": 1}, CALLS["sleep0"]))
    row.setdefault("callback", []).append(await timed(call, with_callback, {"x": 1}, CALLS["callback"]))
    row.setdefault("concurrent", []).append(await timed_concurrent(call, CALLS["concurrent"]))
    row.setdefault("aiohttp", []).append(await timed(call, fetch, {"holder": holder}, CALLS["aiohttp"]))


async def one_round(variant: str, url: str) -> dict[str, list[float]]:
    """One round of one variant, in a process of its own: importing trio-asyncio replaces
    ``asyncio.get_running_loop``/``new_event_loop`` process-wide, which would change A too."""
    results: dict[str, dict[str, list[float]]] = {}
    holder = Holder()
    holder.url = url
    if variant == "thread":
        from mcp_trio._asyncio_runtime import _Bridge

        async with AsyncioRuntime() as runtime, trio.open_nursery() as nursery:
            await runtime.call(noop, {"x": 0})  # start the thread
            assert runtime._loop is not None
            # What ``AsyncioContext`` does for ``await ctx.report_progress(...)``, through the
            # runtime's own bridge (one for the round instead of one per call).
            bridge = _Bridge(runtime._loop, trio.lowlevel.current_trio_token(), nursery)

            async def thread_call(fn: Callable[..., Awaitable[Any]], kwargs: dict[str, Any]) -> Any:
                return await runtime.call(fn, kwargs)

            def thread_to_trio(afn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
                return lambda *args: bridge.run(afn, args, {})

            await run_variant("A thread loop", thread_call, thread_to_trio, holder, results)
            await runtime.call(close_session, {"holder": holder})

            async def floor(fn: Callable[..., Awaitable[Any]], kwargs: dict[str, Any]) -> Any:
                return await trio_noop(**kwargs)

            results["floor: trio call"] = {"noop": [await timed(floor, noop, {"x": 1}, CALLS["noop"])]}
            nursery.cancel_scope.cancel()
    else:
        import trio_asyncio

        async with trio_asyncio.open_loop():

            async def inside_call(fn: Callable[..., Awaitable[Any]], kwargs: dict[str, Any]) -> Any:
                return await trio_asyncio.aio_as_trio(fn)(**kwargs)

            await inside_call(noop, {"x": 0})
            await run_variant("B trio-asyncio", inside_call, trio_asyncio.trio_as_aio, holder, results)
            await trio_asyncio.aio_as_trio(close_session)(holder)
    return {f"{name}|{column}": values for name, row in results.items() for column, values in row.items()}


def main() -> None:
    import json

    if len(sys.argv) == 4 and sys.argv[1] == "--round":
        print(json.dumps(trio.run(one_round, sys.argv[2], sys.argv[3])))
        return
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    merged: dict[str, list[float]] = {}
    try:
        assert server.stdout is not None
        url = f"http://127.0.0.1:{int(server.stdout.readline())}/"
        for _ in range(ROUNDS):
            for variant in ("thread", "trio-asyncio"):
                out = subprocess.run([sys.executable, __file__, "--round", variant, url], check=True,
                                     capture_output=True, text=True).stdout
                for key, values in json.loads(out).items():
                    merged.setdefault(key, []).extend(values)
    finally:
        server.kill()
        server.wait()
    columns = ["noop", "sleep0", "callback", "concurrent", "aiohttp"]
    names = ["A thread loop", "B trio-asyncio", "floor: trio call"]
    print(f"asyncio tool call cost under trio, median of {ROUNDS} alternating rounds (µs per call)")
    print(f"{'variant':<18}" + "".join(f"{c:>12}" for c in columns))
    for name in names:
        cells = "".join(f"{statistics.median(merged[f'{name}|{c}']) * 1e6:>12.1f}" if f"{name}|{c}" in merged else f"{'':>12}"
                        for c in columns)
        print(f"{name:<18}{cells}")
    ratios = [f"{c} {statistics.median(x / y for x, y in zip(merged[f'A thread loop|{c}'], merged[f'B trio-asyncio|{c}'])):.2f}"
              for c in columns]
    print("ratio A/B (median of per-round ratios):", ", ".join(ratios))


if __name__ == "__main__":
    main()
