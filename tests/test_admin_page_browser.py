"""The operator page in a real headless Chromium (Debian's, through chromedriver and Selenium).

One browser for the module; each test serves its own app in-process on port 0 (a new origin,
so nothing a test stored in the browser reaches the next one). Clients are real: the official
SDK over Streamable HTTP and ``mcp_trio.client`` over WebSocket. The page is asked to refresh
every 250 ms (``?refresh=250``) so the tests wait little.

``MCP_TRIO_SCREENSHOT=1`` makes the first test write ``docs/img/admin-page.png`` (the
screenshot in the docs) from the page with its live data.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import hypercorn.config
import hypercorn.trio
import mcp_types as types
import pytest
import trio
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from mcp_trio import Server
from mcp_trio.client import connect
from tests.browser import Page, chromium
from tests.served import Served, serving, write_plugin
from tests.test_admin_page import admin_and_reader
from tests.test_stdio_sdk import Inbox

pytestmark = pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")

SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "img" / "admin-page.png"


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    with chromium() as browser:
        yield browser


@pytest.fixture
def page(driver: Any) -> Page:
    return Page(driver)


def make_app() -> Server:
    app = Server("ops-demo", version="2.4.1")

    @app.tool(tags=["math"])
    async def add(a: int, b: int) -> int:
        """Adds two integers."""
        return a + b

    @app.tool(tags=["math"])
    async def slow_square(x: int) -> int:
        """Squares, slowly."""
        await trio.sleep(0.02)
        return x * x

    @app.tool(tags=["text"])
    async def echo(text: str) -> str:
        return text

    @app.tool
    async def fail(reason: str) -> str:
        raise ValueError(reason)

    return app


async def load_page(page: Page, served: Served) -> None:
    await page.goto(f"{served.base}/admin?refresh=250")
    await page.wait_for("document.body.dataset.state === 'live'")


def cell(tool: str, column: str) -> str:
    """JavaScript: the text of one cell of the tools table."""
    return f"(document.querySelector('#tools tr[data-tool=\"{tool}\"] td.{column}') || {{}}).textContent"


@asynccontextmanager
async def sdk_client(served: Served, inbox: Inbox) -> AsyncIterator[Client]:
    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            inbox.add("tools/list_changed")

    async with Client(streamable_http_client(f"{served.base}/mcp"), mode="legacy", message_handler=on_message) as client:
        yield client


async def test_calls_appear_and_a_click_switches_a_tool_off_for_connected_clients(page: Page, tmp_path: Path) -> None:
    app = make_app()
    write_plugin(tmp_path, "weather", '''
        from mcp_trio import Plugin
        plugin = Plugin("weather", version="1.0")

        @plugin.tool(tags=["weather"])
        async def forecast(city: str) -> str:
            return f"sunny in {city}"
    ''')
    app.use_plugins(tmp_path, watch=False)
    with trio.fail_after(60):
        async with serving(app) as served:
            sdk_changes, ws_changes = Inbox(), Inbox()
            async with sdk_client(served, sdk_changes) as sdk, \
                    connect(served.ws_url, era=None, on_notification=lambda method, _: ws_changes.add(method)) as ws:
                await ws.initialize()
                await load_page(page, served)
                assert await page.js(f"return {cell('add', 'calls')}") == "0"

                # Calls made by clients show in the table, the tiles and the chart.
                for i in range(5):
                    assert (await sdk.call_tool("add", {"a": i, "b": 1})).structured_content == {"result": i + 1}
                await page.wait_for(f"{cell('add', 'calls')} === '5'")
                await ws.call_tool("fail", {"reason": "disk full"})
                await page.wait_for(f"{cell('fail', 'errors')} === '1'")
                async with trio.open_nursery() as nursery:
                    for i in range(20):
                        nursery.start_soon(ws.call_tool, "slow_square", {"x": i})
                await page.wait_for(f"{cell('slow_square', 'calls')} === '20'")
                await page.wait_for("Number(document.getElementById('chart-rate').dataset.points) > 0")
                await page.wait_for("Number(document.getElementById('chart-latency').dataset.points) > 0")
                sessions = await page.wait_for(
                    "Array.from(document.querySelectorAll('#session-counts tbody tr')).map(r => r.textContent).join('|')")
                assert "Streamable HTTP" in sessions and "WebSocket" in sessions and "2025-11-25" in sessions
                assert await page.js("return document.getElementById('t-sessions').textContent") == "2"
                assert await page.js("return document.getElementById('t-tool-errors').textContent") == "1"

                if os.environ.get("MCP_TRIO_SCREENSHOT") == "1":
                    await some_traffic(sdk, ws, seconds=8)
                    await page.screenshot(SCREENSHOT)

                # A click switches `add` off: both clients are told, tools/list no longer has it.
                await page.click('#tools button[data-tool="add"][data-action="disable"]')
                await sdk_changes.wait_for(lambda items: len(items) >= 1)
                await ws_changes.wait_for(lambda items: "notifications/tools/list_changed" in items)
                assert "add" not in {t.name for t in (await sdk.list_tools()).tools}
                assert "add" not in {t.name for t in await ws.list_tools()}
                await page.wait_for(f"{cell('add', 'state')} === 'off: disabled'")
                assert "Tool add: disabled" in await page.js("return document.getElementById('message').textContent")

                # By tag: `math` off takes slow_square too; on again brings both back.
                await page.click('#tags button[data-tag="math"][data-action="disable"]')
                await page.wait_for(f"{cell('slow_square', 'state')} === \"off: tag 'math' disabled\"")
                assert {t.name for t in (await sdk.list_tools()).tools} == {"echo", "fail", "forecast"}
                await page.click('#tags button[data-tag="math"][data-action="enable"]')
                await page.click('#tools button[data-tool="add"][data-action="enable"]')
                await page.wait_for(f"{cell('add', 'state')} === 'on'")
                assert {t.name for t in (await sdk.list_tools()).tools} == {"add", "slow_square", "echo", "fail", "forecast"}
                assert (await sdk.call_tool("add", {"a": 1, "b": 1})).structured_content == {"result": 2}
                assert await page.console_errors() == []  # no CSP violation, no script error


async def some_traffic(sdk: Client, ws: Any, seconds: float) -> None:
    """Calls at a changing pace for the screenshot, so the charts have a shape."""
    async with trio.open_nursery() as nursery:
        end = trio.current_time() + seconds
        i = 0
        while trio.current_time() < end:
            i += 1
            nursery.start_soon(ws.call_tool, "echo", {"text": "x" * i})
            await sdk.call_tool("add", {"a": i, "b": i})
            if i % 3 == 0:
                nursery.start_soon(ws.call_tool, "slow_square", {"x": i})
            if i % 7 == 0:
                nursery.start_soon(ws.call_tool, "forecast", {"city": "Lyon"})
            await trio.sleep(0.02 + 0.03 * (i % 40) / 40)


async def test_reload_button_loads_new_plugins_and_shows_the_last_error(page: Page, tmp_path: Path) -> None:
    app = make_app()
    app.use_plugins(tmp_path, watch=False)
    with trio.fail_after(60):
        async with serving(app, expect_errors=True) as served:
            async with connect(served.ws_url, era=None) as ws:
                await ws.initialize()
                await load_page(page, served)
                await page.wait_for("document.querySelector('#plugins tbody').textContent.includes('No plugins')")
                write_plugin(tmp_path, "extra", '''
                    from mcp_trio import Plugin
                    plugin = Plugin("extra", version="0.3")

                    @plugin.tool(tags=["extra"])
                    async def triple(x: int) -> int:
                        return 3 * x
                ''')
                write_plugin(tmp_path, "broken", "def oops(:\n")
                await page.click("#reload")
                await page.wait_for("document.getElementById('message').textContent.includes('loaded extra')")
                assert "failed broken: SyntaxError" in await page.js("return document.getElementById('message').textContent")
                await page.wait_for("!!document.querySelector('#plugins tr[data-plugin=\"broken\"] .last-error summary')")
                error = await page.js("return document.querySelector('#plugins tr[data-plugin=\"broken\"] .last-error summary').textContent")
                assert error.startswith("SyntaxError")
                assert await page.js("return document.querySelector('#plugins tr[data-plugin=\"extra\"]').textContent.includes('0.3')")
                await page.wait_for("!!document.querySelector('#tools tr[data-tool=\"triple\"]')")
                assert (await ws.call_tool("triple", {"x": 4})).structured_content == {"result": 12}
            assert [r.args[0] for r in served.log.errors()] == ["broken"]  # type: ignore[index]


async def test_with_auth_the_page_asks_for_a_token_and_keeps_it_in_the_tab(page: Page) -> None:
    authenticator, admin_key, admin_hash, read_key = admin_and_reader()
    with trio.fail_after(60):
        async with serving(make_app(), authenticator=authenticator) as served:
            await page.goto(f"{served.base}/admin?refresh=250")
            await page.wait_for("document.body.dataset.state === 'signin'")
            assert await page.js("return document.getElementById('dashboard').hidden")

            # A key without the admin scope is accepted as a key, refused for the page.
            await page.type("#token", read_key)
            await page.click("#sign-in-button")
            await page.wait_for("document.getElementById('sign-in-why').textContent.includes('lacks the admin scope')")
            assert await page.js("return sessionStorage.length") == 0

            await page.type("#token", admin_key)
            await page.click("#sign-in-button")
            await page.wait_for("document.body.dataset.state === 'live'")
            # Kept in this tab only: sessionStorage, never a cookie, localStorage or the URL.
            assert await page.js("return sessionStorage.getItem('mcp-trio-admin-token')") == admin_key
            assert await page.js("return document.cookie") == ""
            assert await page.js("return localStorage.length") == 0
            assert admin_key not in await page.js("return location.href")
            assert await page.js("return document.getElementById('token').value") == ""

            # Actions carry the token: a click switches a tool off.
            await page.click('#tools button[data-tool="echo"][data-action="disable"]')
            await page.wait_for(f"{cell('echo', 'state')} === 'off: disabled'")
            assert served.supervisor.disabled_tools == {"echo"}
            settings = await page.js("return document.getElementById('settings').textContent")
            assert "api keys" in settings and admin_hash not in settings and admin_key not in settings

            # A reload of the page stays signed in (same tab); signing out forgets the token.
            await page.goto(f"{served.base}/admin?refresh=250")
            await page.wait_for("document.body.dataset.state === 'live'")
            await page.click("#sign-out")
            await page.wait_for("document.body.dataset.state === 'signin'")
            assert await page.js("return sessionStorage.length") == 0
            assert await page.console_errors() == []


# -- CSRF: a page of another origin tries to act ----------------------------------------------
ATTACK = """<!doctype html><html><body>
<form id="f" method="post" action="{target}/admin/tools/add/disable" target="out"></form>
<iframe name="out" id="out"></iframe>
<script>
  // 1. a plain cross-site form post (what CSRF is): the browser sends no custom header.
  window.formSent = false;
  document.getElementById("out").addEventListener("load", () => {{ window.formDone = true; }});
  document.getElementById("f").submit();
  window.formSent = true;
  // 2. fetch with the page's header: needs a CORS preflight, which /admin never grants.
  fetch("{target}/admin/tools/add/disable", {{method: "POST", headers: {{"X-Mcp-Trio-Admin": "1"}}}})
    .then(r => {{ window.fetchResult = "status " + r.status; }}, e => {{ window.fetchResult = "blocked"; }});
  // 3. a no-cors fetch (an opaque request, no custom headers allowed).
  fetch("{target}/admin/tags/math/disable", {{method: "POST", mode: "no-cors"}})
    .then(r => {{ window.noCorsResult = "sent"; }}, e => {{ window.noCorsResult = "blocked"; }});
