"""Authentication and authorization: who is calling (``Principal``) and what they may do.

Transport-independent and sans-io (stdlib and joserfc only; never a transport). A network
transport builds nothing here itself: ``main`` builds one ``Authenticator`` from the config
(``authenticator_from_config``) and hands it down. At its edge the transport calls
``authenticator.authenticate(headers)`` and either sets the principal on the ``Connection``
or answers ``error.status`` with ``authenticator.challenge(error)`` as ``WWW-Authenticate``.
"""

from ._apikeys import (
    DEFAULT_KEY_PREFIX,
    ApiKey,
    ApiKeyStore,
    generate_api_key,
    hash_api_key,
)
from ._authenticator import Authenticator, credentials
from ._errors import AuthError, insufficient_scope, missing_credentials
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

__all__ = [
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
