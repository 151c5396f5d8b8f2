"""Cross-site request forgery: which admin actions a browser may send.

Without an authenticator, ``/admin`` trusts the network position (a loopback peer), and any
page open in the operator's browser sits at that position: a form on another site, or on
another local port (the Host/Origin guard accepts every loopback origin), could POST
``/admin/tools/x/disable``. With bearer credentials nothing is sent by the browser on its
own, but the rule costs nothing and holds there too.

A state-changing request (any method but GET and HEAD) that carries a browser's marks
(``Origin``, ``Sec-Fetch-Site`` or ``Referer``) is served only when

* ``Sec-Fetch-Site``, if present, is ``same-origin`` (a page of this very origin sent it);
* its ``Origin`` (else its ``Referer``) names this request's own ``Host``, port included;
* it carries ``X-Mcp-Trio-Admin: 1``. A cross-site form cannot set a header, and a
  cross-origin ``fetch`` that sets one needs a CORS preflight, which ``/admin`` never grants
  (no ``Access-Control-Allow-*`` header is ever sent).

Requests without a browser's marks (``mcp-trio admin``, curl, scripts) are not browsers'
and pass unchanged; the Host/Origin guard and the admin rules still apply to them. Refusals
never quote a header's value.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

#: The header the page sends with every action (a cross-site form cannot send it).
ACTION_HEADER = "x-mcp-trio-admin"
_ACTION_HEADER = ACTION_HEADER.encode()
_SAFE_METHODS = frozenset({"GET", "HEAD"})
#: Headers the rule reads: two of one (which would the rule believe?) are refused.
_SINGLE = frozenset({b"origin", b"sec-fetch-site", b"referer", b"host", _ACTION_HEADER})


def action_refusal(method: str, headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """Why a browser's state-changing request is refused, in one line; None when it may go on."""
    if method in _SAFE_METHODS:
        return None
    found: dict[bytes, bytes] = {}
    for name, value in headers:
        name = name.lower()
        if name in found and name in _SINGLE:
            return f"forbidden: repeated {name.decode('latin-1')} header on an admin action"
        found[name] = value
    origin, site, referer = found.get(b"origin"), found.get(b"sec-fetch-site"), found.get(b"referer")
    if origin is None and site is None and referer is None:
        return None  # not a browser: the CLI, curl
    if site is not None and site.strip().lower() != b"same-origin":
        return "forbidden: cross-site admin action refused (Sec-Fetch-Site is not same-origin); use the page served by this server"
    source = origin if origin is not None else referer
    host = found.get(b"host") or found.get(b":authority")
    if source is None:
        return "forbidden: an admin action from a browser must carry its Origin; use the page served by this server"
    if host is None or _authority(source) != host.decode("latin-1").strip().lower():
        which = "Origin" if origin is not None else "Referer"
        return f"forbidden: cross-origin admin action refused ({which} is not this server); use the page served by this server"
    if found.get(_ACTION_HEADER, b"").strip() != b"1":
        return f"forbidden: an admin action from a browser needs the {ACTION_HEADER} header (sent by the page's script)"
    return None


def _authority(url: bytes) -> str | None:
    """``host[:port]`` of an origin or URL, lower case; None when it has none (``null``)."""
    try:
        parts = urlsplit(url.decode("latin-1").strip().lower())
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc or "@" in parts.netloc:
        return None
    return parts.netloc
