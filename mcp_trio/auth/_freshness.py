"""How long a document from the identity provider may be reused: its cache headers, clamped.

RFC 9111 §4.2.1: ``Cache-Control: max-age`` (less ``Age``) wins; else ``Expires`` less
``Date`` (or less our clock when the provider sends no ``Date``); ``no-store`` and
``no-cache`` mean "ask again", which the floor turns into "ask again after the floor" so a
provider that forbids caching cannot make us fetch on every token. A malformed value counts as
already stale (the floor again), never as "forever". The ceiling bounds a year-long max-age,
so a key the provider withdrew is dropped within a day at most.
"""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime

from ._http import HttpResponse

#: Seconds a document is reused when the provider sends no cache headers at all.
DEFAULT_LIFETIME = 300.0
#: Never refetch sooner than this (seconds), whatever the headers say.
DEFAULT_MIN_LIFETIME = 60.0
#: Never keep longer than this (seconds), whatever the headers say.
DEFAULT_MAX_LIFETIME = 86400.0


def _directives(value: str) -> dict[str, str | None]:
    directives: dict[str, str | None] = {}
    for item in value.split(","):
        name, eq, argument = item.strip().partition("=")
        if name:
            directives.setdefault(name.strip().lower(), argument.strip().strip('"') if eq else None)
    return directives


def _seconds(value: str | None) -> float | None:
    if value is None or not value.isdigit():
        return None
    return float(value)


def _date(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def freshness_lifetime(
    response: HttpResponse,
    *,
    minimum: float = DEFAULT_MIN_LIFETIME,
    maximum: float = DEFAULT_MAX_LIFETIME,
    default: float = DEFAULT_LIFETIME,
    now: float | None = None,
) -> float:
    """Seconds ``response`` stays fresh, from its headers, clamped to [``minimum``, ``maximum``]."""
    lifetime: float
    cache_control = response.header("cache-control")
    directives = _directives(cache_control) if cache_control else {}
    if "no-store" in directives or "no-cache" in directives:
        lifetime = 0.0
    elif "max-age" in directives:
        max_age = _seconds(directives["max-age"])
        lifetime = 0.0 if max_age is None else max_age - (_seconds(response.header("age")) or 0.0)
    elif response.header("expires") is not None:
        expires = _date(response.header("expires"))
        base = _date(response.header("date"))
        if base is None:
            base = time.time() if now is None else now
        lifetime = 0.0 if expires is None else expires - base
    else:
        lifetime = default
    return min(max(lifetime, minimum), maximum)
