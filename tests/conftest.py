import pytest

pytest_plugins: list[str] = ["tests.cluster_fixtures"]


@pytest.fixture
def anyio_backend() -> str:
    # The official SDK client is built on anyio; under pytest-trio it runs on trio.
    return "trio"
