"""asyncio code under trio through ``AsyncioRuntime``: a real asyncio library (an aiohttp client
calling an aiohttp server on loopback, both on the runtime's loop), cancellation both ways,
contextvars, calls back into trio, the limits (cancel grace, close timeout), and a tool whose
asyncio half reports progress, logs and elicits through the real ``Context``, called by the
official SDK client over Streamable HTTP.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import trio
from aiohttp import web

from mcp_trio import Context, Server
from mcp_trio._asyncio_runtime import AsyncioContext, AsyncioRuntime, AsyncioRuntimeClosed, AsyncioTaskCancelled
from mcp_trio._logging import request_id_var

ZIPS = {"75001": {"city": "Paris"}, "10115": {"city": "Berlin"}}


class Site:
    """An aiohttp server on the runtime's loop, with a handler that answers only at ``stop``."""

    def __init__(self) -> None:
        self.runner: web.AppRunner | None = None
        self.base = ""
        self.slow_arrived = 0
        self.release: asyncio.Event | None = None

    def app(self) -> web.Application:
        async def zip_code(request: web.Request) -> web.Response:
            found = ZIPS.get(request.match_info["code"])
            if found is None:
                raise web.HTTPNotFound(text="no such zip")
            return web.json_response(found)

        async def slow(request: web.Request) -> web.Response:
            self.slow_arrived += 1
            assert self.release is not None
            await self.release.wait()
            return web.Response(text="never")

        app = web.Application()
        app.router.add_get("/zip/{code}", zip_code)
        app.router.add_get("/slow", slow)
        return app

    async def start(self) -> str:
        self.release = asyncio.Event()
        self.runner = web.AppRunner(self.app(), access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        host, port = self.runner.addresses[0][:2]
        self.base = f"http://{host}:{port}"
        return self.base

    async def stop(self) -> None:
        if self.release is not None:
            self.release.set()  # let the slow handler end, or cleanup waits for it
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
async def runtime() -> AsyncIterator[AsyncioRuntime]:
    async with AsyncioRuntime(cancel_grace=2.0, close_timeout=5.0) as runtime:
        yield runtime


@pytest.fixture
async def site(runtime: AsyncioRuntime) -> AsyncIterator[Site]:
    site = Site()
    with trio.fail_after(5):
        await runtime.call(site.start, {})
    yield site
    with trio.fail_after(5):
        await runtime.call(site.stop, {})


# -- plain asyncio code, as a user writes it ------------------------------------------------------
async def city_of(base: str, code: str) -> str:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/zip/{code}") as response:
            response.raise_for_status()
            return (await response.json())["city"]


async def test_an_aiohttp_client_runs_unchanged(runtime: AsyncioRuntime, site: Site) -> None:
    with trio.fail_after(5):
        assert await runtime.call(city_of, {"base": site.base, "code": "75001"}) == "Paris"
        # Many at once, from many trio tasks, on the one loop.
        found: list[str] = []

        async def one(code: str) -> None:
            found.append(await runtime.call(city_of, {"base": site.base, "code": code}))

        async with trio.open_nursery() as nursery:
            for code in ["75001", "10115"] * 10:
                nursery.start_soon(one, code)
        assert sorted(found) == ["Berlin"] * 10 + ["Paris"] * 10


async def test_an_asyncio_exception_is_the_callers_error(runtime: AsyncioRuntime, site: Site) -> None:
    with trio.fail_after(5):
        with pytest.raises(aiohttp.ClientResponseError) as caught:
            await runtime.call(city_of, {"base": site.base, "code": "00000"})
        assert caught.value.status == 404

        async def times_out() -> None:
            await asyncio.wait_for(asyncio.Event().wait(), 0.01)

        with pytest.raises(TimeoutError):
            await runtime.call(times_out, {})
        # The runtime goes on.
        assert await runtime.call(city_of, {"base": site.base, "code": "10115"}) == "Berlin"


async def test_trio_cancellation_cancels_the_asyncio_task_and_waits_for_it(runtime: AsyncioRuntime, site: Site) -> None:
    seen: dict[str, Any] = {}

    async def stuck(base: str) -> str:
        try:
            async with aiohttp.ClientSession() as session:
                async with session.get(f"{base}/slow") as response:
                    return await response.text()
        except asyncio.CancelledError:
            seen["cancelled"] = True
            raise
        finally:
            await asyncio.sleep(0.05)  # cleanup that itself awaits
            seen["cleaned_up"] = True

    with trio.fail_after(5):
        with trio.move_on_after(0.3) as scope:
            await runtime.call(stuck, {"base": site.base})
        assert scope.cancelled_caught
        # By the time the trio caller sees its cancellation the asyncio task has finished.
        assert seen == {"cancelled": True, "cleaned_up": True}
        assert site.slow_arrived == 1
        assert runtime.abandoned == 0


async def test_a_cancelled_error_the_tool_raises_itself_is_its_error(runtime: AsyncioRuntime) -> None:
    async def gives_up() -> None:
        raise asyncio.CancelledError()

    async def cancels_itself() -> None:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        await asyncio.sleep(1)

    with trio.fail_after(5):
        for fn in (gives_up, cancels_itself):
            with pytest.raises(AsyncioTaskCancelled, match="cancelled from the asyncio side"):
                await runtime.call(fn, {})


async def test_not_an_async_function_is_a_clear_error(runtime: AsyncioRuntime) -> None:
    def plain() -> int:
        return 1

    with trio.fail_after(5):
        with pytest.raises(TypeError, match="plain is not an async function"):
            await runtime.call(plain, {})


async def test_contextvars_set_in_trio_are_seen_in_asyncio(runtime: AsyncioRuntime) -> None:
    marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="unset")

    async def read() -> tuple[Any, str, str]:
        value = (request_id_var.get(), marker.get(), threading.current_thread().name)
        marker.set("changed on the asyncio side")
        return value

    async def request(request_id: int) -> tuple[Any, str, str]:
        request_id_var.set(request_id)
        marker.set(f"request {request_id}")
        return await runtime.call(read, {})

    with trio.fail_after(5):
        results: dict[int, tuple[Any, str, str]] = {}

        async def run(request_id: int) -> None:
            results[request_id] = await request(request_id)

        async with trio.open_nursery() as nursery:
            for request_id in range(5):
                nursery.start_soon(run, request_id)
        assert results == {i: (i, f"request {i}", "mcp-trio-asyncio") for i in range(5)}
        # The asyncio side worked on a copy: the trio side's values are its own.
        marker.set("trio")
        await runtime.call(read, {})
        assert marker.get() == "trio"