</script></body></html>"""


@asynccontextmanager
async def attacker_site(target: str) -> AsyncIterator[str]:
    """Another origin on loopback (another port) serving a page that attacks ``target``."""
    body = ATTACK.format(target=target).encode()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/html"), (b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})

    config = hypercorn.config.Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(partial(hypercorn.trio.serve, app, config))
        try:
            yield binds[0]
        finally:
            nursery.cancel_scope.cancel()


async def test_a_page_of_another_origin_cannot_switch_tools(page: Page) -> None:
    with trio.fail_after(60):
        async with serving(make_app()) as served, attacker_site(served.base) as evil:
            # The attacker is on loopback too, another port: the Host/Origin guard lets any
            # loopback origin through, so only the admin page's CSRF rule stands in the way.
            await page.goto(evil)
            await page.wait_for("window.formDone === true && window.fetchResult !== undefined && window.noCorsResult !== undefined")
            assert await page.js("return window.fetchResult") == "blocked"
            await trio.sleep(0.2)
            assert served.supervisor.disabled_tools == set() and served.supervisor.disabled_tags == set()
            assert all(tool.enabled for tool in served.supervisor.registry.tools.values())
            await page.goto(evil.replace("127.0.0.1", "localhost"))  # a different site altogether
            await page.wait_for("window.formDone === true && window.fetchResult !== undefined")
            assert served.supervisor.disabled_tools == set()

            # The same click on the server's own page works (the rule does not stop the page).
            await load_page(page, served)
            await page.click('#tools button[data-tool="add"][data-action="disable"]')
            await page.wait_for(f"{cell('add', 'state')} === 'off: disabled'")
            assert served.supervisor.disabled_tools == {"add"}
