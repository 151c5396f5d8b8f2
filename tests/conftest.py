import pytest

pytest_plugins: list[str] = ["tests.cluster_fixtures", "mcp_trio.testing.pytest_plugin"]


@pytest.fixture
def anyio_backend() -> str:
    # The official SDK client is built on anyio; under pytest-trio it runs on trio.
    return "trio"


@pytest.fixture(params=["fd", "threads"])
def stdio_io(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test once per way the stdio transport moves bytes: ``fd`` (trio waits on the
    pipes) and ``threads`` (a thread per pipe, the Windows path, selectable on Linux). The
    stdio servers a test spawns read it from ``MCP_TRIO_SERVER_STDIO_IO``."""
    monkeypatch.setenv("MCP_TRIO_SERVER_STDIO_IO", request.param)
    return str(request.param)
