"""Authentication and authorization: who is calling (``Principal``) and what they may do.

Transport-independent; never imports a transport or the rest of mcp_trio. The checks
themselves (``_jwt``, ``_keys``, ``_scopes``, ``_apikeys``, ``_principal``, ``_metadata``,
``_freshness``) are sans-io: stdlib, joserfc and cryptography only. Talking to the identity
provider (``_http``, ``_cached``, ``_discovery``, ``_jwks``, ``_introspection``) is on trio.

A network transport builds nothing here itself: ``main`` builds one ``Authenticator`` from the
config (``Config.authenticator()``) and hands it down. At its edge the transport awaits
``authenticator.authenticate(headers)`` and either sets the principal on the ``Connection``
or answers ``error.status`` with ``authenticator.refusal_headers(error)``
(``WWW-Authenticate``, and ``Retry-After`` on a 503).
"""

from ._apikeys import (
    DEFAULT_KEY_PREFIX,
    ApiKey,
    ApiKeyStore,
    generate_api_key,
    hash_api_key,
)
from ._authenticator import Authenticator, credentials
from ._cached import DEFAULT_REFETCH_INTERVAL, DEFAULT_STALE_IF_ERROR, CachedDocument
from ._discovery import ProviderMetadata, check_issuer, discover, metadata_urls
from ._errors import AuthError, insufficient_scope, missing_credentials, provider_unavailable
from ._freshness import DEFAULT_LIFETIME, DEFAULT_MAX_LIFETIME, DEFAULT_MIN_LIFETIME, freshness_lifetime
from ._http import (
    DEFAULT_MAX_REDIRECTS,
    DEFAULT_MAX_RESPONSE_SIZE,
    DEFAULT_TIMEOUT,
    FetchError,
    HttpClient,
    HttpResponse,
    UrlError,
    check_url,
)
from ._introspection import (
    DEFAULT_CACHE_SIZE,
    DEFAULT_CACHE_TTL,
    DEFAULT_INTROSPECTION_SCOPE_CLAIMS,
    DEFAULT_MAX_CONCURRENT,
    Introspector,
)
from ._jwks import JwksVerifier
from ._jwt import (
    DEFAULT_LEEWAY,
    DEFAULT_MAX_TOKEN_SIZE,
    EMBEDDED_KEY_HEADERS,
    JwtVerifier,
)
from ._keys import (
    DEFAULT_ALGORITHMS,
    MIN_RSA_BITS,
    SUPPORTED_ALGORITHMS,
    KeyLoadError,
    VerificationKey,
    load_jwks,
    load_jwks_file,
    load_pem,
    load_secret,
)
from ._metadata import (
    WELL_KNOWN,
    metadata_paths,
    protected_resource_metadata,
    resource_metadata_url,
    www_authenticate,
)
from ._mint import load_signing_key, mint_token, secret_key
from ._principal import (
    BUILTIN_SCOPES,
    IMPLIED_SCOPES,
    LOCAL,
    Principal,
    allows,
    expand_scopes,
)
from ._scopes import DEFAULT_SCOPE_CLAIMS, ScopeClaims


__all__ = [
    "DEFAULT_CACHE_SIZE",
    "DEFAULT_CACHE_TTL",
    "DEFAULT_INTROSPECTION_SCOPE_CLAIMS",
    "DEFAULT_LIFETIME",
    "DEFAULT_MAX_CONCURRENT",
    "DEFAULT_MAX_LIFETIME",
    "DEFAULT_MAX_REDIRECTS",
    "DEFAULT_MAX_RESPONSE_SIZE",
    "DEFAULT_MIN_LIFETIME",
    "DEFAULT_REFETCH_INTERVAL",
    "DEFAULT_SCOPE_CLAIMS",
    "DEFAULT_STALE_IF_ERROR",
    "DEFAULT_TIMEOUT",
    "CachedDocument",
    "FetchError",
    "HttpClient",
    "HttpResponse",
    "Introspector",
    "JwksVerifier",
    "ProviderMetadata",
    "ScopeClaims",
    "UrlError",
    "check_issuer",
    "check_url",
    "discover",
    "freshness_lifetime",
    "metadata_urls",
    "provider_unavailable",
    "BUILTIN_SCOPES",
    "DEFAULT_ALGORITHMS",
    "DEFAULT_KEY_PREFIX",
    "DEFAULT_LEEWAY",
    "DEFAULT_MAX_TOKEN_SIZE",
    "EMBEDDED_KEY_HEADERS",
    "IMPLIED_SCOPES",
    "LOCAL",
    "MIN_RSA_BITS",
    "SUPPORTED_ALGORITHMS",
    "WELL_KNOWN",
    "ApiKey",
    "ApiKeyStore",
    "AuthError",
    "Authenticator",
    "JwtVerifier",
    "KeyLoadError",
    "Principal",
    "VerificationKey",
    "allows",
    "credentials",
    "expand_scopes",
    "generate_api_key",
    "hash_api_key",
    "insufficient_scope",
    "load_jwks",
    "load_jwks_file",
    "load_pem",
    "load_secret",
    "load_signing_key",
    "metadata_paths",
    "mint_token",
    "missing_credentials",
    "protected_resource_metadata",
    "resource_metadata_url",
    "secret_key",
    "www_authenticate",
]
