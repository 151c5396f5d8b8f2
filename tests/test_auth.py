"""Authentication and authorization: every attack on a bearer token is a 401, never a 500.

Each attack in ``ATTACKS`` is a token an adversary could send; the verifier must refuse it with
``AuthError`` (status 401) and nothing else. Hypothesis then mutates a valid token thousands
of times (bit flips, truncations, splices, random bytes): every mutant is refused the same way.
No log line, exception message or traceback may carry a token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
import traceback
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from joserfc import jwt as jose_jwt
from joserfc.jwk import ECKey, OctKey, OKPKey, RSAKey

from mcp_trio import Context, Server
from mcp_trio.auth import (
    LOCAL,
    ApiKey,
    ApiKeyStore,
    Authenticator,
    AuthError,
    JwtVerifier,
    KeyLoadError,
    Principal,
    allows,
    expand_scopes,
    generate_api_key,
    hash_api_key,
    load_jwks,
    load_pem,
    load_secret,
    metadata_paths,
    mint_token,
    protected_resource_metadata,
    resource_metadata_url,
    www_authenticate,
)
from mcp_trio.protocol import FORBIDDEN

from .helpers import authenticate, serve_in_memory

ISSUER = "https://auth.example.com"
RESOURCE = "https://mcp.example.com/mcp"
NOW = 1_800_000_000.0
LEEWAY = 30.0

RSA_KEY = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})
RSA_PUBLIC_PEM = RSA_KEY.as_pem(private=False)
EC_KEY = ECKey.generate_key("P-256", parameters={"kid": "ec-1"})
ED_KEY = OKPKey.generate_key("Ed25519", parameters={"kid": "ed-1"})
SECRET = "s3cret-for-tests-only-0123456789abcdef"  # 38 bytes: HS256 only
ATTACKER_RSA = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(value: Any) -> str:
    return b64(json.dumps(value, separators=(",", ":")).encode())


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"sub": "alice", "iss": ISSUER, "aud": RESOURCE, "iat": int(NOW) - 10,
                            "exp": int(NOW) + 600, "scope": "read execute"}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


def sign(payload: dict[str, Any], key: Any = RSA_KEY, alg: str = "RS256", **header: Any) -> str:
    head = {"alg": alg, **header}
    if "kid" not in head and getattr(key, "kid", None):
        head["kid"] = key.kid
    head = {k: v for k, v in head.items() if v is not ...}
    return jose_jwt.encode(head, payload, key, algorithms=[alg])


def raw_token(header: dict[str, Any], payload: dict[str, Any], signature: bytes) -> str:
    return f"{b64json(header)}.{b64json(payload)}.{b64(signature)}"


def hs256_with(secret: bytes, header: dict[str, Any], payload: dict[str, Any]) -> str:
    signing_input = f"{b64json(header)}.{b64json(payload)}".encode()
    return signing_input.decode() + "." + b64(hmac.new(secret, signing_input, hashlib.sha256).digest())


def make_verifier(**options: Any) -> JwtVerifier:
    keys = [
        load_pem(RSA_PUBLIC_PEM, kid="rsa-1"),
        *load_jwks({"keys": [EC_KEY.as_dict(private=False), ED_KEY.as_dict(private=False)]}),
        load_secret(SECRET, kid="hs-1"),
    ]
    options.setdefault("clock", lambda: NOW)
    return JwtVerifier(keys, issuer=ISSUER, audience=RESOURCE, leeway=LEEWAY, **options)


VERIFIER = make_verifier()


def refused(token: str, verifier: JwtVerifier = VERIFIER) -> AuthError:
    with pytest.raises(AuthError) as caught:
        verifier.verify(token)
    assert type(caught.value) is AuthError
    assert caught.value.status == 401
    assert caught.value.error == "invalid_token"
    return caught.value


# -- accepted ---------------------------------------------------------------------------------
@pytest.mark.parametrize("key, alg", [(RSA_KEY, "RS256"), (RSA_KEY, "PS256"), (EC_KEY, "ES256"), (ED_KEY, "Ed25519")])
def test_valid_asymmetric_tokens_are_accepted(key: Any, alg: str) -> None:
    principal = VERIFIER.verify(sign(claims(), key, alg))
    assert principal == Principal("alice", frozenset({"read", "execute"}), kind="jwt")
    assert principal.claims["iss"] == ISSUER
    assert principal.kind == "jwt"


def test_valid_hs256_token_is_accepted() -> None:
    token = sign(claims(scope="write"), OctKey.import_key(SECRET), "HS256", kid="hs-1")
    principal = VERIFIER.verify(token)
    assert principal.scopes == {"write"} and principal.granted == {"write", "read"}


def test_audience_list_and_scp_claim() -> None:
    token = sign(claims(aud=["https://other.example", RESOURCE], scope=..., scp=["admin"]))
    assert VERIFIER.verify(token).granted == {"admin", "write", "read", "execute"}


def test_leeway_tolerates_small_skew() -> None:
    assert VERIFIER.verify(sign(claims(exp=int(NOW) - 20)))  # expired 20 s ago, leeway 30
    assert VERIFIER.verify(sign(claims(nbf=int(NOW) + 20, iat=int(NOW) + 20)))


def test_token_without_kid_uses_the_only_key_for_its_algorithm() -> None:
    assert VERIFIER.verify(sign(claims(), RSA_KEY, "RS256", kid=...)).subject == "alice"


def test_at_jwt_type_is_accepted() -> None:
    assert VERIFIER.verify(sign(claims(), RSA_KEY, "RS256", typ="at+jwt"))


# -- refused: the attacks --------------------------------------------------------------------
def _attacker_jwk_token() -> str:
    public = ATTACKER_RSA.as_dict(private=False)
    return sign(claims(scope="admin"), ATTACKER_RSA, "RS256", jwk=public)


ATTACKS: dict[str, tuple[Callable[[], str], str]] = {
    "alg none, empty signature": (lambda: f"{b64json({'alg': 'none'})}.{b64json(claims())}.", "malformed"),
    "alg none, with a signature": (lambda: raw_token({"alg": "none"}, claims(), b"x"), "bad_alg"),
    "alg NoNe": (lambda: raw_token({"alg": "NoNe", "kid": "rsa-1"}, claims(), b"x"), "bad_alg"),
    "alg missing": (lambda: raw_token({"kid": "rsa-1"}, claims(), b"x"), "bad_alg"),
    "alg not allowed (RS512 off the list)": (lambda: sign(claims(), RSA_KEY, "RS512"), "bad_alg"),
    "HS256 signed with the RSA public key (kid of the RSA key)": (
        lambda: hs256_with(RSA_PUBLIC_PEM, {"alg": "HS256", "kid": "rsa-1", "typ": "JWT"}, claims(scope="admin")), "bad_alg"),
    "HS256 signed with the RSA public key (no kid)": (
        lambda: hs256_with(RSA_PUBLIC_PEM, {"alg": "HS256", "typ": "JWT"}, claims(scope="admin")), "bad_signature"),
    "RS256 header on the HMAC key's kid": (lambda: sign(claims(), RSA_KEY, "RS256", kid="hs-1"), "bad_alg"),
    "wrong aud": (lambda: sign(claims(aud="https://evil.example/mcp")), "bad_audience"),
    "aud list without us": (lambda: sign(claims(aud=["https://a.example", "https://b.example"])), "bad_audience"),
    "missing aud": (lambda: sign(claims(aud=...)), "missing_claim"),
    "aud of the wrong type": (lambda: sign(claims(aud=7)), "bad_audience"),
    "wrong iss": (lambda: sign(claims(iss="https://evil.example")), "bad_issuer"),
    "missing iss": (lambda: sign(claims(iss=...)), "missing_claim"),
    "expired": (lambda: sign(claims(exp=int(NOW - LEEWAY) - 1)), "expired"),
    "missing exp": (lambda: sign(claims(exp=...)), "missing_claim"),
    "exp as a string": (lambda: sign(claims(exp=str(int(NOW) + 600))), "missing_claim"),
    "exp as a boolean": (lambda: sign(claims(exp=True)), "missing_claim"),
    "exp with 400 digits": (lambda: sign(claims(exp=10**400)), "missing_claim"),
    "missing iat": (lambda: sign(claims(iat=...)), "missing_claim"),
    "iat in the future": (lambda: sign(claims(iat=int(NOW + LEEWAY) + 5)), "not_yet_valid"),
    "nbf in the future": (lambda: sign(claims(nbf=int(NOW + LEEWAY) + 5)), "not_yet_valid"),
    "missing sub": (lambda: sign(claims(sub=...)), "missing_claim"),
    "unknown kid": (lambda: sign(claims(), RSA_KEY, "RS256", kid="rsa-2"), "unknown_kid"),
    "kid of the wrong type": (lambda: raw_token({"alg": "RS256", "kid": 5}, claims(), b"x" * 256), "malformed"),
    "signed by another key with our kid": (lambda: sign(claims(), ATTACKER_RSA, "RS256"), "bad_signature"),
    "tampered payload": (lambda: _tamper(sign(claims(scope="read")), scope="admin"), "bad_signature"),
    "tampered header": (lambda: _tamper_header(sign(claims())), "bad_signature"),
    "embedded jwk header": (_attacker_jwk_token, "embedded_key"),
    "jku header": (lambda: sign(claims(), RSA_KEY, "RS256", jku="https://evil.example/jwks.json"), "embedded_key"),
    "x5u header": (lambda: sign(claims(), RSA_KEY, "RS256", x5u="https://evil.example/cert.pem"), "embedded_key"),
    "x5c header": (lambda: sign(claims(), RSA_KEY, "RS256", x5c=["MIIB"]), "embedded_key"),
    "crit header": (lambda: raw_token({"alg": "RS256", "kid": "rsa-1", "crit": ["exp"], "exp": 1}, claims(), b"x" * 256), "unsupported_header"),
    "b64 false (RFC 7797)": (lambda: raw_token({"alg": "RS256", "kid": "rsa-1", "b64": False}, claims(), b"x"), "unsupported_header"),
    "typ JWE": (lambda: sign(claims(), RSA_KEY, "RS256", typ="JWE"), "bad_type"),
    "oversized token": (lambda: sign(claims(pad="A" * 9000)), "too_large"),
    "JWE, five segments": (lambda: "a.b.c.d.e", "malformed"),
    "two segments": (lambda: "abc.def", "malformed"),
    "empty": (lambda: "", "malformed"),
    "not ASCII": (lambda: "é.é.é", "malformed"),
    "padding in a segment": (lambda: sign(claims()) + "=", "malformed"),
    "header not JSON": (lambda: f"{b64(b'{not json')}.{b64json(claims())}.{b64(b'sig')}", "malformed"),
    "header a JSON list": (lambda: f"{b64json(['RS256'])}.{b64json(claims())}.{b64(b'sig')}", "malformed"),
    "duplicate alg in header": (lambda: b64(b'{"alg":"none","alg":"RS256"}') + "." + b64json(claims()) + "." + b64(b"sig"), "malformed"),
    "duplicate sub in claims": (lambda: _signed_raw_payload(b'{"sub":"alice","sub":"admin","iss":"%s","aud":"%s","iat":1,"exp":9999999999}' % (ISSUER.encode(), RESOURCE.encode())), "malformed"),
    "NaN exp": (lambda: _signed_raw_payload(b'{"sub":"a","iss":"%s","aud":"%s","iat":1,"exp":NaN}' % (ISSUER.encode(), RESOURCE.encode())), "malformed"),
    "claims a JSON list": (lambda: _signed_raw_payload(b"[1,2]"), "malformed"),
    "scope of the wrong type": (lambda: sign(claims(scope={"admin": True})), "malformed"),
    "non-canonical signature encoding": (lambda: _noncanonical(sign(claims())), "malformed"),
}


def _tamper(token: str, **changes: Any) -> str:
    header, payload, signature = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=="))
    data.update(changes)
    return f"{header}.{b64json(data)}.{signature}"


def _tamper_header(token: str) -> str:
    _, payload, signature = token.split(".")
    return f"{b64json({'alg': 'RS256', 'kid': 'rsa-1', 'typ': 'JWT', 'x': 1})}.{payload}.{signature}"


def _signed_raw_payload(payload: bytes) -> str:
    header = b64json({"alg": "RS256", "kid": "rsa-1"})
    signing_input = f"{header}.{b64(payload)}".encode()
    from joserfc.jws import JWSRegistry

    signature = JWSRegistry.algorithms["RS256"].sign(signing_input, RSA_KEY)
    return f"{signing_input.decode()}.{b64(signature)}"


def _noncanonical(token: str) -> str:
    # An RS256 signature is 256 bytes: its last base64 character carries 4 unused bits.
    header, payload, signature = token.split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(signature[-1])
    return f"{header}.{payload}.{signature[:-1]}{alphabet[last | 1]}"


@pytest.mark.parametrize("name", list(ATTACKS))
def test_attack_is_refused_with_401(name: str) -> None:
    make, reason = ATTACKS[name]
    error = refused(make())
    assert error.reason == reason, (name, error.reason)


@pytest.mark.parametrize("name", list(ATTACKS))
def test_attack_is_refused_through_the_authenticator(name: str) -> None:
    authenticator = Authenticator(jwt=VERIFIER, resource=RESOURCE)
    token = ATTACKS[name][0]()
    with pytest.raises(AuthError) as caught:
        authenticate(authenticator, {"Authorization": f"Bearer {token}"})
    assert caught.value.status == 401
    challenge = authenticator.challenge(caught.value)
    assert challenge.startswith("Bearer ") and 'resource_metadata="' in challenge
    assert token not in challenge or not token


def test_the_size_cap_is_checked_before_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    from mcp_trio.auth import _jwt

    def explode(data: bytes) -> Any:
        raise AssertionError("parsed an oversized token")

    monkeypatch.setattr(_jwt, "_json", explode)
    big = "a" * 5000 + "." + "b" * 5000 + "." + "c"
    assert refused(big).reason == "too_large"
    small = make_verifier(max_token_size=1024)
    assert refused(sign(claims(pad="A" * 800)), small).reason == "too_large"


def test_the_forged_token_would_pass_a_naive_verifier() -> None:
    """The HS/RS attack is real: a library that let the token pick HMAC would accept it."""
    token = hs256_with(RSA_PUBLIC_PEM, {"alg": "HS256", "typ": "JWT"}, claims(scope="admin"))
    signing_input, _, signature = token.rpartition(".")
    expected = hmac.new(RSA_PUBLIC_PEM, signing_input.encode(), hashlib.sha256).digest()
    assert b64(expected) == signature
    refused(token)


def test_no_kid_and_several_candidate_keys_is_refused() -> None:
    second = RSAKey.generate_key(2048)
    verifier = JwtVerifier([load_pem(RSA_PUBLIC_PEM, kid="a"), load_pem(second.as_pem(private=False), kid="b")],
                           issuer=ISSUER, audience=RESOURCE, clock=lambda: NOW)
    assert refused(sign(claims(), RSA_KEY, "RS256", kid=...), verifier).reason == "unknown_kid"


def test_a_jwk_alg_narrows_its_key() -> None:
    jwk = {**RSA_KEY.as_dict(private=False), "alg": "PS256"}
    verifier = JwtVerifier(load_jwks({"keys": [jwk]}), issuer=ISSUER, audience=RESOURCE, clock=lambda: NOW)
    assert verifier.verify(sign(claims(), RSA_KEY, "PS256"))
    assert refused(sign(claims(), RSA_KEY, "RS256"), verifier).reason == "bad_alg"


def test_the_real_clock_is_the_default() -> None:
    verifier = JwtVerifier([load_pem(RSA_PUBLIC_PEM, kid="rsa-1")], issuer=ISSUER, audience=RESOURCE)
    now = int(time.time())
    assert verifier.verify(sign(claims(iat=now, exp=now + 60)))
    refused(sign(claims(iat=now - 7200, exp=now - 3600)), verifier)


# -- keys refused at load --------------------------------------------------------------------
def _rsa_pem(bits: int) -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_rsa_1024_is_refused_at_load() -> None:
    pem = _rsa_pem(1024)
    with pytest.raises(KeyLoadError, match="1024 bits"):
        load_pem(pem)
    with pytest.warns(Warning):  # joserfc warns; we refuse
        jwk = RSAKey.import_key(pem).as_dict()
    with pytest.raises(KeyLoadError, match="1024 bits"):
        load_jwks({"keys": [jwk]})


@pytest.mark.parametrize("algorithms", [["none"], ["RS256", "none"], ["NONE"], [], ["XS256"]])
def test_bad_allow_lists_are_refused(algorithms: list[str]) -> None:
    with pytest.raises(KeyLoadError):
        load_pem(RSA_PUBLIC_PEM, algorithms)


def test_weak_or_misused_secrets_are_refused() -> None:
    with pytest.raises(KeyLoadError, match="at least 32"):
        load_secret("short")
    with pytest.raises(KeyLoadError, match="PEM"):
        load_secret(RSA_PUBLIC_PEM)
    assert load_secret("x" * 64, ["HS256", "HS512"]).algorithms == {"HS256", "HS512"}
    assert load_secret("x" * 40, ["HS256", "HS512"]).algorithms == {"HS256"}


def test_a_key_that_can_verify_nothing_allowed_is_refused() -> None:
    with pytest.raises(KeyLoadError, match="none of the allowed"):
        load_pem(RSA_PUBLIC_PEM, ["ES256"])
    with pytest.raises(KeyLoadError, match="kid"):
        JwtVerifier([load_pem(RSA_PUBLIC_PEM, kid="a"), load_secret(SECRET, kid="a")], issuer=ISSUER, audience=RESOURCE)


def test_jwks_keys_for_encryption_are_skipped_and_private_parts_dropped() -> None:
    keys = load_jwks({"keys": [{**EC_KEY.as_dict(private=False), "use": "enc"}, RSA_KEY.as_dict(private=True)]})
    assert len(keys) == 1 and keys[0].kid == "rsa-1" and not keys[0].key.is_private


def test_verifier_needs_issuer_and_audience() -> None:
    key = load_pem(RSA_PUBLIC_PEM)
    with pytest.raises(KeyLoadError):
        JwtVerifier([key], issuer="", audience=RESOURCE)
    with pytest.raises(KeyLoadError):
        JwtVerifier([key], issuer=ISSUER, audience=[])
    with pytest.raises(KeyLoadError):
        JwtVerifier([], issuer=ISSUER, audience=RESOURCE)


# -- hypothesis: mutants are refused ---------------------------------------------------------
VALID = sign(claims())
VALID_BYTES = VALID.encode()


@st.composite
def mutants(draw: st.DrawFn) -> str:
    data = bytearray(VALID_BYTES)
    kind = draw(st.sampled_from(["flip", "truncate", "splice", "random", "replace_char", "swap_segments", "insert"]))
    if kind == "flip":
        for _ in range(draw(st.integers(1, 4))):
            index = draw(st.integers(0, len(data) - 1))
            data[index] ^= 1 << draw(st.integers(0, 7))
    elif kind == "truncate":
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif kind == "splice":
        start = draw(st.integers(0, len(data)))
        data[start:start] = draw(st.binary(min_size=1, max_size=64))
    elif kind == "random":
        data = bytearray(draw(st.binary(max_size=600)))
    elif kind == "replace_char":
        index = draw(st.integers(0, len(data) - 1))
        data[index] = ord(draw(st.sampled_from("AQgw-_.=/+ \x00")))
    elif kind == "swap_segments":
        parts = VALID.split(".")
        order = draw(st.permutations([0, 1, 2]))
        data = bytearray(".".join(parts[i] for i in order).encode())
    else:
        index = draw(st.integers(0, len(data)))
        data[index:index] = draw(st.sampled_from([b".", b"..", b"A", b"eyJhbGciOiJub25lIn0."]))
    return data.decode("latin-1")


@settings(max_examples=5000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutants())
def test_mutated_tokens_are_always_refused_with_401(token: str) -> None:
    if token == VALID:
        return
    refused(token)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_authorization_header_is_a_principal_or_an_auth_error(value: str) -> None:
    authenticator = Authenticator(jwt=VERIFIER, api_keys=ApiKeyStore([ApiKey("ci", hash_api_key("mcpk_ok"))]))
    try:
        authenticate(authenticator, {"authorization": value})
    except AuthError as exc:
        assert exc.status in (400, 401)


# -- no token in logs, messages or tracebacks ------------------------------------------------
def test_no_token_reaches_logs_messages_or_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    authenticator = Authenticator(jwt=VERIFIER, api_keys=ApiKeyStore([ApiKey("ci", hash_api_key("mcpk_right"))]),
                                  resource=RESOURCE)
    tokens = [make() for make, _ in ATTACKS.values()] + ["mcpk_wrong-key-value"]
    for token in tokens:
        for headers in ({"authorization": f"Bearer {token}"}, {"x-api-key": token}):
            with pytest.raises(AuthError) as caught:
                authenticate(authenticator, headers)
            error = caught.value
            # Nothing chained (a joserfc or json error could quote the input) ...
            assert error.__cause__ is None and error.__context__ is None
            # ... and nothing of the token in what a handler would log or send back.
            shown = "".join(traceback.format_exception_only(error)) + repr(error) + str(error) + authenticator.challenge(error)
            for segment in token.split("."):
                if len(segment) >= 12:  # long enough to be the token's, not a common word
                    assert segment not in shown
    good = sign(claims())
    authenticate(authenticator, {"authorization": f"Bearer {good}"})
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert "authentication refused" in logged  # the refusals were logged, by reason only
    for token in [*tokens, good]:
        for segment in token.split("."):
            if len(segment) >= 12:
                assert segment not in logged


# -- the authenticator -----------------------------------------------------------------------
API_KEY, API_DIGEST = generate_api_key()


def make_authenticator(**options: Any) -> Authenticator:
    options.setdefault("jwt", VERIFIER)
    options.setdefault("api_keys", ApiKeyStore([ApiKey("ci-bot", API_DIGEST, frozenset({"read", "execute"}))]))
    options.setdefault("resource", RESOURCE)
    return Authenticator(**options)


def test_missing_credentials_is_401_with_a_bare_challenge() -> None:
    authenticator = make_authenticator()
    with pytest.raises(AuthError) as caught:
        authenticate(authenticator, {})
    assert (caught.value.status, caught.value.error, caught.value.reason) == (401, None, "missing")
    assert authenticator.challenge(caught.value) == (
        'Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp"')


def test_anonymous_only_when_configured() -> None:
    principal = authenticate(make_authenticator(allow_anonymous=True, anonymous_scopes=["read"]), {})
    assert principal.kind == "anonymous" and principal.subject == "anonymous" and principal.scopes == {"read"}
    # A bad credential is still refused: anonymous is for those who send none.
    with pytest.raises(AuthError):
        authenticate(make_authenticator(allow_anonymous=True), {"Authorization": "Bearer junk"})


def test_api_key_by_header_and_by_bearer_prefix() -> None:
    authenticator = make_authenticator()
    for headers in ({"X-API-Key": API_KEY}, {"Authorization": f"Bearer {API_KEY}"}, [(b"x-api-key", API_KEY.encode())]):
        principal = authenticate(authenticator, headers)
        assert principal == Principal("ci-bot", frozenset({"read", "execute"}), kind="api_key")
    for wrong in (API_KEY[:-1], API_KEY + "x", "mcpk_", "k" * 600):
        with pytest.raises(AuthError) as caught:
            authenticate(authenticator, {"x-api-key": wrong})
        assert caught.value.status == 401


def test_api_key_digest_is_sha256_hex() -> None:
    assert hash_api_key("mcpk_abc") == hashlib.sha256(b"mcpk_abc").hexdigest()
    with pytest.raises(ValueError, match="64 hex"):
        ApiKey("x", "mcpk_abc")  # the key itself, not its digest


def test_jwt_through_the_authenticator_with_asgi_style_headers() -> None:
    token = sign(claims())
    principal = authenticate(make_authenticator(), [(b"host", b"h"), (b"authorization", f"bearer  {token} ".encode())])
    assert principal.subject == "alice"


@pytest.mark.parametrize("headers, status", [
    ({"authorization": "Basic dXNlcjpwYXNz"}, 401),
    ({"authorization": "Bearer"}, 401),
    ({"authorization": "Bearer    "}, 401),
    ([("authorization", "Bearer a"), ("Authorization", "Bearer b")], 400),
    ([("x-api-key", "a"), ("X-Api-Key", "b")], 400),
    ({"authorization": "Bearer x", "x-api-key": "y"}, 400),
    ({"authorization": "Bearer " + "a" * 100_000}, 401),
])
def test_malformed_credentials(headers: Any, status: int) -> None:
    with pytest.raises(AuthError) as caught:
        authenticate(make_authenticator(), headers)
    assert caught.value.status == status


def test_disabled_methods_are_refused() -> None:
    with pytest.raises(AuthError):
        authenticate(Authenticator(api_keys=ApiKeyStore([ApiKey("a", API_DIGEST)])), {"authorization": f"Bearer {sign(claims())}"})
    with pytest.raises(AuthError):
        authenticate(Authenticator(jwt=VERIFIER), {"x-api-key": API_KEY})
    with pytest.raises(ValueError):
        Authenticator()


def test_required_scopes_make_a_403_with_insufficient_scope() -> None:
    authenticator = make_authenticator(required_scopes=["mcp:connect"])
    with pytest.raises(AuthError) as caught:
        authenticate(authenticator, {"authorization": f"Bearer {sign(claims())}"})
    error = caught.value
    assert (error.status, error.error, error.required_scopes) == (403, "insufficient_scope", ("mcp:connect",))
    assert authenticator.challenge(error) == (
        'Bearer error="insufficient_scope", error_description="the credential lacks a required scope", '
        'scope="mcp:connect", resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp"')
    assert authenticate(authenticator, {"authorization": f"Bearer {sign(claims(scope='mcp:connect'))}"})


# -- metadata and challenges -----------------------------------------------------------------
def test_protected_resource_metadata() -> None:
    document = protected_resource_metadata(RESOURCE, ["https://auth.example.com"], ["write", "read", "read"])
    assert document == {
        "resource": RESOURCE,
        "authorization_servers": ["https://auth.example.com"],
        "scopes_supported": ["read", "write"],
        "bearer_methods_supported": ["header"],
    }
    assert make_authenticator(authorization_servers=["https://a"]).metadata()["authorization_servers"] == ["https://a"]


def test_metadata_locations() -> None:
    assert metadata_paths(RESOURCE) == ("/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp")
    assert metadata_paths("https://h/") == ("/.well-known/oauth-protected-resource",)
    assert resource_metadata_url("https://h:8443/a/b") == "https://h:8443/.well-known/oauth-protected-resource/a/b"
    assert resource_metadata_url("https://h") == "https://h/.well-known/oauth-protected-resource"
    with pytest.raises(ValueError):
        resource_metadata_url("/relative")


def test_www_authenticate_cannot_be_broken_out_of() -> None:
    error = AuthError("x", 'evil" , error="none\r\nSet-Cookie: a=b')
    value = www_authenticate(error, "https://h/m")
    assert "\r" not in value and "\n" not in value
    assert value.count('"') - value.count('\\"') == 6  # three quoted values, nothing unbalanced
    assert www_authenticate() == "Bearer"


# -- scopes ----------------------------------------------------------------------------------
def test_scope_hierarchy() -> None:
    assert expand_scopes({"read"}) == {"read"}
    assert expand_scopes({"write"}) == {"write", "read"}
    assert expand_scopes({"admin"}) == {"admin", "write", "read", "execute"}
    assert expand_scopes({"execute"}) == {"execute"}
    assert expand_scopes({"weather:read"}) == {"weather:read"}
    admin, writer, reader, runner = (Principal(s, frozenset({s})) for s in ("admin", "write", "read", "execute"))
    assert allows(admin, ["read", "write", "execute", "admin"])
    assert allows(writer, ["read"]) and allows(writer, ["write"]) and not allows(writer, ["admin"])
    assert not allows(writer, ["execute"]) and not allows(reader, ["write"])
    assert allows(runner, ["execute"]) and not allows(runner, ["read"])
    assert not allows(reader, ["read", "execute"])  # every required scope, not any
    assert allows(reader, []) and allows(None, ["admin"])  # None: a trusted channel
    assert allows(LOCAL, ["admin", "execute"])


def test_principal_is_immutable_and_hides_claims_from_repr() -> None:
    principal = Principal("alice", frozenset({"read"}), {"email": "alice@example.com"})
    with pytest.raises(AttributeError):
        principal.subject = "bob"  # type: ignore[misc]
    with pytest.raises(TypeError):
        principal.claims["email"] = "x"  # type: ignore[index]
    assert "alice@example.com" not in repr(principal)
    assert hash(principal) == hash(Principal("alice", frozenset({"read"})))


# -- authorization in the request path -------------------------------------------------------
def scoped_server() -> Server:
    server = Server("scoped")

    @server.tool
    async def public() -> str:
        return "public"

    @server.tool(scopes=["read"])
    async def look() -> str:
        return "look"

    @server.tool(scopes="write")
    async def change(*, ctx: Context) -> dict[str, Any]:
        return {"by": ctx.principal.subject, "kind": ctx.principal.kind}

    @server.tool(scopes=["execute"])
    async def run() -> str:
        return "ran"

    @server.resource("mem://open")
    async def open_resource() -> str:
        return "open"

    @server.resource("mem://secret", scopes=["admin"])
    async def secret_resource() -> str:
        return "secret"

    @server.resource("mem://items/{name}", scopes=["write"])
    async def item(name: str) -> str:
        return name

    @server.prompt
    async def hello() -> str:
        return "hello"

    @server.prompt(scopes=["admin"])
    async def root_prompt(topic: str) -> str:
        return topic

    @server.completion(prompt="root_prompt", argument="topic")
    async def topics(value: str, context: dict[str, str]) -> list[str]:
        return ["a"]

    return server


def names(reply: dict[str, Any], key: str, field: str = "name") -> set[str]:
    return {item[field] for item in reply["result"][key]}


def forbidden(reply: dict[str, Any], scopes: list[str]) -> None:
    assert reply["error"]["code"] == FORBIDDEN == -32003, reply
    assert reply["error"]["data"] == {"requiredScopes": scopes}


async def test_a_reader_sees_and_uses_only_what_its_scopes_allow() -> None:
    async with serve_in_memory(scoped_server()) as (client, _, connection):
        connection.principal = Principal("rita", frozenset({"read"}))
        await client.initialize()
        assert names(await client.request("tools/list"), "tools") == {"public", "look"}
        assert (await client.request("tools/call", {"name": "look", "arguments": {}}))["result"]["content"][0]["text"] == "look"
        forbidden(await client.request("tools/call", {"name": "change", "arguments": {}}), ["write"])
        forbidden(await client.request("tools/call", {"name": "run", "arguments": {}}), ["execute"])
        assert names(await client.request("resources/list"), "resources", "uri") == {"mem://open"}
        assert (await client.request("resources/templates/list"))["result"]["resourceTemplates"] == []
        forbidden(await client.request("resources/read", {"uri": "mem://secret"}), ["admin"])
        forbidden(await client.request("resources/read", {"uri": "mem://items/x"}), ["write"])
        forbidden(await client.request("resources/subscribe", {"uri": "mem://secret"}), ["admin"])
        assert "result" in await client.request("resources/read", {"uri": "mem://open"})
        assert names(await client.request("prompts/list"), "prompts") == {"hello"}
        forbidden(await client.request("prompts/get", {"name": "root_prompt", "arguments": {"topic": "t"}}), ["admin"])
        forbidden(await client.request("completion/complete", {
            "ref": {"type": "ref/prompt", "name": "root_prompt"}, "argument": {"name": "topic", "value": ""}}), ["admin"])
        forbidden(await client.request("completion/complete", {
            "ref": {"type": "ref/resource", "uri": "mem://items/{name}"}, "argument": {"name": "name", "value": ""}}), ["write"])


async def test_a_writer_inherits_read_and_reaches_its_tools_with_its_identity() -> None:
    async with serve_in_memory(scoped_server()) as (client, _, connection):
        connection.principal = Principal("wendy", frozenset({"write"}), {"sub": "wendy"})
        await client.initialize()
        assert names(await client.request("tools/list"), "tools") == {"public", "look", "change"}
        reply = await client.request("tools/call", {"name": "change", "arguments": {}})
        assert reply["result"]["structuredContent"] == {"by": "wendy", "kind": "jwt"}
        assert "result" in await client.request("resources/read", {"uri": "mem://items/x"})


async def test_admin_sees_everything_and_a_trusted_channel_is_not_checked() -> None:
    for principal in (Principal("root", frozenset({"admin"})), None):
        async with serve_in_memory(scoped_server()) as (client, _, connection):
            connection.principal = principal
            await client.initialize()
            assert names(await client.request("tools/list"), "tools") == {"public", "look", "change", "run"}
            assert names(await client.request("prompts/list"), "prompts") == {"hello", "root_prompt"}
            assert len((await client.request("resources/templates/list"))["result"]["resourceTemplates"]) == 1
            assert "result" in await client.request("resources/read", {"uri": "mem://secret"})
            assert "result" in await client.request("tools/call", {"name": "run", "arguments": {}})


async def test_anonymous_principal_gets_only_unscoped_items() -> None:
    async with serve_in_memory(scoped_server()) as (client, _, connection):
        connection.principal = Principal("anonymous", frozenset(), kind="anonymous")
        await client.initialize()
        assert names(await client.request("tools/list"), "tools") == {"public"}
        forbidden(await client.request("tools/call", {"name": "look", "arguments": {}}), ["read"])


def test_scopes_given_as_one_string_are_one_scope() -> None:
    server = scoped_server()
    assert server.registry.tools["change"].scopes == {"write"}
    with pytest.raises(ValueError):
        server.add_tool(lambda: "x", name="bad", scopes=["two words"])


def test_a_minted_token_verifies() -> None:
    token = mint_token(RSA_KEY, subject="dev", issuer=ISSUER, audience=RESOURCE, scopes=["write"], kid="rsa-1", now=NOW)
    assert VERIFIER.verify(token).granted == {"write", "read"}
    with pytest.raises(KeyLoadError):
        mint_token(RSA_KEY, subject="dev", issuer=ISSUER, audience=RESOURCE, algorithm="HS256")


def test_the_auth_layer_imports_only_stdlib_and_joserfc() -> None:
    """DESIGN.md's layer table: auth is a leaf. The checks (tokens, keys, scopes, API keys,
    metadata, cache headers) import stdlib and joserfc (and its cryptography) only, never
    trio; the modules that talk to the identity provider add trio and h11. None imports a
    transport or the rest of mcp_trio."""
    import ast
    import sys
    from pathlib import Path

    import mcp_trio.auth

    allowed = set(sys.stdlib_module_names) | {"joserfc", "cryptography"}
    talks_to_provider = {"_http.py", "_cached.py", "_jwks.py", "_introspection.py"}
    for path in Path(mcp_trio.auth.__file__).parent.glob("*.py"):
        permitted = allowed | {"trio", "h11"} if path.name in talks_to_provider else allowed
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level == 1:
                    continue  # within mcp_trio.auth
                assert node.level == 0, f"{path.name} imports from outside mcp_trio.auth"
                roots = [node.module.split(".")[0]]  # type: ignore[union-attr]
            else:
                continue
            for root in roots:
                assert root in permitted, f"{path.name} imports {root}"
