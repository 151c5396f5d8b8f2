"""Verification keys, each bound at load time to the algorithms its type can verify.

Binding a key to its algorithms is what stops algorithm confusion: an RSA key verifies only
``RS*``/``PS*``, so a token that says ``HS256`` and was "signed" with the RSA public key as an
HMAC secret finds no key to check it against. Weak keys are refused here, when the server
starts, not when a token arrives: RSA under 2048 bits, HMAC secrets shorter than their hash.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, Key, OctKey, OKPKey, RSAKey, import_key

#: RSA keys shorter than this are refused at load (NIST SP 800-131A; RFC 7518 §3.3).
MIN_RSA_BITS = 2048
#: HMAC secrets must be at least as long as the hash output (RFC 7518 §3.2).
_HS_MIN_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
_RSA_ALGS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_EC_ALGS = {"P-256": frozenset({"ES256"}), "P-384": frozenset({"ES384"}), "P-521": frozenset({"ES512"}),
            "secp256k1": frozenset({"ES256K"})}
_OKP_ALGS = {"Ed25519": frozenset({"EdDSA", "Ed25519"}), "Ed448": frozenset({"EdDSA", "Ed448"})}
#: Every signature algorithm this server can verify. ``none`` is not one of them.
SUPPORTED_ALGORITHMS: frozenset[str] = frozenset(
    _RSA_ALGS | set(_HS_MIN_BYTES) | set().union(*_EC_ALGS.values()) | set().union(*_OKP_ALGS.values())
)
#: The allow-list when the configuration names none: common asymmetric algorithms and HS256.
#: Each key still verifies only the ones its type allows. (``EdDSA``, deprecated by RFC 9864
#: in favour of ``Ed25519``, must be allowed explicitly.)
DEFAULT_ALGORITHMS: tuple[str, ...] = ("RS256", "PS256", "ES256", "Ed25519", "HS256")


class KeyLoadError(ValueError):
    """A configured key cannot be used (unreadable, wrong kind, too weak, no allowed algorithm)."""


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """A public (or, for HMAC, secret) key, its ``kid``, and the algorithms it may verify."""

    key: Key
    algorithms: frozenset[str]
    kid: str | None = None

    def __repr__(self) -> str:  # never print key material
        return f"VerificationKey(kty={self.key.key_type!r}, kid={self.kid!r}, algorithms={sorted(self.algorithms)})"


def check_algorithms(algorithms: Iterable[str]) -> frozenset[str]:
    """Validate an allow-list: known signature algorithms only, never ``none``."""
    allowed = frozenset(algorithms)
    if not allowed:
        raise KeyLoadError("the JWT algorithm allow-list is empty")
    if any(alg.lower() == "none" for alg in allowed):
        raise KeyLoadError('"none" cannot be allowed: unsigned tokens are never accepted')
    unknown = allowed - SUPPORTED_ALGORITHMS
    if unknown:
        raise KeyLoadError(f"unsupported JWT algorithm(s) {sorted(unknown)}; supported: {sorted(SUPPORTED_ALGORITHMS)}")
    return allowed


def algorithms_for(key: Key) -> frozenset[str]:
    """What ``key``'s type can verify; raises ``KeyLoadError`` for weak or unusable keys."""
    if isinstance(key, RSAKey):
        bits = key.raw_value.key_size
        if bits < MIN_RSA_BITS:
            raise KeyLoadError(f"RSA key of {bits} bits refused: at least {MIN_RSA_BITS} are required")
        return _RSA_ALGS
    if isinstance(key, ECKey):
        algs = _EC_ALGS.get(key.curve_name)
        if algs is None:
            raise KeyLoadError(f"EC curve {key.curve_name!r} is not supported for signatures")
        return algs
    if isinstance(key, OKPKey):
        algs = _OKP_ALGS.get(key.curve_name)
        if algs is None:
            raise KeyLoadError(f"OKP curve {key.curve_name!r} is not a signature curve")
        return algs
    if isinstance(key, OctKey):
        size = len(key.raw_value)
        algs = frozenset(alg for alg, minimum in _HS_MIN_BYTES.items() if size >= minimum)
        if not algs:
            raise KeyLoadError(f"HMAC secret of {size} bytes refused: at least {_HS_MIN_BYTES['HS256']} are required")
        return algs
    raise KeyLoadError(f"unsupported key type {type(key).__name__}")  # pragma: no cover


def bind(key: Key, allowed: Iterable[str], *, kid: str | None = None, declared_alg: str | None = None) -> VerificationKey:
    """Bind ``key`` to (its type's algorithms) ∩ ``allowed`` (∩ its JWK ``alg``, if declared)."""
    algs = algorithms_for(key) & check_algorithms(allowed)
    if declared_alg is not None:
        algs &= {declared_alg}
    if not algs:
        label = f"key {kid!r}" if kid else f"the {key.key_type} key"
        raise KeyLoadError(f"{label} can verify none of the allowed algorithms")
    return VerificationKey(key, frozenset(algs), kid)


def _public(key: Key) -> Key:
    """The public half of an asymmetric key (a private PEM may be configured for dev minting)."""
    if isinstance(key, OctKey) or not key.is_private:
        return key
    return type(key).import_key(key.as_dict(private=False))


