"""API keys: random secrets stored as SHA-256 digests, compared in constant time.

Why SHA-256 and not scrypt: an API key here is a machine-generated random secret (``mcpk_``
and 32 random bytes from ``generate_api_key``), not a password a person chose. Guessing 256
random bits is hopeless however fast the hash, so a slow KDF adds no safety against a leaked
config, while it would cost every request tens of milliseconds of CPU, a lever for anyone
who wants to exhaust the server. (GitHub and Stripe keys are stored the same way.) Do not
configure human-chosen strings as API keys.

Config entry: ``{name = "ci", sha256 = "<64 hex digits>", scopes = ["read"]}``; the digest of a
key is ``sha256(key.encode()).hexdigest()`` (``mcp-trio token --api-key`` prints both).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from ._errors import AuthError
from ._principal import Principal

#: The prefix that marks an ``Authorization: Bearer`` credential as an API key, not a JWT.
DEFAULT_KEY_PREFIX = "mcpk_"
#: Longest API key accepted; longer ones are refused before hashing.
MAX_API_KEY_SIZE = 512
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")


def hash_api_key(key: str) -> str:
    """The hex SHA-256 digest stored in config for ``key``."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def generate_api_key(prefix: str = DEFAULT_KEY_PREFIX) -> tuple[str, str]:
    """A new random key (``prefix`` + 32 random bytes, base64url) and its digest for config."""
    key = prefix + secrets.token_urlsafe(32)
    return key, hash_api_key(key)


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One configured key: who it is (``name``, the principal's subject), its digest, its scopes."""

    name: str
    sha256: str
    scopes: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("an API key needs a name (the principal's subject)")
        digest = self.sha256.lower()
        if _HEX64.match(digest) is None:
            raise ValueError(f"API key {self.name!r}: sha256 must be 64 hex digits (the digest, not the key)")
        object.__setattr__(self, "sha256", digest)
        object.__setattr__(self, "scopes", frozenset(self.scopes))

    def __repr__(self) -> str:
        return f"ApiKey({self.name!r}, scopes={sorted(self.scopes)})"


class ApiKeyStore:
    """Looks presented keys up among the configured digests, in constant time."""

    def __init__(self, keys: Iterable[ApiKey]) -> None:
        entries = list(keys)
        names = [k.name for k in entries]
        if len(set(names)) != len(names):
            raise ValueError("two API keys share a name")
        if len({k.sha256 for k in entries}) != len(entries):
            raise ValueError("two API keys share a digest")
        self._entries = tuple((bytes.fromhex(k.sha256), Principal(k.name, k.scopes, {}, "api_key")) for k in entries)

    def __len__(self) -> int:
        return len(self._entries)

    def verify(self, key: str) -> Principal:
        """The key's principal, or ``AuthError`` (401, ``invalid_token``)."""
        if not key or len(key) > MAX_API_KEY_SIZE:
            raise AuthError("bad_api_key", "invalid API key")
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
        found: Principal | None = None
        # Compare against every entry, match or not: the time taken says nothing about which.
        for stored, principal in self._entries:
            if hmac.compare_digest(digest, stored):
                found = principal
        if found is None:
            raise AuthError("bad_api_key", "invalid API key")
        return found
