"""Minting development tokens (``mcp-trio token``): for local runs and tests, not production.

A real deployment gets its tokens from an authorization server; this signs one with a key the
developer holds (the configured HMAC secret, or an RSA/EC/Ed25519 private key), carrying the
claims the verifier requires.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from joserfc import jwt
from joserfc.jwk import ECKey, Key, OctKey, OKPKey, RSAKey

from ._keys import KeyLoadError, algorithms_for, load_secret

_DEFAULT_ALG = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512", "secp256k1": "ES256K", "Ed25519": "Ed25519", "Ed448": "Ed448"}


def load_signing_key(pem: str | bytes) -> Key:
    """A private key from PEM (RSA >= 2048 bits, EC, Ed25519/Ed448)."""
    raw = pem.encode() if isinstance(pem, str) else bytes(pem)
    try:
        private = serialization.load_pem_private_key(raw, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise KeyLoadError("not an unencrypted PEM private key") from None
    key: Key
    if isinstance(private, rsa.RSAPrivateKey):
        key = RSAKey.import_key(raw)
    elif isinstance(private, ec.EllipticCurvePrivateKey):
        key = ECKey.import_key(raw)
    elif isinstance(private, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
        key = OKPKey.import_key(raw)
    else:
        raise KeyLoadError(f"unsupported private key type {type(private).__name__}")
    algorithms_for(key)  # refuses weak keys
    return key


def secret_key(secret: str | bytes) -> Key:
    """The HMAC key for a configured secret (same checks as verification)."""
    return load_secret(secret, ("HS256", "HS384", "HS512")).key


def default_algorithm(key: Key) -> str:
    if isinstance(key, OctKey):
        return "HS256"
    if isinstance(key, RSAKey):
        return "RS256"
    return _DEFAULT_ALG[key.curve_name]  # type: ignore[attr-defined]


def mint_token(
    key: Key,
    *,
    subject: str,
    issuer: str,
    audience: str,
    scopes: Iterable[str] = (),
    ttl: float = 3600,
    algorithm: str | None = None,
    kid: str | None = None,
    now: float | None = None,
    extra_claims: Mapping[str, Any] | None = None,
) -> str:
    """A signed JWT with ``sub``, ``scope``, ``iss``, ``aud``, ``iat``, ``exp`` (now + ``ttl``)."""
    alg = algorithm or default_algorithm(key)
    if alg not in algorithms_for(key):
        raise KeyLoadError(f"a {key.key_type} key cannot sign {alg}")
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {**(extra_claims or {}), "sub": subject, "iss": issuer, "aud": audience,
                              "iat": issued, "exp": issued + int(ttl)}
    scope_list = sorted(set(scopes))
    if scope_list:
        claims["scope"] = " ".join(scope_list)
    header: dict[str, Any] = {"alg": alg}
    if kid:
        header["kid"] = kid
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return jwt.encode(header, claims, key, algorithms=[alg])
