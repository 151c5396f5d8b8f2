"""What a served HTTP app was built with, as the operator page shows it: secrets left out.

``ServedSettings`` holds the very objects ``serve_http`` was given (limits, rate limits, the
authenticator, the Host/Origin lists) — passed down, never read from a global. ``settings_view``
turns them into JSON by naming each field it shows: nothing is dumped wholesale, so a field
added later to an authenticator (a key, a client secret) cannot leak onto the page by default.
Key material, HMAC secrets, API key digests and introspection client credentials are never
read; URLs lose any user:password part and their query string.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import msgspec

from ..._limiter import RateLimits
from ..._limits import Limits

if TYPE_CHECKING:
    from ..._server import Server
    from ...auth import Authenticator


@dataclass(frozen=True)
class ServedSettings:
    """The settings one ``serve_http`` call was made with (the bound port is the request's)."""

    limits: Limits
    rate_limits: RateLimits | None = None
    authenticator: Authenticator | None = None
    bind_host: str = "127.0.0.1"
    allowed_hosts: tuple[str, ...] | None = None
    allowed_origins: tuple[str, ...] | None = None
    tls: bool = False
    json_response: bool = False
    reuse_port: bool = False
    #: The proxies whose forwarding headers name the client, and which headers (none: no proxy).
    trusted_proxies: tuple[str, ...] = ()
    proxy_headers: str = "x-forwarded"

    @staticmethod
    def listed(values: Iterable[str] | None) -> tuple[str, ...] | None:
        return None if values is None else tuple(values)


def settings_view(settings: ServedSettings, server: Server) -> dict[str, Any]:
    """JSON-ready settings: transport, limits, rate limits, auth summary (plugins have their
    own section on the page)."""
    return {
        "server": {"name": server.name, "version": server.version},
        "transport": {
            "bind_host": settings.bind_host,
            "tls": settings.tls,
            "allowed_hosts": _or_default(settings.allowed_hosts, "loopback names when bound to loopback, else not checked"),
            "allowed_origins": _or_default(settings.allowed_origins, "loopback origins when bound to loopback, else same-origin"),
            "json_response": settings.json_response,
            "reuse_port": settings.reuse_port,
            "trusted_proxies": list(settings.trusted_proxies) or "none: the TCP peer is the client",
            "proxy_headers": settings.proxy_headers if settings.trusted_proxies else None,
        },
        "limits": msgspec.structs.asdict(settings.limits),
        "rate_limits": _rate_limits_view(settings.rate_limits),
        "auth": auth_summary(settings.authenticator),
    }


def _or_default(values: tuple[str, ...] | None, default: str) -> list[str] | str:
    return list(values) if values is not None else f"default: {default}"


def _rate_limits_view(policy: RateLimits | None) -> dict[str, Any]:
    policy = policy or RateLimits()
    return {
        "rate_per_principal": policy.rate,
        "burst": policy.burst,
        "max_concurrent": policy.max_concurrent,
        "max_keys": policy.max_keys,
        "tools": {name: {"cost": tool.cost, "rate": tool.rate, "burst": tool.burst}
                  for name, tool in sorted(policy.tools.items())},
    }


def public_url(url: str | None) -> str | None:
    """``url`` without a ``user:password@`` part, a query or a fragment (where secrets hide)."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "(unparsable URL hidden)"
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def auth_summary(authenticator: Authenticator | None) -> dict[str, Any]:
    """Which credentials the server accepts and from whom; never a key, secret or digest."""
    if authenticator is None:
        return {"enabled": False, "rule": "no authenticator: /admin is served to loopback clients only"}
    # Imported here: a server without auth never loads the verifiers' modules for this page.
    from ...auth import JwksVerifier, JwtVerifier

    summary: dict[str, Any] = {
        "enabled": True,
        "rule": "/admin needs a credential with the admin scope",
        "allow_anonymous": authenticator.allow_anonymous,
        "anonymous_scopes": sorted(authenticator.anonymous.scopes) if authenticator.allow_anonymous else [],
        "required_scopes": sorted(authenticator.required_scopes),
        "resource": public_url(authenticator.resource),
        "authorization_servers": [public_url(s) for s in authenticator.authorization_servers],
        "jwt": None,
        "introspection": None,
        "api_keys": None,
    }
    jwt = authenticator.jwt
    if isinstance(jwt, JwtVerifier):
        summary["jwt"] = {
            "keys": f"{len(jwt.keys)} static key(s)",
            "issuer": jwt.issuer,
            "audiences": sorted(jwt.audiences),
            "algorithms": sorted(jwt.algorithms),
            "scope_claims": list(jwt.scope_claims.names),
            "leeway_seconds": jwt.leeway,
        }
    elif isinstance(jwt, JwksVerifier):
        summary["jwt"] = {
            "keys": "fetched from the identity provider",
            "jwks_uri": public_url(jwt.jwks_uri) if jwt.jwks_uri else "discovered from the issuer",
            "issuer": jwt.issuer,
            "audiences": sorted([jwt.audience] if isinstance(jwt.audience, str) else jwt.audience),
            "algorithms": sorted(jwt.algorithms),
            "scope_claims": list(jwt.scope_claims),
            "leeway_seconds": jwt.leeway,
        }
    introspection = authenticator.introspection
    if introspection is not None:
        summary["introspection"] = {
            "endpoint": public_url(introspection.endpoint) if introspection.endpoint else "discovered from the issuer",
            "issuer": introspection.issuer,
            "audiences": sorted(introspection.audiences),
            "scope_claims": list(introspection.scope_claims.names),
            "cache_ttl_seconds": introspection.cache_ttl,
            "cache_size": introspection.cache_size,
            "client_credentials": "configured (hidden)",
        }
    if authenticator.api_keys is not None:
        summary["api_keys"] = {"count": len(authenticator.api_keys), "prefix": authenticator.api_key_prefix}
    return summary
