"""The operator page: ``GET /admin`` for a browser, its two static files, and the gate in front
of the JSON API (``admin.py``) for everything else under ``/admin``.

::

    GET /admin              Accept lists text/html (a browser's navigation): the page;
                            otherwise the JSON index of routes, as before (Vary: Accept)
    GET /admin/assets/admin.js, admin.css, favicon.svg
                            the page's script, style and icon (package data, no build step)
    GET /admin/overview     what the page shows, JSON (served by the admin API)
    anything else           the admin JSON API, behind the CSRF rule for browsers (``_csrf``)

How a browser authenticates. A page load cannot carry a bearer token, so the page itself
holds no data: it is the same few static bytes for everyone, and its script fetches
``/admin/overview`` and sends actions with ``fetch``. Without an authenticator that is all
(loopback clients only, as for the API; the page and its files are refused to others too).
With one, the script asks for a token with the ``admin`` scope in a form, keeps it in the
tab's ``sessionStorage`` (gone when the tab closes, never in a cookie or a URL) and sends it as
``Authorization: Bearer`` on each fetch: the JSON API checks it exactly as for
``mcp-trio admin``. Since the browser never attaches the credential by itself, a forged
cross-site request carries none.

Every answer under ``/admin`` is ``Cache-Control: no-store`` and ``nosniff``; the page adds a
strict Content-Security-Policy (its own script and style only, no inline code, fetches to this
origin only, no framing, no form submission) and ``X-Frame-Options: DENY``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from importlib import resources
from typing import TYPE_CHECKING

import msgspec

from .._gate import is_loopback_address
from ..admin import ADMIN_PATH, AdminApi
from ._csrf import action_refusal
from ._overview import Overview
from ._settings import ServedSettings

if TYPE_CHECKING:
    from .._http_session import HttpSession

Headers = list[tuple[bytes, bytes]]
#: (status, content type, body, extra headers)
Answer = tuple[int, bytes, bytes, Headers]

ASSETS_PATH = ADMIN_PATH + "/assets/"
_JSON = b"application/json"
_HTML = b"text/html; charset=utf-8"
_TEXT = b"text/plain; charset=utf-8"
_ASSETS = {"admin.js": b"text/javascript; charset=utf-8", "admin.css": b"text/css; charset=utf-8",
           "favicon.svg": b"image/svg+xml"}
#: Sent with every answer under /admin: nothing of it may be kept by a cache or sniffed.
_PRIVATE: Headers = [(b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff")]
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_PAGE_HEADERS: Headers = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
_VARY: Headers = [(b"vary", b"Accept")]
_encode = msgspec.json.Encoder().encode


def _static(name: str) -> bytes:
    return resources.files(__package__).joinpath("static", name).read_bytes()


def wants_html(accept: bytes | None) -> bool:
    """Whether an Accept header asks for a page (a browser's navigation lists ``text/html``)."""
    if not accept:
        return False
    return any(part.split(b";", 1)[0].strip().lower() in (b"text/html", b"application/xhtml+xml") for part in accept.split(b","))


class AdminPage:
    """Everything under ``/admin`` for one served HTTP app: the page, its files, the API behind."""

    def __init__(self, api: AdminApi, sessions: Mapping[str, HttpSession], settings: ServedSettings) -> None:
        self.api = api
        self.overview = Overview(api, sessions, settings)
        api.overview = self.overview
        self._page = _static("index.html")
        self._assets = {name: (kind, _static(name)) for name, kind in _ASSETS.items()}

    async def __call__(self, method: str, path: str, headers: Iterable[tuple[bytes, bytes]], peer: str | None) -> Answer:
        headers = list(headers)
        is_index = path in (ADMIN_PATH, ADMIN_PATH + "/")
        if is_index and method in ("GET", "HEAD") and wants_html(_header(headers, b"accept")):
            return self._static(peer, _HTML, self._page, _PAGE_HEADERS + _VARY)
        if path.startswith(ASSETS_PATH):
            asset = self._assets.get(path[len(ASSETS_PATH):])
            if asset is None:
                return 404, _JSON, _encode({"error": f"not found: {path}"}), list(_PRIVATE)
            if method not in ("GET", "HEAD"):
                return 405, _JSON, _encode({"error": "method not allowed: use GET or HEAD"}), [(b"allow", b"GET, HEAD"), *_PRIVATE]
            return self._static(peer, *asset, [])
        refusal = action_refusal(method, headers)
        if refusal is not None:
            return 403, _JSON, _encode({"error": refusal}), list(_PRIVATE)
        status, body, extra = await self.api(method, path, headers, peer)
        return status, _JSON, body, [*extra, *_PRIVATE, *(_VARY if is_index else [])]

    def _static(self, peer: str | None, content_type: bytes, body: bytes, extra: Headers) -> Answer:
        """The page or one of its files: the same bytes for everyone the API would serve.

        With an authenticator they hold no data, only the form that asks for a token; without
        one the API serves loopback clients only, and so do these.
        """
        if self.api.authenticator is None and not is_loopback_address(peer):
            body = b"forbidden: the admin page is served only to loopback clients when the server has no authenticator\n"
            return 403, _TEXT, body, list(_PRIVATE)
        return 200, content_type, body, [*extra, *_PRIVATE]


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None
