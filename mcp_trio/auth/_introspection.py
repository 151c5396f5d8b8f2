"""``Introspector``: opaque bearer tokens checked by asking the provider (RFC 7662).

The token is POSTed to the introspection endpoint with the server's own client credentials
(RFC 7662 §2.1: ``client_secret_basic`` by default, or ``client_secret_post``). The answer
grants access only when ``active`` is JSON ``true``; then ``exp``/``nbf`` are checked with the
leeway, ``iss`` must be the configured issuer and ``aud`` must name this server when the
answer carries them, a ``token_type`` naming a refresh token is refused, and the subject is
``sub`` (else ``username``, else ``client_id``).

Answers are cached, keyed by the SHA-256 of the token (the cache never holds a token), until
the token's ``exp`` and at most ``cache_ttl`` seconds, so a token revoked at the provider is
refused within ``cache_ttl``. Refusals (``active: false``) are cached too, so one bad token
resent in a loop costs the provider one call per ``cache_ttl``. The cache holds at most
``cache_size`` answers (the oldest go first). Concurrent requests with the same new token make
one call; at most ``max_concurrent`` calls are in flight, past that a new token is refused at
once with 503 (shed, not queued, like ``[rate_limit] max_concurrent``).

When the provider cannot be asked (down, slow, answering 5xx, refusing our credentials), the
token is refused with 503 and a WARNING line says why, at most once per ``refetch_interval``.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import math
import time
from collections.abc import Callable, Iterable
from typing import Any, Literal
from urllib.parse import quote

import trio

from ._cached import DEFAULT_REFETCH_INTERVAL, CachedDocument
from ._discovery import ProviderMetadata
from ._errors import AuthError, provider_unavailable
from ._http import FetchError, HttpClient
from ._jwt import DEFAULT_LEEWAY, DEFAULT_MAX_TOKEN_SIZE
from ._principal import Principal
from ._scopes import ScopeClaims

logger = logging.getLogger("mcp_trio.auth")

#: Seconds an answer is reused at most (never past the token's ``exp``).
DEFAULT_CACHE_TTL = 60.0
#: Answers kept at most.
DEFAULT_CACHE_SIZE = 10_000
#: Introspection calls in flight at most; past it new tokens are refused with 503.
DEFAULT_MAX_CONCURRENT = 16
#: RFC 7662 answers carry ``scope``, space-separated.
DEFAULT_INTROSPECTION_SCOPE_CLAIMS: tuple[str, ...] = ("scope",)
AuthMethod = Literal["client_secret_basic", "client_secret_post"]
_MAX_SUBJECT = 1024


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _refuse(reason: str, description: str) -> AuthError:
    return AuthError(reason, description)


class _Call:
    """One call in flight, which requests holding the same token wait for."""

    __slots__ = ("done", "failed")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.failed = False


class Introspector:
    """Asks the introspection endpoint about tokens, and remembers the answers for a while.

    Give ``endpoint``, or ``metadata`` (the provider's discovered metadata) to read
    ``introspection_endpoint`` from. ``issuer`` and ``audience``: checked against ``iss`` and
    ``aud`` when the answer carries them. ``clock`` is monotonic seconds (cache lifetimes),
    ``wall_clock`` epoch seconds (``exp``, ``nbf``).
    """

    def __init__(
        self,
        client: HttpClient,
        *,
        client_id: str,
        client_secret: str,
        endpoint: str | None = None,
        metadata: CachedDocument[ProviderMetadata] | None = None,
        auth_method: AuthMethod = "client_secret_basic",
        issuer: str | None = None,
        audience: Iterable[str] = (),
        scope_claims: Iterable[str] = DEFAULT_INTROSPECTION_SCOPE_CLAIMS,
        cache_ttl: float = DEFAULT_CACHE_TTL,
        cache_size: int = DEFAULT_CACHE_SIZE,
        max_concurrent: int = DEFAULT_MAX_CONCURRENT,
        leeway: float = DEFAULT_LEEWAY,
        max_token_size: int = DEFAULT_MAX_TOKEN_SIZE,
        refetch_interval: float = DEFAULT_REFETCH_INTERVAL,
        clock: Callable[[], float] = trio.current_time,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if (endpoint is None) == (metadata is None):
            raise ValueError("give an introspection endpoint or the provider's metadata, one of them")
        if not client_id or not client_secret:
            raise ValueError("introspection needs the server's client_id and client_secret")
        if auth_method not in ("client_secret_basic", "client_secret_post"):
            raise ValueError(f"unknown client authentication method {auth_method!r}")
        if cache_size < 1 or max_concurrent < 1 or not cache_ttl >= 0:
            raise ValueError("cache_size and max_concurrent must be at least 1, cache_ttl not negative")
        self.client = client
        self.endpoint = endpoint
        self.metadata = metadata
        self.issuer = issuer
        self.audiences = frozenset(audience)
        self.scope_claims = ScopeClaims(scope_claims)
        self.cache_ttl = cache_ttl
        self.cache_size = cache_size
        self.max_concurrent = max_concurrent
        self.leeway = leeway
        self.max_token_size = max_token_size
        self.refetch_interval = refetch_interval
        self._clock = clock
        self._wall_clock = wall_clock
        if auth_method == "client_secret_basic":
            # RFC 6749 §2.3.1: each part form-urlencoded before the Basic encoding.
            pair = f"{quote(client_id, safe='')}:{quote(client_secret, safe='')}".encode()
            self._auth_headers: tuple[tuple[str, str], ...] = (("Authorization", "Basic " + base64.b64encode(pair).decode()),)
            self._auth_fields: dict[str, str] = {}
        else:
            self._auth_headers = ()
            self._auth_fields = {"client_id": client_id, "client_secret": client_secret}
        #: token digest -> (principal, or None for "not active"; monotonic expiry)
        self._cache: dict[bytes, tuple[Principal | None, float]] = {}
        self._in_flight: dict[bytes, _Call] = {}
        self._last_warning = -math.inf
        #: Calls made to the endpoint (answered or not).
        self.calls = 0

    def __repr__(self) -> str:  # the client secret never reaches a log line
        return f"Introspector(endpoint={self.endpoint!r}, cache_ttl={self.cache_ttl!r})"

    async def verify(self, token: str) -> Principal:
        """The token's principal; 401 when the provider says it is not active, 503 when it cannot say."""
        if len(token) > self.max_token_size:
            raise _refuse("too_large", "token too large")
        key = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        while True:
            hit = self._cache.get(key)
            if hit is not None:
                principal, expires = hit
                if self._clock() < expires:
                    if principal is None:
                        raise _refuse("inactive", "token is not active")
                    return principal
                del self._cache[key]
            call = self._in_flight.get(key)
            if call is None:
                break
            await call.done.wait()  # the same token is being asked about: share the answer
            if call.failed:
                raise provider_unavailable(1)
            # Answered (the cache has it), or cancelled with its request (then we ask).
        if len(self._in_flight) >= self.max_concurrent:
            raise provider_unavailable(1)
        call = self._in_flight[key] = _Call()
        try:
            return await self._introspect(token, key, call)
        finally:
            del self._in_flight[key]
            call.done.set()

    # -- one call ---------------------------------------------------------------------------------
    async def _introspect(self, token: str, key: bytes, call: _Call) -> Principal:
        try:
            endpoint = self.endpoint
            if endpoint is None:
                assert self.metadata is not None
                endpoint = (await self.metadata.get()).introspection_endpoint
                if endpoint is None:
                    raise FetchError(f"the metadata of {self.issuer} names no introspection_endpoint; "
                                     "set [auth.introspection] endpoint")
            self.calls += 1
            response = await self.client.post_form(endpoint, {"token": token, "token_type_hint": "access_token",
                                                              **self._auth_fields}, self._auth_headers)
            if response.status in (401, 403):
                raise FetchError(f"POST {endpoint}: the provider refused our client credentials ({response.status}); "
                                 "check [auth.introspection] client_id, client_secret and auth_method")
            if response.status != 200:
                raise FetchError(f"POST {endpoint} answered {response.status}")
            answer = response.json()
            if not isinstance(answer, dict):
                raise FetchError(f"POST {endpoint}: the answer is not a JSON object")
        except FetchError as exc:
            call.failed = True
            self._warn(str(exc))
            raise provider_unavailable(1) from None
        return self._admit(answer, key)

    def _admit(self, answer: dict[str, Any], key: bytes) -> Principal:
        now = self._wall_clock()
        if answer.get("active") is not True:
            self._remember(key, None, self.cache_ttl)
            raise _refuse("inactive", "token is not active")
        exp = answer.get("exp")
        expires_in = self.cache_ttl
        if exp is not None:
            expiry = _number(exp)
            if expiry is None:
                raise _refuse("malformed", "token expiry malformed")
            if now >= expiry + self.leeway:
                raise _refuse("expired", "token expired")
            expires_in = min(expires_in, expiry + self.leeway - now)
        if "nbf" in answer:
            nbf = _number(answer["nbf"])
            if nbf is None or nbf > now + self.leeway:
                raise _refuse("not_yet_valid", "token not yet valid")
        token_type = answer.get("token_type")
        if isinstance(token_type, str) and "refresh" in token_type.lower():
            raise _refuse("bad_type", "token type not accepted")  # a refresh token is not an access token
        if self.issuer is not None and "iss" in answer and answer["iss"] != self.issuer:
            raise _refuse("bad_issuer", "token issuer not accepted")
        if self.audiences and "aud" in answer:
            aud = answer["aud"]
            audiences = {aud} if isinstance(aud, str) else set(aud) if isinstance(aud, list) else None
            if audiences is None or not all(isinstance(a, str) for a in audiences):
                raise _refuse("bad_audience", "token audience missing or malformed")
            if audiences.isdisjoint(self.audiences):
                raise _refuse("bad_audience", "token is not meant for this server")
        subject = next((answer[name] for name in ("sub", "username", "client_id") if isinstance(answer.get(name), str)
                        and answer[name]), None)
        if subject is None or len(subject) > _MAX_SUBJECT:
            raise _refuse("missing_claim", "token has no valid subject")
        principal = Principal(subject, self.scope_claims(answer), answer, "introspected")
        self._remember(key, principal, expires_in)
        return principal

    def _remember(self, key: bytes, principal: Principal | None, ttl: float) -> None:
        if ttl <= 0:
            return
        cache = self._cache
        while len(cache) >= self.cache_size:
            del cache[next(iter(cache))]  # the oldest answer
        cache[key] = (principal, self._clock() + ttl)

    def _warn(self, message: str) -> None:
        now = self._clock()
        if now - self._last_warning >= self.refetch_interval:
            self._last_warning = now
            logger.warning("token introspection failed: %s; opaque tokens are refused with 503 until it works", message)
        else:
            logger.debug("token introspection failed: %s", message)
