"""``JwksVerifier``: bearer JWTs checked against keys the identity provider publishes.

The keys come from a ``jwks_uri`` (configured, or read from the provider's metadata when
only the issuer is known) and are kept as long as the JWKS response's cache headers say,
clamped (``CachedDocument``). Every token is checked by a ``JwtVerifier`` built from the keys
of the last fetch, so the checks themselves (algorithm binding, claims, sizes) are exactly those
of static keys; only the key table changes.

A token naming a ``kid`` we lack triggers a fetch before it is refused, since the provider may
have rotated its keys, but at most once per ``refetch_interval``: a flood of made-up ``kid``s
costs the provider one request per interval. The fast path (a known ``kid``, fresh keys) is a
clock read plus the static verification.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import trio

from ._cached import DEFAULT_REFETCH_INTERVAL, DEFAULT_STALE_IF_ERROR, CachedDocument
from ._discovery import ProviderMetadata
from ._errors import AuthError
from ._freshness import DEFAULT_LIFETIME, DEFAULT_MAX_LIFETIME, DEFAULT_MIN_LIFETIME, freshness_lifetime
from ._http import FetchError, HttpClient
from ._jwt import DEFAULT_LEEWAY, DEFAULT_MAX_TOKEN_SIZE, JwtVerifier
from ._keys import DEFAULT_ALGORITHMS, KeyLoadError, check_algorithms, load_jwks
from ._principal import Principal
from ._scopes import DEFAULT_SCOPE_CLAIMS


class JwksVerifier:
    """Verifies bearer JWTs with keys fetched from the identity provider.

    Give ``jwks_uri``, or ``metadata`` (the provider's discovered metadata, shared with
    introspection) to read it from. ``cache_min``/``cache_max``/``cache_default``: bounds on
    how long a JWKS is kept (seconds; the response's ``Cache-Control``/``Expires`` decide
    within them). ``refetch_interval`` and ``stale_if_error``: see ``CachedDocument``. The
    other arguments are ``JwtVerifier``'s.
    """

    def __init__(
        self,
        client: HttpClient,
        *,
        issuer: str,
        audience: str | Iterable[str],
        jwks_uri: str | None = None,
        metadata: CachedDocument[ProviderMetadata] | None = None,
        algorithms: Iterable[str] = DEFAULT_ALGORITHMS,
        leeway: float = DEFAULT_LEEWAY,
        max_token_size: int = DEFAULT_MAX_TOKEN_SIZE,
        scope_claims: Iterable[str] = DEFAULT_SCOPE_CLAIMS,
        cache_min: float = DEFAULT_MIN_LIFETIME,
        cache_max: float = DEFAULT_MAX_LIFETIME,
        cache_default: float = DEFAULT_LIFETIME,
        refetch_interval: float = DEFAULT_REFETCH_INTERVAL,
        stale_if_error: float = DEFAULT_STALE_IF_ERROR,
        clock: Callable[[], float] = trio.current_time,
        wall_clock: Callable[[], float] | None = None,
    ) -> None:
        if (jwks_uri is None) == (metadata is None):
            raise ValueError("give a jwks_uri or the provider's metadata, one of them")
        if not issuer:
            raise KeyLoadError("a JWT issuer is required (the iss every token must carry)")
        self.client = client
        self.jwks_uri = jwks_uri
        self.metadata = metadata
        self.issuer = issuer
        self.audience = audience
        self.algorithms = check_algorithms(algorithms)
        self.leeway = leeway
        self.max_token_size = max_token_size
        self.scope_claims = tuple(scope_claims)
        self.cache_min, self.cache_max, self.cache_default = cache_min, cache_max, cache_default
        self._wall_clock = wall_clock
        self.keys = CachedDocument(self._fetch, what=f"the JWKS of {issuer}", refetch_interval=refetch_interval,
                                   stale_if_error=stale_if_error, clock=clock)

    async def verify(self, token: str) -> Principal:
        """The token's principal; ``AuthError`` 401 for a bad token, 503 when the keys cannot be had."""
        verifier = self.keys.current()
        if verifier is None:
            verifier = await self.keys.get()
        try:
            return verifier.verify(token)
        except AuthError as exc:
            if exc.reason != "unknown_kid" or not verifier.names_unknown_kid(token):
                raise
        fresher = await self.keys.refetch()  # None: fetched too recently to learn anything new
        if fresher is None:
            raise AuthError("unknown_kid", "unknown signing key")
        return fresher.verify(token)

    async def prime(self) -> None:
        """Fetch the provider's metadata (when discovered) and keys now; ``FetchError`` if not."""
        if self.metadata is not None:
            await self.metadata.prime()
        await self.keys.prime()

    async def _fetch(self) -> tuple[JwtVerifier, float]:
        uri = self.jwks_uri
        if uri is None:
            assert self.metadata is not None
            uri = (await self.metadata.get()).jwks_uri
            if uri is None:
                raise FetchError(f"the metadata of {self.issuer} names no jwks_uri; set [auth.jwt] jwks_uri")
        response = await self.client.get(uri)
        if response.status != 200:
            raise FetchError(f"GET {uri} answered {response.status}")
        try:
            keys = load_jwks(response.json(), self.algorithms, skip_unusable=True)
        except KeyLoadError as exc:
            raise FetchError(f"GET {uri}: unusable JWKS: {exc}") from None
        extra = {} if self._wall_clock is None else {"clock": self._wall_clock}
        try:
            verifier = JwtVerifier(keys, issuer=self.issuer, audience=self.audience, algorithms=self.algorithms,
                                   leeway=self.leeway, max_token_size=self.max_token_size,
                                   scope_claims=self.scope_claims, **extra)
        except KeyLoadError as exc:
            raise FetchError(f"GET {uri}: unusable JWKS: {exc}") from None
        lifetime = freshness_lifetime(response, minimum=self.cache_min, maximum=self.cache_max, default=self.cache_default)
        return verifier, lifetime
