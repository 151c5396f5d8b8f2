"""``pytest -p tests.engine_hypercorn``: run the HTTP tests with the app served by hypercorn.

Every ``serve_http`` call that does not say otherwise then serves with ``http2=True``:
through hypercorn's trio worker and the ASGI shim (``h1.AsgiHost``) instead of the h1
engine. Not loaded by default (the suite runs on the default engine). The tests of the
engine's own behaviour do not hold there, by design: ``test_http_h1.py`` (its limits, its
answers to bad upgrades and ``Connection: close``, the ``/ws`` heartbeat), and in
``test_attacks_http.py`` two equal Content-Lengths (h11 merges them) and ``100 Continue``
after the size check (hypercorn sends its own first). Everything else passes.
"""

from mcp_trio.transports import http


def pytest_configure() -> None:
    defaults = http.serve_http.__kwdefaults__
    assert defaults is not None and "http2" in defaults
    defaults["http2"] = True
