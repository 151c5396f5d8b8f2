"""The OAuth resource server against a real authorization server (``tests/oauth_server.py``).

Keys from a ``jwks_uri`` (cache headers, rotation, a flood of unknown ``kid``s that must not
become a flood of fetches), discovery from the issuer alone (RFC 8414, then OpenID Connect,
with the issuer check), RFC 7662 introspection (cache, revocation, limits), scopes from a
chosen claim, and every way the provider can fail: each a refusal, never an acceptance.

No HTTP is mocked: the provider is a real server on a loopback port, over TLS where it says so,
and the tests count the requests it received. Time for the caches is a clock the test moves
(``Clock``), so lifetimes of minutes pass instantly while the sockets stay real.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trustme

from mcp_trio.auth import (
    AuthError,
    Authenticator,
    FetchError,
    HttpClient,
    HttpResponse,
    Introspector,
    JwksVerifier,
    ScopeClaims,
    UrlError,
    check_url,
    freshness_lifetime,
    metadata_urls,
)
from mcp_trio.auth._cached import CachedDocument
from mcp_trio.auth._discovery import discover

from .helpers import authenticate
from .oauth_server import AuthorizationServer

AUDIENCE = "https://mcp.example.com/mcp"


class Clock:
    """Monotonic seconds that move only when the test says."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def idp() -> Iterator[AuthorizationServer]:
    with AuthorizationServer() as server:
        yield server


@pytest.fixture
def tls_idp(ca: trustme.CA) -> Iterator[AuthorizationServer]:
    with AuthorizationServer(tls=ca) as server:
        yield server


