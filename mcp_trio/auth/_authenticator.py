"""``Authenticator``: request headers in, a ``Principal`` out (or ``AuthError``).

This is what a network transport awaits at its edge: the WebSocket transport once, at the
handshake; the HTTP transport on every request. It reads two headers only,
``Authorization: Bearer ...`` and ``X-API-Key``; never the query string, never cookies. A
bearer credential that starts with the API key prefix (``mcpk_``) is an API key; anything
else is a JWT, or, with introspection configured, an opaque token the provider is asked about
(a JWT-shaped token still goes to the JWT verifier when there is one).

``authenticate`` is async because keys or an introspection answer may have to be fetched from
the identity provider. The common case does no I/O: static keys, fetched keys that are still
fresh with a known ``kid``, a cached introspection answer, an API key.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from ._apikeys import DEFAULT_KEY_PREFIX, MAX_API_KEY_SIZE, ApiKeyStore
from ._errors import AuthError, insufficient_scope, missing_credentials
from ._introspection import Introspector
from ._jwks import JwksVerifier
from ._jwt import JwtVerifier
from ._metadata import (
    metadata_paths,
    protected_resource_metadata,
    resource_metadata_url,
    www_authenticate,
)
from ._principal import BUILTIN_SCOPES, Principal, allows

logger = logging.getLogger("mcp_trio.auth")

Headers = Mapping[str, str] | Mapping[bytes, bytes] | Iterable[tuple[str | bytes, str | bytes]]

_AUTHORIZATION = "authorization"
_API_KEY = "x-api-key"


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, (bytes, bytearray)) else value


def credentials(headers: Headers) -> tuple[str | None, str | None]:
    """The ``Authorization`` and ``X-API-Key`` values from ``headers``.

    ``headers`` is a mapping or the (name, value) pairs an ASGI scope or trio-websocket
    request carries, ``str`` or ``bytes``; names compare case-insensitively. A header sent
    twice is ambiguous and refused (400, ``invalid_request``).
    """
    pairs: Iterable[tuple[Any, Any]] = headers.items() if isinstance(headers, Mapping) else headers
    authorization: str | None = None
    api_key: str | None = None
    for raw_name, raw_value in pairs:
        name = _text(raw_name).lower()
        if name == _AUTHORIZATION:
            if authorization is not None:
                raise AuthError("ambiguous", "more than one Authorization header", status=400, error="invalid_request")
            authorization = _text(raw_value)
        elif name == _API_KEY:
            if api_key is not None:
                raise AuthError("ambiguous", "more than one X-API-Key header", status=400, error="invalid_request")
            api_key = _text(raw_value)
    return authorization, api_key


def _looks_like_jwt(token: str) -> bool:
    # A compact JWS starts with a base64url JSON object ('{"' is "eyJ") and has two dots.
    return token.startswith("eyJ") and token.count(".") == 2


class Authenticator:
    """Turns request headers into a ``Principal``, and builds what an HTTP answer needs.

    ``jwt``: a ``JwtVerifier`` (static keys) or ``JwksVerifier`` (keys fetched from the identity
    provider); None: JWTs are not accepted. ``introspection``: an ``Introspector`` (RFC 7662)
    for opaque tokens; None: they are not accepted. ``api_keys``: an
    ``ApiKeyStore`` (None: API keys are not accepted); ``api_key_prefix``: what marks a bearer
    credential as an API key; ``allow_anonymous``: a request with no credential gets
    ``anonymous`` (with ``anonymous_scopes``) instead of a 401; ``required_scopes``: scopes
    needed to connect at all (checked by ``authenticate``: 403 when missing);
    ``resource``: this server's URL (``https://host/mcp``), for the RFC 9728 metadata and the
    ``resource_metadata`` parameter of challenges; ``authorization_servers`` and
    ``scopes_supported`` go into the metadata document.
    """

    def __init__(
        self,
        *,
        jwt: JwtVerifier | JwksVerifier | None = None,
        introspection: Introspector | None = None,
        api_keys: ApiKeyStore | None = None,
        api_key_prefix: str = DEFAULT_KEY_PREFIX,
        allow_anonymous: bool = False,
        anonymous_scopes: Iterable[str] = (),
        required_scopes: Iterable[str] = (),
        resource: str | None = None,
        authorization_servers: Iterable[str] = (),
        scopes_supported: Iterable[str] = BUILTIN_SCOPES,
    ) -> None:
        if jwt is None and introspection is None and not api_keys and not allow_anonymous:
            raise ValueError("an Authenticator needs a JWT verifier, introspection, API keys, or allow_anonymous")
        self.jwt = jwt
        self.introspection = introspection
        # Static keys are checked without an await; only fetched keys and introspection may wait.
        self._verify_jwt_now = jwt.verify if isinstance(jwt, JwtVerifier) else None
        self._verify_jwt_later = jwt.verify if isinstance(jwt, JwksVerifier) else None
        self.api_keys = api_keys if api_keys else None
        self.api_key_prefix = api_key_prefix
        self.allow_anonymous = allow_anonymous
        self.anonymous = Principal("anonymous", frozenset(anonymous_scopes), {}, "anonymous")
        self.required_scopes = frozenset(required_scopes)
        self.resource = resource
        self.authorization_servers = tuple(authorization_servers)
        self.scopes_supported = tuple(scopes_supported)
        self.resource_metadata_url = resource_metadata_url(resource) if resource else None
        limit = max(jwt.max_token_size if jwt is not None else 0,
                    introspection.max_token_size if introspection is not None else 0, MAX_API_KEY_SIZE)
        self._max_header = limit + 64  # "Bearer " and some whitespace

    @property
    def fetches_keys(self) -> bool:
        """Whether JWT keys come from an identity provider (``jwks_uri`` or discovery)."""
        return isinstance(self.jwt, JwksVerifier)

    async def prime(self) -> None:
        """Fetch the provider's keys now (``FetchError`` when it cannot be reached or answers
        nothing usable): a server whose only keys are fetched checks them before it serves."""
        if isinstance(self.jwt, JwksVerifier):
            await self.jwt.prime()

    # -- per request / at the handshake ---------------------------------------------------
    async def authenticate(self, headers: Headers) -> Principal:
        """The caller's principal, or ``AuthError`` whose ``status`` is the HTTP answer
        (401, 403, 400, or 503 when the identity provider cannot be asked now)."""
        try:
            principal = await self._authenticate(headers)
        except AuthError as exc:
            logger.debug("authentication refused: %s", exc.reason)
            raise
        if self.required_scopes and not allows(principal, self.required_scopes):
            logger.debug("authentication refused: %s lacks a required scope", principal.kind)
            raise insufficient_scope(self.required_scopes - principal.granted)
        return principal

    async def _authenticate(self, headers: Headers) -> Principal:
        authorization, api_key = credentials(headers)
        if authorization is not None and api_key is not None:
            raise AuthError("ambiguous", "send one credential, not both Authorization and X-API-Key",
                            status=400, error="invalid_request")
        if api_key is not None:
            if self.api_keys is None:
                raise AuthError("api_keys_disabled", "API keys are not accepted")
            return self.api_keys.verify(api_key.strip())
        if authorization is None:
            if self.allow_anonymous:
                return self.anonymous
            raise missing_credentials()
        if len(authorization) > self._max_header:
            raise AuthError("too_large", "token too large")
        scheme, _, credential = authorization.strip().partition(" ")
        if scheme.lower() != "bearer":
            # Another scheme (Basic, Digest...): answer with our challenge, no error code.
            raise AuthError("bad_scheme", "only Bearer authorization is accepted", error=None)
        credential = credential.strip()
        if not credential:
            raise AuthError("malformed", "malformed token")
        if self.api_keys is not None and self.api_key_prefix and credential.startswith(self.api_key_prefix):
            return self.api_keys.verify(credential)
        if self.introspection is not None and (self.jwt is None or not _looks_like_jwt(credential)):
            return await self.introspection.verify(credential)
        if self._verify_jwt_now is not None:
            return self._verify_jwt_now(credential)
        if self._verify_jwt_later is None:
            raise AuthError("jwt_disabled", "bearer tokens are not accepted")
        return await self._verify_jwt_later(credential)

    # -- what an HTTP answer needs ---------------------------------------------------------
    def challenge(self, error: AuthError | None = None) -> str:
        """The ``WWW-Authenticate`` value to send with ``error.status`` (401 or 403)."""
        return www_authenticate(error, self.resource_metadata_url)

    def refusal_headers(self, error: AuthError) -> list[tuple[str, str]]:
        """The headers to send with ``error.status``: the challenge, and ``Retry-After`` for 503."""
        headers = [("WWW-Authenticate", self.challenge(error))]
        if error.retry_after is not None:
            headers.append(("Retry-After", str(error.retry_after)))
        return headers

    async def aclose(self) -> None:
        """Close the connections kept open to the identity provider, if any."""
        for verifier in (self.jwt, self.introspection):
            client = getattr(verifier, "client", None)
            if client is not None:
                await client.aclose()

    def metadata(self) -> dict[str, Any]:
        """The RFC 9728 protected resource metadata document (needs ``resource``)."""
        if self.resource is None:
            raise ValueError("no resource URL is configured ([server] resource)")
        return protected_resource_metadata(self.resource, self.authorization_servers, self.scopes_supported)

    def metadata_paths(self) -> tuple[str, ...]:
        """The paths the metadata is served at (none without a ``resource``)."""
        return metadata_paths(self.resource) if self.resource else ()