# -- calls back into trio -------------------------------------------------------------------------
class TrioSide:
    """A trio object handed to asyncio code, as the request's ``Context`` is."""

    label = "trio side"

    def __init__(self) -> None:
        self.events: list[str] = []
        self.trio_thread = threading.current_thread()

    async def note(self, text: str) -> str:
        await trio.sleep(0)  # really trio: this fails anywhere else
        self.events.append(text)
        return text.upper()

    async def fail(self) -> None:
        await trio.sleep(0)
        raise LookupError("no such thing")

    async def wait_forever(self) -> None:
        try:
            await trio.sleep_forever()
        finally:
            self.events.append("trio side cancelled")

    async def gather(self, *asks: Any) -> list[Any]:
        return [await ask for ask in asks]

    def mark(self, text: str) -> bool:
        self.events.append(text)
        return threading.current_thread() is self.trio_thread


async def test_asyncio_code_awaits_trio_coroutines_through_the_context(runtime: AsyncioRuntime) -> None:
    side = TrioSide()

    async def tool(ctx: AsyncioContext) -> list[Any]:
        assert isinstance(ctx, AsyncioContext) and ctx.trio_context is side
        out: list[Any] = [await ctx.note("one"), ctx.label, ctx.mark("sync call")]
        try:
            await ctx.fail()
        except LookupError as exc:
            out.append(str(exc))
        try:  # the asyncio side stops waiting: the trio side is cancelled
            await asyncio.wait_for(ctx.wait_forever(), 0.05)
        except TimeoutError:
            out.append("gave up")
        out.append(await ctx.gather(ctx.note("two"), ctx.note("three")))
        with pytest.raises(TypeError, match="the context's own calls"):
            await ctx.gather("not a call")
        return out

    with trio.fail_after(5):
        out = await runtime.call(tool, {"ctx": side}, context_param="ctx")
    assert out == ["ONE", "trio side", True, "no such thing", "gave up", ["TWO", "THREE"]]
    assert side.events == ["one", "sync call", "trio side cancelled", "two", "three"]


async def test_trio_calls_left_running_end_with_the_call(runtime: AsyncioRuntime) -> None:
    side = TrioSide()

    async def fire_and_forget(ctx: AsyncioContext) -> str:
        asyncio.ensure_future(ctx.wait_forever())
        await asyncio.sleep(0.01)
        return "done"

    with trio.fail_after(5):
        assert await runtime.call(fire_and_forget, {"ctx": side}, context_param="ctx") == "done"
    assert side.events == ["trio side cancelled"]