def trusting(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def loopback_client(**options: Any) -> HttpClient:
    return HttpClient(allow_http_loopback=True, **options)


def jwks_verifier(idp: AuthorizationServer, clock: Clock, *, client: HttpClient | None = None, **options: Any) -> JwksVerifier:
    options.setdefault("jwks_uri", idp.jwks_uri)
    return JwksVerifier(client or loopback_client(), issuer=idp.issuer, audience=AUDIENCE, clock=clock, **options)


def response(**headers: str) -> HttpResponse:
    return HttpResponse(200, tuple((k.replace("_", "-"), v) for k, v in headers.items()), b"{}", "https://idp/jwks")


# -- pure parts: cache headers, URLs, scope claims --------------------------------------------------
@pytest.mark.parametrize("headers, lifetime", [
    ({"cache_control": "public, max-age=600"}, 600),
    ({"cache_control": "max-age=600", "age": "100"}, 500),
    ({"cache_control": 'max-age="900"'}, 900),
    ({"cache_control": "max-age=5"}, 60),            # the floor
    ({"cache_control": "max-age=31536000"}, 86400),  # the ceiling
    ({"cache_control": "no-store"}, 60),
    ({"cache_control": "no-cache, max-age=600"}, 60),
    ({"cache_control": "max-age=soon"}, 60),         # malformed: stale, never "forever"
    ({"expires": "Thu, 01 Jan 2026 00:10:00 GMT", "date": "Thu, 01 Jan 2026 00:00:00 GMT"}, 600),
    ({"expires": "0", "date": "Thu, 01 Jan 2026 00:00:00 GMT"}, 60),
    ({"cache_control": "max-age=120", "expires": "Thu, 01 Jan 2026 00:10:00 GMT", "date": "Thu, 01 Jan 2026 00:00:00 GMT"}, 120),
    ({}, 300),                                       # nothing said: the default
])
def test_freshness_lifetime_from_cache_headers(headers: dict[str, str], lifetime: float) -> None:
    assert freshness_lifetime(response(**headers), minimum=60, maximum=86400, default=300) == lifetime


def test_expires_without_date_counts_from_our_clock() -> None:
    expires = response(expires="Thu, 01 Jan 2026 00:30:00 GMT")
    assert freshness_lifetime(expires, now=1767225600.0) == 1800  # 2026-01-01T00:00:00Z


@pytest.mark.parametrize("url, loopback_ok", [
    ("https://idp.example.com/jwks", True),
    ("https://idp.example.com:8443/realms/acme", True),
    ("http://127.0.0.1:9000/jwks", True),
    ("http://localhost/jwks", True),
    ("http://[::1]:9000/jwks", True),
    ("http://idp.example.com/jwks", False),
    ("https://user:pw@idp.example.com/jwks", False),
    ("https://idp.example.com/jwks#frag", False),
    ("https://idp.example.com:99999/jwks", False),
    ("ftp://idp.example.com/jwks", False),
    ("/jwks", False),
    ("https:///jwks", False),
    ("https://idp.example.com/a b", False),
])
def test_check_url(url: str, loopback_ok: bool) -> None:
    if not loopback_ok:
        with pytest.raises(UrlError):
            check_url(url, allow_http_loopback=True)
        return
    check_url(url, allow_http_loopback=True)
    if url.startswith("http://"):
        with pytest.raises(UrlError, match="plain http"):
            check_url(url)


def test_metadata_urls_follow_rfc8414_and_openid() -> None:
    assert metadata_urls("https://idp.example.com") == (
        "https://idp.example.com/.well-known/oauth-authorization-server",
        "https://idp.example.com/.well-known/openid-configuration")
    assert metadata_urls("https://idp.example.com/realms/acme/") == (
        "https://idp.example.com/.well-known/oauth-authorization-server/realms/acme",
        "https://idp.example.com/realms/acme/.well-known/openid-configuration")


def test_scope_claims_from_a_chosen_claim() -> None:
    claims = {"scope": "read write", "scp": ["execute"], "roles": ["admin"],
              "realm_access": {"roles": ["read", "ops"]}, "https://example.com/roles": ["write"], "bad": 7}
    assert ScopeClaims()(claims) == {"read", "write", "execute"}
    assert ScopeClaims(["roles"])(claims) == {"admin"}
    assert ScopeClaims(["realm_access.roles"])(claims) == {"read", "ops"}
    assert ScopeClaims(["https://example.com/roles"])(claims) == {"write"}  # a dotted name read as it is
    assert ScopeClaims(["missing", "realm_access.nope"])(claims) == frozenset()
    with pytest.raises(AuthError) as caught:
        ScopeClaims(["bad"])(claims)
    assert caught.value.status == 401
    with pytest.raises(AuthError):
        ScopeClaims()({"scope": " ".join(f"s{i}" for i in range(300))})
    with pytest.raises(ValueError):
        ScopeClaims([""])


# -- the HTTP client -------------------------------------------------------------------------
async def test_client_fetches_over_tls_and_reuses_its_connection(tls_idp: AuthorizationServer, ca: trustme.CA) -> None:
    client = HttpClient(ssl_context=trusting(ca))
    with trio.fail_after(10):
        for _ in range(3):
            answer = await client.get(tls_idp.jwks_uri)
            assert answer.status == 200 and answer.json()["keys"][0]["kid"] == tls_idp.kid
            assert answer.header("cache-control") == "max-age=300"
        assert client.connections_opened == 1
        await client.aclose()


async def test_client_refuses_an_untrusted_certificate(tls_idp: AuthorizationServer) -> None:
    with trio.fail_after(10), pytest.raises(FetchError, match="certificate not trusted.*ca_file"):
        await HttpClient().get(tls_idp.jwks_uri)


async def test_client_reconnects_when_the_server_closed_an_idle_connection(ca: trustme.CA) -> None:
    with AuthorizationServer(tls=ca) as idp:
        idp.idle_timeout = 0.05
        idp.stop()
        idp.start()  # the handler class takes the new idle timeout
        client = HttpClient(ssl_context=trusting(ca))
        with trio.fail_after(10):
            await client.get(idp.jwks_uri)
            await trio.sleep(0.3)  # the server drops the idle connection
            assert (await client.get(idp.jwks_uri)).status == 200
        assert client.connections_opened == 2


@pytest.mark.parametrize("mode", ["big", "big-chunked"])
async def test_client_limits_the_answer_size(idp: AuthorizationServer, mode: str) -> None:
    idp.breaks["/jwks"] = mode
    with trio.fail_after(10), pytest.raises(FetchError, match="over the 1048576 byte limit"):
        await loopback_client().get(idp.jwks_uri)


async def test_client_limits_the_header_size(idp: AuthorizationServer) -> None:
    idp.breaks["/jwks"] = "big-header"
    with trio.fail_after(10), pytest.raises(FetchError, match="bad HTTP answer"):
        await loopback_client().get(idp.jwks_uri)


async def test_client_keeps_at_most_four_idle_connections_per_origin(idp: AuthorizationServer) -> None:
    from mcp_trio.auth._http import MAX_IDLE_PER_ORIGIN

    client = loopback_client()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for _ in range(6):
                nursery.start_soon(client.get, idp.jwks_uri)
    assert client.connections_opened >= MAX_IDLE_PER_ORIGIN + 1
    assert [len(idle) for idle in client._idle.values()] == [MAX_IDLE_PER_ORIGIN]
    await client.aclose()


async def test_client_deadline_covers_a_provider_that_never_answers(idp: AuthorizationServer) -> None:
    idp.breaks["/jwks"] = "hang"
    with trio.fail_after(10), pytest.raises(FetchError, match=r"no complete answer within 0.2 s"):
        await loopback_client(timeout=0.2).get(idp.jwks_uri)


async def test_client_follows_redirects_up_to_its_limit(idp: AuthorizationServer) -> None:
    client = loopback_client(max_redirects=3)
    with trio.fail_after(10):
        assert (await client.get(idp.origin + "/redirect/3")).url == idp.jwks_uri
        with pytest.raises(FetchError, match="more than 3 redirects"):
            await client.get(idp.origin + "/redirect/4")
        with pytest.raises(FetchError, match="answered a redirect"):
            await client.post_form(idp.origin + "/redirect/1", {"a": "b"})
    # 3-2-1, then 4-3-2-1 (the fifth hop is not taken), then the POST: /redirect/1 three times.
    assert idp.count("/redirect/4") == 1 and idp.count("/redirect/1") == 3 and idp.count("/jwks") == 1


async def test_client_never_follows_https_to_http(tls_idp: AuthorizationServer, ca: trustme.CA) -> None:
    client = HttpClient(ssl_context=trusting(ca), allow_http_loopback=True)
    with trio.fail_after(10), pytest.raises(FetchError, match="https to http"):
        await client.get(tls_idp.origin + "/to-http")


async def test_client_errors_say_what_failed(idp: AuthorizationServer) -> None:
    port = idp.port
    idp.stop()
    with trio.fail_after(10):
        with pytest.raises(FetchError, match=f"cannot connect to 127.0.0.1:{port}"):
            await loopback_client().get(f"http://127.0.0.1:{port}/jwks")
        with pytest.raises(FetchError, match="plain http"):
            await HttpClient().get(f"http://127.0.0.1:{port}/jwks")


# -- keys from a jwks_uri --------------------------------------------------------------------
async def test_known_kid_is_verified_from_cached_keys(idp: AuthorizationServer) -> None:
    clock = Clock()
    verifier = jwks_verifier(idp, clock)
    with trio.fail_after(10):
        for _ in range(20):
            principal = await verifier.verify(idp.sign(audience=AUDIENCE, scope="read write"))
            assert (principal.subject, principal.scopes, principal.kind) == ("ada", {"read", "write"}, "jwt")
    assert idp.count("/jwks") == 1


async def test_cache_headers_decide_when_keys_are_fetched_again(idp: AuthorizationServer) -> None:
    clock = Clock()
    idp.jwks_cache_control = "max-age=120"
    verifier = jwks_verifier(idp, clock)
    token = idp.sign(audience=AUDIENCE)
    with trio.fail_after(10):
        await verifier.verify(token)
        clock.now += 119
        await verifier.verify(token)
        assert idp.count("/jwks") == 1
        clock.now += 2
        await verifier.verify(token)
        assert idp.count("/jwks") == 2
        idp.jwks_cache_control = "no-store"  # the floor (cache_min) still applies
        clock.now += 121
        await verifier.verify(token)
        clock.now += 59
        await verifier.verify(token)
        assert idp.count("/jwks") == 3


async def test_rotation_new_kid_fetched_once_old_kid_refused(idp: AuthorizationServer) -> None:
    clock = Clock()
    verifier = jwks_verifier(idp, clock)
    old_token = idp.sign(audience=AUDIENCE)
    with trio.fail_after(10):
        await verifier.verify(old_token)
        clock.now += 31  # past the refetch interval since the first fetch
        idp.rotate()
        principal = await verifier.verify(idp.sign(audience=AUDIENCE))  # unknown kid: fetched, then accepted
        assert principal.subject == "ada"
        assert idp.count("/jwks") == 2
        with pytest.raises(AuthError) as caught:  # the withdrawn key is gone with the refetch
            await verifier.verify(old_token)
        assert (caught.value.status, caught.value.reason) == (401, "unknown_kid")
        assert idp.count("/jwks") == 2  # and that refusal did not fetch again


async def test_a_flood_of_unknown_kids_fetches_once_per_interval(idp: AuthorizationServer) -> None:
    clock = Clock()
    verifier = jwks_verifier(idp, clock, refetch_interval=30)
    key = idp.keys[-1]
    with trio.fail_after(20):
        await verifier.verify(idp.sign(audience=AUDIENCE))
        clock.now += 31
        refused: list[int] = []

        async def attempt(i: int) -> None:
            try:
                await verifier.verify(idp.sign(audience=AUDIENCE, key=key, kid=f"made-up-{i}"))
            except AuthError as exc:
                refused.append(exc.status)

        async with trio.open_nursery() as nursery:  # concurrent: they share one fetch
            for i in range(50):
                nursery.start_soon(attempt, i)
        for i in range(50, 100):  # sequential, within the interval: no fetch at all
            await attempt(i)
        assert refused == [401] * 100
        assert idp.count("/jwks") == 2  # the first fetch and one refetch
        clock.now += 31
        for i in range(100, 120):
            await attempt(i)
        assert idp.count("/jwks") == 3


async def test_provider_outage_keeps_cached_keys_within_their_lifetime_then_refuses(
        idp: AuthorizationServer, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    idp.jwks_cache_control = "max-age=600"
    verifier = jwks_verifier(idp, clock, stale_if_error=300, client=loopback_client(timeout=1))
    token = idp.sign(audience=AUDIENCE)
    with trio.fail_after(20):
        await verifier.verify(token)
        idp.breaks["/jwks"] = "500"
        clock.now += 599
        await verifier.verify(token)  # fresh: not even asked
        assert idp.count("/jwks") == 1
        clock.now += 2
        with caplog.at_level(logging.WARNING, "mcp_trio.auth"):
            await verifier.verify(token)  # stale, the provider fails: last keys still serve (stale_if_error)
        assert idp.count("/jwks") == 2
        assert "cannot fetch the JWKS of" in caplog.text and "answered 500" in caplog.text
        clock.now += 10
        await verifier.verify(token)  # no new attempt within the refetch interval
        assert idp.count("/jwks") == 2
        clock.now += 300
        with pytest.raises(AuthError) as caught:
            await verifier.verify(token)
        assert (caught.value.status, caught.value.reason) == (503, "provider_unavailable")
        assert caught.value.retry_after is not None and caught.value.retry_after >= 1
        # Still down: a token with an unknown kid is not "bad", it cannot be checked (503).
        clock.now += 31
        with pytest.raises(AuthError) as caught:
            await verifier.verify(idp.sign(audience=AUDIENCE, kid="new-one"))
        assert caught.value.status == 503
        del idp.breaks["/jwks"]
        clock.now += 31
        assert (await verifier.verify(token)).subject == "ada"  # back


async def test_no_keys_yet_and_provider_down_is_503(idp: AuthorizationServer) -> None:
    clock = Clock()
    idp.breaks["/jwks"] = "garbage"
    verifier = jwks_verifier(idp, clock)
    with trio.fail_after(10):
        for _ in range(5):
            with pytest.raises(AuthError) as caught:
                await verifier.verify(idp.sign(audience=AUDIENCE))
            assert caught.value.status == 503
    assert idp.count("/jwks") == 1  # one failure, then no retry within the interval


async def test_bad_tokens_are_still_refused_with_fetched_keys(idp: AuthorizationServer) -> None:
    clock = Clock()
    verifier = jwks_verifier(idp, clock)
    stranger = idp.keys[-1].generate_key(2048, parameters={"kid": idp.kid})
    with trio.fail_after(10):
        for token, reason in [(idp.sign(audience="https://elsewhere"), "bad_audience"),
                              (idp.sign(audience=AUDIENCE, issuer="https://evil"), "bad_issuer"),
                              (idp.sign(audience=AUDIENCE, ttl=-600), "expired"),
                              (idp.sign(audience=AUDIENCE, key=stranger), "bad_signature")]:
            with pytest.raises(AuthError) as caught:
                await verifier.verify(token)
            assert (caught.value.status, caught.value.reason) == (401, reason)


async def test_keys_for_algorithms_we_do_not_allow_are_skipped(idp: AuthorizationServer) -> None:
    idp.jwks_extra = [{"kty": "oct", "k": "c2hvcnQ", "kid": "hmac"},
                      {"kty": "RSA", "use": "enc", "kid": "enc", "n": "AQAB", "e": "AQAB"}]
    verifier = jwks_verifier(idp, Clock(), algorithms=["RS256"])
    with trio.fail_after(10):
        assert (await verifier.verify(idp.sign(audience=AUDIENCE))).subject == "ada"


# -- discovery ---------------------------------------------------------------------------------
@pytest.mark.parametrize("kinds, path", [(("oauth",), ""), (("openid",), ""), (("oauth", "openid"), "/realms/acme"),
                                         (("openid",), "/realms/acme")])
async def test_discovery_from_the_issuer(ca: trustme.CA, kinds: tuple[str, ...], path: str) -> None:
    with AuthorizationServer(tls=ca, metadata=kinds, issuer_path=path) as idp:
        client = HttpClient(ssl_context=trusting(ca))
        with trio.fail_after(10):
            metadata, lifetime = await discover(client, idp.issuer, minimum=60, maximum=86400)
        assert (metadata.jwks_uri, metadata.introspection_endpoint) == (idp.jwks_uri, idp.introspection_endpoint)
        assert lifetime == 3600
        oauth, openid = f"/.well-known/oauth-authorization-server{path}", f"{path}/.well-known/openid-configuration"
        assert idp.count(oauth) == 1
        assert idp.count(openid) == (0 if "oauth" in kinds else 1)


async def test_discovered_keys_verify_tokens(ca: trustme.CA) -> None:
    with AuthorizationServer(tls=ca, issuer_path="/realms/acme") as idp:
        client = HttpClient(ssl_context=trusting(ca))
        clock = Clock()
        metadata = CachedDocument(lambda: discover(client, idp.issuer, minimum=60, maximum=86400),
                                  what="metadata", clock=clock)
        verifier = JwksVerifier(client, issuer=idp.issuer, audience=AUDIENCE, metadata=metadata, clock=clock)
        with trio.fail_after(10):
            for _ in range(3):
                assert (await verifier.verify(idp.sign(audience=AUDIENCE))).subject == "ada"
        assert idp.count("/.well-known/oauth-authorization-server/realms/acme") == 1
        assert idp.count("/jwks") == 1
        assert client.connections_opened == 1


async def test_discovery_refuses_metadata_naming_another_issuer(idp: AuthorizationServer,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    idp.metadata_issuer = "https://evil.example.com"
    client = loopback_client()
    with trio.fail_after(10), pytest.raises(FetchError, match="names the issuer 'https://evil.example.com'"):
        await discover(client, idp.issuer, minimum=60, maximum=86400)
    # Both documents were tried, neither used.
    assert idp.count("/.well-known/oauth-authorization-server") == 1
    assert idp.count("/.well-known/openid-configuration") == 1


async def test_discovery_with_no_metadata_says_what_to_set(idp: AuthorizationServer) -> None:
    with trio.fail_after(10), pytest.raises(FetchError, match=r"answered 404.*answered 404.*set jwks_uri"):
        await discover(loopback_client(), idp.issuer + "/nowhere", minimum=60, maximum=86400)


# -- introspection -----------------------------------------------------------------------------
def introspector(idp: AuthorizationServer, clock: Clock, **options: Any) -> Introspector:
    options.setdefault("endpoint", idp.introspection_endpoint)
    options.setdefault("client_id", idp.client_id)
    options.setdefault("client_secret", idp.client_secret)
    return Introspector(loopback_client(timeout=options.pop("timeout", 5)), issuer=idp.issuer, audience=[AUDIENCE],
                        clock=clock, **options)


async def test_introspection_accepts_active_tokens_and_caches_the_answer(idp: AuthorizationServer) -> None:
    clock = Clock()
    checker = introspector(idp, clock, scope_claims=["scope"])
    token = idp.issue_opaque(scope="read write", aud=AUDIENCE)
    with trio.fail_after(10):
        for _ in range(5):
            principal = await checker.verify(token)
            assert (principal.subject, principal.scopes, principal.kind) == ("ada", {"read", "write"}, "introspected")
        assert idp.count("/introspect") == 1
        assert idp.introspection_auth == ["client_secret_basic"]
        # Revoked at the provider: still served from the cache until cache_ttl, then refused.
        idp.revoke(token)
        clock.now += 59
        await checker.verify(token)
        clock.now += 2
        with pytest.raises(AuthError) as caught:
            await checker.verify(token)
        assert (caught.value.status, caught.value.reason) == (401, "inactive")
        assert idp.count("/introspect") == 2
    assert token.encode() not in repr(checker._cache).encode()  # keyed by digest, never the token


async def test_introspection_refuses_an_oversized_token_without_asking(idp: AuthorizationServer) -> None:
    with trio.fail_after(10), pytest.raises(AuthError) as caught:
        await introspector(idp, Clock(), max_token_size=1024).verify("x" * 1025)
    assert (caught.value.status, caught.value.reason) == (401, "too_large")
    assert idp.count("/introspect") == 0


async def test_introspection_refusals_are_cached_too(idp: AuthorizationServer) -> None:
    clock = Clock()
    checker = introspector(idp, clock)
    with trio.fail_after(10):
        for _ in range(10):
            with pytest.raises(AuthError) as caught:
                await checker.verify("never-issued")
            assert caught.value.status == 401
    assert idp.count("/introspect") == 1


async def test_introspection_cache_ends_at_the_tokens_exp(idp: AuthorizationServer) -> None:
    clock = Clock()
    wall = Clock()
    wall.now = 1_800_000_000.0
    checker = introspector(idp, clock, wall_clock=wall, leeway=0)
    token = idp.issue_opaque(exp=int(wall.now) + 10)
    with trio.fail_after(10):
        await checker.verify(token)
        clock.now += 9
        await checker.verify(token)
        assert idp.count("/introspect") == 1
        clock.now += 2
        wall.now += 11
        with pytest.raises(AuthError) as caught:  # the provider still says active; exp says no
            await checker.verify(token)
        assert caught.value.reason == "expired"
        assert idp.count("/introspect") == 2


@pytest.mark.parametrize("claims, reason", [
    ({"active": "true"}, "inactive"),  # a string is not true
    ({"aud": "https://elsewhere"}, "bad_audience"),
    ({"iss": "https://evil"}, "bad_issuer"),
    ({"sub": None, "client_id": None}, "missing_claim"),
    ({"exp": "tomorrow"}, "malformed"),
    ({"nbf": 9_999_999_999}, "not_yet_valid"),
    ({"token_type": "refresh_token"}, "bad_type"),
])
async def test_introspection_answers_are_checked(idp: AuthorizationServer, claims: dict[str, Any], reason: str) -> None:
    token = idp.issue_opaque(**claims)
    with trio.fail_after(10), pytest.raises(AuthError) as caught:
        await introspector(idp, Clock()).verify(token)
    assert (caught.value.status, caught.value.reason) == (401, reason)


async def test_introspection_subject_falls_back_and_post_auth_works(idp: AuthorizationServer) -> None:
    token = idp.issue_opaque(sub=None, username="ada.l", realm_access={"roles": ["admin"]})
    checker = introspector(idp, Clock(), auth_method="client_secret_post", scope_claims=["realm_access.roles"])
    with trio.fail_after(10):
        principal = await checker.verify(token)
    assert (principal.subject, principal.scopes) == ("ada.l", {"admin"})
    assert idp.introspection_auth == ["client_secret_post"]


async def test_introspection_with_wrong_client_credentials_is_503_and_says_so(
        idp: AuthorizationServer, caplog: pytest.LogCaptureFixture) -> None:
    checker = introspector(idp, Clock(), client_secret="wrong")
    with trio.fail_after(10), caplog.at_level(logging.WARNING, "mcp_trio.auth"), pytest.raises(AuthError) as caught:
        await checker.verify(idp.issue_opaque())
    assert (caught.value.status, caught.value.retry_after) == (503, 1)
    assert "refused our client credentials (401)" in caplog.text and "client_secret" in caplog.text
    assert "wrong" not in caplog.text


async def test_introspection_outage_refuses_and_logs_once_per_interval(
        idp: AuthorizationServer, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    checker = introspector(idp, clock)
    idp.breaks["/introspect"] = "500"
    with trio.fail_after(10), caplog.at_level(logging.WARNING, "mcp_trio.auth"):
        for _ in range(5):
            with pytest.raises(AuthError) as caught:
                await checker.verify(idp.issue_opaque())
            assert caught.value.status == 503
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


async def test_one_call_per_token_however_many_ask_at_once(idp: AuthorizationServer) -> None:
    checker = introspector(idp, Clock())
    token = idp.issue_opaque()
    subjects: list[str] = []

    async def ask() -> None:
        subjects.append((await checker.verify(token)).subject)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(ask)
    assert subjects == ["ada"] * 20
    assert idp.count("/introspect") == 1


async def test_introspection_calls_in_flight_are_capped(idp: AuthorizationServer) -> None:
    checker = introspector(idp, Clock(), max_concurrent=2, timeout=0.5)
    idp.breaks["/introspect"] = "hang"
    statuses: list[int] = []

    async def ask(token: str) -> None:
        try:
            await checker.verify(token)
        except AuthError as exc:
            statuses.append(exc.status)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for i in range(2):
                nursery.start_soon(ask, f"slow-{i}")
            await trio.sleep(0.1)  # both calls are in flight now
            await ask("third")  # refused at once, not queued
            assert statuses == [503]
    assert statuses == [503, 503, 503]  # the two slow ones time out: 503 too
    assert idp.count("/introspect") == 2


async def test_introspection_cache_is_bounded(idp: AuthorizationServer) -> None:
    checker = introspector(idp, Clock(), cache_size=3)
    tokens = [idp.issue_opaque() for _ in range(5)]
    with trio.fail_after(10):
        for token in tokens:
            await checker.verify(token)
        assert len(checker._cache) == 3
        await checker.verify(tokens[0])  # the oldest was dropped: asked again
    assert idp.count("/introspect") == 6


# -- the authenticator routes each token ---------------------------------------------------------
async def test_jwts_go_to_the_keys_and_opaque_tokens_to_introspection(idp: AuthorizationServer) -> None:
    clock = Clock()
    authenticator = Authenticator(jwt=jwks_verifier(idp, clock), introspection=introspector(idp, clock), resource=AUDIENCE)
    with trio.fail_after(10):
        jwt_principal = await authenticator.authenticate({"authorization": f"Bearer {idp.sign(audience=AUDIENCE)}"})
        opaque_principal = await authenticator.authenticate({"authorization": f"Bearer {idp.issue_opaque()}"})
    assert (jwt_principal.kind, opaque_principal.kind) == ("jwt", "introspected")
    assert (idp.count("/jwks"), idp.count("/introspect")) == (1, 1)
    error = AuthError("provider_unavailable", "x", status=503, error=None, retry_after=7)
    assert dict(authenticator.refusal_headers(error))["Retry-After"] == "7"
    await authenticator.aclose()


def test_static_keys_still_need_no_event_loop_io(idp: AuthorizationServer) -> None:
    from mcp_trio.auth import JwtVerifier, load_jwks

    verifier = JwtVerifier(load_jwks(idp.jwks()), issuer=idp.issuer, audience=AUDIENCE)
    principal = authenticate(Authenticator(jwt=verifier), {"authorization": f"Bearer {idp.sign(audience=AUDIENCE)}"})
    assert principal.subject == "ada"
    assert idp.count("/jwks") == 0


# -- end to end: a configured server, a real client, a real provider ----------------------------------
import httpx2  # noqa: E402 - the official SDK's HTTP client; only the end-to-end tests need it
from mcp import Client  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402
from trio_websocket import ConnectionRejected, open_websocket_url  # noqa: E402

from mcp_trio import Context, Server  # noqa: E402
from mcp_trio._config import Config, load_config  # noqa: E402
from mcp_trio.transports.http import serve_http  # noqa: E402
from mcp_trio.transports.websocket import serve_websocket  # noqa: E402
from tests.http_client import McpHttp  # noqa: E402

RESOURCE = "http://127.0.0.1/mcp"
served_app = Server("guarded")


@served_app.tool(scopes=["read"])
async def whoami(ctx: Context) -> str:
    """The caller's subject and how it was checked."""
    return f"{ctx.principal.subject} ({ctx.principal.kind})"


def provider_config(idp: AuthorizationServer, **env: str) -> Config:
    base = {"MCP_TRIO_SERVER_RESOURCE": RESOURCE, "MCP_TRIO_AUTH_JWT_ISSUER": idp.issuer}
    if idp.tls is None:
        base["MCP_TRIO_AUTH_PROVIDER_ALLOW_HTTP_LOOPBACK"] = "true"
    return load_config(None, {**base, **env}, {})


class _Serving:
    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}/mcp"


@asynccontextmanager
async def http_server(config: Config) -> AsyncIterator[_Serving]:
    authenticator = config.authenticator()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(lambda task_status: serve_http(
            served_app, config.to_limits(), port=0, authenticator=authenticator, task_status=task_status))
        try:
            yield _Serving(port)
        finally:
            nursery.cancel_scope.cancel()
    assert authenticator is not None
    await authenticator.aclose()


async def call_whoami(url: str, token: str) -> str:
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http:
        async with Client(streamable_http_client(url, http_client=http), mode="legacy") as client:
            result = await client.call_tool("whoami", {})
            return result.content[0].text  # type: ignore[union-attr]


@pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")
async def test_sdk_client_with_a_token_from_a_discovered_provider_over_tls(ca: trustme.CA, tmp_path: Any) -> None:
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with AuthorizationServer(tls=ca, issuer_path="/realms/acme") as idp:
        config = provider_config(idp, MCP_TRIO_AUTH_PROVIDER_CA_FILE=str(ca_file),
                                 MCP_TRIO_AUTH_INTROSPECTION_CLIENT_ID=idp.client_id,
                                 MCP_TRIO_AUTH_INTROSPECTION_CLIENT_SECRET=idp.client_secret)
        with trio.fail_after(30):
            async with http_server(config) as served:
                assert await call_whoami(served.url, idp.sign(audience=RESOURCE)) == "ada (jwt)"
                assert await call_whoami(served.url, idp.issue_opaque(sub="grace", aud=RESOURCE)) == "grace (introspected)"
                refused = await McpHttp(served.port).post(McpHttp(served.port).message("initialize", {}),
                                                         authorization=f"Bearer {idp.sign(audience='https://elsewhere')}")
                assert refused.status == 401 and 'error="invalid_token"' in refused.headers["www-authenticate"]
        assert idp.count("/.well-known/oauth-authorization-server/realms/acme") == 1
        assert idp.count("/jwks") == 1  # every request of both sessions verified from one fetch


async def test_http_answers_503_with_retry_after_while_the_provider_is_down(idp: AuthorizationServer) -> None:
    config = provider_config(idp, MCP_TRIO_AUTH_JWT_JWKS_URI=idp.jwks_uri)
    token = idp.sign(audience=RESOURCE)
    idp.breaks["/jwks"] = "500"
    with trio.fail_after(20):
        async with http_server(config) as served:
            client = McpHttp(served.port)
            refused = await client.post(client.message("initialize", {}), authorization=f"Bearer {token}")
            assert refused.status == 503, refused.body
            assert int(refused.headers["retry-after"]) >= 1
            assert "identity provider cannot be reached" in refused.json()["error"]["message"]
            assert "error=" not in refused.headers["www-authenticate"]  # not "your token is bad"


async def test_websocket_handshake_with_fetched_keys(idp: AuthorizationServer) -> None:
    config = provider_config(idp, MCP_TRIO_AUTH_JWT_JWKS_URI=idp.jwks_uri)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            endpoint = await nursery.start(lambda task_status: serve_websocket(
                served_app, config.to_limits(), port=0, authenticator=config.authenticator(), task_status=task_status))
            url = f"ws://127.0.0.1:{endpoint.port}/"
            good = [(b"authorization", f"Bearer {idp.sign(audience=RESOURCE)}".encode())]
            async with open_websocket_url(url, extra_headers=good) as ws:
                await ws.send_message('{"jsonrpc":"2.0","id":1,"method":"ping"}')
            idp.rotate()
            stranger = [(b"authorization", f"Bearer {idp.sign(audience=RESOURCE, kid='key-1', key=idp.keys[-1])}".encode())]
            with pytest.raises(ConnectionRejected) as refused:
                async with open_websocket_url(url, extra_headers=stranger):
                    pass
            assert refused.value.status_code == 401
            nursery.cancel_scope.cancel()
    assert idp.count("/jwks") == 1
