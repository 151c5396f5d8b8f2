"""Bearer JWT verification: strict, small, and quiet about the token.

The order of checks is the point. Before any cryptography: the size cap (before parsing
anything), the shape (three base64url segments: no JWE, no unsigned token), a header of our own
parsing (no ``none``, an allow-listed ``alg``, no key carried in the token: ``jwk``, ``jku``,
``x5u``, ``x5c``; no ``crit`` extensions), then the key chosen by ``kid`` and bound to its
algorithms (no HS/RS confusion). joserfc checks the signature. Then the claims: ``iss``,
``aud``, ``exp`` and ``iat`` required, ``nbf`` honoured, all with a small leeway.

Every refusal is an ``AuthError`` with a fixed message; no exception raised here quotes the
token or carries one chained to it.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from joserfc import jws

from ._errors import AuthError
from ._keys import (
    DEFAULT_ALGORITHMS,
    KeyLoadError,
    VerificationKey,
    check_algorithms,
    check_unique_kids,
)
from ._principal import Principal
from ._scopes import DEFAULT_SCOPE_CLAIMS, ScopeClaims

logger = logging.getLogger("mcp_trio.auth")

#: Largest token accepted, in bytes; longer ones are refused before anything is parsed.
DEFAULT_MAX_TOKEN_SIZE = 8 * 1024
#: Seconds of clock skew tolerated on ``exp``, ``nbf`` and ``iat``.
DEFAULT_LEEWAY = 30.0
#: Header parameters that carry (or point to) a key. A token never chooses its own key.
EMBEDDED_KEY_HEADERS = frozenset({"jwk", "jku", "x5u", "x5c"})
#: ``typ`` values accepted (RFC 7519 ``JWT``, RFC 9068 ``at+jwt``), compared case-insensitively.
_TYPES = frozenset({"jwt", "at+jwt", "application/jwt", "application/at+jwt"})
_COMPACT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\Z")
_MAX_KID = 256
_MAX_SUBJECT = 1024


class _Duplicate(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two parsers reading {"sub":"a","sub":"b"} differently is an attack; refuse the ambiguity.
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _Duplicate("duplicate member")
    return result


def _no_constants(name: str) -> Any:
    raise ValueError("NaN and Infinity are not JSON")  # a NaN ``exp`` would compare as never expired


def _json(data: bytes) -> Any:
    return json.loads(data, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)


#: JSON as the token's parts are read: a duplicate member, ``NaN`` or ``Infinity`` is a ``ValueError``.
strict_json = _json


def _b64decode(segment: str) -> bytes:
    """Strict base64url: only the canonical encoding of the bytes is accepted.

    Lenient decoders ignore the unused low bits of the last character, so one signature has
    several spellings; refusing all but one keeps tokens non-malleable (a token that differs by
    a character is a different, invalid token).
    """
    data = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    if base64.urlsafe_b64encode(data).rstrip(b"=") != segment.encode("ascii"):
        raise ValueError("non-canonical base64url")
    return data


_DECODE_ERRORS = (ValueError, TypeError, RecursionError, binascii.Error, UnicodeError)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int with hundreds of digits
        return None
    return number if math.isfinite(number) else None


def _refuse(reason: str, description: str) -> AuthError:
    return AuthError(reason, description)


class JwtVerifier:
    """Verifies bearer JWTs for one resource server.

    ``keys``: the verification keys (``load_jwks``, ``load_pem``, ``load_secret``);
    ``issuer``: the one accepted ``iss``; ``audience``: this server's resource URL (or several
    accepted values), one of which ``aud`` must hold; ``algorithms``: the allow-list (default
    ``DEFAULT_ALGORITHMS``); ``leeway``: seconds of clock skew (default 30);
    ``max_token_size``: bytes (default 8 KiB); ``clock``: seconds since the epoch (``time.time``);
    ``scope_claims``: the claims scopes are read from (default ``scope`` and ``scp``; see
    ``ScopeClaims``).
    """

    def __init__(
        self,
        keys: Sequence[VerificationKey],
        *,
        issuer: str,
        audience: str | Iterable[str],
        algorithms: Iterable[str] = DEFAULT_ALGORITHMS,
        leeway: float = DEFAULT_LEEWAY,
        max_token_size: int = DEFAULT_MAX_TOKEN_SIZE,
        clock: Callable[[], float] = time.time,
        scope_claims: Iterable[str] = DEFAULT_SCOPE_CLAIMS,
    ) -> None:
        if not issuer:
            raise KeyLoadError("a JWT issuer is required (the iss every token must carry)")
        audiences = frozenset([audience] if isinstance(audience, str) else audience)
        if not audiences or not all(isinstance(a, str) and a for a in audiences):
            raise KeyLoadError("a JWT audience is required (this server's resource URL)")
        if not leeway >= 0:
            raise KeyLoadError("leeway must not be negative")
        if max_token_size < 64:
            raise KeyLoadError("max_token_size is too small for any JWT")
        self.algorithms = check_algorithms(algorithms)
        bound: list[VerificationKey] = []
        for key in keys:
            algs = key.algorithms & self.algorithms
            if not algs:
                raise KeyLoadError(f"key {key.kid or key.key.key_type!r} can verify none of the allowed algorithms")
            bound.append(VerificationKey(key.key, frozenset(algs), key.kid))
        if not bound:
            raise KeyLoadError("no JWT verification key is configured")
        check_unique_kids(bound)
        self.keys: tuple[VerificationKey, ...] = tuple(bound)
        self._by_kid = {key.kid: key for key in bound if key.kid is not None}
        self.issuer = issuer
        self.audiences = audiences
        self.leeway = float(leeway)
        self.max_token_size = max_token_size
        self.clock = clock
        self.scope_claims = ScopeClaims(scope_claims)
        # One registry per algorithm: joserfc then accepts exactly the algorithm we checked.
        # Header names were already checked here, so its strict header check is not needed.
        self._registries = {alg: jws.JWSRegistry(algorithms=[alg], strict_check_header=False) for alg in self.algorithms}

    # -- the one entry point ----------------------------------------------------------------
    def verify(self, token: str) -> Principal:
        """The token's principal, or ``AuthError`` (status 401, ``invalid_token``)."""
        claims = self.verify_claims(token)
        scopes = self.scope_claims(claims)
        return Principal(claims["sub"], scopes, claims, "jwt")

    def names_unknown_kid(self, token: str) -> bool:
        """Whether ``token``'s header names a ``kid`` none of the keys has (a rotation may have
        added it). Read only after a refusal, to decide whether fetching the keys again can help."""
        try:
            header = _json(_b64decode(token.split(".", 1)[0]))
        except _DECODE_ERRORS:
            return False
        kid = header.get("kid") if isinstance(header, dict) else None
        return isinstance(kid, str) and len(kid) <= _MAX_KID and kid not in self._by_kid

    def verify_claims(self, token: str) -> dict[str, Any]:
        if not isinstance(token, str):
            raise _refuse("malformed", "malformed token")
        if len(token) > self.max_token_size:
            raise _refuse("too_large", "token too large")
        if not token.isascii() or _COMPACT.match(token) is None:
            # JWE (five segments), unsigned tokens (empty signature) and junk all end here.
            raise _refuse("malformed", "malformed token")
        header_segment, payload_segment, signature_segment = token.split(".")
        try:
            _b64decode(payload_segment)
            _b64decode(signature_segment)
            header = _json(_b64decode(header_segment))
        except _DECODE_ERRORS:
            header = None
        if not isinstance(header, dict):
            raise _refuse("malformed", "malformed token header")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg.lower() == "none":
            raise _refuse("bad_alg", "unsigned tokens are not accepted")
        if alg not in self.algorithms:
            raise _refuse("bad_alg", "token algorithm not allowed")
        if not EMBEDDED_KEY_HEADERS.isdisjoint(header):
            raise _refuse("embedded_key", "tokens carrying their own key are not accepted")
        if "crit" in header or "b64" in header or "enc" in header or "zip" in header:
            raise _refuse("unsupported_header", "token uses an unsupported header extension")
        typ = header.get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.lower() not in _TYPES):
            raise _refuse("bad_type", "token type not accepted")
        key = self._select_key(header.get("kid", None), alg)

        # The only place untrusted bytes meet joserfc: whatever it raises is a refusal.
        verified: Any = None
        try:
            verified = jws.deserialize_compact(token, key.key, registry=self._registries[alg])
        except Exception as exc:  # noqa: BLE001 - boundary: never a 500 for a bad token
            logger.debug("JWT signature check failed: %s", type(exc).__name__)
        if verified is None or verified.payload is None:
            raise _refuse("bad_signature", "invalid token signature")
        try:
            claims = _json(verified.payload)
        except _DECODE_ERRORS:
            claims = None
        if not isinstance(claims, dict):
            raise _refuse("malformed", "malformed token claims")
        self._check_claims(claims)
        return claims

    # -- steps --------------------------------------------------------------------------------
    def _select_key(self, kid: Any, alg: str) -> VerificationKey:
        if kid is not None:
            if not isinstance(kid, str) or len(kid) > _MAX_KID:
                raise _refuse("malformed", "malformed token header")
            key = self._by_kid.get(kid)
            if key is None:
                raise _refuse("unknown_kid", "unknown signing key")
            if alg not in key.algorithms:
                raise _refuse("bad_alg", "token algorithm does not match its key")
            return key
        candidates = [key for key in self.keys if alg in key.algorithms]
        if not candidates:
            raise _refuse("bad_alg", "token algorithm does not match any key")
        if len(candidates) > 1:
            raise _refuse("unknown_kid", "token has no kid and several keys could verify it")
        return candidates[0]

    def _check_claims(self, claims: Mapping[str, Any]) -> None:
        now = self.clock()
        leeway = self.leeway
        iss = claims.get("iss")
        if not isinstance(iss, str):
            raise _refuse("missing_claim", "token has no issuer")
        if iss != self.issuer:
            raise _refuse("bad_issuer", "token issuer not accepted")
        aud = claims.get("aud")
        if isinstance(aud, str):
            audiences = {aud}
        elif isinstance(aud, list) and aud and all(isinstance(a, str) for a in aud):
            audiences = set(aud)
        else:
            raise _refuse("bad_audience" if aud is not None else "missing_claim", "token audience missing or malformed")
        if audiences.isdisjoint(self.audiences):
            raise _refuse("bad_audience", "token is not meant for this server")
        exp = _number(claims.get("exp"))
        if exp is None:
            raise _refuse("missing_claim", "token has no valid expiry")
        if now >= exp + leeway:
            raise _refuse("expired", "token expired")
        iat = _number(claims.get("iat"))
        if iat is None:
            raise _refuse("missing_claim", "token has no valid issue time")
        if iat > now + leeway:
            raise _refuse("not_yet_valid", "token issued in the future")
        if "nbf" in claims:
            nbf = _number(claims["nbf"])
            if nbf is None:
                raise _refuse("malformed", "token not-before time malformed")
            if nbf > now + leeway:
                raise _refuse("not_yet_valid", "token not yet valid")
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub or len(sub) > _MAX_SUBJECT:
            raise _refuse("missing_claim", "token has no valid subject")