# -- limits ---------------------------------------------------------------------------------------
async def test_a_task_that_ignores_cancellation_is_abandoned_after_the_grace() -> None:
    release = threading.Event()
    seen: list[str] = []

    async def stubborn() -> None:
        try:
            while not release.is_set():
                try:
                    await asyncio.sleep(0.02)
                except asyncio.CancelledError:
                    seen.append("cancel ignored")
        finally:
            seen.append("finished")

    with trio.fail_after(10):
        async with AsyncioRuntime(cancel_grace=0.2, close_timeout=0.3) as runtime:
            started = trio.current_time()
            with trio.move_on_after(0.1):
                await runtime.call(stubborn, {})
            assert 0.25 <= trio.current_time() - started < 2
            assert runtime.abandoned == 1 and seen == ["cancel ignored"]
            started = trio.current_time()
            await runtime.aclose()  # cancels it again, waits close_timeout, and gives up
            assert 0.25 <= trio.current_time() - started < 2
            assert seen == ["cancel ignored", "cancel ignored"]
            release.set()
            assert runtime._thread is not None
            await trio.to_thread.run_sync(runtime._thread.join, 5)
            assert seen[-1] == "finished" and not runtime._thread.is_alive()


async def test_close_cancels_what_is_left_and_refuses_new_calls() -> None:
    seen: list[str] = []

    async def background() -> None:
        try:
            await asyncio.sleep(60)
        finally:
            seen.append("background cleaned up")

    async def start_background() -> str:
        asyncio.get_running_loop().create_task(background())
        return "started"

    with trio.fail_after(5):
        runtime = AsyncioRuntime()
        assert not runtime.started
        await runtime.aclose()  # never started: nothing to do
        runtime = AsyncioRuntime()
        assert await runtime.call(start_background, {}) == "started"
        assert runtime.started
        await runtime.aclose()
        assert seen == ["background cleaned up"]
        assert runtime._thread is not None and not runtime._thread.is_alive()
        with pytest.raises(AsyncioRuntimeClosed, match="shutting down"):
            await runtime.call(start_background, {})
        await runtime.aclose()  # twice is fine


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="cancel_grace"):
        AsyncioRuntime(cancel_grace=-1)
    with pytest.raises(ValueError, match="close_timeout"):
        AsyncioRuntime(close_timeout=0)


# -- end to end: the official SDK client, a tool with an asyncio half -----------------------------
from mcp.client.session import ClientRequestContext  # noqa: E402

import mcp_types as types  # noqa: E402
from tests.test_http import sdk, sdk_session  # noqa: E402
from tests.test_stdio_sdk import Inbox, text_of  # noqa: E402


@sdk
async def test_sdk_client_calls_a_tool_whose_asyncio_half_uses_the_context(runtime: AsyncioRuntime, site: Site) -> None:
    app = Server("asyncio-tools")

    async def weather_asyncio(code: str, ctx: Any) -> str:
        """Plain asyncio code: aiohttp, then the request's Context through the adapter."""
        await ctx.report_progress(1, 3, "looking up the zip code")
        city = await city_of(site.base, code)
        await ctx.info(f"found {city}")
        await ctx.report_progress(2, 3, "asking for units")
        answer = await ctx.elicit("Which units?", {"type": "object", "properties": {"units": {"type": "string"}},
                                                    "required": ["units"]})
        await ctx.report_progress(3, 3)
        return f"{city} in {answer.content['units']} (request {request_id_var.get()!r} seen from asyncio)"

    @app.tool
    async def weather(code: str, ctx: Context) -> str:
        """What the lead's ``runtime="asyncio"`` wiring will do for such a function."""
        return await runtime.call(weather_asyncio, {"code": code, "ctx": ctx}, context_param="ctx")

    logs = Inbox()
    progress = Inbox()

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        logs.add(params.data)

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.add((value, total, message))

    async def elicitation(context: ClientRequestContext, params: types.ElicitRequestParams) -> types.ElicitResult:
        assert params.message == "Which units?"
        return types.ElicitResult(action="accept", content={"units": "celsius"})

    with trio.fail_after(15):
        async with sdk_session(app, logging_callback=on_log, elicitation_callback=elicitation) as (client, wire, _):
            await client.set_logging_level("info")
            result = await client.call_tool("weather", {"code": "75001"}, progress_callback=on_progress)
            call = wire.last_request("tools/call")
            assert text_of(result) == f"Paris in celsius (request {call['id']!r} seen from asyncio)"
            await progress.wait_for(lambda items: len(items) >= 3)
            assert progress.items == [(1, 3, "looking up the zip code"), (2, 3, "asking for units"), (3, 3, None)]
            await logs.wait_for(lambda items: len(items) >= 1)
            assert logs.items == ["found Paris"]
            failed = await client.call_tool("weather", {"code": "00000"})
            assert failed.is_error and "404" in failed.content[0].text
