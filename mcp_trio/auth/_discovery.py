"""Authorization server metadata from the issuer alone (RFC 8414, OpenID Connect Discovery 1.0).

Given only an issuer (``https://idp.example.com/realms/acme``), the JWKS and introspection
URLs are read from the provider's metadata, tried in this order:

1. ``https://idp.example.com/.well-known/oauth-authorization-server/realms/acme`` (RFC 8414 §3:
   the well-known path goes between the host and the issuer's path);
2. ``https://idp.example.com/realms/acme/.well-known/openid-configuration`` (OpenID Connect
   Discovery §4: appended to the issuer).

The document's ``issuer`` must equal the configured issuer exactly (RFC 8414 §3.3; OpenID
Connect Discovery §4.3); otherwise it is not used, since a document naming another issuer could
point us at another provider's keys. The URLs it names must be https like the issuer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ._freshness import freshness_lifetime
from ._http import FetchError, HttpClient, UrlError, check_url

OAUTH_WELL_KNOWN = "/.well-known/oauth-authorization-server"
OPENID_WELL_KNOWN = "/.well-known/openid-configuration"


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    """What the server uses of the provider's metadata document, and where it came from."""

    issuer: str
    jwks_uri: str | None
    introspection_endpoint: str | None
    source: str


def check_issuer(issuer: str, *, allow_http_loopback: bool = False) -> str:
    """An issuer usable for discovery: an https URL with no query or fragment (RFC 8414 §2)."""
    check_url(issuer, allow_http_loopback=allow_http_loopback)
    if urlsplit(issuer).query:
        raise UrlError(f"issuer {issuer!r} has a query; an issuer identifier has none (RFC 8414 §2)")
    return issuer


def metadata_urls(issuer: str) -> tuple[str, str]:
    """The RFC 8414 URL, then the OpenID Connect one, for ``issuer``."""
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")
    return (urlunsplit((parts.scheme, parts.netloc, OAUTH_WELL_KNOWN + path, "", "")),
            urlunsplit((parts.scheme, parts.netloc, path + OPENID_WELL_KNOWN, "", "")))


def parse_metadata(document: Any, *, issuer: str, source: str, allow_http_loopback: bool = False) -> ProviderMetadata:
    """The parts of a metadata document we use, checked; ``FetchError`` saying what is wrong."""
    if not isinstance(document, dict):
        raise FetchError(f"{source}: the metadata is not a JSON object")
    named = document.get("issuer")
    if named != issuer:
        raise FetchError(f"{source}: names the issuer {named!r}, not the configured {issuer!r}; "
                         "set [auth.jwt] issuer to exactly the provider's issuer (RFC 8414 §3.3)")
    urls: dict[str, str | None] = {}
    for name in ("jwks_uri", "introspection_endpoint"):
        value = document.get(name)
        if value is not None:
            try:
                check_url(value, allow_http_loopback=allow_http_loopback)
            except UrlError as exc:
                raise FetchError(f"{source}: {name} unusable: {exc}") from None
        urls[name] = value
    return ProviderMetadata(issuer, urls["jwks_uri"], urls["introspection_endpoint"], source)


async def discover(client: HttpClient, issuer: str, *, minimum: float, maximum: float) -> tuple[ProviderMetadata, float]:
    """The provider's metadata and how long to keep it (its cache headers, clamped)."""
    failures: list[str] = []
    for url in metadata_urls(issuer):
        response = await client.get(url)  # a transport failure ends the search: same host either way
        if response.status != 200:
            failures.append(f"{url} answered {response.status}")
            continue
        try:
            metadata = parse_metadata(response.json(), issuer=issuer, source=url,
                                      allow_http_loopback=client.allow_http_loopback)
        except FetchError as exc:
            failures.append(str(exc))
            continue
        return metadata, freshness_lifetime(response, minimum=minimum, maximum=maximum)
    raise FetchError("no usable metadata for issuer " + repr(issuer) + ": " + "; ".join(failures)
                     + " (check [auth.jwt] issuer, or set jwks_uri / introspection endpoint explicitly)")
