"""``pytest -p tests.engine_hypercorn``: run the HTTP tests with the app served by hypercorn.

Every ``serve_http`` call that does not say otherwise then serves with ``http2=True``:
through hypercorn's trio worker and the ASGI shim (``h1.AsgiHost``) instead of the h1
engine. Not loaded by default (the suite runs on the default engine); a few tests of the
engine's own behaviour (its framing refusals, ``100 Continue`` after the size check, the
``/ws`` heartbeat) are the h1 engine's and do not hold there.
"""

from mcp_trio.transports import http


def pytest_configure() -> None:
    defaults = http.serve_http.__kwdefaults__
    assert defaults is not None and "http2" in defaults
    defaults["http2"] = True
