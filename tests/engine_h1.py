"""``pytest -p tests.engine_h1``: run the HTTP tests against the lean HTTP/1.1 engine.

Every ``serve_http`` call that does not name an engine then uses ``engine="h1"`` (the
ASGI app through ``transports/h1``) instead of hypercorn. Not loaded by default: the
engine's own tests are ``tests/test_h1*.py``; this runs today's HTTP suites through it.
"""

from mcp_trio.transports import http


def pytest_configure() -> None:
    defaults = http.serve_http.__kwdefaults__
    assert defaults is not None and "engine" in defaults
    defaults["engine"] = "h1"
