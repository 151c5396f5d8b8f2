"""pytest fixtures for testing an mcp-trio server in memory (``mcp_trio.testing``).

Enable it in a ``conftest.py``: ``pytest_plugins = ["mcp_trio.testing.pytest_plugin"]``. It is
not registered as a ``pytest11`` entry point on purpose: installing mcp-trio must not add
fixtures (or an import) to every pytest run on the machine. The fixtures are trio fixtures:
run the tests with pytest-trio (``trio_mode = true``, or ``@pytest.mark.trio``).

* ``mcp_server``: the server under test. Define a fixture of that name (the default fails,
  saying so).
* ``mcp_era``: ``"handshake"`` by default; override it (``params=["handshake", "stateless"]``)
  to run every test in both protocol eras.
* ``mcp_client``: a ``TestClient`` in session with ``mcp_server``, in ``mcp_era``.
* ``mcp_connect``: ``mcp_trio.testing.connect`` itself, for tests that need a client with
  callbacks (sampling, elicitation, roots), a principal, or several sessions.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from . import TestClient, connect


@pytest.fixture
def mcp_server() -> Any:
    """The server under test: define your own fixture named ``mcp_server``."""
    raise pytest.UsageError("define a fixture named mcp_server that returns your mcp_trio.Server "
                            "(the mcp_client fixture connects to it)")


@pytest.fixture
def mcp_era() -> str:
    """The protocol era ``mcp_client`` speaks: override with params to test both."""
    return "handshake"


@pytest.fixture
async def mcp_client(mcp_server: Any, mcp_era: str) -> AsyncIterator[TestClient]:
    """A ``TestClient`` in session with ``mcp_server`` (in memory), in ``mcp_era``."""
    async with connect(mcp_server, era=mcp_era) as client:  # type: ignore[arg-type]
        yield client


@pytest.fixture
def mcp_connect() -> Any:
    """``mcp_trio.testing.connect``: ``async with mcp_connect(server, sampling=...) as client``."""
    return connect
