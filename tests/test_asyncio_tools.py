"""``runtime="asyncio"``: tools, resources, prompts and middleware written for asyncio, served.

The server's asyncio runtime is the supervisor's: made when a registry first holds an asyncio
function, started at its first call, closed at shutdown. The tools use aiohttp as users would
(a client calling a local aiohttp server that runs on a loop of its own), are called by the
official SDK client over Streamable HTTP, and are cancelled by the client's
``notifications/cancelled`` and by their own timeout; a failure on the asyncio side is the
tool's error (``isError``); the Context works from there; the request id and the principal
are visible there as context variables.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

import mcp_types as types
from mcp.shared.exceptions import MCPError
from mcp_trio import Context, Server, Tool, current_principal, current_request_id
from mcp_trio._asyncio_runtime import AsyncioRuntime
from mcp_trio.auth import ApiKey, ApiKeyStore, Authenticator, generate_api_key
from mcp_trio.client import connect
from mcp_trio.offer._on_asyncio import NotServed, OnAsyncio
from tests.served import serving
from tests.test_asyncio_runtime import Site, city_of
from tests.test_http import sdk, sdk_session
from tests.test_stdio_sdk import Inbox, text_of


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    """An aiohttp server on a loop of its own (not the server's): the tools reach it over TCP."""
    async with AsyncioRuntime(cancel_grace=2.0, close_timeout=5.0) as loop:
        site = Site()
        with trio.fail_after(5):
            await loop.call(site.start, {})
        yield site
        with trio.fail_after(5):
            await loop.call(site.stop, {})


class Signals:
    """What the asyncio side tells the trio side: set from the loop's thread."""

    def __init__(self) -> None:
        self.token = trio.lowlevel.current_trio_token()
        self.cancelled = trio.Event()
        self.loops: set[int] = set()

    def set_cancelled(self) -> None:
        trio.from_thread.run_sync(self.cancelled.set, trio_token=self.token)


def asyncio_app(site: Site, signals: Signals) -> Server:
    app = Server("asyncio-tools")
    seen: list[str] = []

    @app.middleware(runtime="asyncio")
    async def count(request: Any, call_next: Any) -> Any:
        asyncio.get_running_loop()  # this is asyncio code
        seen.append(request.method)
        return await call_next(request)

    @app.tool(runtime="asyncio")
    async def weather(code: str, ctx: Context) -> str:
        """aiohttp, then the request's Context, from asyncio."""
        signals.loops.add(id(asyncio.get_running_loop()))
        await ctx.report_progress(1, 2, "looking up")
        city = await city_of(site.base, code)
        await ctx.info(f"found {city}")
        await ctx.report_progress(2, 2)
        return f"{city} (request {current_request_id()!r}, middleware saw {seen.count('tools/call')} call(s))"

    @app.tool(runtime="asyncio", timeout=0.5)
    async def slow(ctx: Context) -> str:
        """Waits on the aiohttp server's slow endpoint: only cancellation ends it."""
        try:
            async with __import__("aiohttp").ClientSession() as session:
                async with session.get(f"{site.base}/slow") as response:
                    return await response.text()
        except asyncio.CancelledError:
            signals.set_cancelled()
            raise

    @app.tool(runtime="asyncio")
    async def hang() -> str:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            signals.set_cancelled()
            raise
        return "never"

    @app.resource("zip://{code}", runtime="asyncio")
    async def zip_code(code: str) -> dict[str, str]:
        return {"code": code, "city": await city_of(site.base, code)}

    @app.prompt(runtime="asyncio")
    async def visit(code: str) -> str:
        """A prompt built from an asyncio lookup."""
        return f"Plan a visit to {await city_of(site.base, code)}."

    class Whoami(Tool):
        """Who the caller is, read from asyncio."""

        runtime = "asyncio"

        async def run(self) -> str:
            principal = current_principal()
            return f"{principal.subject if principal else None} on request {current_request_id()!r}"

    app.add_tool(Whoami())
    return app


@sdk
async def test_sdk_client_calls_asyncio_tools_resources_prompts_and_middleware(site: Site) -> None:
    signals = Signals()
    app = asyncio_app(site, signals)
    progress = Inbox()
    logs = Inbox()

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.add((value, total, message))

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        logs.add(params.data)

    with trio.fail_after(20):
        async with sdk_session(app, logging_callback=on_log) as (client, wire, served):
            runtime = served.supervisor.asyncio
            assert runtime is not None and not runtime.started  # made at publish, started by the first call
            await client.set_logging_level("info")
            result = await client.call_tool("weather", {"code": "75001"}, progress_callback=on_progress)
            call_id = wire.last_request("tools/call")["id"]
            assert text_of(result) == f"Paris (request {call_id!r}, middleware saw 1 call(s))"
            await progress.wait_for(lambda items: len(items) == 2)
            assert progress.items == [(1, 2, "looking up"), (2, 2, None)]
            await logs.wait_for(lambda items: bool(items))
            assert logs.items == ["found Paris"] and runtime.started

            # An asyncio exception is the tool's error, for the model to read.
            failed = await client.call_tool("weather", {"code": "00000"})
            assert failed.is_error and "404" in failed.content[0].text  # type: ignore[union-attr]

            read = await client.read_resource("zip://10115")
            assert read.contents[0].text == '{"code":"10115","city":"Berlin"}'  # type: ignore[union-attr]
            prompt = await client.get_prompt("visit", {"code": "75001"})
            assert prompt.messages[0].content.text == "Plan a visit to Paris."  # type: ignore[union-attr]
            assert text_of(await client.call_tool("whoami", {})).startswith("None on request ")  # stdio-like trust: no principal

            # The tool's own timeout cancels the asyncio task (and its aiohttp request).
            with pytest.raises(MCPError) as caught:
                await client.call_tool("slow", {})
            assert caught.value.error.code == -32001 and "timed out after 0.5 s" in caught.value.error.message
            await signals.cancelled.wait()
            assert site.slow_arrived == 1

            # The client giving up sends notifications/cancelled: the asyncio task is cancelled.
            signals.cancelled = trio.Event()
            with trio.move_on_after(0.3):
                await client.call_tool("hang", {})
            await signals.cancelled.wait()
            assert len(signals.loops) == 1  # one loop for every call
            assert text_of(await client.call_tool("weather", {"code": "10115"})).startswith("Berlin")
    assert runtime._closed and not runtime._thread.is_alive()  # type: ignore[union-attr]


async def test_the_principal_and_request_id_are_seen_from_asyncio(site: Site) -> None:
    key, digest = generate_api_key()
    authenticator = Authenticator(api_keys=ApiKeyStore([ApiKey("ada", digest, frozenset({"read"}))]))
    app = asyncio_app(site, Signals())
    with trio.fail_after(15):
        async with serving(app, authenticator=authenticator) as served:
            for era in ("handshake", "stateless"):
                async with connect(f"{served.base}/mcp", era=era, headers={"Authorization": f"Bearer {key}"}) as client:
                    text = (await client.call_tool("whoami")).content[0].text  # type: ignore[union-attr]
                    assert text.startswith("ada on request ") and text != "ada on request None", (era, text)


def test_runtime_asyncio_is_for_async_functions() -> None:
    app = Server("refusals")

    def plain() -> str:
        return "x"

    with pytest.raises(ValueError, match="runtime='asyncio' is for async functions"):
        app.add_tool(plain, runtime="asyncio")
    with pytest.raises(ValueError, match=r"runtime must be one of 'trio', 'asyncio', not 'curio'"):
        app.add_tool(plain, runtime="curio")

    async def fine() -> str:
        return "x"

    definition = app.add_tool(fine, runtime="asyncio")
    assert isinstance(definition.fn, OnAsyncio) and definition.is_async and definition.fn.__wrapped__ is fine
    assert app.add_tool(fine, name="trio_one", runtime="trio").fn is fine


async def test_an_asyncio_function_outside_a_served_server_says_so() -> None:
    async def fine() -> str:
        return "x"

    with pytest.raises(NotServed, match="only a served server runs it"):
        await OnAsyncio(fine)()
