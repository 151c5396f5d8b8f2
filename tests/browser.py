"""A real headless Chromium for the operator page's tests: Debian's ``chromium`` driven by its
``chromedriver`` through Selenium. Never a downloaded browser build (``make test`` installs the
Debian packages: ``.ci/browser-test-deps.sh``).

Selenium blocks, and the server under test runs in the same trio loop: every browser call goes
through ``trio.to_thread.run_sync`` so the server keeps answering meanwhile. ``Page.wait_for``
polls a JavaScript expression (the page's own state, as a person would see it) until it holds.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trio

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
#: What lets Chromium start as root in a container with no network (see the machine notes).
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,1800")

T = TypeVar("T")


@contextmanager
def chromium() -> Iterator[Any]:
    """A fresh headless Chromium (an empty profile of its own) for the block."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            pytest.fail(f"{path} is missing: install Debian's chromium and chromium-driver (make test does it)", pytrace=False)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="mcp-trio-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.set_page_load_timeout(20)
        driver.set_script_timeout(20)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


class Page:
    """The browser, from a trio test: each call runs in a worker thread."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver

    async def _run(self, fn: Callable[[], T]) -> T:
        return await trio.to_thread.run_sync(fn)

    async def goto(self, url: str) -> None:
        await self._run(lambda: self.driver.get(url))

    async def js(self, script: str, *args: Any) -> Any:
        return await self._run(lambda: self.driver.execute_script(script, *args))

    async def wait_for(self, expression: str, *args: Any, timeout: float = 10) -> Any:
        """Poll ``return (expression)`` until it is truthy; its value. Fails after ``timeout``."""
        with trio.fail_after(timeout):
            while True:
                value = await self.js(f"return ({expression});", *args)
                if value:
                    return value
                await trio.sleep(0.05)

    async def click(self, selector: str, timeout: float = 10) -> None:
        """Click the element ``selector`` names, once it exists and is enabled (the page redraws
        its tables on every refresh: a stale element is looked up again)."""
        from selenium.common.exceptions import (
            NoSuchElementException,
            StaleElementReferenceException,
        )
        from selenium.webdriver.common.by import By

        def attempt() -> bool:
            try:
                element = self.driver.find_element(By.CSS_SELECTOR, selector)
                if not element.is_enabled():
                    return False
                element.click()
                return True
            except (NoSuchElementException, StaleElementReferenceException):
                return False

        with trio.fail_after(timeout):
            while not await self._run(attempt):
                await trio.sleep(0.05)

    async def type(self, selector: str, text: str) -> None:
        from selenium.webdriver.common.by import By

        await self._run(lambda: self.driver.find_element(By.CSS_SELECTOR, selector).send_keys(text))

    async def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        assert await self._run(lambda: self.driver.save_screenshot(str(path)))

    async def console_errors(self) -> list[str]:
        """Console errors since the last call: script errors and CSP violations (a refused
        fetch, a 401 the page expects, is the network's and not counted)."""
        entries = await self._run(lambda: self.driver.get_log("browser"))
        return [e["message"] for e in entries if e["level"] == "SEVERE" and e.get("source") != "network"]