def load_pem(data: str | bytes, allowed: Iterable[str] = DEFAULT_ALGORITHMS, *, kid: str | None = None) -> VerificationKey:
    """A PEM public key, private key (its public half is kept) or X.509 certificate."""
    raw = data.encode() if isinstance(data, str) else bytes(data)
    public: Any = None
    loaders = (
        lambda: serialization.load_pem_public_key(raw),
        lambda: serialization.load_pem_private_key(raw, password=None).public_key(),
        lambda: x509.load_pem_x509_certificate(raw).public_key(),
    )
    for load in loaders:
        try:
            public = load()
            break
        except (ValueError, TypeError, UnsupportedAlgorithm):
            continue
    if public is None:
        raise KeyLoadError("not a PEM public key, private key or certificate (an encrypted private key is not supported)")
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    key: Key
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # joserfc warns of weak keys; ``bind`` refuses them
        if isinstance(public, rsa.RSAPublicKey):
            key = RSAKey.import_key(pem)
        elif isinstance(public, ec.EllipticCurvePublicKey):
            key = ECKey.import_key(pem)
        elif isinstance(public, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
            key = OKPKey.import_key(pem)
        else:
            raise KeyLoadError(f"unsupported public key type {type(public).__name__}")
    return bind(key, allowed, kid=kid)


def load_secret(secret: str | bytes, allowed: Iterable[str] = DEFAULT_ALGORITHMS, *, kid: str | None = None) -> VerificationKey:
    """An HMAC secret (its UTF-8 bytes). A PEM or SSH key given as a secret is refused."""
    raw = secret.encode() if isinstance(secret, str) else bytes(secret)
    if b"-----BEGIN" in raw or raw.startswith((b"ssh-", b"ecdsa-sha2-")):
        raise KeyLoadError("a PEM/SSH key was given as an HMAC secret; configure it as a public key instead")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            key = OctKey.import_key(raw)
    except (ValueError, JoseError) as exc:
        raise KeyLoadError(f"unusable HMAC secret: {type(exc).__name__}") from None
    return bind(key, allowed, kid=kid)


def load_jwks(document: Mapping[str, Any] | str | bytes, allowed: Iterable[str] = DEFAULT_ALGORITHMS,
              *, skip_unusable: bool = False) -> list[VerificationKey]:
    """The signature keys of a JWK Set (``{"keys": [...]}``).

    A key whose ``use`` is not ``sig``, or whose ``key_ops`` lack ``verify``, is skipped; a
    declared ``alg`` narrows what the key verifies; ``kid``s must be unique. A key that is
    weak (RSA < 2048 bits) or verifies none of the allowed algorithms refuses the whole set:
    a half-loaded key set would fail later, and more confusingly. With ``skip_unusable`` (a
    provider's published set, which may hold keys for algorithms we do not allow) such keys are
    left out instead; at least one usable key must remain.
    """
    if isinstance(document, (str, bytes)):
        try:
            document = json.loads(document)
        except ValueError as exc:
            raise KeyLoadError(f"the JWKS is not JSON: {exc}") from None
    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        raise KeyLoadError('a JWKS is a JSON object with a "keys" list')
    keys: list[VerificationKey] = []
    for index, entry in enumerate(document["keys"]):
        if not isinstance(entry, Mapping):
            raise KeyLoadError(f"JWKS key #{index} is not an object")
        if entry.get("use", "sig") != "sig":
            continue
        ops = entry.get("key_ops")
        if ops is not None and "verify" not in ops:
            continue
        kid = entry.get("kid")
        declared = entry.get("alg")
        if (kid is not None and not isinstance(kid, str)) or (declared is not None and not isinstance(declared, str)):
            raise KeyLoadError(f"JWKS key #{index}: kid and alg must be strings")
        clean = {k: v for k, v in entry.items() if k not in ("key_ops", "use", "alg")}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                key = _public(import_key(clean))  # type: ignore[arg-type]
        except (ValueError, TypeError, KeyError, JoseError) as exc:
            if skip_unusable:
                continue
            raise KeyLoadError(f"JWKS key #{index} ({kid or 'no kid'}): {type(exc).__name__}: {exc}") from None
        try:
            keys.append(bind(key, allowed, kid=kid, declared_alg=declared))
        except KeyLoadError as exc:
            if skip_unusable:
                continue
            raise KeyLoadError(f"JWKS key #{index} ({kid or 'no kid'}): {exc}") from None
    if not keys:
        raise KeyLoadError("the JWKS holds no usable signature key" if skip_unusable else "the JWKS holds no signature key")
    return keys


def load_jwks_file(path: str | Path, allowed: Iterable[str] = DEFAULT_ALGORITHMS) -> list[VerificationKey]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise KeyLoadError(f"cannot read JWKS file {path}: {exc.strerror or exc}") from None
    return load_jwks(text, allowed)


def check_unique_kids(keys: Sequence[VerificationKey]) -> None:
    seen: set[str] = set()
    for key in keys:
        if key.kid is None:
            continue
        if key.kid in seen:
            raise KeyLoadError(f"two keys share the kid {key.kid!r}")
        seen.add(key.kid)
